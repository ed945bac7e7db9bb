"""Starts every arbscan actor on Ray: names, resources and restart policies in one table.

Where each role runs is `scanner.cluster.placement`'s plan. Data-plane sockets bind first and
say where they are: the gas oracle, the aggregator and the inference actor are created in that
order, each binding port 0 (`actors.loop.bind_endpoint`) and reporting its endpoint before the
actors that connect to it are created. A restarted binding actor binds the port it had, so its
peers' connections come back by themselves.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.aggregator import Aggregator
from actors.gas_oracle import GasOracle
from actors.inference import LstmInference, resolve_checkpoint
from actors.pending_watcher import PendingWatcher
from actors.pipeline import Pipeline
from actors.ray_session import NAMESPACE
from actors.submitter import SimSubmitter
from actors.watcher import PoolWatcher
from scanner.chain.discovery import discover
from scanner.chain.rpc import connect
from scanner.cluster.placement import Node, plan_placement, plan_shards
from scanner.config import Config
from scanner.errors import ConfigError

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
    "pending-watcher": RoleSpec(num_cpus=0.25),
}


def cluster_nodes() -> list[Node]:
    """The alive nodes of the connected cluster, head first."""
    nodes = [Node(n["NodeID"], n["NodeManagerAddress"], dict(n.get("Resources") or {}),
                  "node:__internal_head__" in (n.get("Resources") or {}))
             for n in ray.nodes() if n.get("Alive")]
    return sorted(nodes, key=lambda n: (not n.head, n.id))


def _pinned(node: Node) -> NodeAffinitySchedulingStrategy:
    """Hard affinity: an actor that binds a socket must come back on the node its address is on."""
    return NodeAffinitySchedulingStrategy(node_id=node.id, soft=False)


def _options(role: str, name: str, **extra) -> dict:
    spec = ROLES[role]
    return dict(name=name, namespace=NAMESPACE, num_cpus=spec.num_cpus, max_restarts=spec.max_restarts,
                max_task_retries=spec.max_task_retries, **extra)


def launch(config: Config, *, symbols: dict[str, str] | None = None, gas_model: tuple[int, int] | None = None,
           progress: bool = True, ready_timeout_s: float = 120.0, pending: bool = False) -> Pipeline:
    """Discover pools, place the roles on the cluster's nodes, start them and wait until each answers;
    with `pending`, also a PendingWatcher whose pending swaps the aggregator ranks backruns on."""
    if not config.dexes:
        raise ConfigError("no [[dexes]] configured: add at least one factory to scan")
    if not config.tokens.base:
        raise ConfigError("tokens.base is empty: name at least one base token address")
    place = plan_placement(config, cluster_nodes(), ray.get_runtime_context().get_node_id())
    client = connect(config)
    found = discover(client, config.dexes, max_pools=config.tokens.max_pools, progress=progress)
    if not found:
        raise ConfigError(f"the configured factories have no pools on {config.rpc_url}")
    pools = dict(enumerate(found))
    shards, note = plan_shards(config.watchers.shards, len(pools))
    checkpoint = resolve_checkpoint(config.inference)
    notes = list(place.notes) + ([note] if note else [])
    if checkpoint and not config.tokens.price_oracle:
        notes.append("tokens.price_oracle is empty: the LSTM's price-gap feature reads 0 for every pool, so its "
                     "success probabilities lose their main signal; configure an Aave-style price oracle")
    submitter = config.submitter.enabled and bool(config.submitter.executor)
    if config.submitter.enabled and not submitter:
        notes.append("submitter.executor is empty: no simulated submission (set it to your ArbExecutor)")
    for note in notes:  # said before the waits, so a start that times out still explains itself
        log.warning(note)
    pipeline = Pipeline({}, pools, {}, notes, place.describe(shards, submitter))
    actors, endpoints = pipeline.actors, pipeline.endpoints
    run = uuid.uuid4().hex[:12]  # names this launch's bound ports in Ray's KV
    bind = f"tcp://{place.data_host}:*"
    hub = _pinned(place.hub)
    actors["gas-oracle"] = GasOracle.options(**_options("gas-oracle", "gas-oracle", scheduling_strategy=hub)).remote(
        config.chain, config.rpc_url, config.gas, bind, f"{run}/gas")
    endpoints |= pipeline.bound("gas-oracle", ready_timeout_s)
    actors["aggregator"] = Aggregator.options(**_options("aggregator", "aggregator", scheduling_strategy=hub)).remote(
        pools, config.tokens.base, shards, config.aggregator, config.sockets, bind, endpoints["gas"], run,
        symbols, gas_model, str(checkpoint) if checkpoint else None)
    endpoints |= pipeline.bound("aggregator", ready_timeout_s)
    inference = replace(config.inference, device=place.inference_device)
    actors["inference"] = LstmInference.options(**_options(
        "inference", "inference", num_gpus=place.inference_gpus, resources=place.inference_resources,
        scheduling_strategy=_pinned(place.inference))).remote(inference, bind, endpoints["ingest"], f"{run}/features")
    endpoints |= pipeline.bound("inference", ready_timeout_s)
    spread = _pinned(place.watchers) if place.watchers else "SPREAD"
    for shard in range(shards):
        shard_pools = {i: p for i, p in pools.items() if i % shards == shard}
        actors[f"watcher-{shard}"] = PoolWatcher.options(**_options("watcher", f"watcher-{shard}",
                                                                    scheduling_strategy=spread)).remote(
            config.chain, config.rpc_url, shard, shard_pools, endpoints["features"], endpoints["ingest"],
            endpoints["gas"], config.watchers.backfill_max_blocks, config.tokens.price_oracle)
    if pending:
        actors["pending-watcher"] = PendingWatcher.options(**_options(
            "pending-watcher", "pending-watcher", scheduling_strategy=spread)).remote(
            config.chain, config.rpc_url, pools, endpoints["ingest"])
    if submitter:
        actors["submitter"] = SimSubmitter.options(**_options("submitter", "submitter", scheduling_strategy=hub)).remote(
            config.chain, config.rpc_url, config.submitter, endpoints["publish"],
            [d.factory for d in config.dexes if d.kind == "uniswap-v3"])
    log.info("placement: %s", pipeline.placement)
    pipeline.wait_ready(ready_timeout_s)
    return pipeline
