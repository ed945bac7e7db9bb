"""PoolWatcher: one shard of pools, block by block, onto the data plane.

Feature frames go to the inference actor, block updates (changed reserves, reorg withdrawals)
to the aggregator; both over ZMQ PUSH with bounded queues. The priority tip that goes into the
gas feature comes from the gas oracle's PUB stream.

In a replay (`store` names a capture) the blocks come from the store instead of the node, up to
the block the replay driver last released (`release`), through the same `PoolWatcherCore`.
"""
from __future__ import annotations

import threading
import time
from typing import cast

import ray
import zmq

from actors.loop import ActorLoop, Metrics
from actors.pipeline import ChainRun
from scanner.chain.follow import ReorgTooDeep
from scanner.chain.heads import HeadNotifier
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.config import ChainConfig
from scanner.dex.pool import PoolInfo
from scanner.history.replay import StoreSource
from scanner.history.store import load
from scanner.wire.frames import WireError
from scanner.wire.messages import BlockUpdate, GasUpdate, decode

SEND_HWM = 1000  # block updates queued for the aggregator before new ones are dropped (and counted)
FEATURES_HWM = 64  # feature frames (one per block, a row per pool) queued for inference, likewise
FEATURES_SNDBUF = 256 * 1024  # and a fixed kernel send buffer under them (autotuned it grows to MBs)
# Policy when a peer falls that far behind (frames beyond what the kernel buffers):
# - a feature frame is dropped: a next-block predictor has no use for features 64 blocks old, and
#   a frame of a mainnet-sized shard is ~200 KB, so a deeper queue is only memory;
# - a block update or withdrawal is dropped too, but that would leave the aggregator's pools stale,
#   so the watcher then starts over from a full snapshot of its shard at the head, sent as soon as
#   the aggregator takes frames again.


@ray.remote
class PoolWatcher:
    def __init__(self, chain: ChainConfig, rpc_url: str, shard: int, pools: dict[int, PoolInfo],
                 features_endpoint: str, ingest_endpoint: str, gas_endpoint: str,
                 backfill_max_blocks: int = 256, price_oracle: str = "", store: str = "",
                 network: ChainRun = ChainRun()) -> None:
        self.role = network.actor(f"watcher-{shard}")
        self.metrics = Metrics(self.role)
        self.store = StoreSource(load(store)) if store else None
        self.client = None if store else ChainClient(rpc_url, timeout_s=chain.request_timeout_s, max_retries=chain.max_retries)
        self.core = PoolWatcherCore(self.client or cast(StoreSource, self.store), pools, shard,
                                    backfill_max_blocks=backfill_max_blocks, price_oracle=price_oracle,
                                    chain_id=network.chain_id)
        self.ctx = zmq.Context()
        self.features = self._push(features_endpoint, FEATURES_HWM, FEATURES_SNDBUF)
        self.ingest = self._push(ingest_endpoint, SEND_HWM)
        self.gas = self.ctx.socket(zmq.SUB)
        self.gas.setsockopt(zmq.SUBSCRIBE, b"")
        self.gas.rcvhwm = 100
        self.gas.connect(gas_endpoint)
        self.dropped = 0
        self.dropped_updates = 0  # of `dropped`, block updates and withdrawals (each costs a snapshot)
        self.sent_blocks = 0
        self.snapshots = 0
        self._bootstrapped = False
        self._blocked_since = 0.0  # monotonic time the aggregator stopped taking updates (0: it takes them)
        self._resync = threading.Event()
        self.metrics.pools_watched.set(len(pools), self.metrics.tags)
        # A newHeads subscription wakes the loop at once; polling every poll_interval_s stays the fallback.
        self.heads = HeadNotifier(chain.ws_url).start() if chain.ws_url and not store else None
        self._released = threading.Event()  # a replay released blocks
        wake = self.heads.event if self.heads else self._released if store else None
        self.loop = ActorLoop(self.role, self._step, chain.poll_interval_s, wake=wake)
        self.loop.start()

    def _push(self, endpoint: str, hwm: int, sndbuf: int = -1) -> zmq.Socket:
        sock = self.ctx.socket(zmq.PUSH)
        sock.sndhwm = hwm
        sock.sndbuf = sndbuf  # -1: the OS default
        sock.linger = 0
        sock.connect(endpoint)
        return sock

    def _send(self, sock: zmq.Socket, frame: bytes) -> bool:
        try:
            sock.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:  # the peer is behind by SEND_HWM frames: drop rather than stall the chain
            self.dropped += 1
            self.dropped_updates += sock is self.ingest
            self.metrics.count(self.metrics.dropped, 1)
            return False

    def _step(self) -> None:
        while self.gas.poll(0):
            try:
                update = decode(self.gas.recv())
            except WireError:
                self.metrics.count(self.metrics.errors)
                continue
            if isinstance(update, GasUpdate):
                self.core.tip_wei = update.tips[1]
        if self._resync.is_set():
            self._resync.clear()
            self._bootstrapped = False
        if not self._bootstrapped:
            if not self.ingest.poll(0, zmq.POLLOUT):
                # The aggregator is still SEND_HWM frames behind: no snapshot would get through.
                self._blocked_since = self._blocked_since or time.monotonic()
                return
            self._blocked_since = 0.0
            self._bootstrapped = self._send(self.ingest, self.core.bootstrap().encode())
            self.snapshots += self._bootstrapped
            return
        try:
            out = self.core.poll()
        except ReorgTooDeep:
            self._bootstrapped = False  # start again from the node's head
            return
        for frame in out.features:
            self._send(self.features, frame.encode())
            self.metrics.count(self.metrics.feature_rows, len(frame))
        for message in out.messages:
            if not self._send(self.ingest, message.encode()):
                self._bootstrapped = False  # the aggregator missed state: a full snapshot replaces it
                break
            if isinstance(message, BlockUpdate):
                self.sent_blocks += 1
                self.metrics.count(self.metrics.blocks, 1)
            else:
                self.metrics.count(self.metrics.reorgs, 1)
        head = self.core.tracker.head
        newest = self.store.released if self.store else cast(ChainClient, self.client).block_number()
        self.metrics.blocks_behind.set(max(0, newest - head.number) if head else 0, self.metrics.tags)

    def release(self, number: int) -> int:
        """Replay: let this watcher see the captured blocks up to `number`; returns its new head."""
        if self.store is None:
            raise RuntimeError(f"{self.role} follows a node, not a capture: only a replay's watchers take release()")
        head = self.store.release(number)
        self._released.set()
        return head

    def resync(self) -> list[int]:
        """Send a full snapshot of this shard (every pool's reserves at the head) before the next
        block; returns the shard's pool ids, by which the aggregator recognises the snapshot."""
        self._resync.set()
        return sorted(self.core.ids.values())

    def health(self) -> dict:
        report = self.loop.health()
        blocked = self._blocked_since
        if blocked and report["status"] == "ok":
            report |= {"status": "degraded", "reason": f"the aggregator has taken no block update for "
                       f"{time.monotonic() - blocked:.0f} s ({SEND_HWM} queued): a snapshot follows when it does"}
        return report

    def stats(self) -> dict:
        head = self.core.tracker.head
        return {"role": self.role, "head": head.number if head else None, "blocks_sent": self.sent_blocks,
                "reorgs": self.core.reorgs_seen, "dropped": self.dropped,
                "dropped_updates": self.dropped_updates, "snapshots": self.snapshots,
                "pools": len(self.core.addresses)}

    def stop(self) -> None:
        self.loop.stop()
        if self.heads:
            self.heads.stop()
