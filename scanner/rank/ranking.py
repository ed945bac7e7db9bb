"""Opportunities ranked by expected value, kept current block by block.

`Ranker` holds the pools, their cycle graph and the gas price. A block re-folds only the
cycles through the pools it changed (the others keep their last scores); ranking then sizes
exactly only as many cycles as it takes to prove the top N: it walks candidates in order of a
float upper bound on their expected value and stops once the N-th exact value beats the next
bound. Exact sizings are cached per cycle until one of its pools changes, and do not depend on
gas, so a new gas price only re-prices them.
"""
from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Protocol, cast

import numpy as np

from scanner.dex.pool import Pool, V3State
from scanner.dex.v3 import V3Pool
from scanner.gas.fees import GasModel, gas_cost_in_token
from scanner.route.graph import MAX_HOPS, PAD, TokenGraph
from scanner.route.sizing import Sized, fold, optimum, profit_upper_bound, refine

FLOAT_MARGIN = 1e-12  # relative slack between float bounds and exact values
RISK_CHUNK = 512  # candidates the risk model prices at a time (see `Ranker.ranking`)


def expected_value(success_probability, net_profit, expected_slippage, failure_cost):
    """P·(net − slippage) − (1 − P)·cost of a failed attempt; works on scalars and arrays."""
    return success_probability * (net_profit - expected_slippage) - (1 - success_probability) * failure_cost


@dataclass(frozen=True)
class Opportunity:
    """One sized cycle at one block, with every number that went into its rank.

    Money is in wei of `base_token` unless named otherwise; `eth_per_token` converts it to ETH
    wei so cycles through different base tokens rank on one scale.
    """

    id: str
    block: int
    base_token: str
    tokens: tuple[str, ...]  # path, starting and ending at base_token
    pools: tuple[str, ...]
    zero_for_one: tuple[bool, ...]
    fees_bps: tuple[int, ...]  # a V3 hop's fee tier in bps (3000 pips = 30)
    amount_in: int
    amounts: tuple[int, ...]  # exact output of each hop
    gross_profit: int
    optimality_gap: int  # proven bound on the extra gross profit another input could make; 0 = optimal
    gas_units: int
    gas_price: int  # wei of ETH per gas
    gas_cost: int
    net_profit: int
    failure_cost: int  # gas of a reverted attempt: the executor reverts at its final profit check, after the swaps
    success_probability: float
    expected_slippage: int
    expected_value: float
    eth_per_token: float
    kinds: tuple[str, ...] = ()  # each hop's DEX kind ("uniswap-v2", "uniswap-v3"); () = all V2
    trigger: str = ""  # "" when ranked on the mined state of `block`; else the pending tx hash it backruns

    @property
    def expected_value_eth(self) -> float:
        return self.expected_value * self.eth_per_token

    def with_risk(self, success_probability: float, expected_slippage: int) -> Opportunity:
        """The same trade under another risk estimate (the LSTM's), with its expected value redone."""
        ev = expected_value(success_probability, self.net_profit, expected_slippage, self.failure_cost)
        return replace(self, success_probability=success_probability, expected_slippage=expected_slippage,
                       expected_value=float(ev))


def opportunity_id(block: int, pools: Iterable[str], zero_for_one: Iterable[bool], trigger: str = "") -> str:
    """Stable across processes: the same cycle at the same block (behind the same pending `trigger`)
    always has the same id, and a backrun never shares one with the mined-state opportunity."""
    key = f"{block}|{','.join(pools)}|{''.join('1' if z else '0' for z in zero_for_one)}"
    if trigger:
        key += f"|{trigger}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RiskInputs:
    """A batch of candidate cycles as a risk model sees them. Floats from the continuous
    optimum: good enough to rank, never sent on chain."""

    pools: np.ndarray  # (n, 3) pool slots in the scanner's graph, PAD past a cycle's hops
    zero_for_one: np.ndarray  # (n, 3)
    hops: np.ndarray  # (n,)
    amounts: np.ndarray  # (n, 4) input, then each hop's output (a missing hop repeats its input)
    reserve_in: np.ndarray  # (n, 3) reserve of the token sold at each hop (inf past the hops)
    profit: np.ndarray  # (n,) gross profit, base-token wei


