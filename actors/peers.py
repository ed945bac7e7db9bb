"""The aggregator's view of the other actors, over Ray control calls: their health (asked without
ever blocking its loop), snapshots from restarted shards, the submitter's gas calibration."""
from __future__ import annotations

import logging
import time

import ray

from actors.ray_session import NAMESPACE
from scanner.rank.aggregate import AggregatorCore

log = logging.getLogger(__name__)
RESYNC_EVERY_S = 2.0  # after a restart, how often a shard is asked again for its snapshot
PEER_CHECK_S = 1.0  # how often the other actors' health is asked for (Ray control calls)
PEER_STALE_S = 5.0  # a peer whose loop has not completed a step for this long counts as degraded
PEER_TIMEOUT_S = 5.0  # a health call unanswered this long: the peer counts as not answering


class PeerHealth:
    """The other actors' health, asked for over Ray every `PEER_CHECK_S` without ever blocking.

    The query API's `health` is the aggregator's; through this it also says when a watcher cannot
    reach the node, a peer is restarting, or a peer's loop has stalled.
    """

    def __init__(self, names: list[str], suffix: str = "") -> None:
        self.names = names
        self.suffix = suffix  # of this chain's actor names (several chains: "@name")
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._missing_until: dict[str, float] = {}  # name -> when to look it up again
        self._inflight: dict[str, tuple[ray.ObjectRef, float]] = {}
        self._last: dict[str, dict] = {}
        self._next = 0.0
        self._resync_asked: dict[int, float] = {}

    def refresh(self) -> None:
        now = time.monotonic()
        done = set()
        if self._inflight:
            refs = [ref for ref, _ in self._inflight.values()]
            done = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
        for name, (ref, sent) in list(self._inflight.items()):
            if ref in done:
                try:
                    self._last[name] = ray.get(ref)
                except Exception as e:  # it died or is restarting
                    self._last[name] = {"status": "down", "reason": f"restarting ({type(e).__name__})"}
                del self._inflight[name]
            elif now - sent > PEER_TIMEOUT_S:
                self._last[name] = {"status": "down", "reason": f"no answer to a health check in {PEER_TIMEOUT_S:.0f} s"}
                del self._inflight[name]
        if now < self._next:
            return
        self._next = now + PEER_CHECK_S
        for name in self.names:
            if name in self._inflight:
                continue
            handle = self._handle(name, now)
            if handle is not None:
                self._inflight[name] = (handle.health.remote(), now)

    def _handle(self, name: str, now: float):
        if name not in self._handles and now >= self._missing_until.get(name, 0.0):
            try:
                self._handles[name] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:  # not launched (yet): a submitter without an executor, a watcher still starting
                self._missing_until[name] = now + 5.0
        return self._handles.get(name)

    def statuses(self) -> dict[str, str]:
        return {name: h.get("status", "?") for name, h in self._last.items()}

    def reasons(self) -> list[str]:
        out = []
        for name, h in sorted(self._last.items()):
            detail = h.get("reason") or "; ".join(h.get("reasons") or ())  # an aggregator's are a list
            if h.get("status") != "ok":
                out.append(f"{name}: {h.get('status')}{': ' + detail if detail else ''}")
            elif (h.get("last_ok_age_s") or 0.0) > PEER_STALE_S:
                out.append(f"{name}: no step completed for {h['last_ok_age_s']:.0f} s")
        return out

    def request_snapshots(self, core: AggregatorCore) -> None:
        """Ask each shard still owing its snapshot to send one (the snapshot itself comes over the data
        plane, recognised by covering every pool the call said the shard owns)."""
        now = time.monotonic()
        for shard in sorted(core.awaiting):
            if now - self._resync_asked.get(shard, -RESYNC_EVERY_S) < RESYNC_EVERY_S:
                continue
            self._resync_asked[shard] = now
            try:
                watcher = ray.get_actor(f"watcher-{shard}{self.suffix}", namespace=NAMESPACE)
                ids = ray.get(watcher.resync.remote(), timeout=5)
            except Exception as e:  # that watcher is down or restarting: ask again later
                log.warning("aggregator: shard %d did not take the resync request: %s", shard, e)
                continue
            core.expect_snapshot(shard, ids)

    def submitter_gas_model(self) -> tuple[int, int] | None:
        """The chain's submitter's gas calibration, if it runs (else it sends it again itself when it starts)."""
        try:
            model = ray.get(ray.get_actor(f"submitter{self.suffix}", namespace=NAMESPACE).stats.remote(),
                            timeout=5).get("gas_model")
        except Exception as e:
            log.info("no gas calibration from the submitter: %s", e)
            return None
        return tuple(model) if model else None
