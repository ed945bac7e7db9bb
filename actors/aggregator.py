"""Aggregator: assembles blocks from every shard, ranks them, serves the query API and PUB stream.

Ingest is one ZMQ PULL socket (block updates and reorg withdrawals from the watchers,
prediction frames from the inference actor) plus a SUB on the gas oracle.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace

import msgpack
import ray
import zmq

from actors.loop import NAMESPACE, ActorLoop, Metrics, bind_address, remember_address
from scanner.rank.aggregate import AggregatorCore, RankedBlock, opportunity_dict
from scanner.config import AggregatorConfig, SocketsConfig
from scanner.dex.pool import PoolInfo
from scanner.gas.fees import GasModel
from scanner.wire.messages import BlockUpdate, GasUpdate, Withdraw, decode
from scanner.wire.query import Health, RankingStore
from scanner.model.lstm import Checkpoint
from scanner.serve.query_server import QueryServer
from scanner.rank.risk import LstmRiskModel
from scanner.wire.frames import PredictionFrame, WireError

log = logging.getLogger(__name__)
INGEST_HWM = 10_000
STALE_AFTER_S = 30.0  # no ranked block for this long: health says degraded
PEER_CHECK_S = 1.0  # how often the other actors' health is asked for (Ray control calls)
PEER_STALE_S = 5.0  # a peer whose loop has not completed a step for this long counts as degraded
PEER_TIMEOUT_S = 5.0  # a health call unanswered this long: the peer counts as not answering
RESYNC_EVERY_S = 2.0  # after a restart, how often a shard is asked again for its snapshot


@ray.remote
class Aggregator:
    def __init__(self, pools: dict[int, PoolInfo], base_tokens: list[str], shards: int,
                 aggregator: AggregatorConfig, sockets: SocketsConfig, bind: str, gas_endpoint: str, run: str,
                 symbols: dict[str, str] | None = None, gas_model: tuple[int, int] | None = None,
                 checkpoint: str | None = None) -> None:
        self.metrics = Metrics("aggregator")
        model = GasModel(*gas_model) if gas_model else GasModel()
        # With a trained checkpoint (the one inference serves), success probability and slippage come
        # from its per-pool predictions and the calibration stored with it; else the heuristic.
        self.risk = LstmRiskModel.from_checkpoint(Checkpoint.load(checkpoint)) if checkpoint else None
        self.core = AggregatorCore(pools, base_tokens, shards, top_n=aggregator.top_n,
                                   shard_timeout_s=aggregator.shard_timeout_s, gas_model=model,
                                   **({"risk": self.risk} if self.risk else {}))
        if self.risk:
            self.risk.attach(self.core.scanner.graph)
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
        self.counts = {"blocks_ranked": 0, "frames_invalid": 0, "predictions": 0, "withdrawals": 0}
        self.predictions: dict[int, tuple[int, float, float, float]] = {}  # pool id -> (block, mu, sigma, p_trade)
        self.last_ranked_at = 0.0
        self.last_latency_ms = 0.0
        self.peers = PeerHealth([f"watcher-{i}" for i in range(shards)] + ["gas-oracle", "inference", "submitter"])
        self._resync_asked: dict[int, float] = {}
        if ray.get_runtime_context().was_current_actor_reconstructed:
            # Restarted: the pools hold launch-time reserves. Each watcher re-sends its full state
            # (chain head) and nothing is served until every shard has; the submitter's gas calibration
            # is asked for again.
            self.core.resync_all()
            self.counts["restarted"] = 1
            self._restore_gas_model()
        self.loop = ActorLoop("aggregator", self._step, 0.0)
        self.loop.start()

    def _restore_gas_model(self) -> None:
        try:
            model = ray.get(ray.get_actor("submitter", namespace=NAMESPACE).stats.remote(), timeout=5).get("gas_model")
        except Exception as e:  # no submitter, or it is restarting too: it sends its calibration again itself
            log.info("no gas calibration from the submitter: %s", e)
            return
        if model:
            self.set_gas_model(*model)

    def _resync(self) -> None:
        """Ask each shard still owing its snapshot to send one (a Ray control call; the snapshot itself
        comes over the data plane, recognised by covering every pool the call said the shard owns)."""
        now = time.monotonic()
        for shard in sorted(self.core.awaiting):
            if now - self._resync_asked.get(shard, -RESYNC_EVERY_S) < RESYNC_EVERY_S:
                continue
            self._resync_asked[shard] = now
            try:
                ids = ray.get(ray.get_actor(f"watcher-{shard}", namespace=NAMESPACE).resync.remote(), timeout=5)
            except Exception as e:  # that watcher is down or restarting: ask again later
                log.warning("aggregator: shard %d did not take the resync request: %s", shard, e)
                continue
            self.core.expect_snapshot(shard, ids)

    def _step(self) -> None:
        if self.core.awaiting:
            self._resync()
        self.peers.refresh()
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
                if self.risk:
                    self.risk.update(self.core.address[pool], mu, sigma, p)
            self.counts["predictions"] += len(frame)
            return []
        msg = self._decode(data)
        if isinstance(msg, BlockUpdate):
            return self.core.on_block(msg)
        if isinstance(msg, Withdraw):
            fork = self.core.on_withdraw(msg)
            self.store.withdraw(fork + 1)
            if self.risk:
                self.risk.forget()  # predictions were made on the orphaned branch
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
        if self.core.awaiting:
            reasons.append(f"waiting for the state of shards {sorted(self.core.awaiting)} after a restart")
        reasons += self.peers.reasons()
        return Health("degraded" if reasons else "ok", reasons)

    def health(self) -> dict:
        report, h = self.loop.health(), self._health()
        if report["status"] == "ok":
            report["status"] = h.status
        return report | {"reasons": h.reasons}

    def stats(self) -> dict:
        return {"role": "aggregator", "block": self.store.block, "last_rank_latency_ms": round(self.last_latency_ms, 3),
                "shard_timeouts": self.core.shard_timeouts, "withdrawn_blocks": self.core.withdrawn_blocks,
                "unsynced_dropped": self.core.unsynced_dropped, "peers": self.peers.statuses(),
                "pools": len(self.core.pools), "cycles": len(self.core.scanner.graph),
                "risk_model": type(self.core.scanner.risk).__name__} | self.counts

    def set_gas_model(self, base: int, per_hop: int) -> None:
        """The submitter's calibration of the executor's gas (eth_estimateGas of real routes)."""
        self.core.scanner.set_gas_model(GasModel(base, per_hop))
        self.counts["gas_model"] = [base, per_hop]

    def pool_state(self) -> dict:
        """The reserves every pool is ranked with now and the last block ranked (diagnostics, tests)."""
        pools = [p for p in self.core.scanner.graph.pools if p is not None]
        return {"block": self.core.last_ranked, "reserves": {p.address: (p.reserve0, p.reserve1) for p in pools}}

    def endpoints(self) -> dict:
        return {"ingest": self.ingest_endpoint, "query": self.server.query_endpoint, "publish": self.server.publish_endpoint}

    def stop(self) -> None:
        self.loop.stop()
        self.server.stop()


class PeerHealth:
    """The other actors' health, asked for over Ray every `PEER_CHECK_S` without ever blocking.

    The query API's `health` is the aggregator's; through this it also says when a watcher cannot
    reach the node, a peer is restarting, or a peer's loop has stalled.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._missing_until: dict[str, float] = {}  # name -> when to look it up again
        self._inflight: dict[str, tuple[ray.ObjectRef, float]] = {}
        self._last: dict[str, dict] = {}
        self._next = 0.0

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
            if h.get("status") != "ok":
                out.append(f"{name}: {h.get('status')}{': ' + h['reason'] if h.get('reason') else ''}")
            elif (h.get("last_ok_age_s") or 0.0) > PEER_STALE_S:
                out.append(f"{name}: no step completed for {h['last_ok_age_s']:.0f} s")
        return out


def _kind(data: bytes) -> str | None:
    try:
        msg = msgpack.unpackb(data, raw=False)
    except Exception:
        return None
    return msg.get("kind") if isinstance(msg, dict) else None
