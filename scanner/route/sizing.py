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
inputs around x* can miss the best step. For V2 cycles `refine` calls
`scanner.route.integer_optimum.optimize`, which proves its answer: it walks the amounts y of the
coarsest token T_k outward from the continuous optimum, where each y's best input is its smallest
one, A_k(y) (the exact inverse quotes, `Pool.quote_in`), bounds every y by Φ(y) = G_after(y) −
G_upto⁻¹(y) (the continuous profit of reaching y: floors only lose, ceilings only add), less what
the other roundings must lose where a second coarse token makes the profit jagged, and stops where
that bound cannot beat the best found. A budget caps the exact evaluations; when it stops the
search the result carries `gap`, a proven bound on how much more the exact optimum could make (0:
proven optimal).

Cycles with a Uniswap-V3 hop (`refine_mixed`). A V3 pool's `mobius` is the curve of the most
liquidity ahead, so Φ built from it is valid but loose and the walk above would not stop. Within
one swap step (between initialized ticks) a V3 hop is one constant-product curve, though, so the
same search runs on *segments*, runs of y over which every hop stays in one step: there Φ is built
from each step's own curve (`SwapSteps.local`, from the step's exact start) and is tight. A side
is closed for good by the `tail` curves (from the step on, with the most liquidity ahead) or the
`head` curves (up to the step, with the most liquidity so far), and otherwise the search moves to
the next segment, where it starts at the segment's boundary: only range boundaries are searched,
plus the points Φ does not rule out. The same proofs hold, so `gap` means the same. The fast
path's x* does not apply (the curves differ per range); the search finds its start by Newton steps
over the segments' optima. A V3 hop right after a coarse token adds the fee floor ⌊γ·r/PIPS⌋ on
that token (up to one of its units): the search then goes by residue class of γ·r (see `search`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd, isqrt

import numpy as np

from scanner.dex.pool import Mobius, Pool
from scanner.dex.v3 import PIPS, Piece, SwapSteps, V3Pool
from scanner.route.integer_optimum import compose as compose  # re-exported: part of this module's interface
from scanner.route.integer_optimum import compose_all as _compose_all
from scanner.route.integer_optimum import optimize

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


def _continuous_max(curve: Mobius) -> int:
    """An integer at least the floor of a whole cycle's continuous optimum profit (√K − √M)²/N."""
    big_k, big_m, big_n = curve
    if big_k <= big_m or big_n <= 0:
        return 0
    return (isqrt(big_k) + 1 - isqrt(big_m)) ** 2 // big_n


def refine(hops: Sequence[Hop], x_hint: float, budget: int = 32) -> Sized | None:
    """The exact integer input that maximises the exact profit around `hops`; None when no input
    has a positive exact profit (or, with a V3 hop, none was found).

    V2 cycles: `integer_optimum.optimize`, from `x_hint`, the continuous optimum of the fast path
    (only where the search starts), with at most 4·budget exact evaluations, as `refine_mixed` (the
    largest count seen on 2,000 random realistic cycles is 121; most take 1 or 2). A cycle with a V3
    hop goes to `refine_mixed`, which finds its own starting point.
    """
    if any(isinstance(pool, V3Pool) for pool, _ in hops):
        return refine_mixed(hops, budget)
    found = optimize([pool.mobius(z41) for pool, z41 in hops], [pool.max_input(z41) for pool, z41 in hops],
                     x_hint, 4 * budget)
    return None if found is None else Sized(found.amount_in, found.amounts, found.profit, found.gap)


# -- exact path for cycles with V3 hops --------------------------------------------------------
#
# A V3 hop is one constant-product curve per swap step (between initialized ticks and bitmap-word
# ends), so `pool.mobius` (the most liquidity ahead) bounds it loosely and the walk above cannot
# stop. Here every hop's curve is taken one step at a time: a `Piece` (k, m, n, O, C) is the curve
# O + k·(u − C)/(m + n·(u − C)) of a hop for inputs u in one step, never below its exact output
# (for a V2 hop: its `mobius`, for every input). A *segment* is a run of y (the output of the
# coarsest hop, as above) over which every hop stays in one step; on it Φ, built from the pieces,
# is concave and bounds the exact profit, so one segment is searched like a V2 cycle and left as
# soon as Φ is below the best profit and falling. Beyond the segment, two more concave bounds
# close a side for good: upward the `tail` pieces (from the step's exact start, with the most
# liquidity met from there on), downward the `head` pieces (from the pool's price, with the most
# liquidity met up to there). When neither closes a side, the walk jumps to the next segment's
# end: only range boundaries are searched, never the points inside a segment that Φ rules out.

_LOCAL, _TAIL, _HEAD = 0, 1, 2
_PLUS_INFINITY = (1, 0)  # Φ that cannot be bounded here
_MINUS_INFINITY = (-1, 0)  # y that no input reaches


class _Leg:
    """One hop of a mixed cycle: exact quotes, and the step and bounding pieces of any input."""

    __slots__ = ("pool", "zero_for_one", "steps", "curve", "cap", "_pieces")

    def __init__(self, pool: Pool, zero_for_one: bool):
        self.pool, self.zero_for_one = pool, zero_for_one
        self.steps: SwapSteps | None = pool.swap_steps(zero_for_one) if isinstance(pool, V3Pool) else None
        self.curve: Piece = (*pool.mobius(zero_for_one), 0, 0) if self.steps is None else (0, 1, 0, 0, 0)  # V2 only
        self.cap = pool.max_input(zero_for_one) if self.steps is None else 0
        self._pieces: dict[tuple[int, int], Piece] = {}

    def out(self, amount: int) -> int:
        return self.steps.out(amount) if self.steps is not None else self.pool.quote_out(self.zero_for_one, amount)

    def smallest_in(self, amount_out: int) -> int | None:
        if self.steps is not None:
            return self.steps.smallest_in(amount_out)
        return self.pool.quote_in(self.zero_for_one, amount_out)

    def max_input(self) -> int:
        return self.steps.max_input() if self.steps is not None else self.cap

    def quote(self, amount: int) -> tuple[int, int] | None:
        """(exact output, state) of `amount`, None when the pool does not take all of it."""
        if self.steps is not None:
            return self.steps.quote(amount)
        return (self.pool.quote_out(self.zero_for_one, amount), 0) if amount <= self.cap else None

    def state(self, amount: int) -> int:
        return self.steps.state_of(amount) if self.steps is not None else 0

    def start(self, state: int) -> int:
        return self.steps.starts[state] if self.steps is not None else 0

    def end(self, state: int) -> int | None:
        return self.steps.end_of(state) if self.steps is not None else None

    def piece(self, kind: int, state: int) -> Piece:
        if self.steps is None:
            return self.curve
        piece = self._pieces.get((kind, state))
        if piece is None:
            steps = self.steps
            make = steps.local if kind == _LOCAL else steps.tail if kind == _TAIL else steps.head
            piece = self._pieces[(kind, state)] = make(state)
        return piece


def _through(legs: Sequence[_Leg], amount: int) -> int:
    for leg in legs:
        amount = leg.out(amount)
    return amount


def _back(legs: Sequence[_Leg], amount: int) -> int | None:
    """Smallest input whose exact output through `legs` is at least `amount` (None: unreachable)."""
    for leg in reversed(legs):
        needed = leg.smallest_in(amount)
        if needed is None:
            return None
        amount = needed
    return amount


def _phi(after: Sequence[Piece], upto: Sequence[Piece], y: int, shift: tuple[int, int] | None = None) -> tuple[int, int]:
    """Φ(y) = after(y) − upto⁻¹(y) as (numerator, denominator > 0), or ±∞ as (±1, 0).

    `shift` (γ, ρ) takes ρ/γ off the first after-hop's input: the V3 fee floor of the y for which
    γ·(y − C) ≡ ρ (mod PIPS) (see `refine_mixed`).
    """
    p, q = y, 1  # after(y) = p/q
    for k, m, n, o, c in after:
        t = p - c * q
        if shift is not None:
            gamma, rho = shift
            t, m, shift = gamma * t - rho * q, m * gamma, None
        den = m * q + n * t
        if den <= 0:
            return _PLUS_INFINITY
        p, q = o * den + k * t, den
    r, s = y, 1  # upto⁻¹(y) = r/s
    for k, m, n, o, c in reversed(upto):
        w = r - o * s
        if k == 0 and n == 0:  # a constant: reached at its start C or not at all
            if w > 0:
                return _MINUS_INFINITY
            r, s = c, 1
            continue
        reach = k * s - n * w
        if reach <= 0:
            return _MINUS_INFINITY
        r, s = c * reach + m * w, reach
    return p * s - r * q, q * s


def _below(phi: tuple[int, int], profit: int) -> bool:
    """Φ < profit + 1: no input counted by Φ earns more than `profit`."""
    num, den = phi
    return num < 0 if den == 0 else num < (profit + 1) * den


def _not_above(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    """Φ(outer) ≤ Φ(inner), where ∞ and −∞ compare as they should."""
    (a, b), (c, d) = outer, inner
    if b == 0 or d == 0:
        return (a < 0) if b == 0 else (c > 0)
    return a * d <= c * b


def _matrix(piece: Piece) -> tuple[int, int, int, int]:
    """(a, b, c, d) with piece(u) = (a·u + b)/(c·u + d)."""
    k, m, n, o, c = piece
    d = m - n * c
    return o * n + k, o * d - k * c, n, d


def _then(first: tuple[int, int, int, int], second: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    a1, b1, c1, d1 = first
    a2, b2, c2, d2 = second
    return a2 * a1 + b2 * c1, a2 * b1 + b2 * d1, c2 * a1 + d2 * c1, c2 * b1 + d2 * d1


def _chain(pieces: Sequence[Piece]) -> tuple[int, int, int, int]:
    out = (1, 0, 0, 1)
    for piece in pieces:
        out = _then(out, _matrix(piece))
    return out


def _peak(pieces: Sequence[Piece], matrix: tuple[int, int, int, int] | None = None) -> tuple[int, int] | None:
    """(input, integer ≥ the profit) at the continuous optimum of the chained pieces (or `matrix`),
    None without one."""
    a, b, c, d = _chain(pieces) if matrix is None else matrix
    det = a * d - b * c
    if c <= 0 or det <= 0:
        return None
    root = isqrt(det)
    return (root - d) // c, (a + d - 2 * root) // c


def _shifted_chain(after: Sequence[Piece], upto: Sequence[Piece], shift: tuple[int, int] | None
                   ) -> tuple[int, int, int, int]:
    """The matrix of after ∘ (the shift) ∘ upto."""
    out = _chain(upto)
    if shift is not None:
        gamma, rho = shift
        out = _then(out, (gamma, -rho, 0, gamma))
    for piece in after:
        out = _then(out, _matrix(piece))
    return out


def _floor(phi: tuple[int, int]) -> int | None:
    """⌊Φ⌋; None for +∞, a number below any profit for −∞."""
    num, den = phi
    if den == 0:
        return None if num > 0 else -(1 << 256)
    return num // den


def _segment_sup(after: Sequence[Piece], upto: Sequence[Piece], shift: tuple[int, int] | None, ys: int, ye: int
                 ) -> int | None:
    """An integer at least Φ at every integer y in [ys, ye] (Φ is concave); None when unbounded."""
    first = _phi(after, upto, ys, shift)
    if ys == ye or _not_above(_phi(after, upto, ys + 1, shift), first):
        return _floor(first)
    last = _phi(after, upto, ye, shift)
    if _not_above(_phi(after, upto, ye - 1, shift), last):
        return _floor(last)
    peak = _peak((), _shifted_chain(after, upto, shift))
    return peak[1] if peak is not None else None


def _value(pieces: Sequence[Piece], u: float) -> float:
    for k, m, n, o, c in pieces:
        t = u - c
        den = m + n * t
        u = o + k * t / den if den > 0 else float(o)
    return u


def _argmax_y(after: Sequence[Piece], upto: Sequence[Piece], ys: int, ye: int) -> float:
    """Where in [ys, ye] Φ of these pieces peaks (floats: only where a search starts)."""
    peak = _peak([*upto, *after])
    z = float(ys) if peak is None else _value(upto, float(max(peak[0], 0)))
    return min(max(z, float(ys)), float(ye))


def _fee_floor_dominates(after: Sequence[Piece], upto: Sequence[Piece], z: float, gamma: int, period: int) -> bool:
    """Whether the V3 fee floor on the coarse token (up to one unit of it, in a pattern that repeats
    every `period` y) costs more than Φ falls over half a period: then the best y is one with little
    floor loss near the peak, and searching class by class beats walking every y."""
    y = max(int(z), 1)
    top = _floor(_phi(after, upto, y))
    floored = _floor(_phi(after, upto, y, (gamma, PIPS - gcd(gamma, PIPS))))
    sides = [_floor(_phi(after, upto, y + d)) for d in (-(period // 2), period // 2) if y + d >= 1]
    if top is None or floored is None or None in sides:
        return False
    fall = top - min(v for v in sides if v is not None) if sides else 0
    return 2 * fall < top - floored


def _slope(pieces: Sequence[Piece], ins: Sequence[int]) -> float:
    """d(output)/d(input) of the chained pieces at these hop inputs (floats: only to steer)."""
    slope = 1.0
    for (k, m, n, _, c), u in zip(pieces, ins):
        den = float(m) + float(n) * float(u - c)
        slope *= float(k) * float(m) / (den * den) if den > 0 else 0.0
    return slope


def _cycle_cap(legs: Sequence[_Leg]) -> int:
    """The largest cycle input every hop takes whole (walks every step of each V3 hop)."""
    cap = legs[0].max_input()
    for h in range(1, len(legs)):
        first_too_big = _back(legs[:h], legs[h].max_input() + 1)
        if first_too_big is not None:
            cap = min(cap, first_too_big - 1)
    return cap


@dataclass
class _Point:
    x: int
    ins: list[int]
    amounts: list[int]
    y: int  # the coarse hop's actual output (≥ the y asked for)
    states: tuple[int, ...]


def refine_mixed(hops: Sequence[Hop], budget: int = 32) -> Sized | None:
    """`refine` for a cycle with V3 hops (any pools work): the exact integer input that maximises the
    exact profit, None when no input with a positive exact profit was found. `budget` caps the
    exact evaluations at 4·budget (and Φ evaluations at 64·budget); when that stops the search,
    `gap` bounds what it may have missed (0: proven optimal)."""
    legs = [_Leg(pool, z41) for pool, z41 in hops]

    def global_bound() -> int:
        """The whole cycle's bound from every pool's `mobius` (for V3 the most liquidity ahead)."""
        return _continuous_max(_compose_all([pool.mobius(z41) for pool, z41 in hops]))

    def forward_from(x: int) -> _Point | None:
        ins, amounts, states, amount = [], [], [], x
        for leg in legs:
            quoted = leg.quote(amount)
            if quoted is None:
                return None
            ins.append(amount)
            amount, state = quoted
            amounts.append(amount)
            states.append(state)
        return _Point(x, ins, amounts, 0, tuple(states))

    # where the continuous optimum is: a bracket [lo, hi) on the input kept by the slope of the
    # pieces, and Newton-like moves to the optimum of the current segment's pieces (bisection when
    # that leaves the bracket), until a segment holds its own optimum: only range boundaries are tried
    point = forward_from(1)
    if point is None:
        return None
    lo, hi = 1, None
    cap: int | None = None
    for _ in range(96):
        local = [leg.piece(_LOCAL, j) for leg, j in zip(legs, point.states)]
        before = [max(u - 1, 0) for u in point.ins]  # slopes from the left: a pool's last step is flat
        if _slope([leg.piece(_LOCAL, leg.state(u)) for leg, u in zip(legs, before)], before) > 1:
            lo = max(lo, point.x)
        else:
            hi = point.x if hi is None else min(hi, point.x)
        if hi is not None and hi - lo <= 1:
            if point.x != lo:
                point = forward_from(lo) or point
            break
        peak = _peak(local)
        target = peak[0] if peak is not None else (lo if hi is not None else 2 * lo)
        inside = lo < target and (hi is None or target < hi)
        if not inside:
            target = (lo + hi) // 2 if hi is not None else 2 * lo
        moved = forward_from(target)
        if moved is None:  # past what some pool takes: the largest input all of them take
            if cap is None:
                cap = _cycle_cap(legs)
            hi = cap + 1 if hi is None else min(hi, cap + 1)
            if cap < 1 or (moved := forward_from(min(max(cap, lo), hi - 1))) is None:
                break
        if inside and moved.states == point.states:  # this segment holds its own optimum
            point = moved
            break
        point = moved

    # the coarsest hop at the optimum: the one whose output unit costs the most input (slopes from
    # the left, as the optimum may be the end of a step or everything a pool can take)
    k, best_slope, slope = 0, 1.0, 1.0
    for j in range(1, len(legs)):
        u = point.ins[j - 1]
        kk, m, n, _, c = legs[j - 1].piece(_LOCAL, legs[j - 1].state(max(u - 1, 0)))
        den = float(m) + float(n) * float(max(u - 1, 0) - c)
        slope *= float(kk) * float(m) / (den * den) if den > 0 else 0.0
        if 0 < slope < best_slope:
            k, best_slope = j, slope
    upto = legs[:k]

    y_start = max(point.amounts[k - 1] if k else point.x, 1)
    limit = 4 * budget  # exact evaluations, all segments together
    visited: dict[int, _Point | None] = {}
    best: _Point | None = None
    best_profit = 0

    def visit(y: int) -> _Point | None:
        """The exact trade at A(y), the smallest input whose coarse hop gives at least y (None: no
        input, or more than a pool takes, and so for every larger y)."""
        nonlocal best, best_profit
        if y not in visited:
            x = _back(upto, y) if k else y
            found = forward_from(x) if x is not None else None
            if found is not None:
                found.y = found.amounts[k - 1] if k else found.x
                if found.amounts[-1] - found.x > best_profit:
                    best, best_profit = found, found.amounts[-1] - found.x
            visited[y] = found
        return visited[y]

    splits: dict[tuple[int, tuple[int, ...]], tuple[list[Piece], list[Piece]]] = {}

    def split(kind: int, states: tuple[int, ...]) -> tuple[list[Piece], list[Piece]]:
        """(after pieces, upto pieces) of one kind for hops in these states."""
        found = splits.get((kind, states))
        if found is None:
            chosen = [leg.piece(kind, j) for leg, j in zip(legs, states)]
            found = splits[(kind, states)] = (chosen[k:], chosen[:k])
        return found

    def segment_end(at: _Point) -> int:
        """The largest y whose hops all stay in the steps of `at`."""
        end: int | None = None
        for h, (leg, j) in enumerate(zip(legs, at.states)):
            hi = leg.end(j)
            if hi is None:
                continue
            if h < k:
                x = hi if h == 0 else _back(legs[:h], hi)
                bound = _through(upto, x - 1) if x is not None else None
            else:
                y = hi if h == k else _back(legs[k:h], hi)
                bound = y - 1 if y is not None else None
            if bound is not None:
                end = bound if end is None else min(end, bound)
        return at.y if end is None else max(end, at.y)

    def segment_start(at: _Point) -> int:
        """The smallest y whose hops all stay in the steps of `at`."""
        begin = 1
        for h, (leg, j) in enumerate(zip(legs, at.states)):
            lo = leg.start(j)
            if lo <= 0:
                continue
            if h < k:
                x = lo if h == 0 else _back(legs[:h], lo)
                if x is not None:
                    begin = max(begin, _through(upto, x - 1) + 1)
            else:
                y = lo if h == k else _back(legs[k:h], lo)
                if y is not None:
                    begin = max(begin, y)
        return min(begin, at.y)

    def closes(kind: int, states: tuple[int, ...], y: int, outward: int) -> bool:
        """Whether Φ of these pieces is below the best profit at y and not rising outward."""
        after_pieces, upto_pieces = split(kind, states)
        here = _phi(after_pieces, upto_pieces, y)
        return _below(here, best_profit) and _not_above(_phi(after_pieces, upto_pieces, y + outward), here)

    work = 0  # Φ evaluations, capped at 16 per exact evaluation allowed
    ends: dict[int, tuple[int, int]] = {}  # id of a point → the y range of its segment, when asked for

    def segment(at: _Point) -> tuple[int, int]:
        if id(at) not in ends:
            ends[id(at)] = (segment_start(at), segment_end(at))
        return ends[id(at)]

    def search(at: _Point, directions: tuple[int, ...]) -> tuple[int | None, bool, bool]:
        """Search the y of the segment of `at` that Φ does not rule out, from `at` in `directions`.
        Returns (None, or when the evaluations ran out an integer bound on what the rest of the
        segment could earn; whether every larger y is ruled out; whether every smaller y is).

        Walking y one by one, the tail (up) or head (down) bound is tried first at each y: it holds
        beyond the segment too, so when it closes a side the segment's ends are never computed.

        When the hop after the coarse token is V3, its fee floor ⌊γ·(y − C)/PIPS⌋ loses up to one
        coarse unit in a pattern that repeats every `period` y, and where that loss outweighs how
        Φ falls over half a period, walking y one by one would visit about a period of them. The
        y are then searched by class ρ = γ·(y − C) mod PIPS instead: within a class the floor is
        exact, so Φ with ρ/γ taken off the hop's input (`_phi`'s shift) is concave along the class
        and bounds it tightly, and it falls as ρ grows, so the classes are taken by ρ and the first
        whose bound is below the best profit ends the search.
        """
        nonlocal work
        states = at.states
        after_pieces, upto_pieces = split(_LOCAL, states)
        gamma, period, start = 0, 1, 0
        pool = legs[k].pool
        if k and isinstance(pool, V3Pool) and pool.fee:
            gamma = PIPS - pool.fee
            start = legs[k].start(states[k])
            candidate = PIPS // gcd(gamma, PIPS)
            if candidate > 1:
                ys, ye = segment(at)
                z = _argmax_y(after_pieces, upto_pieces, ys, ye)
                if ye - ys + 1 >= 2 * candidate and _fee_floor_dominates(after_pieces, upto_pieces, z, gamma, candidate):
                    period = candidate

        if period == 1:
            closed = {1: False, -1: False}
            for direction in directions:
                y = at.y if direction < 0 else at.y + 1
                wide_after, wide_upto = split(_TAIL if direction > 0 else _HEAD, states)
                while True:
                    if y < 1:
                        closed[direction] = True
                        break
                    if work >= 16 * limit:  # Φ below the best but rising over a long segment: stop, report its bound
                        ys, ye = segment(at)
                        top = _segment_sup(after_pieces, upto_pieces, None, ys, ye)
                        return (top if top is not None else global_bound()), False, False
                    if y != at.y and id(at) not in ends:  # the wide bound may close this side for good
                        wide = _phi(wide_after, wide_upto, y)
                        work += 1
                        if _below(wide, best_profit) and _not_above(_phi(wide_after, wide_upto, y + direction), wide):
                            closed[direction] = True
                            break
                    ys, ye = segment(at) if y != at.y else (y, y)
                    if not ys <= y <= ye:
                        break  # this side of the segment is done; the caller goes on beyond it
                    here = _phi(after_pieces, upto_pieces, y)
                    work += 1
                    if not _below(here, best_profit) and (
                            not gamma  # first Φ with y's own fee floor
                            or not _below(_phi(after_pieces, upto_pieces, y, (gamma, gamma * (y - start) % PIPS)),
                                          best_profit)):
                        if len(visited) >= limit or work >= 16 * limit:
                            ys, ye = segment(at)
                            top = _segment_sup(after_pieces, upto_pieces, None, ys, ye)
                            return (top if top is not None else global_bound()), False, False
                        if visit(y) is None and direction > 0:  # no input reaches y: nor any larger y
                            closed[direction] = True
                            break
                    if _below(here, best_profit) and _not_above(_phi(after_pieces, upto_pieces, y + direction), here):
                        # the rest of this side of the segment is out: and beyond it?
                        wide = _phi(wide_after, wide_upto, y)
                        closed[direction] = _below(wide, best_profit) and _not_above(
                            _phi(wide_after, wide_upto, y + direction), wide)
                        break
                    y += direction
            return None, closed[1], closed[-1]

        ys, ye = segment(at)
        z = _argmax_y(after_pieces, upto_pieces, ys, ye)
        step = gcd(gamma, PIPS)
        inverse = pow(gamma // step, -1, period)
        for index in range(period):
            shift = (gamma, index * step)
            top = _segment_sup(after_pieces, upto_pieces, shift, ys, ye)
            if top is not None and top < best_profit + 1:
                break  # this class and, Φ falling with the class, every later one
            work += 4
            if len(visited) >= limit or work >= 16 * limit:
                return (top if top is not None else global_bound()), False, False
            # the members y of the class, γ·(y − start) ≡ index·step (mod PIPS), from the nearest to z
            first = int(min(max(z + index * step / gamma, ys), ye))
            first -= (first - (start + index * inverse)) % period
            for y, outward in ((first, -period), (first + period, period)):
                while ys <= y <= ye:
                    here = _phi(after_pieces, upto_pieces, y, shift)
                    work += 2
                    if not _below(here, best_profit):
                        if len(visited) >= limit or work >= 16 * limit:
                            return (top if top is not None else global_bound()), False, False
                        visit(y)
                    if _below(here, best_profit) and _not_above(_phi(after_pieces, upto_pieces, y + outward, shift), here):
                        break
                    y += outward
        return None, False, False

    at = visit(y_start)
    if at is None:
        return None
    gap_bound, up_closed, down_closed = search(at, (-1, 1))
    top_at = bottom_at = at
    while not up_closed and gap_bound is None:
        ye = segment(top_at)[1]
        if closes(_TAIL, top_at.states, ye + 1, 1):
            up_closed = True
            break
        found = visit(ye + 1)
        if found is None:  # no input reaches it, or a pool would not take it: nor any larger y
            up_closed = True
            break
        top_at = found
        gap_bound, up_closed, _ = search(top_at, (1,))
    while not down_closed and gap_bound is None:
        ys = segment(bottom_at)[0]
        if ys <= 1 or closes(_HEAD, bottom_at.states, ys - 1, -1):
            down_closed = True
            break
        found = visit(ys - 1)
        if found is not None and found.y >= ys:  # ys − 1 has no input of its own: the next y below that has
            below = _through(upto, found.x - 1) if k else found.x - 1
            found = visit(below) if below >= 1 else None
        if found is None:
            down_closed = True
            break
        bottom_at = found
        gap_bound, _, down_closed = search(bottom_at, (-1,))
    if best is None:
        return None
    gap = 0
    if gap_bound is not None or not up_closed or not down_closed:
        beyond = gap_bound if gap_bound is not None else 0
        for closed, kind, where in ((up_closed, _TAIL, top_at), (down_closed, _HEAD, bottom_at)):
            if not closed:
                after_pieces, upto_pieces = split(kind, where.states)
                most = _peak([*upto_pieces, *after_pieces])
                beyond = max(beyond, most[1] if most is not None else global_bound())
        gap = max(min(beyond, global_bound()) - best_profit, 0)
    return Sized(best.x, tuple(best.amounts), best_profit, gap)
