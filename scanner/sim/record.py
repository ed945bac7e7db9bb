"""Recording the simulated market as the LSTM's training and evaluation data.

`record` starts its own anvil, deploys the market and follows it block by block with the
serving code itself (PoolWatcherCore, GasOracleCore, AggregatorCore, SubmitterCore, and for
policy "ev" the StreamingBatcher + LstmRiskModel), so recorded features are serving features.

Labels describe what a transaction sent after block t meets in block t + 1. The node orders a
block by priority fee, so a route sent with the submitter's tip runs after every transaction
that bids more ("ahead of us") and before the rest. Per pool: was it swapped ahead of us, and
the log mid-price move that caused (trades behind us cannot hurt a route, so they are not
counted). Per ranked opportunity (the top `TOP_N` of every block, sent or not): the exact
integer profit its input would have returned at that slot, so every candidate gets the label
the sent one gets from its receipt; the sent ones are checked against their receipts.
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm import tqdm
from web3 import HTTPProvider, Web3

from scanner.chain.anvil import Anvil, searcher_key_file
from scanner.chain.discovery import discover
from scanner.chain.follow import POOL_TOPICS, ShardState
from scanner.chain.gas import GasOracleCore
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.config import DexConfig
from scanner.dex.pool import Pool
from scanner.dex.v2 import amount_out
from scanner.model.features import N_FEATURES
from scanner.model.lstm import shipped_checkpoint
from scanner.rank.aggregate import AggregatorCore, opportunity_dict
from scanner.rank.ranking import HeuristicRiskModel, Opportunity, RiskInputs, RiskModel
from scanner.rank.risk import LstmRiskModel
from scanner.sim.market import Market, MarketSpec
from scanner.submit.journal import Journal, OutcomeRecord
from scanner.submit.submitter import SubmitterCore, load_key
from scanner.wire.frames import FeatureFrame
from scanner.wire.messages import BlockUpdate

POLICIES = ("ev", "profit")
TOP_N = 10  # candidates labelled per block
MAX_HOPS = 3
STATUS = ("none", "landed", "beaten", "reverted")  # sent_status codes; "none": not sent
FORMAT = "arbscan-recording"
FORMAT_VERSION = 1


class CertainRisk:
    """P = 1 and no slippage, so expected value is net profit: the "profit" policy's ranking."""

    def assess(self, batch: RiskInputs) -> tuple[np.ndarray, np.ndarray]:
        return np.ones(len(batch.hops)), np.zeros(len(batch.hops))


