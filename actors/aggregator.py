"""Aggregator: assembles blocks from every shard, ranks them, serves the query API and PUB stream.

Ingest is one ZMQ PULL socket (block updates and reorg withdrawals from the watchers, prediction
frames from the inference actor) plus a SUB on the gas oracle; `AggregatorCore` does the rest.

With several chains there is one aggregator per chain. The default chain's hosts the query server
for all of them: the others forward their rankings to its `forwarded` PULL socket
(`RankingForwarder`), and its health names each chain's. On an L2 (OP-stack, Arbitrum) each ranked
route is charged the L1 fee of its executor call (`scanner.rank.l1`).
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import cast

import ray
import zmq

from actors.loop import ActorLoop, Metrics
from actors.peers import PeerHealth
from actors.pipeline import ChainRun
from actors.ray_session import bind_address, remember_address
from scanner.config import AggregatorConfig, SocketsConfig
from scanner.dex.pool import PoolInfo
from scanner.dex.v2 import V2Pool
from scanner.dex.v3 import V3Pool
from scanner.gas.fees import GasModel
from scanner.model.lstm import Checkpoint
from scanner.rank.aggregate import AggregatorCore, RankedBlock, ServedBackruns, opportunity_dict
from scanner.rank.l1 import L1_PRICING, L1Charger
from scanner.rank.ranking import Opportunity
from scanner.rank.risk import LstmRiskModel
from scanner.serve.query_server import QueryServer, RankingForwarder
from scanner.submit.calibrate import ZERO_ADDRESS, execute_calldata
from scanner.wire.messages import GasUpdate, WireError, decode
from scanner.wire.query import Health, RankingStore

INGEST_HWM = 10_000


@ray.remote
class Aggregator:
    def __init__(self, pools: dict[int, PoolInfo], base_tokens: list[str], shards: int,
                 aggregator: AggregatorConfig, sockets: SocketsConfig, bind: str, gas_endpoint: str, run: str,
                 symbols: dict[str, str] | None = None, gas_model: tuple[int, int] | None = None,
                 checkpoint: str | None = None, network: ChainRun = ChainRun(),
                 forward: dict[str, str] | None = None) -> None:
        """`forward`: the query server's host's `forwarded`, `query` and `publish` endpoints, for every
        chain's aggregator but the default one's."""
        self.network = network
        self.metrics = Metrics(network.actor("aggregator"))
        # With a trained checkpoint (the one inference serves), success probability and slippage come
        # from its per-pool predictions and the calibration stored with it; else the heuristic.
        risk = LstmRiskModel.from_checkpoint(Checkpoint.load(checkpoint)) if checkpoint else None
        self.core = AggregatorCore(pools, base_tokens, shards, top_n=aggregator.top_n, max_hops=aggregator.max_hops,
                                   shard_timeout_s=aggregator.shard_timeout_s, stale_after_s=network.stale_after_s,
                                   gas_model=GasModel(*gas_model) if gas_model else GasModel(),
                                   fee_rules=network.rules, **({"risk": risk} if risk else {}))
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
        self.forwarded: zmq.Socket | None = None  # other chains' rankings, on the query server's host
        self.server: QueryServer | RankingForwarder
        if forward:
            self.server = self.store = RankingForwarder(network.name, forward["forwarded"], forward["query"],
                                                        forward["publish"])
        else:
            self.store = RankingStore(network.serves or (network.name,))
            # Configured ports stay as configured; port * is the OS's pick, the same one after a restart.
            sockets = replace(sockets, query=bind_address(sockets.query, f"{run}/query"),
                              publish=bind_address(sockets.publish, f"{run}/publish"))
            self.server = QueryServer(sockets, self.store, stats=self.stats, health=self._health, top_n=aggregator.top_n)
            self.server.start()
            remember_address(f"{run}/query", self.server.query_endpoint)
            remember_address(f"{run}/publish", self.server.publish_endpoint)
            if len(network.serves) > 1:
                self.forwarded = self.ctx.socket(zmq.PULL)
                self.forwarded.linger = 0
                self.forwarded.bind(bind_address(bind, f"{run}/forwarded"))
                remember_address(f"{run}/forwarded", self.forwarded.getsockopt_string(zmq.LAST_ENDPOINT))
                self.poller.register(self.forwarded, zmq.POLLIN)
        executor = bytes.fromhex((network.executor or ZERO_ADDRESS)[2:])
        self.l1 = L1Charger(network.chain_id, executor, self._calldata, dict(zip(
            self.core.ranker.graph.base_tokens, self.core.ranker.token_per_eth))) if network.l1_fee in L1_PRICING else None
        self.counts = {"blocks_ranked": 0, "withdrawals": 0}
        self._served: tuple[int, str, list[dict]] | None = None  # the mined ranking served now (block, hash, rows)
        self.backruns = ServedBackruns()
        self.last_latency_ms = 0.0
        self.last_received_at = 0.0  # CLOCK_MONOTONIC, one clock for every process of a Linux machine (bench e2e)
        others = [f"aggregator@{name}" for name in network.serves[1:]]  # the host asks every chain's aggregator
        self.peers = PeerHealth([network.actor(f"watcher-{i}") for i in range(shards)] + [network.actor("gas-oracle"),
                                "inference", network.actor("submitter")] + others, network.suffix)
        if ray.get_runtime_context().was_current_actor_reconstructed:
            # Restarted: the pools hold launch-time reserves. Each watcher re-sends its full state
            # (chain head) and nothing is served until every shard has; the submitter's gas
            # calibration is asked for again (it also sends it again itself when it restarts).
            self.core.resync_all()
            self.counts["restarted"] = 1
            model = self.peers.submitter_gas_model()
            if model:
                self.set_gas_model(*model)
        self.loop = ActorLoop(network.actor("aggregator"), self._step, 0.0)
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
                if self.l1 is not None and update.l1:
                    self.l1.params = L1_PRICING[self.network.l1_fee](*update.l1)
        while self.forwarded is not None and self.forwarded in events and self.forwarded.poll(0):
            try:
                cast(QueryServer, self.server).forwarded(self.forwarded.recv())
            except Exception as e:  # one chain's bad frame must not stop the others being served
                self.core.invalid_frames += 1
                self.loop.degraded_reason = f"a forwarded ranking could not be served: {type(e).__name__}: {e}"
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
            backruns, changed = self._backruns(*self._served[:2])
            if changed:
                self.server.update(self._served[0], self._served[2] + backruns)

    def _backruns(self, number: int, block_hash: str) -> tuple[list[dict], bool]:
        """The best backruns of pending transactions ranked on block `number`, served next to its ranking,
        and whether they changed since last served."""
        return self.backruns.update(self.core, number,
                                    lambda o: opportunity_dict(o, self.symbols) | {"block_hash": block_hash})

    def _calldata(self, opp: Opportunity) -> bytes:
        return execute_calldata(opp, v3_factories=self.network.v3_factories)

    def _rows(self, block: RankedBlock) -> list[dict]:
        """The served rows of a block: each names its chain, and carries its L1 fee on an L2."""
        pairs = self.l1.charge(block.opportunities, self.core.tip) if self.l1 else [(o, 0) for o in block.opportunities]
        return [opportunity_dict(o, self.symbols) | {"block_hash": block.hash, "chain": self.network.name,
                                                      "l1_fee": fee} for o, fee in pairs]

    def _publish(self, block: RankedBlock) -> None:
        ranking = self._rows(block)
        self._served = (block.number, block.hash, ranking)
        ranking = ranking + self._backruns(block.number, block.hash)[0]
        if self.store.block is not None and block.number < self.store.block:
            self.store.withdraw(block.number)
        self.server.update(block.number, ranking)
        self.last_latency_ms = (time.monotonic() - block.received_at) * 1000
        self.last_received_at = block.received_at
        self.counts["blocks_ranked"] += 1
        self.metrics.ranked(len(ranking), ranking[0]["ev"] / 1e18 if ranking else 0.0, self.last_latency_ms,
                            block.complete)

    def _health(self) -> Health:
        reasons = [self.loop.degraded_reason] if self.loop.degraded_reason else []
        reasons += self.core.health_reasons() + self.peers.reasons()
        status = "degraded" if reasons else "ok"
        if len(self.network.serves) < 2:
            return Health(status, reasons)
        peers = self.peers.statuses()
        own = [r for r in reasons if not r.startswith("aggregator@")]  # the other chains' are theirs
        chains = {self.network.name: "degraded" if own else "ok"}
        chains |= {name: peers.get(f"aggregator@{name}", "ok") for name in self.network.serves[1:]}  # "ok" until asked
        return Health(status, reasons, chains)

    def health(self) -> dict:
        report, h = self.loop.health(), self._health()
        if report["status"] == "ok":
            report["status"] = h.status
        return report | {"reasons": h.reasons}

    def stats(self) -> dict:
        c = self.core
        return {"role": self.network.actor("aggregator"), "chain": self.network.name, "block": self.store.block, "last_rank_latency_ms": round(self.last_latency_ms, 3),
                "last_received_at": self.last_received_at,
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
        forwarded = {"forwarded": self.forwarded.getsockopt_string(zmq.LAST_ENDPOINT)} if self.forwarded else {}
        return {"ingest": self.ingest_endpoint, "query": self.server.query_endpoint,
                "publish": self.server.publish_endpoint} | forwarded

    def stop(self) -> None:
        self.loop.stop()
        self.server.stop()
