"""PoolWatcher: one shard of pools, block by block, onto the data plane.

Feature frames go to the inference actor, block updates (changed reserves, reorg withdrawals)
to the aggregator; both over ZMQ PUSH with bounded queues. The priority tip that goes into the
gas feature comes from the gas oracle's PUB stream.
"""
from __future__ import annotations

import ray
import zmq

from actors.loop import ActorLoop, Metrics
from scanner.chain import ChainClient
from scanner.config import ChainConfig
from scanner.discovery import PoolInfo
from scanner.messages import BlockUpdate, GasUpdate, decode
from scanner.poolwatcher import PoolWatcherCore
from scanner.watch import ReorgTooDeep
from scanner.wire import WireError

SEND_HWM = 1000  # frames queued per peer before new ones are dropped (and counted)


@ray.remote
class PoolWatcher:
    def __init__(self, chain: ChainConfig, rpc_url: str, shard: int, pools: dict[int, PoolInfo],
                 features_endpoint: str, ingest_endpoint: str, gas_endpoint: str,
                 backfill_max_blocks: int = 256) -> None:
        self.role = f"watcher-{shard}"
        self.metrics = Metrics(self.role)
        self.client = ChainClient(rpc_url, timeout_s=chain.request_timeout_s, max_retries=chain.max_retries)
        self.core = PoolWatcherCore(self.client, pools, shard, backfill_max_blocks=backfill_max_blocks)
        self.ctx = zmq.Context()
        self.features = self._push(features_endpoint)
        self.ingest = self._push(ingest_endpoint)
        self.gas = self.ctx.socket(zmq.SUB)
        self.gas.setsockopt(zmq.SUBSCRIBE, b"")
        self.gas.rcvhwm = 100
        self.gas.connect(gas_endpoint)
        self.dropped = 0
        self.sent_blocks = 0
        self._bootstrapped = False
        self.metrics.pools_watched.set(len(pools), self.metrics.tags)
        self.loop = ActorLoop(self.role, self._step, chain.poll_interval_s)
        self.loop.start()

    def _push(self, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.PUSH)
        sock.sndhwm = SEND_HWM
        sock.linger = 0
        sock.connect(endpoint)
        return sock

    def _send(self, sock: zmq.Socket, frame: bytes) -> None:
        try:
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:  # the peer is behind by SEND_HWM frames: drop rather than stall the chain
            self.dropped += 1
            self.metrics.count(self.metrics.dropped, 1)

    def _step(self) -> None:
        while self.gas.poll(0):
            try:
                update = decode(self.gas.recv())
            except WireError:
                self.metrics.count(self.metrics.errors)
                continue
            if isinstance(update, GasUpdate):
                self.core.tip_wei = update.tips[1]
        if not self._bootstrapped:
            self._send(self.ingest, self.core.bootstrap().encode())
            self._bootstrapped = True
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
            self._send(self.ingest, message.encode())
            if isinstance(message, BlockUpdate):
                self.sent_blocks += 1
                self.metrics.count(self.metrics.blocks, 1)
            else:
                self.metrics.count(self.metrics.reorgs, 1)
        head = self.core.tracker.head
        self.metrics.blocks_behind.set(max(0, self.client.block_number() - head.number) if head else 0, self.metrics.tags)

    def health(self) -> dict:
        return self.loop.health()

    def stats(self) -> dict:
        head = self.core.tracker.head
        return {"role": self.role, "head": head.number if head else None, "blocks_sent": self.sent_blocks,
                "reorgs": self.core.reorgs_seen, "dropped": self.dropped, "pools": len(self.core.addresses)}

    def stop(self) -> None:
        self.loop.stop()