@dataclass(frozen=True, eq=False)
class Recording:
    """One recorded run. Pool axis = registry id (discovery order); candidate amounts in wei as
    float64 (exact differences are computed in integers before they are stored)."""

    meta: dict[str, Any]
    blocks: np.ndarray  # int64 [T]: chain block of each feature row
    features: np.ndarray  # float32 [T, P, F]: the watcher's features after block t
    next_move: np.ndarray  # float32 [T, P]: log mid-price move ahead of our slot in block t + 1
    next_traded: np.ndarray  # float32 [T, P]: 1 if someone swapped the pool ahead of our slot in t + 1
    cand_t: np.ndarray  # int64 [n]: index into blocks of the block it was ranked on
    cand_rank: np.ndarray  # int64 [n]
    cand_pools: np.ndarray  # int64 [n, 3]: pool ids, -1 past the route's end
    cand_zero_for_one: np.ndarray  # bool [n, 3]
    cand_hops: np.ndarray  # int64 [n]
    cand_fee_bps: np.ndarray  # int64 [n, 3]
    cand_amounts: np.ndarray  # float64 [n, 4]: input, then each hop's output (a missing hop repeats its input)
    cand_reserve_in: np.ndarray  # float64 [n, 3]: reserve of the token sold at each hop at the ranked block
    cand_gross: np.ndarray  # float64 [n]: exact gross profit at the ranked block
    cand_gas_cost: np.ndarray  # float64 [n]
    cand_net: np.ndarray  # float64 [n]
    cand_p: np.ndarray  # float64 [n]: success probability the ranking used
    cand_slippage: np.ndarray  # float64 [n]: expected slippage the ranking used
    cand_success: np.ndarray  # bool [n]: would it have landed at our slot in the next block
    cand_realized_gross: np.ndarray  # float64 [n]: exact gross profit at that slot (≤ 0: reverted)
    cand_sent: np.ndarray  # int64 [n]: STATUS code of the sent transaction (0: not sent)
    cand_sent_profit: np.ndarray  # float64 [n]: profit of the Arb event (0 unless landed)
    cand_gas_paid: np.ndarray  # float64 [n]: gas used × effective gas price of the sent transaction

    def save(self, path: Path) -> None:
        """Write atomically; the file is an .npz whatever its name."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}
        meta = {"format": FORMAT, "version": FORMAT_VERSION, **self.meta}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Recording:
        try:
            data = np.load(path, allow_pickle=False)
            meta = json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{path} is not a recording ({type(e).__name__}: {e}): make one with `arbscan record`") from e
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path} is format {meta.get('format')} v{meta.get('version')}, this code reads "
                             f"{FORMAT} v{FORMAT_VERSION}: record it again")
        return cls(meta=meta, **{f.name: data[f.name] for f in fields(cls) if f.name != "meta"})

    @property
    def landed(self) -> np.ndarray:
        return self.cand_sent == STATUS.index("landed")


def record(blocks: int, seed: int, out: Path, *, progress: bool = True, policy: str = "ev",
           model: Path | None = None, v3: bool = False) -> dict:
    """Run the market for `blocks` labelled blocks on a fresh anvil and save the recording to `out`.

    policy "ev" sends the best opportunity by expected value under the LSTM (`model`, else the
    shipped checkpoint, else the heuristic stand-in); "profit" sends the best by net profit.
    `v3`: the demo's market (V2 pools plus canonical V3 pools) instead of the V2 market.
    Returns `summary` of the recording plus its path.
    """
    started = time.monotonic()
    with Anvil.start() as node:
        rec = record_on(node, blocks, seed, policy=policy, model=model, progress=progress, v3=v3)
    rec.meta["seconds"] = round(time.monotonic() - started, 1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rec.save(out)
    return summary(rec) | {"out": str(out)}


def record_on(node: Anvil, blocks: int, seed: int, *, policy: str = "ev", model: Path | None = None,
              progress: bool = False, v3: bool = False) -> Recording:
    """`record` on a node the caller owns (a fresh anvil: the market deploys itself there)."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if blocks < 1:
        raise ValueError(f"blocks must be at least 1, got {blocks}")
    with tempfile.TemporaryDirectory(prefix="arbscan-record-") as tmp:
        session = _Session(node, seed, Path(tmp), policy, _checkpoint(policy, model), v3)
        try:
            with warnings.catch_warnings():  # web3 warns for every other contract's log in a receipt it decodes
                warnings.filterwarnings("ignore", "The log with transaction hash", UserWarning)
                return session.run(blocks, progress)
        finally:
            session.close()


def summary(rec: Recording) -> dict:
    """Headline numbers of a recording (wei amounts in ETH)."""
    sent = rec.cand_sent > 0
    status = {name: int((rec.cand_sent == i).sum()) for i, name in enumerate(STATUS) if i}
    net = rec.cand_sent_profit[sent].sum() - rec.cand_gas_paid[sent].sum()
    return {
        "seed": rec.meta["seed"], "policy": rec.meta["policy"], "market": rec.meta.get("market", "v2"),
        "risk_model": rec.meta["risk_model"],
        "blocks": int(len(rec.blocks)), "pools": int(rec.features.shape[1]), "candidates": int(len(rec.cand_t)),
        "candidate_success_rate": round(float(rec.cand_success.mean()), 4) if len(rec.cand_t) else None,
        "pool_traded_ahead_rate": round(float(rec.next_traded.mean()), 4),
        "sent": int(sent.sum()), **status, "receipt_mismatches": rec.meta["receipt_mismatches"],
        "realized_profit_eth": round(float(rec.cand_sent_profit[sent].sum()) / 1e18, 6),
        "gas_paid_eth": round(float(rec.cand_gas_paid[sent].sum()) / 1e18, 6),
        "realized_net_eth": round(float(net) / 1e18, 6), "seconds": rec.meta.get("seconds"),
    }


def _checkpoint(policy: str, model: Path | None) -> Path | None:
    if policy != "ev":
        return None
    if model is not None:
        return Path(model)
    return shipped_checkpoint()


