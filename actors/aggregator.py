"""Aggregator: assembles blocks from every shard, ranks them, serves the query API and PUB stream.

Ingest is one ZMQ PULL socket (block updates and reorg withdrawals from the watchers, prediction
frames from the inference actor) plus a SUB on the gas oracle; `AggregatorCore` does the rest.
"""
from __future__ import annotations

import time
from dataclasses import replace

import ray
import zmq

from actors.loop import ActorLoop, Metrics
from actors.peers import PeerHealth
from actors.ray_session import bind_address, remember_address
from scanner.config import AggregatorConfig, SocketsConfig
from scanner.dex.pool import PoolInfo
from scanner.dex.v2 import V2Pool
from scanner.dex.v3 import V3Pool
from scanner.gas.fees import GasModel
from scanner.model.lstm import Checkpoint
from scanner.rank.aggregate import AggregatorCore, RankedBlock, opportunity_dict
from scanner.rank.risk import LstmRiskModel
from scanner.serve.query_server import QueryServer
from scanner.wire.messages import GasUpdate, WireError, decode
from scanner.wire.query import Health, RankingStore

INGEST_HWM = 10_000


@ray.remote
class Aggregator:
    def __init__(self, pools: dict[int, PoolInfo], base_tokens: list[str], shards: int,
                 aggregator: AggregatorConfig, sockets: SocketsConfig, bind: str, gas_endpoint: str, run: str,
                 symbols: dict[str, str] | None = None, gas_model: tuple[int, int] | None = None,
                 checkpoint: str | None = None) -> None:
        self.metrics = Metrics("aggregator")
        # With a trained checkpoint (the one inference serves), success probability and slippage come
        # from its per-pool predictions and the calibration stored with it; else the heuristic.
        risk = LstmRiskModel.from_checkpoint(Checkpoint.load(checkpoint)) if checkpoint else None
        self.core = AggregatorCore(pools, base_tokens, shards, top_n=aggregator.top_n, max_hops=aggregator.max_hops,
                                   shard_timeout_s=aggregator.shard_timeout_s,
                                   gas_model=GasModel(*gas_model) if gas_model else GasModel(),
                                   **({"risk": risk} if risk else {}))
        if risk:
            risk.attach(self.core.ranker.graph)
        self.symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        self.ctx = zmq.Context()
        self.ingest = self.ctx.socket(zmq.PULL)
        self.ingest.rcvhwm = INGEST_HWM
        self.ingest.linger = 0
        self.ingest.bind(bind_address(bind, f"{run}/ingest"))
        self.ingest_endpoint = remember_address(f"{run}/ingest", self.ingest.getsockopt_string(zmq.LAST_ENDPOINT))
        self.gas = self.ctx.socket(zmq.SUB)
        self.gas.setsockopt(zmq.SUBSCRIBE, b"")
        self.gas.connect(gas_endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.ingest, zmq.POLLIN)
        self.poller.register(self.gas, zmq.POLLIN)
        self.store = RankingStore()
        # Configured ports stay as configured; port * is the OS's pick, the same one after a restart.
        sockets = replace(sockets, query=bind_address(sockets.query, f"{run}/query"),
                          publish=bind_address(sockets.publish, f"{run}/publish"))
        self.server = QueryServer(sockets, self.store, stats=self.stats, health=self._health, top_n=aggregator.top_n)
        self.server.start()
        remember_address(f"{run}/query", self.server.query_endpoint)
        remember_address(f"{run}/publish", self.server.publish_endpoint)
        self.counts = {"blocks_ranked": 0, "withdrawals": 0}
        self._served: tuple[int, str, list[dict]] | None = None  # the mined ranking served now (block, hash, rows)
        self.last_latency_ms = 0.0
        self.peers = PeerHealth([f"watcher-{i}" for i in range(shards)] + ["gas-oracle", "inference", "submitter"])
        if ray.get_runtime_context().was_current_actor_reconstructed:
            # Restarted: the pools hold launch-time reserves. Each watcher re-sends its full state
            # (chain head) and nothing is served until every shard has; the submitter's gas
            # calibration is asked for again (it also sends it again itself when it restarts).
            self.core.resync_all()
            self.counts["restarted"] = 1
            model = self.peers.submitter_gas_model()
            if model:
                self.set_gas_model(*model)
        self.loop = ActorLoop("aggregator", self._step, 0.0)
        self.loop.start()

    def _step(self) -> None:
        if self.core.awaiting:
            self.peers.request_snapshots(self.core)
        self.peers.refresh()
        events = dict(self.poller.poll(50))
        ranked: list[RankedBlock] = []
        while self.gas in events and self.gas.poll(0):
            try:
                update = decode(self.gas.recv())
            except WireError:
                self.core.invalid_frames += 1
                continue
            if isinstance(update, GasUpdate):
                self.core.on_gas(update)
        while self.ingest.poll(0):
            blocks, fork = self.core.ingest(self.ingest.recv())
            ranked += blocks
            if fork is not None:
                self.store.withdraw(fork + 1)
                self.counts["withdrawals"] += 1
                self.metrics.count(self.metrics.reorgs, 1)
        for block in ranked + self.core.tick():
            self._publish(block)
        if self.core.rank_pending() and self._served is not None:
            self.server.update(self._served[0], self._served[2] + self._backruns(*self._served[:2]))

    def _backruns(self, number: int, block_hash: str) -> list[dict]:
        """The backruns of pending transactions ranked on block `number`, served next to its ranking."""
        return [opportunity_dict(o, self.symbols) | {"block_hash": block_hash}
                for o in self.core.backrun_opportunities(number)]

    def _publish(self, block: RankedBlock) -> None:
        ranking = [opportunity_dict(o, self.symbols) | {"block_hash": block.hash} for o in block.opportunities]
        self._served = (block.number, block.hash, ranking)
        ranking = ranking + self._backruns(block.number, block.hash)
        if self.store.block is not None and block.number < self.store.block:
            self.store.withdraw(block.number)
        self.server.update(block.number, ranking)
        self.last_latency_ms = (time.monotonic() - block.received_at) * 1000
        self.counts["blocks_ranked"] += 1
        self.metrics.ranked(len(ranking), ranking[0]["ev"] / 1e18 if ranking else 0.0, self.last_latency_ms,
                            block.complete)

    def _health(self) -> Health:
        reasons = [self.loop.degraded_reason] if self.loop.degraded_reason else []
        reasons += self.core.health_reasons() + self.peers.reasons()
        return Health("degraded" if reasons else "ok", reasons)

    def health(self) -> dict:
        report, h = self.loop.health(), self._health()
        if report["status"] == "ok":
            report["status"] = h.status
        return report | {"reasons": h.reasons}

    def stats(self) -> dict:
        c = self.core
        return {"role": "aggregator", "block": self.store.block, "last_rank_latency_ms": round(self.last_latency_ms, 3),
                "shard_timeouts": c.shard_timeouts, "withdrawn_blocks": c.withdrawn_blocks,
                "unsynced_dropped": c.unsynced_dropped, "peers": self.peers.statuses(), "pools": len(c.pools),
                "cycles": len(c.ranker.graph), "risk_model": type(c.ranker.risk).__name__,
                "frames_invalid": c.invalid_frames, "predictions": c.predictions,
                "pending": dict(c.pending_counts), "backruns": len(c.backruns)} | self.counts

    def set_gas_model(self, base: int, per_hop: int) -> None:
        """The submitter's calibration of the executor's gas (eth_estimateGas of real routes)."""
        self.core.ranker.set_gas_model(GasModel(base, per_hop))
        self.counts["gas_model"] = [base, per_hop]

    def pool_state(self) -> dict:
        """The state every pool is ranked with now and the last block ranked (diagnostics, tests):
        V2 reserves, V3 (sqrtPriceX96, tick, liquidity, number of initialized ticks)."""
        pools = [p for p in self.core.ranker.graph.pools if p is not None]
        return {"block": self.core.last_ranked,
                "reserves": {p.address: (p.reserve0, p.reserve1) for p in pools if isinstance(p, V2Pool)},
                "v3": {p.address: (p.sqrt_price_x96, p.tick, p.liquidity, len(p.ticks))
                       for p in pools if isinstance(p, V3Pool)}}

    def endpoints(self) -> dict[str, str]:
        return {"ingest": self.ingest_endpoint, "query": self.server.query_endpoint, "publish": self.server.publish_endpoint}

    def stop(self) -> None:
        self.loop.stop()
        self.server.stop()
