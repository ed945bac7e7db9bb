"""How much to trade around a cycle: a closed form over all cycles at once, then an exact
integer search for the one that is sent.

Fast path (floats, search only). Every constant-product hop is out(x) = k·x / (m + n·x) with
k = γ·Rout, m = Rin, n = γ (scaled by the fee denominator to stay integral). Composing two such
maps gives another: (k, m, n)∘… composes like [[k, 0], [n, m]], so a whole cycle folds into one
virtual pool K·x / (M + N·x). Its profit K·x/(M + N·x) − x peaks at x* = (√(K·M) − M)/N with
value (√K − √M)²/N, and is positive only when K > M.

Exact path (integers, what goes on chain). The integer profit f(x) = g(x) − x, with g the
chain of floored hop outputs, is a step function minus a line, so it is jagged: one unit of a
6- or 8-decimal middle token is worth ~1e8–1e11 wei of the base token, and a scan of a few
inputs around x* can miss the best step. Two facts make the search exact and short:

1. Pick any hop k and group inputs by that hop's integer output y. Within a group the later
   hops see the same y, so the output is fixed and profit falls with x: the best input of the
   group is the smallest one, A_k(y), which the exact inverse quotes (`Pool.quote_in`) give.
   So the optimum is max over integers y of f(A_k(y)), and enumerating the hop whose output
   token is coarsest skips the big jumps entirely.
2. f(A_k(y)) ≤ Φ(y) = G_after(y) − G_upto⁻¹(y), the continuous profit of reaching y, because
   floors only lose and ceilings only add. Φ is concave, so walking y outward from the
   continuous optimum in both directions and stopping each side once Φ(y) < the best exact
   profit found + 1 (profits are integers) proves that nothing further out can do better.
   Φ is compared in exact rationals.

The walk is capped (`budget` points on each side); when the cap stops it, the result carries
`gap`, a proven bound on how much more the exact optimum could make (0: proven optimal). With
one coarse token (or none) the walk ends within a few points. The cap bites when two middle
tokens are coarse (USDC → USDT): the other one's rounding leaves a jagged top up to one of its
units (~3e8 wei) deep and thousands of points wide.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from math import isqrt

import numpy as np

from scanner.dex.pool import Mobius, Pool

IDENTITY: Mobius = (1, 1, 0)

Hop = tuple[Pool, bool]  # (pool, zero_for_one)


# -- fast path: vectorised closed form ---------------------------------------------------------


def fold(k: np.ndarray, m: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compose per-hop curves, arrays of shape (cycles, hops), into one (K, M, N) per cycle."""
    big_k, big_m, big_n = k[:, 0], m[:, 0], n[:, 0]
    for h in range(1, k.shape[1]):
        big_n = m[:, h] * big_n + n[:, h] * big_k
        big_k = big_k * k[:, h]
        big_m = big_m * m[:, h]
    return big_k, big_m, big_n