def _effective_tip(tx, base_fee: int) -> int:
    if tx.get("maxPriorityFeePerGas") is not None:
        return min(int(tx["maxPriorityFeePerGas"]), int(tx["maxFeePerGas"]) - base_fee)
    return int(tx["gasPrice"]) - base_fee


def _mid(r: tuple[int, int]) -> float:
    """Log mid price; NaN for a V3 pool whose price sits where no liquidity is (no price to move)."""
    return math.log(r[1]) - math.log(r[0]) if min(r) > 0 else math.nan


@dataclass
class _Candidate:
    t: int
    rank: int
    opp: Opportunity
    ids: list[int]
    reserves: list[tuple[int, int]]  # each hop's pool at the ranked block (V3: virtual reserves)
    sent: int = 0
    sent_profit: int = 0
    gas_paid: int = 0
    realized: int = 0
    success: bool = False


class _Session:
    """Everything one recording runs, wired as the Ray actors wire it, minus the sockets."""

    def __init__(self, node: Anvil, seed: int, tmp: Path, policy: str, checkpoint: Path | None, v3: bool) -> None:
        self.seed, self.policy, self.market_kind = seed, policy, "v3" if v3 else "v2"
        spec = MarketSpec.with_v3(seed) if v3 else MarketSpec(seed=seed)
        self.market = Market(Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30})), spec)
        dep = self.market.deploy()
        self.client = ChainClient(node.url)
        # Wall-clock timestamps would change gas (pairs skip a storage write within one second), hence
        # base fees and congestion, from run to run: a fixed 12 s block interval keeps a seed's run repeatable.
        self.client.rpc("anvil_setBlockTimestampInterval", 12)
        dexes = [DexConfig(name, factory, fee) for name, (factory, fee) in dep.factories.items()]
        if dep.v3_factory:
            dexes.append(DexConfig("uniswap-v3", dep.v3_factory, kind="uniswap-v3", fees=dep.v3_fees))
        self.registry = dict(enumerate(discover(self.client, dexes, progress=False)))
        self.ids = {p.address: i for i, p in self.registry.items()}
        self.addresses = [Web3.to_checksum_address(p.address) for p in self.registry.values()]
        self.risk, self.streamer, self.risk_label = self._risk(checkpoint)
        self.aggregator = AggregatorCore(self.registry, [dep.base], shards=1, top_n=TOP_N, risk=self.risk)
        if isinstance(self.risk, LstmRiskModel):
            self.risk.attach(self.aggregator.ranker.graph)
        self.watcher = PoolWatcherCore(self.client, self.registry, shard=0, price_oracle=dep.price_oracle)
        self.oracle = GasOracleCore(self.client, feeds=[dep.gas_feed])
        self.journal = Journal(tmp / "journal.sqlite")
        self.submitter = SubmitterCore(self.client, dep.executor, load_key(None, str(searcher_key_file(tmp))),
                                       self.journal, top_k=1, send=True,
                                       v3_factories=[dep.v3_factory] if dep.v3_factory else [])
        self.candidates: list[_Candidate] = []
        self.awaiting: dict[str, _Candidate] = {}  # sent, outcome not journaled yet
        self.mismatches = 0

    def _risk(self, checkpoint: Path | None) -> tuple[RiskModel, Any, str]:
        if self.policy == "profit":
            return CertainRisk(), None, "certain (rank by net profit)"
        if checkpoint is None:
            return HeuristicRiskModel(), None, "heuristic"
        import torch

        from scanner.model.lstm import Checkpoint
        from scanner.serve.batching import StreamingBatcher

        torch.set_num_threads(1)
        ckpt = Checkpoint.load(checkpoint)
        return LstmRiskModel.from_checkpoint(ckpt), StreamingBatcher(ckpt.build("cpu")), f"lstm {checkpoint.name}"

    def close(self) -> None:
        self.journal.close()

    def run(self, blocks: int, progress: bool) -> Recording:
        """`blocks` blocks of features and ranked candidates, plus one more block for their labels."""
        bar = tqdm(total=blocks, desc=f"recording seed {self.seed} ({self.policy})", unit="block", disable=not progress)
        self.aggregator.on_block(self.watcher.bootstrap())  # the gas feed answers from the first step on
        chain_blocks, features, moves, traded = [], [], [], []
        ranked: list[_Candidate] = []
        for t in range(blocks + 1):
            before = ShardState(dict(self.watcher.state.reserves), v3=copy.deepcopy(self.watcher.state.v3))
            self.market.step()
            self._gas()
            update, frame = self._poll()
            move, hit, at_slot = self._ahead(update.number, before)
            for c in ranked:
                self._label(c, at_slot)
            if t:
                moves.append(move)
                traded.append(hit)
            if t == blocks:
                break
            x = np.zeros((len(self.registry), N_FEATURES), np.float32)
            x[frame.pool] = frame.x
            chain_blocks.append(update.number)
            features.append(x)
            ranked = self._rank_and_send(t, update, frame)
            s = self.submitter.stats
            bar.set_postfix_str(f"sent {s.sent} landed {s.landed} beaten {s.beaten} reverted {s.reverted}", refresh=False)
            bar.update(1)
        self.submitter.check_pending()
        self._resolve()
        bar.close()
        meta = {
            "seed": self.seed, "policy": self.policy, "market": self.market_kind, "risk_model": self.risk_label,
            "top_n": TOP_N,
            "tip_wei": self.submitter.tip_wei, "pools": [p.address for p in self.registry.values()],
            "fee_bps": [p.fee_bps for p in self.registry.values()], "receipt_mismatches": self.mismatches,
            "unresolved": len(self.awaiting),
        }
        return _assemble(meta, chain_blocks, features, moves, traded, self.candidates)

    def _poll(self) -> tuple[BlockUpdate, FeatureFrame]:
        out = self.watcher.poll()
        updates = [m for m in out.messages if isinstance(m, BlockUpdate)]
        if len(updates) != 1 or len(out.features) != 1:
            raise RuntimeError(f"expected one new block per market step, the watcher saw {len(updates)}: "
                               "is something else mining this chain?")
        return updates[0], out.features[0]

    def _rank_and_send(self, t: int, update: BlockUpdate, frame: FeatureFrame) -> list[_Candidate]:
        """Predict (policy "ev" with a model), rank the block, send its best; returns its candidates."""
        if self.streamer is not None:
            self.aggregator.on_predictions(self.streamer.step(frame))
        blocks = self.aggregator.on_block(update)
        ranked = [self._candidate(t, rank, opp) for rb in blocks for rank, opp in enumerate(rb.opportunities)]
        self.candidates += ranked
        sent_before = self.submitter.stats.sent
        for rb in blocks:
            self.submitter.handle(rb.number, [opportunity_dict(o) for o in rb.opportunities])
        self._resolve()
        if self.submitter.stats.sent > sent_before:
            self.awaiting[ranked[0].opp.id] = ranked[0]
        return ranked

    def _gas(self) -> None:
        update = self.oracle.poll()
        if update is not None:
            self.aggregator.on_gas(update)
            self.watcher.tip_wei = update.tips[1]

    def _ahead(self, number: int, before: ShardState) -> tuple[np.ndarray, np.ndarray, ShardState]:
        """Per pool: log move and swapped flag ahead of our slot in block `number`; the pools at the slot
        (`before` with the logs ahead of us applied by the watcher's own code)."""
        block = self.client.get_block(number, True)
        tip = self.submitter.tip_wei
        slot = sum(1 for tx in block["transactions"] if _effective_tip(tx, int(block["baseFeePerGas"])) > tip)
        logs = self.client.get_logs({"fromBlock": number, "toBlock": number, "address": self.addresses,
                                     "topics": [POOL_TOPICS]})
        start = before.all_reserves()
        at_slot = ShardState(dict(before.reserves), v3=copy.deepcopy(before.v3))
        changed = at_slot.apply_logs(number, [e for e in logs if int(e["transactionIndex"]) < slot])
        hit = np.zeros(len(self.registry), np.float32)
        for pool, state in changed.items():
            hit[self.ids[pool]] = float(state.amount0_in + state.amount1_in > 0)  # swapped, not only minted or burnt
        end = at_slot.all_reserves()
        move = np.array([_mid(end[p.address]) - _mid(start[p.address]) for p in self.registry.values()], np.float32)
        move[np.isnan(move)] = 0.0  # an empty range has no price: its features drop the pool too
        return move, hit, at_slot

    def _candidate(self, t: int, rank: int, opp: Opportunity) -> _Candidate:
        graph = self.aggregator.ranker.graph
        pools = [cast(Pool, graph.pools[graph.slots[p]]) for p in opp.pools]  # a ranked pool is in the graph
        reserves = [(pool.reserve_in(True), pool.reserve_in(False)) for pool in pools]  # V3: virtual reserves
        return _Candidate(t, rank, opp, [self.ids[p] for p in opp.pools], reserves)

    def _label(self, c: _Candidate, at_slot: ShardState) -> None:
        """The exact gross profit of the candidate's input against the pools at our slot."""
        amount = c.opp.amount_in
        for pool, z41, fee in zip(c.opp.pools, c.opp.zero_for_one, c.opp.fees_bps):
            if pool in at_slot.v3:
                amount = at_slot.v3[pool].quote_out(z41, amount)
                continue
            r0, r1 = at_slot.reserves[pool]
            amount = amount_out(amount, r0, r1, fee) if z41 else amount_out(amount, r1, r0, fee)
        c.realized = amount - c.opp.amount_in
        c.success = c.realized >= 1  # the executor's minProfit when sending

    def _resolve(self) -> None:
        """Read journaled outcomes of sent candidates and their gas; count disagreements with the labels."""
        for opp_id, c in list(self.awaiting.items()):
            outcome = next((r for r in self.journal.records(opp_id) if isinstance(r, OutcomeRecord)), None)
            if outcome is None:
                continue
            del self.awaiting[opp_id]
            receipt = self.client.call(self.client.w3.eth.get_transaction_receipt, outcome.tx_hash)
            c.sent = STATUS.index(outcome.status)
            c.sent_profit = outcome.realized_profit or 0
            c.gas_paid = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
            if (outcome.status == "landed") != c.success or (c.success and c.sent_profit != c.realized):
                self.mismatches += 1
                print(f"[record] block {c.opp.block}: sent route {outcome.status} with profit {c.sent_profit}, "
                      f"the slot replay said {c.realized}", file=sys.stderr)


