"""Exact Uniswap-V2 integer math, identical to the pair contracts to the wei.

Fees are in basis points over FEE_DENOMINATOR (10_000): the canonical pair's 997/1000 is
fee_bps=30 and gives the same floor as the contract, since 9970/10000 is the same ratio.
"""
from __future__ import annotations

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
