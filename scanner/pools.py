"""Pools behind one interface: exact integer quotes for what goes on chain, and a Möbius curve
for the vectorised search.

A direction is `zero_for_one` (token0 in, token1 out) so hot loops never compare addresses.
Graph, sizing and ranking only use `Pool`, so a Uniswap-V3 pool can be added as another
subclass: its exact quotes walk the ticks, and its `curve` must be a Möbius curve that is never
below its exact output (refinement uses the curve as an upper bound, see `scanner.sizing`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from scanner import amm

Curve = tuple[int, int, int]
"""(k, m, n): out(x) = k·x / (m + n·x). Composes along a path like the matrix [[k, 0], [n, m]]."""

DEAD_CURVE: Curve = (0, 1, 0)
"""The curve of a pool that cannot trade: out(x) = 0."""


class InvalidPool(ValueError):
    """A pool that cannot be used, with the pool's address and why."""

    def __init__(self, address: str, reason: str):
        super().__init__(f"pool {address}: {reason}")
        self.address = address
        self.reason = reason


class Pool(ABC):
    """A two-token pool that quotes exact integer swaps from state pushed into it (no I/O)."""

    address: str
    token0: str
    token1: str
    fee_bps: int

    def zero_for_one(self, token_in: str) -> bool:
        """The direction that sells `token_in`."""
        if token_in == self.token0:
            return True
        if token_in == self.token1:
            return False
        raise InvalidPool(self.address, f"token {token_in} is not in the pool ({self.token0}, {self.token1})")

    def token_out(self, zero_for_one: bool) -> str:
        return self.token1 if zero_for_one else self.token0

    def amount_out(self, token_in: str, amount: int) -> int:
        """Exact output of selling `amount` of `token_in`, to the wei."""
        return self.quote_out(self.zero_for_one(token_in), amount)

    @abstractmethod
    def quote_out(self, zero_for_one: bool, amount: int) -> int:
        """Exact output for `amount` in (0 when the swap is impossible)."""

    @abstractmethod
    def quote_in(self, zero_for_one: bool, amount_out: int) -> int | None:
        """Smallest input whose exact output is at least `amount_out`; None when unreachable."""

    @abstractmethod
    def max_input(self, zero_for_one: bool) -> int:
        """Largest input the pool accepts (the reserve must stay within uint112)."""

    @abstractmethod
    def curve(self, zero_for_one: bool) -> Curve:
        """Möbius curve never below `quote_out`; for constant product it is the exact pre-floor output."""

    @abstractmethod
    def update(self, *state: int) -> None:
        """Replace the pool's state with what the chain reports (for V2: reserve0, reserve1)."""


@dataclass(eq=False)
class V2Pool(Pool):
    """A Uniswap-V2-style constant-product pool with its DEX's fee in basis points."""

    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int
    fee_bps: int = 30

    def __post_init__(self) -> None:
        if self.token0 == self.token1:
            raise InvalidPool(self.address, f"both tokens are {self.token0}")
        if not 0 <= self.fee_bps < amm.FEE_DENOMINATOR:
            raise InvalidPool(self.address, f"fee {self.fee_bps} bps is outside [0, {amm.FEE_DENOMINATOR})")
        self.update(self.reserve0, self.reserve1)

    def update(self, reserve0: int, reserve1: int) -> None:
        for name, value in (("reserve0", reserve0), ("reserve1", reserve1)):
            if not 0 <= value <= amm.MAX_RESERVE:
                raise InvalidPool(self.address, f"{name} {value} is outside [0, 2**112)")
        self.reserve0 = reserve0
        self.reserve1 = reserve1

    def reserves(self, zero_for_one: bool) -> tuple[int, int]:
        """(reserve in, reserve out) for a direction."""
        return (self.reserve0, self.reserve1) if zero_for_one else (self.reserve1, self.reserve0)

    def quote_out(self, zero_for_one: bool, amount: int) -> int:
        r_in, r_out = self.reserves(zero_for_one)
        return amm.amount_out(amount, r_in, r_out, self.fee_bps)

    def quote_in(self, zero_for_one: bool, amount_out: int) -> int | None:
        r_in, r_out = self.reserves(zero_for_one)
        return amm.amount_in(amount_out, r_in, r_out, self.fee_bps)

    def max_input(self, zero_for_one: bool) -> int:
        return amm.MAX_RESERVE - self.reserves(zero_for_one)[0]

    def curve(self, zero_for_one: bool) -> Curve:
        r_in, r_out = self.reserves(zero_for_one)
        if r_in == 0 or r_out == 0:
            return DEAD_CURVE
        gamma = amm.FEE_DENOMINATOR - self.fee_bps
        return gamma * r_out, amm.FEE_DENOMINATOR * r_in, gamma
