"""Where each role runs on a cluster, decided from the live nodes before anything starts.

- the aggregator (with its query API), the gas oracle and the submitter run on the node that
  `ray.aggregator_node` names ("head" by default, or a node IP or Ray node id);
- the inference actor runs on a GPU node with `num_gpus=1` when the cluster has a GPU, else on a
  node carrying `ray.inference_resource` when one is configured, else on CPU on the aggregator's node;
- the watchers spread over the nodes (`scheduling_strategy="SPREAD"`).

With several chains every chain has its own watchers, gas oracle and aggregator, named with the
chain (`aggregator@base`, `watcher-0@base`: `actor_name`), placed by the same rules; one inference
actor serves them all, and the submitter follows the default (first) chain.

With `sockets.data_host = "node"` every binding actor binds on its node's own IP (multi-node
clusters); with a fixed host (loopback by default) every binding actor runs on the aggregator's
node, and with loopback on a multi-node cluster so do all the others. Plain data: the launcher
turns a `Placement` into Ray scheduling options.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from scanner.config import LOOPBACK_HOSTS, Config, is_loopback
from scanner.errors import ConfigError

INFERENCE_RESOURCE_AMOUNT = 0.01  # of `ray.inference_resource`: lands on its node without using it up


def chain_suffix(chain: str, chains: int) -> str:
    """What a chain's actor names end with: "" when it is the only chain, "@name" among several."""
    return f"@{chain}" if chains > 1 else ""


def actor_name(role: str, suffix: str = "") -> str:
    """The Ray actor name of a per-chain `role` ("aggregator", "watcher-0") of the chain with `suffix`."""
    return role + suffix


@dataclass(frozen=True)
class Node:
    """One live Ray node, as `ray.nodes()` describes it."""

    id: str
    ip: str
    resources: dict[str, float]
    head: bool = False

    def __str__(self) -> str:
        return f"{self.ip} ({self.id[:12]}{', head' if self.head else ''})"


def resolve_node(spec: str, nodes: list[Node], key: str = "ray.aggregator_node") -> Node:
    """The node `spec` names: "head", a Ray node id, or a node IP (the head first when several share it)."""
    spec = spec.strip()
    if spec == "head":
        for node in nodes:
            if node.head:
                return node
        raise ConfigError(f'{key} is "head" but the cluster reports no head node; name a node IP or id: '
                          + ", ".join(map(str, nodes)))
    for node in nodes:
        if node.id == spec:
            return node
    for node in nodes:  # head first (see cluster_nodes)
        if node.ip == spec:
            return node
    raise ConfigError(f"{key} = {spec!r} names no live node; the nodes are: " + ", ".join(map(str, nodes)))


@dataclass
class Placement:
    """Where each role runs. `hub` holds the aggregator, gas oracle and submitter; node ids for Ray."""

    hub: Node
    inference: Node
    inference_gpus: int = 0
    inference_resources: dict[str, float] = field(default_factory=dict)
    inference_device: str = "auto"
    watchers: Node | None = None  # None: spread over the cluster
    data_host: str = "127.0.0.1"  # "node" or a fixed host every binding actor binds on
    notes: list[str] = field(default_factory=list)

    def describe(self, shards: int, suffixes: tuple[str, ...] = ("",), submitters: tuple[str, ...] = ()) -> dict[str, str]:
        """Actor name -> node id, or "SPREAD" for actors Ray spreads; `suffixes`: one per chain, `submitters`:
        those of the chains with a submitter."""
        out = {"inference": self.inference.id}
        for suffix in suffixes:
            out |= {actor_name("aggregator", suffix): self.hub.id, actor_name("gas-oracle", suffix): self.hub.id}
            for shard in range(shards):
                out[actor_name(f"watcher-{shard}", suffix)] = self.watchers.id if self.watchers else "SPREAD"
        return out | {actor_name("submitter", suffix): self.hub.id for suffix in submitters}


def plan_placement(config: Config, nodes: list[Node], driver_node_id: str | None = None) -> Placement:
    """Decide every role's node from the live nodes; `notes` say what was done instead of what was asked."""
    if not nodes:
        raise ConfigError("the Ray cluster reports no live node")
    hub = resolve_node(config.ray.aggregator_node, nodes)
    notes: list[str] = []
    data_host = config.sockets.data_host.strip()
    per_node = data_host == "node"
    multi = len(nodes) > 1
    loopback = not per_node and (data_host in LOOPBACK_HOSTS or data_host.startswith("127."))
    gpu_nodes = [n for n in nodes if n.resources.get("GPU", 0) >= 1]
    resource = config.ray.inference_resource.strip()
    marked = [n for n in nodes if resource and n.resources.get(resource, 0) > 0]

    if per_node:
        candidates = gpu_nodes or marked
        inference = hub if hub in candidates else (candidates[0] if candidates else hub)
    else:
        inference = hub
        if multi and (gpu_nodes or marked) and hub not in (gpu_nodes or marked):
            where = ", ".join(map(str, gpu_nodes or marked))
            notes.append(f"sockets.data_host = {data_host!r} binds every data socket on one node, the aggregator's "
                         f"({hub}), so inference runs there and not on {where}: set sockets.data_host = \"node\"")
    watchers = None
    if multi and loopback:
        watchers = hub
        notes.append(f"sockets.data_host = {data_host!r} is loopback on a {len(nodes)}-node cluster: every actor runs "
                     f"on the aggregator's node {hub}; set sockets.data_host = \"node\" to spread the watchers over "
                     "the cluster and run inference on the GPU node")

    gpus = 1 if inference.resources.get("GPU", 0) >= 1 else 0
    resources = {resource: INFERENCE_RESOURCE_AMOUNT} if resource and inference in marked else {}
    if resource and not marked:
        notes.append(f"ray.inference_resource = {resource!r} but no node has it: inference runs on {inference}")
    device = config.inference.device
    if device == "cuda" and not gpus:
        if gpu_nodes:
            notes.append(f"inference.device is 'cuda' but inference runs on {inference}, which has no GPU: "
                         "running inference on CPU")
        else:
            notes.append("inference.device is 'cuda' but the cluster has no GPU: running inference on CPU")
        device = "cpu"
    for key in ("query", "publish"):
        endpoint = getattr(config.sockets, key)
        if driver_node_id and hub.id != driver_node_id and is_loopback(endpoint):
            notes.append(f"sockets.{key} = {endpoint!r} binds loopback on the aggregator's node {hub}, not on this "
                         "driver's node: reach it from that node")
    return Placement(hub, inference, gpus, resources, device, watchers, data_host, notes)


def plan_shards(requested: int, pools: int) -> tuple[int, str | None]:
    """One watcher per shard, never more shards than pools; the note says when fewer than asked run."""
    shards = max(1, min(requested, pools))
    if shards < requested:
        return shards, f"watchers.shards is {requested} but there are {pools} pools: running {shards} shards"
    return shards, None
