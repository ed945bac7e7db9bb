"""Places every arbscan actor on Ray: names, resources and restart policies in one table.

Placement, decided from the live nodes before anything starts (`plan_placement`):
- the aggregator (with its query API), the gas oracle and the submitter run on the node that
  `ray.aggregator_node` names ("head" by default, or a node IP or Ray node id);
- the inference actor runs on a GPU node with `num_gpus=1` when the cluster has a GPU, else on a
  node carrying `ray.inference_resource` when one is configured, else on CPU on the aggregator's node;
- the watchers spread over the nodes (`scheduling_strategy="SPREAD"`).

Data-plane endpoints are chosen here and handed to each actor, so a restarted actor binds or
connects to the same address again. A binding actor is pinned to its node (hard node affinity)
and its free port is found on that node: with `sockets.data_host = "node"` it binds on the
node's own IP (multi-node clusters); with a fixed host (loopback by default) every binding actor
runs on the aggregator's node, and with loopback on a multi-node cluster so do all the others.
"""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field, replace

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.aggregator import Aggregator
from actors.gas_oracle import GasOracle
from actors.inference import LstmInference, resolve_checkpoint
from actors.loop import NAMESPACE
from actors.submitter import SimSubmitter
from actors.watcher import PoolWatcher
from scanner.chain.rpc import ChainClient
from scanner.config import LOOPBACK_HOSTS, Config, is_loopback
from scanner.chain.discovery import PoolInfo, discover
from scanner.errors import ArbscanError, ChainError, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoleSpec:
    """How Ray runs one role: fractional CPUs (they mostly wait on sockets), restarts for ever."""

    num_cpus: float
    max_restarts: int = -1
    max_task_retries: int = 2


ROLES: dict[str, RoleSpec] = {
    "watcher": RoleSpec(num_cpus=0.25),
    "gas-oracle": RoleSpec(num_cpus=0.1),
    "inference": RoleSpec(num_cpus=0.5),
    "aggregator": RoleSpec(num_cpus=0.5),
    "submitter": RoleSpec(num_cpus=0.25),
}


INFERENCE_RESOURCE_AMOUNT = 0.01  # of `ray.inference_resource`: lands on its node without using it up


@dataclass(frozen=True)
class Node:
    """One live Ray node, as `ray.nodes()` describes it."""

    id: str
    ip: str
    resources: dict[str, float]
    head: bool = False

    def __str__(self) -> str:
        return f"{self.ip} ({self.id[:12]}{', head' if self.head else ''})"


def cluster_nodes() -> list[Node]:
    """The alive nodes of the connected cluster, head first."""
    nodes = [Node(n["NodeID"], n["NodeManagerAddress"], dict(n.get("Resources") or {}),
                  "node:__internal_head__" in (n.get("Resources") or {}))
             for n in ray.nodes() if n.get("Alive")]
    return sorted(nodes, key=lambda n: (not n.head, n.id))


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

    def describe(self, shards: int, submitter: bool) -> dict[str, str]:
        """Actor name -> node id, or "SPREAD" for actors Ray spreads."""
        out = {"aggregator": self.hub.id, "gas-oracle": self.hub.id, "inference": self.inference.id}
        for shard in range(shards):
            out[f"watcher-{shard}"] = self.watchers.id if self.watchers else "SPREAD"
        if submitter:
            out["submitter"] = self.hub.id
        return out


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


@dataclass
class Pipeline:
    actors: dict[str, ray.actor.ActorHandle]
    pools: dict[int, PoolInfo]
    endpoints: dict[str, str]
    notes: list[str] = field(default_factory=list)  # what the launcher decided instead of what was asked
    placement: dict[str, str] = field(default_factory=dict)  # actor name -> node id, or "SPREAD"

    def health(self, timeout_s: float = 10.0) -> dict[str, dict]:
        refs = {name: a.health.remote() for name, a in self.actors.items()}
        return {name: _get(ref, timeout_s, name) for name, ref in refs.items()}

    def stats(self, timeout_s: float = 10.0) -> dict[str, dict]:
        refs = {name: a.stats.remote() for name, a in self.actors.items()}
        return {name: _get(ref, timeout_s, name) for name, ref in refs.items()}

    def stop(self) -> None:
        for name, actor in self.actors.items():
            try:
                ray.get(actor.stop.remote(), timeout=10)
            except Exception as e:  # it may already be gone; killing it below is what matters
                log.info("stopping %s: %s", name, e)
            ray.kill(actor, no_restart=True)