class RiskModel(Protocol):
    """What the LSTM will implement: per candidate, the chance the trade still works when it
    lands and how much the pools will have moved against it by then."""

    def assess(self, batch: RiskInputs) -> tuple[np.ndarray, np.ndarray]:
        """(success probability in [0, 1], expected slippage in base-token wei ≥ 0) per row."""


@dataclass(frozen=True)
class HeuristicRiskModel:
    """Stand-in until the LSTM is trained: each hop is another pool someone may move first, and
    trades that move a pool far are the ones competitors also see.

    P = hop_survival^hops · exp(−impact / impact_scale), impact = the largest input / reserve of
    any hop; expected slippage = slippage_per_hop · hops · gross profit.
    """

    hop_survival: float = 0.9
    impact_scale: float = 0.05
    slippage_per_hop: float = 0.02

    def assess(self, batch: RiskInputs) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # no liquidity at the price: P 0
            impact = np.nan_to_num(batch.amounts[:, :-1] / batch.reserve_in, nan=np.inf).max(axis=1)
            probability = self.hop_survival ** batch.hops * np.exp(-impact / self.impact_scale)
        return probability, self.slippage_per_hop * batch.hops * batch.profit


class _Descending:
    """Indices of `values` from the largest down, ties by index, NaN last (the order of a stable argsort
    of −values), `size` at a time. Each chunk is a partial selection of what is left, so a block that
    prices one chunk of 30,000 candidates sorts 512 of them, not all."""

    def __init__(self, values: np.ndarray, size: int):
        self.values, self.size = values, size
        nan = np.isnan(values)
        self.left, self.nan = np.flatnonzero(~nan), np.flatnonzero(nan)
        self._top: float | None = None

    def __len__(self) -> int:
        return len(self.left) + len(self.nan)

    def top(self) -> float:
        """The first value not yet taken (−inf when none is left)."""
        if self._top is None:
            self._top = float(self.values[self.left].max()) if len(self.left) else np.nan if len(self.nan) else -np.inf
        return self._top

    def take(self) -> np.ndarray:
        """The next `size` indices (fewer at the end), in order."""
        left, size = self.left, self.size
        negated = -self.values[left]
        if len(left) > size:
            kth = np.partition(negated, size - 1)[size - 1]
            better = np.flatnonzero(negated < kth)
            # each part in index order, and no value of one equals a value of the other: the stable sort
            # below breaks ties by index
            chosen = np.concatenate([better, np.flatnonzero(negated == kth)[:size - len(better)]])
        else:
            chosen = np.arange(len(left))
        taken = left[chosen[np.argsort(negated[chosen], kind="stable")]]
        self.left = np.delete(left, chosen)
        if len(taken) < size:  # then NaN, by index
            taken, self.nan = np.concatenate([taken, self.nan[:size - len(taken)]]), self.nan[size - len(taken):]
        self._top = None
        return taken