def _assemble(meta: dict, chain_blocks: list[int], features: list, moves: list, traded: list,
              candidates: list[_Candidate]) -> Recording:
    n = len(candidates)
    pools = np.full((n, MAX_HOPS), -1, np.int64)
    z41 = np.ones((n, MAX_HOPS), bool)
    fees = np.zeros((n, MAX_HOPS), np.int64)
    amounts = np.zeros((n, MAX_HOPS + 1))
    reserve_in = np.full((n, MAX_HOPS), np.inf)
    for i, c in enumerate(candidates):
        hops = len(c.ids)
        pools[i, :hops] = c.ids
        z41[i, :hops] = c.opp.zero_for_one
        fees[i, :hops] = c.opp.fees_bps
        path = [c.opp.amount_in, *c.opp.amounts]
        amounts[i] = [float(a) for a in path + [path[-1]] * (MAX_HOPS - hops)]
        reserve_in[i, :hops] = [float(r[0] if z else r[1]) for r, z in zip(c.reserves, c.opp.zero_for_one)]

    def col(get, dtype=np.float64) -> np.ndarray:
        return np.array([get(c) for c in candidates], dtype=dtype).reshape(n)

    return Recording(
        meta=meta, blocks=np.array(chain_blocks, np.int64),
        features=np.stack(features).astype(np.float32), next_move=np.stack(moves), next_traded=np.stack(traded),
        cand_t=col(lambda c: c.t, np.int64), cand_rank=col(lambda c: c.rank, np.int64), cand_pools=pools,
        cand_zero_for_one=z41, cand_hops=col(lambda c: len(c.ids), np.int64), cand_fee_bps=fees,
        cand_amounts=amounts, cand_reserve_in=reserve_in, cand_gross=col(lambda c: float(c.opp.gross_profit)),
        cand_gas_cost=col(lambda c: float(c.opp.gas_cost)), cand_net=col(lambda c: float(c.opp.net_profit)),
        cand_p=col(lambda c: c.opp.success_probability), cand_slippage=col(lambda c: float(c.opp.expected_slippage)),
        cand_success=col(lambda c: c.success, bool), cand_realized_gross=col(lambda c: float(c.realized)),
        cand_sent=col(lambda c: c.sent, np.int64), cand_sent_profit=col(lambda c: float(c.sent_profit)),
        cand_gas_paid=col(lambda c: float(c.gas_paid)),
    )
