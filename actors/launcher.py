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
from actors.pipeline import ChainRun, Pipeline
from actors.ray_session import NAMESPACE
from actors.submitter import SimSubmitter
from actors.watcher import PoolWatcher
from scanner.chain.discovery import discover
from scanner.chain.rpc import ChainClient, connect
from scanner.cluster.placement import Node, chain_suffix, plan_placement, plan_shards
from scanner.config import ChainSpec, Config
from scanner.dex.pool import PoolInfo
from scanner.errors import ChainError, ConfigError
from scanner.gas.fees import chain_rules

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
    "pending-watcher": RoleSpec(num_cpus=0.15),  # with every other role it fits a 2-CPU laptop's Ray
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


def _options(role: str, name: str, chains: int = 1, **extra) -> dict:
    """Ray options of one actor; a per-chain role's CPU share is split among the `chains`, so several
    chains ask the cluster for no more CPU than one (their actors mostly wait on sockets)."""
    spec = ROLES[role]
    return dict(name=name, namespace=NAMESPACE, num_cpus=spec.num_cpus / chains, max_restarts=spec.max_restarts,
                max_task_retries=spec.max_task_retries, **extra)


@dataclass(frozen=True)
class ReplayInput:
    """What stands in for the node in a replay: the store the watchers read, its pools (the state at its
    first block) and the gas stream the replay driver publishes from the captured headers."""

    store: str
    pools: list[PoolInfo]
    gas_endpoint: str


def connect_chain(config: Config, chain: ChainSpec, key: str) -> ChainClient:
    """`chain`'s node, checked to be the chain its table names (the error names the table, `chains[1]`)."""
    try:
        return connect(replace(config, chain=chain.node, chains=[]))
    except ConfigError as e:
        raise ConfigError(str(e).replace("chain.", f"{key}.", 1) + f": point {key}.rpc_url at a node of that chain "
                          "or fix its chain_id") from None
    except ChainError as e:
        raise ChainError(f"{key}: {e}") from None


def _chain_runs(config: Config) -> list[ChainRun]:
    """What each chain's actors are told; the default chain's aggregator serves them all."""
    networks = config.networks()
    names = tuple(c.name for c in networks)
    return [ChainRun(c.name, c.chain_id, chain_suffix(c.name, len(networks)),
                     chain_rules(c.eip1559, c.eip1559_elasticity, c.eip1559_denominator), c.l1_fee,
                     c.executor, tuple(d.factory for d in c.dexes if d.kind == "uniswap-v3"), names if i == 0 else (),
                     c.block_time_s)
            for i, c in enumerate(networks)]