def optimum(big_k: np.ndarray, big_m: np.ndarray, big_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuous optimal input x* and profit (√K − √M)²/N per cycle; both 0 where K ≤ M."""
    profitable = (big_k > big_m) & (big_n > 0)
    root_k, root_m = np.sqrt(big_k), np.sqrt(big_m)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(profitable, root_m * (root_k - root_m) / big_n, 0.0)
        profit = np.where(profitable, (root_k - root_m) ** 2 / big_n, 0.0)
    return x, profit


def profit_upper_bound(x: np.ndarray, profit: np.ndarray) -> np.ndarray:
    """A float bound that the exact integer profit of the cycle cannot exceed.

    Floors only lose, so the exact profit is at most the continuous one; the margin covers the
    float error of the closed form, which scales with the amounts (output = x* + profit).
    """
    return np.where(profit > 0, profit + 1e-12 * (x + 2 * profit) + 1.0, 0.0)


# -- exact path: integer refinement ----------------------------------------------------------


@dataclass(frozen=True)
class Sized:
    """The exact trade around one cycle: every amount is what the pools' integer math gives."""

    amount_in: int
    amounts: tuple[int, ...]  # output of each hop; the last is what returns in the base token
    gross_profit: int  # amounts[-1] − amount_in, > 0
    gap: int  # proven bound on the extra profit the exact optimum could make; 0 = optimal


def compose(first: Mobius, second: Mobius) -> Mobius:
    """The curve of `first` then `second`."""
    k1, m1, n1 = first
    k2, m2, n2 = second
    return k1 * k2, m1 * m2, m2 * n1 + n2 * k1


def _compose_all(curves: Sequence[Mobius]) -> Mobius:
    out = IDENTITY
    for c in curves:
        out = compose(out, c)
    return out


def forward(hops: Sequence[Hop], amount_in: int) -> list[int]:
    """Exact output of every hop for `amount_in`."""
    amounts = []
    amount = amount_in
    for pool, z41 in hops:
        amount = pool.quote_out(z41, amount)
        amounts.append(amount)
    return amounts


def _smallest_input(hops: Sequence[Hop], amount_out: int) -> int | None:
    """Smallest input whose exact output through `hops` is at least `amount_out` (None: unreachable)."""
    amount = amount_out
    for pool, z41 in reversed(hops):
        needed = pool.quote_in(z41, amount)
        if needed is None:
            return None
        amount = needed
    return amount


def _input_cap(hops: Sequence[Hop]) -> int:
    """Largest cycle input that keeps every hop's input within what its pool accepts."""
    cap = hops[0][0].max_input(hops[0][1])
    for j in range(1, len(hops)):
        pool, z41 = hops[j]
        first_too_big = _smallest_input(hops[:j], pool.max_input(z41) + 1)
        if first_too_big is not None:
            cap = min(cap, first_too_big - 1)
    return cap


def _coarsest_hop(curves: Sequence[Mobius], x: float) -> int:
    """The hop whose output unit is worth the most input at x (0: the input itself)."""
    best, best_slope, slope, amount = 0, 1.0, 1.0, x
    for j, (ki, mi, ni) in enumerate(curves[:-1], start=1):
        k, m, n = float(ki), float(mi), float(ni)
        denominator = m + n * amount
        slope *= k * m / (denominator * denominator)
        amount = k * amount / denominator
        if slope < best_slope:
            best, best_slope = j, slope
    return best


class _Bound:
    """Φ(y) = G_after(y) − G_upto⁻¹(y) as an exact fraction: the most any input reaching y can earn."""

    def __init__(self, upto: Mobius, after: Mobius):
        self.upto, self.after = upto, after

    def fraction(self, y: int) -> tuple[int, int] | None:
        """(numerator, denominator > 0) of Φ(y), or None where y is beyond reach."""
        ku, mu, nu = self.upto
        ka, ma, na = self.after
        reach = ku - nu * y  # G_upto⁻¹(y) = mu·y / reach
        if reach <= 0:
            return None
        spread = ma + na * y
        return ka * y * reach - mu * y * spread, spread * reach

    def admits(self, y: int, profit: int) -> bool:
        """Whether an integer profit above `profit` is possible at y: Φ(y) ≥ profit + 1."""
        frac = self.fraction(y)
        return frac is not None and frac[0] >= (profit + 1) * frac[1]

    def floor(self, y: int) -> int:
        """The most integer profit any input reaching y can make."""
        frac = self.fraction(y)
        return frac[0] // frac[1] if frac else 0

    def falls(self, inner: int, outer: int) -> bool:
        """Whether Φ(outer) ≤ Φ(inner): then, Φ being concave, nothing beyond outer exceeds Φ(outer)."""
        a, b = self.fraction(inner), self.fraction(outer)
        return b is None or (a is not None and b[0] * a[1] <= a[0] * b[1])


def _continuous_max(curve: Mobius) -> int:
    """An integer at least the floor of a whole cycle's continuous optimum profit (√K − √M)²/N."""
    big_k, big_m, big_n = curve
    if big_k <= big_m or big_n <= 0:
        return 0
    return (isqrt(big_k) + 1 - isqrt(big_m)) ** 2 // big_n


def refine(hops: Sequence[Hop], x_hint: float, budget: int = 32) -> Sized | None:
    """The exact integer input that maximises the exact profit around `hops`; None when no input
    with a positive exact profit was found.

    `x_hint` is the continuous optimum from the fast path (only where the walk starts); `budget`
    caps the integer points walked on each side of it.
    """
    curves = [pool.mobius(z41) for pool, z41 in hops]
    k = _coarsest_hop(curves, x_hint)
    upto = hops[:k]
    bound = _Bound(_compose_all(curves[:k]), _compose_all(curves[k:]))
    x_cap = _input_cap(hops)
    y_cap = forward(upto, x_cap)[-1] if k else x_cap
    if y_cap < 1:
        return None
    y_hint = x_hint
    for c in curves[:k]:
        y_hint = float(c[0]) * y_hint / (float(c[1]) + float(c[2]) * y_hint)
    start = min(max(int(y_hint), 1), y_cap)

    best: Sized | None = None
    best_profit = 0

    def visit(y: int) -> bool:
        """Evaluate y if its bound can beat the best; False once this side is exhausted."""
        nonlocal best, best_profit
        if not 1 <= y <= y_cap or not bound.admits(y, best_profit):
            return False
        x = _smallest_input(upto, y) if k else y
        if x is None:  # cannot happen: y <= y_cap, which `upto` reaches from x_cap
            raise TypeError(f"no input reaches {y} through the first {k} hops")
        amounts = forward(hops, x)
        profit = amounts[-1] - x
        if profit > best_profit:
            best, best_profit = Sized(x, tuple(amounts), profit, 0), profit
        return True

    down, up = start, start + 1
    down_open = up_open = True
    for _ in range(budget):
        if down_open:
            down_open = visit(down)
            down -= 1
        if up_open:
            up_open = visit(up)
            up += 1
        if not (down_open or up_open):
            break
    if best is None:
        return None
    gap = 0
    for is_open, outer, inner in ((down_open, down, down + 1), (up_open, up, up - 1)):
        if is_open and 1 <= outer <= y_cap:
            beyond = bound.floor(outer) if bound.falls(inner, outer) else _continuous_max(_compose_all(curves))
            gap = max(gap, beyond - best_profit)
    return replace(best, gap=gap)