class Ranker:
    """Pools + cycle graph + gas price, scored incrementally and ranked by expected value.

    `base_tokens` maps each base token to its `token_per_eth` rate (base-token wei per ETH wei;
    Fraction(1) for WETH), which turns the gas bill into the token the profit is counted in.
    """

    def __init__(
        self,
        pools: Iterable[Pool],
        base_tokens: Mapping[str, Fraction],
        gas_price: int,
        gas_model: GasModel = GasModel(),
        risk: RiskModel = HeuristicRiskModel(),
        top_n: int = 20,
        refine_budget: int = 32,
        max_hops: int = MAX_HOPS,
    ):
        self.graph = TokenGraph(base_tokens, pools, max_hops)
        self.token_per_eth = [Fraction(base_tokens[t]) for t in self.graph.base_tokens]
        self.gas_price = gas_price
        self.gas_model = gas_model
        self.risk = risk
        self.top_n = top_n
        self.refine_budget = refine_budget
        self.block = 0
        self._reset()

    # -- state --------------------------------------------------------------------------------

    def add_pool(self, pool: Pool) -> None:
        """Watch a new pool (raises InvalidPool naming it); its cycles are scored at once."""
        self.graph.add_pool(pool)
        self._reset()

    def set_gas_model(self, gas_model: GasModel) -> None:
        """Price routes with a calibrated model from now on (the cached sizings stay valid)."""
        self.gas_model = gas_model
        self._gas_units = self._route_gas()
        self._gas_in_token = self._gas_units * self._token_per_eth
        self._bound_per_gas = self._bound / self._gas_in_token

    def remove_pool(self, address: str) -> None:
        """Stop watching a pool (KeyError naming an unknown one); its cycles go with it."""
        self.graph.remove_pool(address)
        self._reset()

    def apply_updates(self, updates: Mapping[str, tuple[int, ...]], block: int,
                      gas_price: int | None = None) -> list[Opportunity]:
        """Push new pool states (address → the pool's `update` arguments) seen at `block`,
        re-score only the cycles through them, and return the top N."""
        slots = []
        for address, state in updates.items():
            slot = self.graph.slots.get(address)
            if slot is None:
                raise KeyError(f"pool {address} is not watched by this scanner")
            cast(Pool, self.graph.pools[slot]).update(*state)  # watched slots always hold a pool
            slots.append(slot)
        self._set_curves(slots)
        self._rescore(self.graph.cycles_of(np.asarray(slots, dtype=np.int64)))
        if gas_price is not None:
            self.gas_price = gas_price
        return self.ranking(block)

    def what_if(self, updates: Mapping[str, tuple], block: int, trigger: str) -> list[Opportunity]:
        """The top N cycles through the pools in `updates` as if those states held, each marked with
        `trigger` (the pending transaction that would make them); then every pool, curve, score and
        cached sizing is as it was, so the mined state is never touched by a pending one."""
        slots = []
        for address in updates:
            slot = self.graph.slots.get(address)
            if slot is None:
                raise KeyError(f"pool {address} is not watched by this scanner")
            slots.append(slot)
        pools = [cast(Pool, self.graph.pools[slot]) for slot in slots]
        saved_states = [_state_of(pool, state) for pool, state in zip(pools, updates.values())]
        rows = self.graph.cycles_of(np.asarray(slots, dtype=np.int64))
        edges = np.asarray([e for slot in slots for e in (2 * slot, 2 * slot + 1)], dtype=np.int64)
        curves = [a[edges].copy() for a in (self._k, self._m, self._n, self._reserve_in)]
        scored = (self._x, self._profit, self._bound, self._bound_per_gas)
        scores = [a[rows].copy() for a in scored]
        sized = {r: self._sized[r] for r in rows.tolist() if r in self._sized}
        try:
            for pool, state in zip(pools, updates.values()):
                pool.update(*state)
            self._set_curves(slots)
            self._rescore(rows)
            return self.ranking(block, within=rows, trigger=trigger)
        finally:
            for pool, state in zip(pools, saved_states):
                pool.update(*state)
            for a, saved in zip((self._k, self._m, self._n, self._reserve_in), curves):
                a[edges] = saved
            for a, saved in zip(scored, scores):
                a[rows] = saved
            for r in rows.tolist():
                self._sized.pop(r, None)
            self._sized.update(sized)

    def full_rescan(self, block: int | None = None) -> list[Opportunity]:
        """Score every cycle from scratch and return the top N (what `apply_updates` must match)."""
        self._reset()
        return self.ranking(self.block if block is None else block)

    def _reset(self) -> None:
        graph = self.graph
        self._edges = graph.cycle_edges
        # per directed edge 2·slot + (0 if zero_for_one else 1); the extra last entry is the
        # identity hop that PAD (-1) gathers
        size = 2 * len(graph.pools) + 1
        self._k, self._m, self._n = np.ones(size), np.ones(size), np.zeros(size)
        self._reserve_in = np.full(size, np.inf)
        self._set_curves([slot for slot, pool in enumerate(graph.pools) if pool is not None])
        self._gas_units = self._route_gas()
        rate = np.array([float(r) for r in self.token_per_eth])[graph.cycle_base]
        self._token_per_eth = rate
        self._gas_in_token = self._gas_units * rate  # a cycle's gas bill in base-token wei per wei of gas price
        self._eth_per_token = 1.0 / rate
        self._x = np.zeros(len(graph))
        self._profit = np.zeros(len(graph))
        self._bound = np.zeros(len(graph))
        self._bound_per_gas = np.zeros(len(graph))  # the gas price at which the bound just pays for the gas
        self._sized: dict[int, Sized | None] = {}
        self._hit = np.zeros(len(graph), dtype=bool)
        self._rescore(np.arange(len(graph)))

    def _route_gas(self) -> np.ndarray:
        """Each cycle's gas units under the gas model: its hops, and how many of them are V3."""
        graph = self.graph
        is_v3 = np.zeros(len(graph.pools) + 1, dtype=np.int64)  # the extra last entry is what PAD (-1) gathers
        is_v3[:-1] = [pool is not None and pool.kind == "uniswap-v3" for pool in graph.pools]
        v3_hops = is_v3[graph.cycle_pools].sum(axis=1) if len(graph) else np.zeros(0, dtype=np.int64)
        model = self.gas_model
        return model.base + model.per_hop * graph.cycle_hops.astype(np.int64) + model.v3_extra * v3_hops

    def _set_curves(self, slots: list[int]) -> None:
        pools = self.graph.pools
        table = np.array([cast(Pool, pools[slot]).search_floats() for slot in slots],  # live slots only
                         dtype=np.float64).reshape(len(slots) * 2, 4)
        edges = (2 * np.asarray(slots, dtype=np.int64)[:, None] + np.arange(2)).ravel()
        self._k[edges], self._m[edges], self._n[edges], self._reserve_in[edges] = table.T

    def _candidates(self, within: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The rows (of all cycles, or of `within`) whose bound beats their gas cost, and that cost.

        One comparison per cycle against the gas price its bound can pay (kept per cycle as it is
        rescored, slightly loose), then the exact `bound > cost` on the few left: the same rows as
        comparing every cycle's bound with its cost, without computing every cycle's cost."""
        loose = float(self.gas_price) * (1 - FLOAT_MARGIN) * (1 - 1e-9)
        if within is None:
            rows = np.flatnonzero(self._bound_per_gas > loose)
        else:
            rows = within[self._bound_per_gas[within] > loose]
        cost = self._gas_in_token[rows] * (float(self.gas_price) * (1 - FLOAT_MARGIN))
        keep = self._bound[rows] > cost
        return rows[keep], cost[keep]

    def _rescore(self, rows: np.ndarray) -> None:
        """Re-fold the given cycles and forget their exact sizings."""
        edges = np.take(self._edges, rows, axis=0)  # whole rows: ~5x faster than fancy indexing on 100k+ rows
        x, profit = optimum(*fold(self._k[edges], self._m[edges], self._n[edges]))
        self._x[rows], self._profit[rows] = x, profit
        self._bound[rows] = bound = profit_upper_bound(x, profit)
        self._bound_per_gas[rows] = bound / self._gas_in_token[rows]
        if self._sized:
            cached = np.fromiter(self._sized, dtype=np.int64, count=len(self._sized))
            self._hit[rows] = True  # a scratch mask, all False between calls: no allocation per block
            stale = cached[self._hit[cached]]
            self._hit[rows] = False
            for row in stale.tolist():
                del self._sized[row]

    # -- ranking ------------------------------------------------------------------------------

    def ranking(self, block: int, *, within: np.ndarray | None = None, trigger: str = "") -> list[Opportunity]:
        """The top N opportunities by expected value (only positive net profit and value), among the
        cycles `within` when given (a pending transaction's, marked with its `trigger`)."""
        if within is None:
            self.block = block
        rows, cost = self._candidates(within)
        if len(rows) == 0:
            return []
        # The risk model prices candidates in chunks, the best optimistic value first (bound net of gas at
        # P = 1 without slippage: no expected value exceeds it), and only while an unpriced one could still
        # be visited: candidates are visited in descending value bound as if all were priced, so the
        # top N is the same, with thousands of 4-hop candidates a block left unpriced.
        optimistic = (self._bound[rows] - cost) * self._eth_per_token[rows]
        by_optimism = _Descending(optimistic, RISK_CHUNK)
        probability, slippage, bound = np.zeros(len(rows)), np.zeros(len(rows)), np.zeros(len(rows))
        queue: list[tuple[float, int]] = []  # priced candidates with a positive bound: (-bound, index)
        best: list[tuple[float, int, Opportunity]] = []  # min-heap on (value in ETH, -row)
        while True:
            ceiling = by_optimism.top()
            full = len(best) == self.top_n
            if len(by_optimism) and (not queue or -queue[0][0] < ceiling) and not (full and best[0][0] > ceiling):
                chunk = by_optimism.take()
                p, slip = self.risk.assess(self._risk_inputs(rows[chunk]))
                slip = np.rint(slip)  # whole wei, so bound and exact value subtract the same amount
                value = expected_value(p, self._bound[rows[chunk]] - cost[chunk], slip, cost[chunk])
                probability[chunk], slippage[chunk], bound[chunk] = p, slip, value * self._eth_per_token[rows[chunk]]
                for i in chunk[bound[chunk] > 0].tolist():
                    heapq.heappush(queue, (-float(bound[i]), i))
                continue
            if not queue:
                break
            i = heapq.heappop(queue)[1]
            if full and best[0][0] > bound[i]:
                break
            row = int(rows[i])
            opportunity = self._opportunity(row, block, float(probability[i]), int(slippage[i]), trigger)
            if opportunity is None:
                continue
            entry = (opportunity.expected_value_eth, -row, opportunity)
            if len(best) < self.top_n:
                heapq.heappush(best, entry)
            elif entry[:2] > best[0][:2]:
                heapq.heapreplace(best, entry)
        return [entry[2] for entry in sorted(best, key=lambda e: e[:2], reverse=True)]

    def _sizing(self, row: int) -> Sized | None:
        if row not in self._sized:
            self._sized[row] = refine(self.graph.hops_of(row), float(self._x[row]), self.refine_budget)
        return self._sized[row]

    def _opportunity(self, row: int, block: int, probability: float, slippage: int, trigger: str = "") -> Opportunity | None:
        sized = self._sizing(row)
        if sized is None:
            return None
        units = int(self._gas_units[row])
        rate = self.token_per_eth[int(self.graph.cycle_base[row])]
        gas_cost = gas_cost_in_token(units, self.gas_price, rate)
        net = sized.gross_profit - gas_cost
        ev = float(expected_value(probability, net, slippage, gas_cost))
        if net <= 0 or ev <= 0:
            return None
        hops = self.graph.hops_of(row)
        pools = tuple(pool.address for pool, _ in hops)
        directions = tuple(z41 for _, z41 in hops)
        tokens = self.graph.tokens_of(row)
        return Opportunity(
            id=opportunity_id(block, pools, directions, trigger),
            block=block,
            base_token=tokens[0],
            tokens=tokens,
            pools=pools,
            zero_for_one=directions,
            fees_bps=tuple(pool.fee_bps for pool, _ in hops),
            amount_in=sized.amount_in,
            amounts=sized.amounts,
            gross_profit=sized.gross_profit,
            optimality_gap=sized.gap,
            gas_units=units,
            gas_price=self.gas_price,
            gas_cost=gas_cost,
            net_profit=net,
            failure_cost=gas_cost,
            success_probability=probability,
            expected_slippage=slippage,
            expected_value=ev,
            eth_per_token=float(self._eth_per_token[row]),
            kinds=tuple(pool.kind for pool, _ in hops),
            trigger=trigger,
        )

    def _risk_inputs(self, rows: np.ndarray) -> RiskInputs:
        edges = np.take(self._edges, rows, axis=0)
        k, m, n = self._k[edges], self._m[edges], self._n[edges]
        amounts = np.empty((len(rows), edges.shape[1] + 1))
        amounts[:, 0] = self._x[rows]
        for h in range(edges.shape[1]):
            y = amounts[:, h]
            with np.errstate(divide="ignore", invalid="ignore"):  # a dead hop (k = m = 0) gives nothing
                amounts[:, h + 1] = np.nan_to_num(k[:, h] * y / (m[:, h] + n[:, h] * y))
        return RiskInputs(
            pools=self.graph.cycle_pools[rows],
            zero_for_one=self.graph.cycle_zero_for_one[rows],
            hops=self.graph.cycle_hops[rows].astype(np.int64),
            amounts=amounts,
            reserve_in=np.where(edges == PAD, np.inf, self._reserve_in[edges]),
            profit=self._profit[rows],
        )


def _state_of(pool: Pool, update: tuple) -> tuple:
    """The `update` arguments that put `pool` back as it is now: a V3 pool's slot0 and liquidity (all
    its ticks too when `update`, a `V3State`, changes ticks), or any other pool's reserves."""
    if isinstance(pool, V3Pool):
        if len(update) > 3 and (update[3] or update[4]):
            return pool.state()
        return V3State(pool.sqrt_price_x96, pool.tick, pool.liquidity, {})
    return (pool.reserve_in(True), pool.reserve_in(False))
