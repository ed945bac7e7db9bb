"""Uniswap-V2 constant-product pools: exact integer math, identical to the pair contracts to the wei.

Fees are in basis points over FEE_DENOMINATOR (10_000): the canonical pair's 997/1000 is
fee_bps=30 and gives the same floor as the contract, since 9970/10000 is the same ratio.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from scanner.dex.pool import DEAD_MOBIUS, InvalidPool, Mobius, Pool

FEE_DENOMINATOR = 10_000
MAX_RESERVE = 2**112 - 1


def amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int) -> int:
    """Output of swapping `amount_in` into a V2 pool, as `getAmountOut` computes it (0 if impossible)."""
    if amount_in <= 0 or reserve_in <= 0 or reserve_out <= 0:
        return 0
    in_with_fee = amount_in * (FEE_DENOMINATOR - fee_bps)
    return in_with_fee * reserve_out // (reserve_in * FEE_DENOMINATOR + in_with_fee)


def amount_in(amount_out_: int, reserve_in: int, reserve_out: int, fee_bps: int) -> int | None:
    """Smallest input that yields at least `amount_out_`; None when it cannot be had.

    This is the exact minimum the pair's K check accepts: ceil(Rin·out·F / ((Rout−out)·(F−fee))).
    The router's `getAmountIn` computes floor(…) + 1, which overpays by 1 wei when the division
    is exact, so it is not the inverse of `amount_out` that sizing needs.
    """
    if amount_out_ <= 0 or reserve_in <= 0 or amount_out_ >= reserve_out:
        return None
    num = reserve_in * amount_out_ * FEE_DENOMINATOR
    den = (reserve_out - amount_out_) * (FEE_DENOMINATOR - fee_bps)
    return -(-num // den)


@dataclass(eq=False)
class V2Pool(Pool):
    """A Uniswap-V2-style constant-product pool with its DEX's fee in basis points."""

    kind: ClassVar[str] = "uniswap-v2"
    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int
    fee_bps: int = 30

    def __post_init__(self) -> None:
        if self.token0 == self.token1:
            raise InvalidPool(self.address, f"both tokens are {self.token0}")
        if not 0 <= self.fee_bps < FEE_DENOMINATOR:
            raise InvalidPool(self.address, f"fee {self.fee_bps} bps is outside [0, {FEE_DENOMINATOR})")
        self.update(self.reserve0, self.reserve1)

    def reserve_in(self, zero_for_one: bool) -> int:
        return self.reserves(zero_for_one)[0]

    def update(self, reserve0: int, reserve1: int) -> None:
        for name, value in (("reserve0", reserve0), ("reserve1", reserve1)):
            if not 0 <= value <= MAX_RESERVE:
                raise InvalidPool(self.address, f"{name} {value} is outside [0, 2**112)")
        self.reserve0 = reserve0
        self.reserve1 = reserve1

    def reserves(self, zero_for_one: bool) -> tuple[int, int]:
        """(reserve in, reserve out) for a direction."""
        return (self.reserve0, self.reserve1) if zero_for_one else (self.reserve1, self.reserve0)

    def quote_out(self, zero_for_one: bool, amount: int) -> int:
        r_in, r_out = self.reserves(zero_for_one)
        return amount_out(amount, r_in, r_out, self.fee_bps)

    def quote_in(self, zero_for_one: bool, amount_out: int) -> int | None:
        r_in, r_out = self.reserves(zero_for_one)
        return amount_in(amount_out, r_in, r_out, self.fee_bps)

    def max_input(self, zero_for_one: bool) -> int:
        return MAX_RESERVE - self.reserves(zero_for_one)[0]

    def mobius(self, zero_for_one: bool) -> Mobius:
        r_in, r_out = self.reserves(zero_for_one)
        if r_in == 0 or r_out == 0:
            return DEAD_MOBIUS
        gamma = FEE_DENOMINATOR - self.fee_bps
        return gamma * r_out, FEE_DENOMINATOR * r_in, gamma

    def search_floats(self) -> tuple[float, ...]:
        """`Pool.search_floats` without the calls in between: the same numbers as `mobius`."""
        r0, r1 = self.reserve0, self.reserve1
        if r0 == 0 or r1 == 0:
            return 0.0, 1.0, 0.0, float(r0), 0.0, 1.0, 0.0, float(r1)
        gamma = FEE_DENOMINATOR - self.fee_bps
        return (float(gamma * r1), float(FEE_DENOMINATOR * r0), float(gamma), float(r0),
                float(gamma * r0), float(FEE_DENOMINATOR * r1), float(gamma), float(r1))
