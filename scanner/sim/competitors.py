"""Competing arbitrageurs of the simulated market.

Each block they price every pool against the fair price (the oracle's, as searchers watch a CEX),
and plan to close the gaps that pay for their gas times a margin drawn per pool and block, the most
profitable first, one pool per idle competitor, after a random latency. Their tips are drawn above
the submitter's, so an opportunity can be gone before our transaction lands.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scanner.dex.v2 import FEE_DENOMINATOR, amount_out
from scanner.sim.spec import GWEI, WAD, DeployedPool, MarketSpec


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


def closing_trade(pool: DeployedPool, reserves: tuple[int, int], fair: dict[str, float],
                  decimals: dict[str, int]) -> ClosingTrade | None:
    """The trade that closes `pool`'s gap to the fair price; None when it is already there."""
    r0, r1 = reserves
    gamma = (FEE_DENOMINATOR - pool.fee_bps) / FEE_DENOMINATOR
    # Target mid price in raw units of token1 per token0; trade so the pool lands on it.
    target = fair[pool.symbol0] / fair[pool.symbol1] * 10 ** decimals[pool.symbol1] / 10 ** decimals[pool.symbol0]
    k = r0 * r1
    if r1 / r0 > target:  # token0 too expensive in the pool: sell token0 into it
        zero_for_one, r_in, new_in = True, r0, math.sqrt(k / target)
    else:
        zero_for_one, r_in, new_in = False, r1, math.sqrt(k * target)
    size = int((new_in - r_in) / gamma)
    if size <= 0:
        return None
    expected = amount_out(size, r_in, r1 if zero_for_one else r0, pool.fee_bps)
    sym_in, sym_out = (pool.symbol0, pool.symbol1) if zero_for_one else (pool.symbol1, pool.symbol0)
    profit = (expected / 10 ** decimals[sym_out] * fair[sym_out] - size / 10 ** decimals[sym_in] * fair[sym_in]) * WAD
    return ClosingTrade(zero_for_one, size, expected, profit)


class Competitors:
    """The competitors' plans from one block to the next; the market sends what falls due."""

    def __init__(self, accounts: Sequence[str], spec: MarketSpec, rng: np.random.Generator, gas_used: int) -> None:
        self.accounts = list(accounts)
        self.spec = spec
        self.rng = rng
        self.gas_used = gas_used  # what a closing swap burns: their cost estimate
        self.pending: list[PlannedArb] = []

    def schedule(self, mined: int, base_fee: int, pools: Sequence[DeployedPool], reserves: Sequence[tuple[int, int]],
                 fair: dict[str, float], decimals: dict[str, int]) -> None:
        """Plan the gaps worth closing after block `mined`."""
        spec, rng = self.spec, self.rng
        planned = {a.pool_index for a in self.pending}
        idle = [a for a in self.accounts if a not in {p.account for p in self.pending}]
        worth = []
        for i in range(len(pools)):
            tip = int(rng.uniform(*spec.arb_tip_gwei) * GWEI)
            hurdle = rng.uniform(*spec.arb_profit_multiple) * self.gas_used * (base_fee + tip)
            trade = closing_trade(pools[i], reserves[i], fair, decimals)
            if i not in planned and trade is not None and trade.profit_wei > hurdle:
                worth.append((trade.profit_wei, i, tip))
        for (_, i, tip), account in zip(sorted(worth, reverse=True), rng.permutation(idle)):
            latency = int(rng.geometric(1 / (1 + spec.arb_latency_mean_blocks))) - 1
            self.pending.append(PlannedArb(mined + 1 + latency, i, str(account), tip))

    def due(self, number: int, pools: Sequence[DeployedPool], reserves: Sequence[tuple[int, int]],
            fair: dict[str, float], decimals: dict[str, int]) -> list[tuple[PlannedArb, ClosingTrade]]:
        """The plans due in block `number` (one per competitor; the rest wait a block), each with the
        trade that closes its pool's gap now (a gap already closed is dropped)."""
        due, busy = [], set()
        for a in sorted(self.pending, key=lambda a: a.due_block):
            if a.due_block <= number and a.account not in busy:
                due.append(a)
                busy.add(a.account)
        self.pending = [a for a in self.pending if a not in due]
        out = []
        for a in due:
            trade = closing_trade(pools[a.pool_index], reserves[a.pool_index], fair, decimals)
            if trade is not None:
                out.append((a, trade))
        return out
