"""What every arbscan actor shares: a background loop with health, and its metrics.

An actor's methods (health, stats, stop) are served while its loop runs in a thread. A
transient fault (the node went away) marks the actor degraded and the loop keeps trying; an
unexpected exception ends the process so that Ray restarts the actor by its restart policy.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable

from ray.util import metrics

from scanner.errors import ChainError

log = logging.getLogger(__name__)
STALL_S = 5.0  # a step running this long (a hung RPC being retried, a backlog) makes health say degraded


class Metrics:
    """The arbscan metrics, created once per actor process with its role as a tag."""

    def __init__(self, role: str) -> None:
        self.tags = {"role": role}
        keys = ("role",)
        self.blocks_behind = metrics.Gauge("arbscan_blocks_behind_head", "Blocks between the node's head and the last one processed", keys)
        self.pools_watched = metrics.Gauge("arbscan_pools_watched", "Pools this actor follows", keys)
        self.feature_rows = metrics.Counter("arbscan_feature_rows_total", "Per-pool feature rows sent or received", keys)
        self.blocks = metrics.Counter("arbscan_blocks_total", "Blocks processed", keys)
        self.reorgs = metrics.Counter("arbscan_reorgs_total", "Reorgs detected (parent-hash mismatch)", keys)
        self.dropped = metrics.Counter("arbscan_dropped_total", "Messages dropped by a bounded queue's policy", keys)
        self.errors = metrics.Counter("arbscan_errors_total", "Transient errors (RPC, decoding) survived", keys)
        self.queue_depth = metrics.Gauge("arbscan_queue_depth", "Items waiting in this actor's queue", keys)
        self.batch_size = metrics.Histogram("arbscan_inference_batch_size", "Rows per inference batch",
                                            [1, 4, 16, 64, 128, 256, 512, 1024], keys)
        self.latency_ms = metrics.Histogram("arbscan_inference_latency_ms", "Inference time per batch (ms)",
                                            [0.1, 0.5, 1, 2, 5, 10, 20, 50, 100], keys)
        self.opportunities = metrics.Gauge("arbscan_opportunities", "Profitable opportunities ranked in the last block", keys)
        self.best_ev = metrics.Gauge("arbscan_best_expected_value_eth", "Best expected value in the last block (ETH)", keys)
        self.rank_latency_ms = metrics.Histogram("arbscan_rank_latency_ms", "Block complete to ranking served (ms)",
                                                 [1, 2, 5, 10, 20, 50, 100, 200, 500], keys)
        self.shard_timeouts = metrics.Counter("arbscan_shard_timeouts_total", "Blocks ranked without every shard", keys)
        self.simulations = metrics.Counter("arbscan_simulations_total", "Simulated submissions", ("role", "result"))

    def ranked(self, opportunities: int, best_ev_eth: float, latency_ms: float, complete: bool) -> None:
        """One block ranked and served."""
        self.count(self.blocks, 1)
        self.opportunities.set(opportunities, self.tags)
        self.best_ev.set(best_ev_eth, self.tags)
        self.rank_latency_ms.observe(latency_ms, self.tags)
        if not complete:
            self.count(self.shard_timeouts, 1)

    def count(self, counter: metrics.Counter, n: float = 1, **tags: str) -> None:
        """Counter.inc refuses 0; a quiet interval simply adds nothing."""
        if n > 0:
            counter.inc(n, self.tags | tags)


class ActorLoop:
    """Runs `step()` every `interval_s` in a daemon thread until stopped, or sooner when `wake` is set
    (a new head announced over a subscription)."""

    def __init__(self, role: str, step: Callable[[], None], interval_s: float,
                 wake: threading.Event | None = None) -> None:
        self.role = role
        self._step = step
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = wake or self._stop
        self.started_at = time.time()
        self.last_ok = 0.0
        self.degraded_reason = ""
        self.transient_errors = 0
        self._busy_since = 0.0  # monotonic start of the step in progress, 0 between steps
        self._thread = threading.Thread(target=self._run, name=f"{role}-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def health(self) -> dict:
        alive = self._thread.is_alive()
        reason = self.degraded_reason
        busy = self._busy_since
        if not reason and busy and time.monotonic() - busy > max(STALL_S, 3 * self.interval_s):
            reason = f"one step has been running for {time.monotonic() - busy:.0f} s"
        status = "down" if not alive and not self._stop.is_set() else ("degraded" if reason else "ok")
        return {"role": self.role, "status": status, "reason": reason, "pid": os.getpid(),
                "last_ok_age_s": round(time.time() - self.last_ok, 3) if self.last_ok else None,
                "transient_errors": self.transient_errors}

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._wake is not self._stop:
                self._wake.clear()  # a wake-up during the step below makes the next wait return at once
            started = self._busy_since = time.monotonic()
            try:
                self._step()
                self.last_ok = time.time()
                self.degraded_reason = ""
            except ChainError as e:  # the node is away: keep trying, say so in health
                self.transient_errors += 1
                self.degraded_reason = str(e)
                log.warning("%s: %s", self.role, e)
                self._stop.wait(1.0)
            except Exception:  # a bug or a state we cannot continue from: let Ray restart us
                log.error("%s loop crashed:\n%s", self.role, traceback.format_exc())
                os._exit(1)
            finally:
                self._busy_since = 0.0
            self._wake.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
