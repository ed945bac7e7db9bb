"""The interface every pool kind implements: exact integer quotes for what goes on chain, and a Möbius curve
for the vectorised search.

A direction is `zero_for_one` (token0 in, token1 out) so hot loops never compare addresses.
Graph, sizing and ranking only use `Pool`, so a Uniswap-V3 pool can be added as another
subclass: its exact quotes walk the ticks, and its `mobius` must be a Möbius curve that is never
below its exact output (refinement uses the curve as an upper bound, see `scanner.route.sizing`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

Mobius = tuple[int, int, int]
"""(k, m, n): out(x) = k·x / (m + n·x). Composes along a path like the matrix [[k, 0], [n, m]]."""

DEAD_MOBIUS: Mobius = (0, 1, 0)
"""The curve of a pool that cannot trade: out(x) = 0."""


class InvalidPool(ValueError):
    """A pool that cannot be used, with the pool's address and why."""

    def __init__(self, address: str, reason: str):
        super().__init__(f"pool {address}: {reason}")
        self.address = address
        self.reason = reason


class Pool(ABC):
    """A two-token pool that quotes exact integer swaps from state pushed into it (no I/O)."""

    kind: ClassVar[str]  # the DEX kind of the config ("uniswap-v2", "uniswap-v3")
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
        """Largest input the pool accepts (for V2, the reserve must stay within uint112)."""

    @abstractmethod
    def mobius(self, zero_for_one: bool) -> Mobius:
        """Möbius curve never below `quote_out`; for constant product it is the exact pre-floor output."""

    @abstractmethod
    def update(self, *state: Any, **_: Any) -> None:
        """Replace the pool's state with what the chain reports (V2: reserve0, reserve1; V3: a `V3State`)."""

    @abstractmethod
    def reserve_in(self, zero_for_one: bool) -> int:
        """The (virtual, for V3: at the current price and liquidity) reserve of the token sold:
        what a trade's size is compared with to say how far it moves the pool."""

    def search_floats(self) -> tuple[float, ...]:
        """(k, m, n, reserve in) of the zero-for-one direction, then of the other, as floats: all
        the vectorised search reads of a pool, in one call (a scanner refreshes thousands a block)."""
        out: list[float] = []
        for zero_for_one in (True, False):
            out += [float(v) for v in self.mobius(zero_for_one)]
            out.append(float(self.reserve_in(zero_for_one)))
        return tuple(out)


class V3State(NamedTuple):
    """A V3 pool's swap state as the chain reports it: slot0's price and tick, the in-range
    liquidity, and initialized ticks {tick: (liquidityGross, liquidityNet)}.

    `ticks` is every initialized tick when `replace_ticks`, else only those that changed since
    the last state sent ((0, 0): no longer initialized); values are absolute, so applying the same
    state twice is harmless.
    """

    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks: dict[int, tuple[int, int]]
    replace_ticks: bool = False


@dataclass(frozen=True)
class PoolInfo:
    """A discovered pool. Addresses are lower case so they compare equal to log addresses.

    A V3 pool (`kind` "uniswap-v3") has its fee tier in `fee_bps` (hundredths: 3000 pips = 30),
    its `tick_spacing` and its state in `v3`; its reserve fields are 0.
    """

    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int
    dex: str
    fee_bps: int
    kind: str = "uniswap-v2"
    tick_spacing: int = 0
    v3: V3State | None = None
