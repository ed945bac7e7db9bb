"""PendingWatcher: pending swaps of the watched pools, simulated, onto the aggregator's ingest socket.

One actor for all pools (a pending swap touches one pool; the work is per transaction, not per
pool). Its post-state updates and withdrawals go over a ZMQ PUSH with a small queue: when the
aggregator is behind they are dropped and counted (a backrun is worth nothing late), and since this
actor is not a pool watcher, a flood of pending transactions never delays a mined block's update.
"""
from __future__ import annotations

import ray
import zmq

from actors.loop import ActorLoop, Metrics
from scanner.chain.mempool import PendingWatcherCore
from scanner.chain.rpc import ChainClient
from scanner.config import ChainConfig
from scanner.dex.pool import PoolInfo
from scanner.wire.messages import PendingUpdate

SEND_HWM = 500  # pending messages queued for the aggregator before new ones are dropped (and counted)
POLL_INTERVAL_S = 0.02  # between polls of the pending filter: pending swaps are worth milliseconds


@ray.remote
class PendingWatcher:
    def __init__(self, chain: ChainConfig, rpc_url: str, pools: dict[int, PoolInfo], ingest_endpoint: str,
                 max_per_poll: int = 2000) -> None:
        self.role = "pending-watcher"
        self.metrics = Metrics(self.role)
        self.client = ChainClient(rpc_url, timeout_s=chain.request_timeout_s, max_retries=chain.max_retries)
        self.core = PendingWatcherCore(self.client, pools, max_per_poll=max_per_poll)
        self.ctx = zmq.Context()
        self.ingest = self.ctx.socket(zmq.PUSH)
        self.ingest.sndhwm = SEND_HWM
        self.ingest.linger = 0
        self.ingest.connect(ingest_endpoint)
        self.sent = 0
        self.dropped = 0
        self._started = False
        self.metrics.pools_watched.set(len(pools), self.metrics.tags)
        self.loop = ActorLoop(self.role, self._step, POLL_INTERVAL_S)
        self.loop.start()

    def _step(self) -> None:
        if not self._started:
            self.core.start()  # a restart reads the head again and opens a new filter
            self._started = True
        for message in self.core.poll():
            try:
                self.ingest.send(message.encode(), zmq.NOBLOCK)
                self.sent += 1
                if isinstance(message, PendingUpdate):
                    self.metrics.count(self.metrics.feature_rows, 1)
            except zmq.Again:
                self.dropped += 1
                self.metrics.count(self.metrics.dropped, 1)

    def health(self) -> dict:
        return self.loop.health()

    def stats(self) -> dict:
        return {"role": self.role, "head": self.core.head, "pending": len(self.core.book), "sent": self.sent,
                "dropped": self.dropped, "filter": self.core.filter_id is not None} | dict(self.core.counts)

    def stop(self) -> None:
        self.loop.stop()
