"""Places every arbscan actor on Ray: names, resources and restart policies in one table.

Endpoints of the data plane are chosen here (free ports on `sockets.data_host`) and handed to
each actor, so a restarted actor binds or connects to the same address again.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import ray

from actors.aggregator import Aggregator
from actors.gas_oracle import GasOracle
from actors.inference import LstmInference
from actors.loop import NAMESPACE
from actors.submitter import SimSubmitter
from actors.watcher import PoolWatcher
from scanner.chain import ChainClient
from scanner.config import Config
from scanner.discovery import PoolInfo, discover
from scanner.errors import ChainError, ConfigError
from scanner.localchain import free_port

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


@dataclass
class Pipeline:
    actors: dict[str, ray.actor.ActorHandle]
    pools: dict[int, PoolInfo]
    endpoints: dict[str, str]
    notes: list[str] = field(default_factory=list)  # what the launcher decided instead of what was asked

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


def _options(role: str, name: str, **extra) -> dict:
    spec = ROLES[role]
    return dict(name=name, namespace=NAMESPACE, num_cpus=spec.num_cpus, max_restarts=spec.max_restarts,
                max_task_retries=spec.max_task_retries, **extra)


def _endpoint(host: str) -> str:
    return f"tcp://{host}:{free_port(host)}"


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
    """Discover pools, then start aggregator, gas oracle, inference and the watchers."""
    if not config.dexes:
        raise ConfigError("no [[dexes]] configured: add at least one factory to scan")
    if not config.tokens.base:
        raise ConfigError("tokens.base is empty: name at least one base token address")
    client = check_node(config)
    found = discover(client, config.dexes, max_pools=config.tokens.max_pools, progress=progress)
    if not found:
        raise ConfigError(f"the configured factories have no pools on {config.rpc_url}")
    pools = dict(enumerate(found))
    notes = []
    shards = min(config.watchers.shards, len(pools))
    if shards < config.watchers.shards:
        notes.append(f"watchers.shards is {config.watchers.shards} but there are {len(pools)} pools: running {shards} shards")
    host = config.sockets.data_host
    endpoints = {"ingest": _endpoint(host), "features": _endpoint(host), "gas": _endpoint(host)}

    actors: dict[str, ray.actor.ActorHandle] = {}
    actors["aggregator"] = Aggregator.options(**_options("aggregator", "aggregator")).remote(
        pools, config.tokens.base, shards, config.aggregator, config.sockets, endpoints["ingest"], endpoints["gas"],
        symbols, gas_model)
    actors["gas-oracle"] = GasOracle.options(**_options("gas-oracle", "gas-oracle")).remote(
        config.chain, config.rpc_url, config.gas, endpoints["gas"])
    gpus = ray.cluster_resources().get("GPU", 0)
    if config.inference.device == "cuda" and not gpus:
        notes.append("inference.device is 'cuda' but the cluster has no GPU: running inference on CPU")
    inference = config.inference if gpus or config.inference.device != "cuda" else \
        type(config.inference)(**{**config.inference.__dict__, "device": "cpu"})
    actors["inference"] = LstmInference.options(**_options("inference", "inference", num_gpus=1 if gpus else 0)).remote(
        inference, endpoints["features"], endpoints["ingest"])
    for shard in range(shards):
        shard_pools = {i: p for i, p in pools.items() if i % shards == shard}
        actors[f"watcher-{shard}"] = PoolWatcher.options(**_options("watcher", f"watcher-{shard}")).remote(
            config.chain, config.rpc_url, shard, shard_pools, endpoints["features"], endpoints["ingest"],
            endpoints["gas"], config.watchers.backfill_max_blocks)
    pipeline = Pipeline(actors, pools, endpoints, notes)
    _wait_ready(pipeline, ready_timeout_s)
    endpoints |= ray.get(actors["aggregator"].endpoints.remote())
    if config.submitter.enabled:
        if not config.submitter.executor:
            notes.append("submitter.executor is empty: no simulated submission (set it to your ArbExecutor)")
        else:
            actors["submitter"] = SimSubmitter.options(**_options("submitter", "submitter")).remote(
                config.chain, config.rpc_url, config.submitter, endpoints["publish"])
            _wait_ready(pipeline, ready_timeout_s)
    for note in notes:
        log.warning(note)
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
            raise ConfigError(f"actor {name} did not start: {type(e).__name__}: {e}") from None
