"""A launched arbscan pipeline: its actors by name, their endpoints, and control over them; and
`ChainRun`, what each actor of a chain is told about its chain."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import ray

from scanner.cluster.placement import actor_name
from scanner.config import DEFAULT_CHAIN, LOCAL_CHAIN_ID, STALE_BLOCKS
from scanner.dex.pool import PoolInfo
from scanner.errors import ConfigError
from scanner.gas.fees import ETHEREUM, BaseFeeRules

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainRun:
    """One chain of a launch as its actors see it: its name and id, what its actors' names end with,
    its fee rules, and which chains the query server its aggregator hosts serves."""

    name: str = DEFAULT_CHAIN
    chain_id: int = LOCAL_CHAIN_ID
    suffix: str = ""  # of its actors' names: "" for the only chain, "@name" among several
    rules: BaseFeeRules = ETHEREUM
    l1_fee: str = "none"  # `scanner.config.L1_FEES`
    executor: str = ""  # the ArbExecutor whose calldata an L1 data fee is computed for ("" = 0x0)
    v3_factories: tuple[str, ...] = ()
    serves: tuple[str, ...] = ()  # the query server's host: every chain's name, default first; else ()

    block_time_s: float = 12.0

    def actor(self, role: str) -> str:
        return actor_name(role, self.suffix)

    @property
    def stale_after_s(self) -> float:
        """How old the last ranked block may be before health says the chain is behind."""
        return STALE_BLOCKS * self.block_time_s


@dataclass
class Pipeline:
    """What `actors.launcher.launch` started; `stop()` ends every actor it holds."""

    actors: dict[str, ray.actor.ActorHandle]
    pools: dict[int, PoolInfo]
    endpoints: dict[str, str]
    notes: list[str] = field(default_factory=list)  # what the launcher decided instead of what was asked
    placement: dict[str, str] = field(default_factory=dict)  # actor name -> node id, or "SPREAD"
    chains: list[ChainRun] = field(default_factory=list)  # the default chain first

    def health(self, timeout_s: float = 10.0) -> dict[str, dict]:
        refs = {name: a.health.remote() for name, a in self.actors.items()}
        return {name: _get(ref, timeout_s, name) for name, ref in refs.items()}

    def stats(self, timeout_s: float = 10.0) -> dict[str, dict]:
        refs = {name: a.stats.remote() for name, a in self.actors.items()}
        return {name: _get(ref, timeout_s, name) for name, ref in refs.items()}

    def stop(self) -> None:
        """Ask every actor to stop at once (one blocked on a dead node may take its loop's join
        timeout; asked in turn, those waits would add up), then kill each."""
        refs = {name: actor.stop.remote() for name, actor in self.actors.items()}
        for name, actor in self.actors.items():
            try:
                ray.get(refs[name], timeout=10)
            except Exception as e:  # it may already be gone; killing it below is what matters
                log.info("stopping %s: %s", name, e)
            ray.kill(actor, no_restart=True)

    def bound(self, name: str, timeout_s: float) -> dict[str, str]:
        """The endpoints actor `name` has bound, once it is constructed (or an error naming it)."""
        try:
            return ray.get(self.actors[name].endpoints.remote(), timeout=timeout_s)
        except Exception as e:
            self.stop()
            raise ConfigError(f"actor {name} did not start: {type(e).__name__}: {e}") from None

    def wait_ready(self, timeout_s: float) -> None:
        """Every actor constructed (its health answers), or an error naming those that are not."""
        deadline = time.monotonic() + timeout_s
        refs = {name: a.health.remote() for name, a in self.actors.items()}
        for name, ref in refs.items():
            try:
                ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
            except Exception as e:
                self.stop()
                where = self.placement.get(name, "")
                where = " (spread over the nodes)" if where == "SPREAD" else f" (placed on node {where})" if where else ""
                raise ConfigError(f"actor {name} did not start{where}: {type(e).__name__}: {e}") from None


def _get(ref, timeout_s: float, name: str) -> dict:
    try:
        return ray.get(ref, timeout=timeout_s)
    except Exception as e:
        return {"role": name, "status": "down", "reason": f"{type(e).__name__}: {e}"}