def _get(ref, timeout_s: float, name: str) -> dict:
    try:
        return ray.get(ref, timeout=timeout_s)
    except Exception as e:
        return {"role": name, "status": "down", "reason": f"{type(e).__name__}: {e}"}


def _pinned(node: Node) -> NodeAffinitySchedulingStrategy:
    """Hard affinity: an actor that binds a socket must come back on the node its address is on."""
    return NodeAffinitySchedulingStrategy(node_id=node.id, soft=False)


def _options(role: str, name: str, **extra) -> dict:
    spec = ROLES[role]
    return dict(name=name, namespace=NAMESPACE, num_cpus=spec.num_cpus, max_restarts=spec.max_restarts,
                max_task_retries=spec.max_task_retries, **extra)


def _free_endpoints(host: str, count: int) -> list[str]:
    """`count` distinct free TCP endpoints on this machine: on its node IP when `host` is "node"."""
    ip = ray.util.get_node_ip_address() if host == "node" else host
    family = socket.AF_INET6 if ":" in ip.strip("[]") else socket.AF_INET
    url_host = f"[{ip.strip('[]')}]" if family == socket.AF_INET6 else ip
    socks = []
    try:
        for _ in range(count):  # held open together, so the ports differ
            s = socket.socket(family, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((ip.strip("[]"), 0))
        return [f"tcp://{url_host}:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()


_remote_free_endpoints = ray.remote(num_cpus=0, max_retries=0)(_free_endpoints)


def endpoints_on(node: Node, host: str, count: int, timeout_s: float = 60.0) -> list[str]:
    """Free endpoints found on `node` itself (locally when it is the driver's node)."""
    if node.id == ray.get_runtime_context().get_node_id():
        return _free_endpoints(host, count)
    ref = _remote_free_endpoints.options(scheduling_strategy=_pinned(node)).remote(host, count)
    try:
        return ray.get(ref, timeout=timeout_s)
    except Exception as e:
        raise ConfigError(f"cannot find free ports for sockets.data_host = {host!r} on node {node}: "
                          f"{type(e).__name__}: {e}") from None


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming `address`, when no Ray cluster answers there (`ray.init` would retry for minutes).

    The address is resolved the way `ray.init` resolves it ("auto", RAY_ADDRESS, the last `ray
    start`'s file, localhost to the node IP), then its GCS port must accept a TCP connection.
    """
    if address == "local" or address.startswith(("http://", "https://")):
        return  # ray.init answers these at once by itself
    target = address[len("ray://"):] if address.startswith("ray://") else address
    if not address.startswith("ray://"):
        try:
            from ray._private import services

            target = services.canonicalize_bootstrap_address(address) or target
        except ConnectionError as e:
            raise ArbscanError(f"no Ray cluster answers at {address!r}: {e}") from None
        except Exception:  # a private Ray helper: if it changed, check the address as given
            pass
    host, sep, port = target.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ArbscanError(f"Ray address {address!r} is not host:port (or 'auto', ray://host:port)")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        shown = address if target == address else f"{address} ({target})"
        raise ArbscanError(f"no Ray cluster answers at {shown}: {e.strerror or e}") from None


def check_node(config: Config) -> ChainClient:
    """The node answers and is the chain the config names, or a clear error naming the URL."""
    url = config.rpc_url
    client = ChainClient(url, timeout_s=config.chain.request_timeout_s, max_retries=2)
    try:
        chain_id = client.chain_id()
    except ChainError as e:
        raise ChainError(f"cannot reach the node at {url}: {e}") from None
    if chain_id != config.chain.chain_id:
        raise ConfigError(f"chain.chain_id is {config.chain.chain_id} but the node at {url} is chain {chain_id}")
    return ChainClient(url, timeout_s=config.chain.request_timeout_s, max_retries=config.chain.max_retries)


def launch(config: Config, *, symbols: dict[str, str] | None = None, gas_model: tuple[int, int] | None = None,
           progress: bool = True, ready_timeout_s: float = 120.0) -> Pipeline:
    """Discover pools, place the roles on the cluster's nodes, start them and wait until each answers."""
    if not config.dexes:
        raise ConfigError("no [[dexes]] configured: add at least one factory to scan")
    if not config.tokens.base:
        raise ConfigError("tokens.base is empty: name at least one base token address")
    place = plan_placement(config, cluster_nodes(), ray.get_runtime_context().get_node_id())
    client = check_node(config)
    found = discover(client, config.dexes, max_pools=config.tokens.max_pools, progress=progress)
    if not found:
        raise ConfigError(f"the configured factories have no pools on {config.rpc_url}")
    pools = dict(enumerate(found))
    notes = list(place.notes)
    shards, note = plan_shards(config.watchers.shards, len(pools))
    if note:
        notes.append(note)
    ingest, gas = endpoints_on(place.hub, place.data_host, 2)
    (features,) = endpoints_on(place.inference, place.data_host, 1)
    endpoints = {"ingest": ingest, "features": features, "gas": gas}
    hub = _pinned(place.hub)
    submitter = config.submitter.enabled and bool(config.submitter.executor)

    actors: dict[str, ray.actor.ActorHandle] = {}
    checkpoint = resolve_checkpoint(config.inference)
    if checkpoint and not config.tokens.price_oracle:
        notes.append("tokens.price_oracle is empty: the LSTM's price-gap feature reads 0 for every pool, so its "
                     "success probabilities lose their main signal; configure an Aave-style price oracle")
    actors["aggregator"] = Aggregator.options(**_options("aggregator", "aggregator", scheduling_strategy=hub)).remote(
        pools, config.tokens.base, shards, config.aggregator, config.sockets, endpoints["ingest"], endpoints["gas"],
        symbols, gas_model, str(checkpoint) if checkpoint else None)
    actors["gas-oracle"] = GasOracle.options(**_options("gas-oracle", "gas-oracle", scheduling_strategy=hub)).remote(
        config.chain, config.rpc_url, config.gas, endpoints["gas"])
    inference = replace(config.inference, device=place.inference_device)
    actors["inference"] = LstmInference.options(**_options(
        "inference", "inference", num_gpus=place.inference_gpus, resources=place.inference_resources,
        scheduling_strategy=_pinned(place.inference))).remote(inference, endpoints["features"], endpoints["ingest"])
    spread = _pinned(place.watchers) if place.watchers else "SPREAD"
    for shard in range(shards):
        shard_pools = {i: p for i, p in pools.items() if i % shards == shard}
        actors[f"watcher-{shard}"] = PoolWatcher.options(**_options("watcher", f"watcher-{shard}",
                                                                    scheduling_strategy=spread)).remote(
            config.chain, config.rpc_url, shard, shard_pools, endpoints["features"], endpoints["ingest"],
            endpoints["gas"], config.watchers.backfill_max_blocks, config.tokens.price_oracle)
    pipeline = Pipeline(actors, pools, endpoints, notes, place.describe(shards, submitter))
    for note in notes:  # said before the wait, so a start that times out still explains itself
        log.warning(note)
    log.info("placement: %s", pipeline.placement)
    _wait_ready(pipeline, ready_timeout_s)
    endpoints |= ray.get(actors["aggregator"].endpoints.remote())
    if config.submitter.enabled:
        if not config.submitter.executor:
            notes.append("submitter.executor is empty: no simulated submission (set it to your ArbExecutor)")
            log.warning(notes[-1])
        else:
            actors["submitter"] = SimSubmitter.options(**_options("submitter", "submitter", scheduling_strategy=hub)).remote(
                config.chain, config.rpc_url, config.submitter, endpoints["publish"])
            _wait_ready(pipeline, ready_timeout_s)
    return pipeline


def _wait_ready(pipeline: Pipeline, timeout_s: float) -> None:
    """Every actor constructed (its health answers), or an error naming those that are not."""
    deadline = time.monotonic() + timeout_s
    refs = {name: a.health.remote() for name, a in pipeline.actors.items()}
    for name, ref in refs.items():
        try:
            ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
        except Exception as e:
            pipeline.stop()
            where = pipeline.placement.get(name, "")
            where = " (spread over the nodes)" if where == "SPREAD" else f" (placed on node {where})" if where else ""
            raise ConfigError(f"actor {name} did not start{where}: {type(e).__name__}: {e}") from None
