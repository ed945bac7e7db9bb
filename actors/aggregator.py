"""Aggregator: assembles blocks from every shard, ranks them, serves the query API and PUB stream.

Ingest is one ZMQ PULL socket (block updates and reorg withdrawals from the watchers,
prediction frames from the inference actor) plus a SUB on the gas oracle.
"""
from __future__ import annotations

import time

import msgpack
import ray
import zmq

from actors.loop import ActorLoop, Metrics
from scanner.aggregate import AggregatorCore, RankedBlock, opportunity_dict
from scanner.config import AggregatorConfig, SocketsConfig
from scanner.discovery import PoolInfo
from scanner.gas import GasModel
from scanner.messages import BlockUpdate, GasUpdate, Withdraw, decode
from scanner.query import Health, RankingStore
from scanner.queryserver import QueryServer
from scanner.wire import PredictionFrame, WireError

INGEST_HWM = 10_000
STALE_AFTER_S = 30.0  # no ranked block for this long: health says degraded


@ray.remote
class Aggregator:
    def __init__(self, pools: dict[int, PoolInfo], base_tokens: list[str], shards: int,
                 aggregator: AggregatorConfig, sockets: SocketsConfig, ingest_endpoint: str, gas_endpoint: str,
                 symbols: dict[str, str] | None = None, gas_model: tuple[int, int] | None = None) -> None:
        self.metrics = Metrics("aggregator")
        model = GasModel(*gas_model) if gas_model else GasModel()
        self.core = AggregatorCore(pools, base_tokens, shards, top_n=aggregator.top_n,
                                   shard_timeout_s=aggregator.shard_timeout_s, gas_model=model)
        self.symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        self.ctx = zmq.Context()
        self.ingest = self.ctx.socket(zmq.PULL)
        self.ingest.rcvhwm = INGEST_HWM
        self.ingest.linger = 0
        self.ingest.bind(ingest_endpoint)
        self.gas = self.ctx.socket(zmq.SUB)
        self.gas.setsockopt(zmq.SUBSCRIBE, b"")
        self.gas.connect(gas_endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.ingest, zmq.POLLIN)
        self.poller.register(self.gas, zmq.POLLIN)
        self.store = RankingStore()
        self.server = QueryServer(sockets, self.store, stats=self.stats, health=self._health, top_n=aggregator.top_n)
        self.server.start()
        self.counts = {"blocks_ranked": 0, "frames_invalid": 0, "predictions": 0, "withdrawals": 0}
        self.predictions: dict[int, tuple[int, float, float, float]] = {}  # pool id -> (block, mu, sigma, p_trade)
        self.last_ranked_at = 0.0
        self.last_latency_ms = 0.0
        self.loop = ActorLoop("aggregator", self._step, 0.0)
        self.loop.start()

    def _step(self) -> None:
        events = dict(self.poller.poll(50))
        ranked: list[RankedBlock] = []
        while self.gas in events and self.gas.poll(0):
            update = self._decode(self.gas.recv())
            if isinstance(update, GasUpdate):
                self.core.on_gas(update)
        while self.ingest.poll(0):
            ranked += self._ingest(self.ingest.recv())
        ranked += self.core.tick()
        for block in ranked:
            self._publish(block)

    def _decode(self, data: bytes):
        try:
            return decode(data)
        except WireError:
            self.counts["frames_invalid"] += 1
            self.metrics.count(self.metrics.errors, 1)
            return None

    def _ingest(self, data: bytes) -> list[RankedBlock]:
        if _kind(data) == PredictionFrame.KIND:
            frame = PredictionFrame.decode(data)
            for pool, block, mu, sigma, p in zip(frame.pool.tolist(), frame.block.tolist(), frame.mu.tolist(),
                                                 frame.sigma.tolist(), frame.p_trade.tolist()):
                self.predictions[pool] = (block, mu, sigma, p)
            self.counts["predictions"] += len(frame)
            return []
        msg = self._decode(data)
        if isinstance(msg, BlockUpdate):
            return self.core.on_block(msg)
        if isinstance(msg, Withdraw):
            fork = self.core.on_withdraw(msg)
            self.store.withdraw(fork + 1)
            self.counts["withdrawals"] += 1
            self.metrics.count(self.metrics.reorgs, 1)
        return []

    def _publish(self, block: RankedBlock) -> None:
        ranking = [opportunity_dict(o, self.symbols) | {"block_hash": block.hash} for o in block.opportunities]
        if self.store.block is not None and block.number < self.store.block:
            self.store.withdraw(block.number)
        self.server.update(block.number, ranking)
        now = time.monotonic()
        self.last_latency_ms = (now - block.received_at) * 1000
        self.last_ranked_at = now
        self.counts["blocks_ranked"] += 1
        tags = self.metrics.tags
        self.metrics.count(self.metrics.blocks, 1)
        self.metrics.opportunities.set(len(ranking), tags)
        self.metrics.best_ev.set(ranking[0]["ev"] / 1e18 if ranking else 0.0, tags)
        self.metrics.rank_latency_ms.observe(self.last_latency_ms, tags)
        if not block.complete:
            self.metrics.count(self.metrics.shard_timeouts, 1)

    def _health(self) -> Health:
        reasons = []
        if self.loop.degraded_reason:
            reasons.append(self.loop.degraded_reason)
        if self.last_ranked_at and time.monotonic() - self.last_ranked_at > STALE_AFTER_S:
            reasons.append(f"no block ranked for {time.monotonic() - self.last_ranked_at:.0f} s")
        if not self.last_ranked_at:
            reasons.append("no block ranked yet")
        return Health("degraded" if reasons else "ok", reasons)

    def health(self) -> dict:
        report, h = self.loop.health(), self._health()
        if report["status"] == "ok":
            report["status"] = h.status
        return report | {"reasons": h.reasons}

    def stats(self) -> dict:
        return {"role": "aggregator", "block": self.store.block, "last_rank_latency_ms": round(self.last_latency_ms, 3),
                "shard_timeouts": self.core.shard_timeouts, "withdrawn_blocks": self.core.withdrawn_blocks,
                "pools": len(self.core.pools), "cycles": len(self.core.scanner.graph),
                "risk_model": type(self.core.scanner.risk).__name__} | self.counts

    def set_gas_model(self, base: int, per_hop: int) -> None:
        """The submitter's calibration of the executor's gas (eth_estimateGas of real routes)."""
        self.core.scanner.set_gas_model(GasModel(base, per_hop))
        self.counts["gas_model"] = [base, per_hop]

    def endpoints(self) -> dict:
        return {"query": self.server.query_endpoint, "publish": self.server.publish_endpoint}

    def stop(self) -> None:
        self.loop.stop()
        self.server.stop()


def _kind(data: bytes) -> str | None:
    try:
        msg = msgpack.unpackb(data, raw=False)
    except Exception:
        return None
    return msg.get("kind") if isinstance(msg, dict) else None
