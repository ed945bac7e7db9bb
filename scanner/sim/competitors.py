"""Competing arbitrageurs of the simulated market.

Each block they price every pool (V2 and V3) against the fair price (the oracle's, as searchers watch a CEX),
and plan to close the gaps that pay for their gas times a margin drawn per pool and block, the most
profitable first, one pool per idle competitor, after a random latency. Their tips are drawn above
the submitter's, so an opportunity can be gone before our transaction lands.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from scanner.dex.v2 import FEE_DENOMINATOR, amount_out
from scanner.dex.v3 import MAX_SQRT_RATIO, MIN_SQRT_RATIO, V3Pool
from scanner.sim.spec import GWEI, WAD, DeployedPool, DeployedV3Pool, MarketSpec
from scanner.sim.v3_market import sqrt_price_x96


@dataclass
class PlannedArb:
    due_block: int
    pool_index: int
    account: str
    tip: int


@dataclass(frozen=True)
class ClosingTrade:
    """The swap that moves a pool's mid price onto the fair price."""

    zero_for_one: bool
    size: int
    expected_out: int
    profit_wei: float  # in base-token wei at fair prices
    sqrt_price_limit_x96: int = 0  # a V3 swap stops at the fair price (0 for a V2 pair)


def _target(symbol0: str, symbol1: str, fair: dict[str, float], decimals: dict[str, int]) -> float:
    """The fair mid price in raw units of token1 per raw unit of token0."""
    return fair[symbol0] / fair[symbol1] * 10 ** decimals[symbol1] / 10 ** decimals[symbol0]


def _trade(zero_for_one: bool, size: int, expected: int, symbols: tuple[str, str], fair: dict[str, float],
           decimals: dict[str, int], limit: int = 0) -> ClosingTrade:
    sym_in, sym_out = symbols if zero_for_one else symbols[::-1]
    profit = (expected / 10 ** decimals[sym_out] * fair[sym_out] - size / 10 ** decimals[sym_in] * fair[sym_in]) * WAD
    return ClosingTrade(zero_for_one, size, expected, profit, limit)


def closing_trade(pool: DeployedPool, reserves: tuple[int, int], fair: dict[str, float],
                  decimals: dict[str, int]) -> ClosingTrade | None:
    """The trade that closes `pool`'s gap to the fair price; None when it is already there."""
    r0, r1 = reserves
    gamma = (FEE_DENOMINATOR - pool.fee_bps) / FEE_DENOMINATOR
    target = _target(pool.symbol0, pool.symbol1, fair, decimals)
    k = r0 * r1
    if r1 / r0 > target:  # token0 too expensive in the pool: sell token0 into it
        zero_for_one, r_in, new_in = True, r0, math.sqrt(k / target)
    else:
        zero_for_one, r_in, new_in = False, r1, math.sqrt(k * target)
    size = int((new_in - r_in) / gamma)
    if size <= 0:
        return None
    expected = amount_out(size, r_in, r1 if zero_for_one else r0, pool.fee_bps)
    return _trade(zero_for_one, size, expected, (pool.symbol0, pool.symbol1), fair, decimals)


def closing_trade_v3(pool: DeployedV3Pool, state: V3Pool, fair: dict[str, float],
                     decimals: dict[str, int]) -> ClosingTrade | None:
    """The V3 swap that moves `state` onto the fair price, tick crossings included: an exact input
    as large as the swap to the fair price takes, limited at that price so that the pool itself stops
    it there (a pool that moved first takes less, or reverts once past the limit). None when the pool
    is already there or nothing is in range on the way."""
    limit = min(max(sqrt_price_x96(Fraction(_target(pool.symbol0, pool.symbol1, fair, decimals))), MIN_SQRT_RATIO + 1),
                MAX_SQRT_RATIO - 1)
    if limit == state.sqrt_price_x96:
        return None
    zero_for_one = limit < state.sqrt_price_x96
    result = state.swap(zero_for_one, 2**200, limit)
    size, out = (result.amount0, -result.amount1) if zero_for_one else (result.amount1, -result.amount0)
    if size <= 0 or out <= 0:
        return None
    return _trade(zero_for_one, size, out, (pool.symbol0, pool.symbol1), fair, decimals, limit)


class Competitors:
    """The competitors' plans from one block to the next; the market sends what falls due."""

    def __init__(self, accounts: Sequence[str], spec: MarketSpec, rng: np.random.Generator, gas_used: int) -> None:
        self.accounts = list(accounts)
        self.spec = spec
        self.rng = rng
        self.gas_used = gas_used  # what a closing swap burns: their cost estimate
        self.pending: list[PlannedArb] = []

    def schedule(self, mined: int, base_fee: int, trades: Sequence[ClosingTrade | None]) -> None:
        """Plan the gaps worth closing after block `mined`, given each pool's closing trade now."""
        spec, rng = self.spec, self.rng
        planned = {a.pool_index for a in self.pending}
        idle = [a for a in self.accounts if a not in {p.account for p in self.pending}]
        worth = []
        for i, trade in enumerate(trades):
            tip = self.size_tip(trade.profit_wei) if spec.mempool and trade is not None \
                else int(rng.uniform(*spec.arb_tip_gwei) * GWEI)
            hurdle = rng.uniform(*spec.arb_profit_multiple) * self.gas_used * (base_fee + tip)
            if i not in planned and trade is not None and trade.profit_wei > hurdle:
                worth.append((trade.profit_wei, i, tip))
        for (_, i, tip), account in zip(sorted(worth, reverse=True), rng.permutation(idle)):
            latency = int(rng.geometric(1 / (1 + spec.arb_latency_mean_blocks))) - 1
            self.pending.append(PlannedArb(mined + 1 + latency, i, str(account), tip))

    def size_tip(self, profit_wei: float) -> int:
        """Mempool mode's bid: a random share of the profit per unit of gas, so a bigger opportunity
        draws a higher tip (the bid curve a tip-bidding model has to learn)."""
        return max(1, int(self.rng.uniform(*self.spec.bid_share) * max(profit_wei, 0.0) / self.gas_used))

    def backrun(self, trade: ClosingTrade | None, trigger_tip: int, base_fee: int, busy: set[str]) -> tuple[str, int] | None:
        """Whether an idle competitor backruns a pending swap whose post-swap closing trade is `trade`:
        (account, tip) or None. The tip stays below the trigger's, so the fee-ordered block runs the
        trigger first; the competitor goes only when that still pays its gas times its margin."""
        spec, rng = self.spec, self.rng
        idle = [a for a in self.accounts if a not in busy]
        if trade is None or not idle or rng.random() >= spec.backrun_prob:
            return None
        tip = min(self.size_tip(trade.profit_wei), trigger_tip - 1)
        if tip <= 0 or trade.profit_wei <= rng.uniform(*spec.arb_profit_multiple) * self.gas_used * (base_fee + tip):
            return None
        return str(idle[int(rng.integers(len(idle)))]), tip

    def due(self, number: int, trade_of: Callable[[int], ClosingTrade | None]) -> list[tuple[PlannedArb, ClosingTrade]]:
        """The plans due in block `number` (one per competitor; the rest wait a block), each with the
        trade that closes its pool's gap now, `trade_of(pool_index)` (a gap already closed is dropped)."""
        due, busy = [], set()
        for a in sorted(self.pending, key=lambda a: a.due_block):
            if a.due_block <= number and a.account not in busy:
                due.append(a)
                busy.add(a.account)
        self.pending = [a for a in self.pending if a not in due]
        out = []
        for a in due:
            trade = trade_of(a.pool_index)
            if trade is not None:
                out.append((a, trade))
        return out