def launch(config: Config, *, symbols: dict[str, str] | None = None, gas_model: tuple[int, int] | None = None,
           progress: bool = True, ready_timeout_s: float = 120.0, pending: bool = False, lstm_risk: bool = True,
           replay: ReplayInput | None = None) -> Pipeline:
    """Discover pools, place the roles on the cluster's nodes, start them and wait until each answers;
    with `pending`, also a PendingWatcher whose pending swaps the aggregator ranks backruns on.

    Every chain of the config gets its own gas oracle, aggregator and watchers (named with the chain
    when there are several); one inference actor serves them all; the default chain's aggregator
    hosts the query server; each chain with an executor has its own submitter (its own journal), and a
    PendingWatcher follows the default chain.
    `lstm_risk=False` ranks with the heuristic risk model (a function of the pools' state alone, where
    the LSTM's predictions arrive when inference is done: replay tests compare rankings exactly).
    With `replay` the watchers read a capture instead of the node (no gas oracle, no submitter)."""
    networks = config.networks()
    keys = ["chain"] if not config.chains else [f"chains[{i}]" for i in range(len(networks))]
    if replay and len(networks) > 1:
        raise ConfigError("a replay reads one chain's capture: give it a config with one chain")
    for chain, key in zip(networks, keys):
        if not chain.dexes and replay is None:
            raise ConfigError(f"no dexes configured for {key}: add at least one factory to scan "
                              f"({'[[dexes]]' if key == 'chain' else f'[[chains.dexes]] in {key}'})")
        if not chain.tokens.base:
            where = "tokens.base" if key == "chain" else f"{key}.tokens.base"
            raise ConfigError(f"{where} is empty: name at least one base token address")
    place = plan_placement(config, cluster_nodes(), ray.get_runtime_context().get_node_id())
    runs = _chain_runs(config)
    found: list[dict[int, PoolInfo]] = []  # per chain; pool ids unique over all chains (one inference serves them)
    for chain, key in zip(networks, keys):
        pools_of = replay.pools if replay else discover(connect_chain(config, chain, key), chain.dexes,
                                                        max_pools=chain.tokens.max_pools, progress=progress)
        if not pools_of:
            raise ConfigError(f"the factories of {key} have no pools on {chain.resolved_rpc_url(key)}")
        offset = sum(len(f) for f in found)
        found.append({offset + i: p for i, p in enumerate(pools_of)})
    pools = {i: p for f in found for i, p in f.items()}
    shards, note = plan_shards(config.watchers.shards, min(len(f) for f in found))
    checkpoint = resolve_checkpoint(config.inference)
    notes = list(place.notes) + ([note] if note else [])
    if checkpoint and not config.tokens.price_oracle and not replay:
        notes.append("tokens.price_oracle is empty: the LSTM's price-gap feature reads 0 for every pool, so its "
                     "success probabilities lose their main signal; configure an Aave-style price oracle")
    submitting = config.submitter.enabled and not replay
    submitted = [(run, chain) for run, chain in zip(runs, networks) if submitting and chain.executor]
    if submitting and len(submitted) < len(runs):
        unset = ["submitter.executor" if i == 0 else f"chains[{i}].executor" for i, c in enumerate(networks) if not c.executor]
        notes.append(f"{', '.join(unset)} empty: no simulated submission on "
                     f"{'that chain' if len(unset) == 1 else 'those chains'} (set it to your ArbExecutor there)")
    for note in notes:  # said before the waits, so a start that times out still explains itself
        log.warning(note)
    pipeline = Pipeline({}, pools, {}, notes, place.describe(shards, tuple(r.suffix for r in runs), tuple(r.suffix for r, _ in submitted)),
                        runs)
    actors, endpoints = pipeline.actors, pipeline.endpoints
    run_id = uuid.uuid4().hex[:12]  # names this launch's bound ports in Ray's KV
    bind = f"tcp://{place.data_host}:*"
    hub = _pinned(place.hub)
    for run, chain in zip(runs, networks):
        if replay:
            endpoints["gas"] = replay.gas_endpoint
            continue
        name = run.actor("gas-oracle")
        actors[name] = GasOracle.options(**_options("gas-oracle", name, len(runs), scheduling_strategy=hub)).remote(
            chain.node, chain.resolved_rpc_url(), config.gas, bind, f"{run_id}/gas{run.suffix}", run)
        endpoints |= {f"gas{run.suffix}": pipeline.bound(name, ready_timeout_s)["gas"]}
    for i, (run, chain, chain_pools) in enumerate(zip(runs, networks, found)):  # the default chain's (the host) first
        name = run.actor("aggregator")
        forward = None if i == 0 else {k: endpoints[k] for k in ("forwarded", "query", "publish")}
        actors[name] = Aggregator.options(**_options("aggregator", name, len(runs), scheduling_strategy=hub)).remote(
            chain_pools, chain.tokens.base, shards, config.aggregator, config.sockets, bind, endpoints[f"gas{run.suffix}"],
            f"{run_id}{run.suffix}", symbols, gas_model, str(checkpoint) if checkpoint and lstm_risk else None, run,
            forward)
        bound = pipeline.bound(name, ready_timeout_s)
        endpoints |= {f"ingest{run.suffix}": bound["ingest"]} | ({} if forward else bound)
    inference = replace(config.inference, device=place.inference_device)
    routes = {r.chain_id: endpoints[f"ingest{r.suffix}"] for r in runs} if len(runs) > 1 else None
    actors["inference"] = LstmInference.options(**_options(
        "inference", "inference", num_gpus=place.inference_gpus, resources=place.inference_resources,
        scheduling_strategy=_pinned(place.inference))).remote(inference, bind, endpoints["ingest"],
                                                              f"{run_id}/features", routes)
    endpoints |= pipeline.bound("inference", ready_timeout_s)
    spread = _pinned(place.watchers) if place.watchers else "SPREAD"
    for run, chain, chain_pools in zip(runs, networks, found):
        for shard in range(shards):
            name = run.actor(f"watcher-{shard}")
            shard_pools = {i: p for n, (i, p) in enumerate(chain_pools.items()) if n % shards == shard}
            actors[name] = PoolWatcher.options(**_options("watcher", name, len(runs), scheduling_strategy=spread)).remote(
                chain.node, chain.resolved_rpc_url(), shard, shard_pools, endpoints["features"],
                endpoints[f"ingest{run.suffix}"], endpoints[f"gas{run.suffix}"], config.watchers.backfill_max_blocks,
                "" if replay else chain.tokens.price_oracle, replay.store if replay else "", run)
    if pending:
        actors["pending-watcher"] = PendingWatcher.options(**_options(
            "pending-watcher", "pending-watcher", scheduling_strategy=spread)).remote(
            config.chain, config.rpc_url, found[0], endpoints["ingest"])
    for run, chain in submitted:
        name = run.actor("submitter")
        settings = replace(config.submitter, executor=chain.executor, journal=config.submitter.journal_of(run.name, run is runs[0]))
        actors[name] = SimSubmitter.options(**_options("submitter", name, len(runs), scheduling_strategy=hub)).remote(
            chain.node, chain.resolved_rpc_url(), settings, endpoints["publish"], list(run.v3_factories),
            run.actor("aggregator"), run.name)
    log.info("placement: %s", pipeline.placement)
    pipeline.wait_ready(ready_timeout_s)
    return pipeline
