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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from math import gcd, inf, isqrt

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
    """One hop of a mixed cycle: exact quotes, and the step and bounding pieces of any input.

    `quote`, `out` and `smallest_in` are the pool's own (bound once: the search calls them thousands
    of times per cycle)."""

    __slots__ = ("pool", "zero_for_one", "steps", "curve", "cap", "quote", "out", "smallest_in", "_pieces")
    quote: Callable[[int], tuple[int, int] | None]  # (exact output, state) of an input, None when not all taken
    out: Callable[[int], int]
    smallest_in: Callable[[int], int | None]

    def __init__(self, pool: Pool, zero_for_one: bool):
        self.pool, self.zero_for_one = pool, zero_for_one
        self.steps: SwapSteps | None = pool.swap_steps(zero_for_one) if isinstance(pool, V3Pool) else None
        self.curve: Piece = (*pool.mobius(zero_for_one), 0, 0) if self.steps is None else (0, 1, 0, 0, 0)  # V2 only
        self.cap = pool.max_input(zero_for_one) if self.steps is None else 0
        self._pieces: dict[tuple[int, int], Piece] = {}
        if self.steps is not None:
            self.quote, self.out, self.smallest_in = self.steps.quote, self.steps.out, self.steps.smallest_in
        else:
            self.quote = self._whole_quote
            self.out = partial(pool.quote_out, zero_for_one)
            self.smallest_in = partial(pool.quote_in, zero_for_one)

    def _whole_quote(self, amount: int) -> tuple[int, int] | None:
        """`quote` of a pool with one curve: state 0 for every input it takes."""
        return (self.out(amount), 0) if amount <= self.cap else None

    def max_input(self) -> int:
        return self.steps.max_input() if self.steps is not None else self.cap

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


def _interval(checks: Sequence[tuple[int, int]], v: int) -> tuple[float, float]:
    """[lo, hi]: the integers u with c·u + d·v > 0 for every (c, d) of `checks` (v > 0); infinite
    ends as floats, an empty interval as lo > hi."""
    lo, hi = -inf, inf
    for c, d in checks:
        if c > 0:  # c·u ≥ 1 − d·v
            lo = max(lo, -((d * v - 1) // c))
        elif c < 0:  # −c·u ≤ d·v − 1
            hi = min(hi, (d * v - 1) // -c)
        elif d * v <= 0:
            return inf, -inf
    return lo, hi


_WALKS_BEFORE_FOLD = 6
"""How many Φ a `_Phi` takes by walking its pieces before it folds them: folding costs about 4 walks and
makes every later Φ about half as dear, and most pieces are asked for a few Φ, some for hundreds."""


class _Phi:
    """Φ(y) = after(y) − upto⁻¹(y) of one list of after pieces and one of upto pieces.

    Every step of the walk through the pieces (`_walk`) is linear in (y, 1), so the lists can be folded
    into linear forms (`_fold`): after(y) = p/q with p, q forms of the input (u, v) (y and 1 unless
    shifted), upto⁻¹(y) = r/s forms of y, and the conditions under which the walk stops (a denominator
    ≤ 0: +∞; y not reached: −∞) as forms that must stay positive, which hold on an interval of y (of u
    when shifted: one per γ, taken when first asked for). Φ's numerator p·s − r·q and denominator q·s
    are then quadratics in y (less ρ times a linear form when shifted), whose coefficients are
    products of the large forms taken once: `at` then gives the walk's own integers with only
    products by y, γ and ρ."""

    __slots__ = ("after", "upto", "_walks", "_after_checks", "_after_bounds", "_reached", "_quadratics", "_top",
                 "_chains")

    def __init__(self, after: Sequence[Piece], upto: Sequence[Piece]):
        self.after, self.upto = after, upto
        self._walks = 0
        self._quadratics: tuple[int, int, int, int, int, int, int, int] | None = None
        self._after_checks: list[tuple[int, int]] = []
        self._after_bounds: dict[int, tuple[float, float]] = {}  # by the input's v: 1, or γ when shifted
        self._reached: tuple[float, float] = (inf, -inf)
        self._top: tuple[tuple[int, int] | None] | None = None
        self._chains: tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None = None

    def _fold(self) -> tuple[int, int, int, int, int, int, int, int]:
        """The forms, the intervals and the quadratics of `at` (see the class); returns the quadratics."""
        a, b, c, d = 1, 0, 0, 1  # (p, q) = (a·u + b·v, c·u + d·v) from the input (u, v), (y, 1) unshifted
        after_checks = []
        for piece in self.after:
            a, b, c, d = _then((a, b, c, d), _matrix(piece))
            after_checks.append((c, d))  # this hop's denominator: the walk's q so far
        e, f, g, h = 1, 0, 0, 1  # (r, s) = (e·y + f, g·y + h)
        upto_checks = []
        for k, m, n, o, cc in reversed(self.upto):
            if k == 0 and n == 0:  # a constant: reached at its start C (r − O·s ≤ 0) or not at all
                upto_checks.append((o * g - e, o * h - f + 1))
                e, f, g, h = 0, cc, 0, 1
                continue
            # w = r − O·s, reach = k·s − n·w (must be > 0), then (r, s) = (C·reach + m·w, reach)
            kn, mc = k + n * o, m - cc * n
            cross = cc * kn - m * o
            e, f, g, h = mc * e + cross * g, mc * f + cross * h, kn * g - n * e, kn * h - n * f
            upto_checks.append((g, h))
        self._after_checks = after_checks
        self._after_bounds[1] = _interval(after_checks, 1)
        self._reached = _interval(upto_checks, 1)
        # with u = γ·y − ρ, v = γ: p·s − r·q = γ·(num2·y² + num1·y + num0) − ρ·(num2·y + num_rho), and
        # q·s = γ·(den2·y² + den1·y + den0) − ρ·(den2·y + den_rho)
        self._quadratics = (a * g - e * c, a * h + b * g - e * d - f * c, b * h - f * d, a * h - f * c,
                            c * g, c * h + d * g, d * h, c * h)
        return self._quadratics

    def peak(self) -> tuple[int, int] | None:
        """`_peak` of the upto pieces then the after pieces, kept (the search asks for it more than once)."""
        if self._top is None:
            self._top = (_peak((), self.chain(None)),)
        return self._top[0]

    def chain(self, shift: tuple[int, int] | None) -> tuple[int, int, int, int]:
        """The matrix of after ∘ (the shift) ∘ upto, from the two chains kept (one per class searched)."""
        if self._chains is None:
            self._chains = (_chain(self.upto), _chain(self.after))
        upto, after = self._chains
        if shift is not None:
            gamma, rho = shift
            upto = _then(upto, (gamma, -rho, 0, gamma))
        return _then(upto, after)

    def at(self, y: int, shift: tuple[int, int] | None = None) -> tuple[int, int]:
        """Φ(y) as (numerator, denominator > 0), or ±∞ as (±1, 0).

        `shift` (γ, ρ) takes ρ/γ off the first after-hop's input: the V3 fee floor of the y for which
        γ·(y − C) ≡ ρ (mod PIPS) (see `refine_mixed`); the walk then starts from (γ·y − ρ, γ).
        """
        quadratics = self._quadratics
        if quadratics is None:
            if self._walks < _WALKS_BEFORE_FOLD:
                self._walks += 1
                return self._walk(y, shift)
            quadratics = self._fold()
        if shift is None:
            lo, hi = self._after_bounds[1]
            if not lo <= y <= hi:
                return _PLUS_INFINITY
        else:
            gamma, rho = shift
            bounds = self._shifted_bounds(gamma)
            if not bounds[0] <= gamma * y - rho <= bounds[1]:
                return _PLUS_INFINITY
        lo, hi = self._reached
        if not lo <= y <= hi:
            return _MINUS_INFINITY
        num2, num1, num0, num_rho, den2, den1, den0, den_rho = quadratics
        if shift is None:
            return (num2 * y + num1) * y + num0, (den2 * y + den1) * y + den0
        return (gamma * ((num2 * y + num1) * y + num0) - rho * (num2 * y + num_rho),
                gamma * ((den2 * y + den1) * y + den0) - rho * (den2 * y + den_rho))

    def _shifted_bounds(self, gamma: int) -> tuple[float, float]:
        """The interval of the first after-hop's shifted input γ·y − ρ where the walk stays finite (folded
        forms only; one per γ, taken when first asked for)."""
        bounds = self._after_bounds.get(gamma)
        if bounds is None:
            bounds = self._after_bounds[gamma] = _interval(self._after_checks, gamma)
        return bounds

    def floored_run(self, y: int, direction: int, edge: int, profit: int, gamma: int, start: int, most: int) -> int:
        """How many y in a row, from `y` in `direction` and not past `edge` (nor below 1), at most `most`,
        have Φ(y) finite and not below `profit` while Φ with y's own fee floor, the shift
        (γ, γ·(y − start) mod PIPS), is below it: the y the walk of `refine_mixed` passes over.

        Taken by finite differences of the folded quadratics: with P = profit + 1, "not below" is
        R(y) = num(y) − P·den(y) ≥ 0 and "floored below" is γ·R(y) − ρ·L(y) < 0, L linear, so each y
        costs a few additions instead of two Φ."""
        num2, num1, num0, num_rho, den2, den1, den0, den_rho = self._quadratics or self._fold()
        lo, hi = self._after_bounds[1]
        reached_lo, reached_hi = self._reached
        first, last = (max(lo, reached_lo, 1), min(hi, reached_hi, edge)) if direction > 0 else \
            (max(lo, reached_lo, edge, 1), min(hi, reached_hi))
        if not first <= y <= last:
            return 0
        most = min(most, int(last - y if direction > 0 else y - first) + 1)
        shifted_lo, shifted_hi = self._shifted_bounds(gamma)
        top = profit + 1
        a, b, c = num2 - top * den2, num1 - top * den1, num0 - top * den0
        r, linear = (a * y + b) * y + c, a * y + num_rho - top * den_rho
        delta, slope = direction * (2 * a * y + b) + a, direction * a
        rho, turn = gamma * (y - start) % PIPS, gamma * direction % PIPS
        count = 0
        while count < most and r >= 0 and shifted_lo <= gamma * y - rho <= shifted_hi and gamma * r < rho * linear:
            count += 1
            r, delta, linear, y, rho = r + delta, delta + 2 * a, linear + slope, y + direction, (rho + turn) % PIPS
        return count

    def _walk(self, y: int, shift: tuple[int, int] | None) -> tuple[int, int]:
        """`at` by walking the pieces."""
        p, q = y, 1  # after(y) = p/q
        if shift is not None:
            gamma, rho = shift
            p, q = gamma * y - rho, gamma
        for k, m, n, o, c in self.after:
            t = p - c * q
            den = m * q + n * t
            if den <= 0:
                return _PLUS_INFINITY
            p, q = o * den + k * t, den
        r, s = y, 1  # upto⁻¹(y) = r/s
        for k, m, n, o, c in reversed(self.upto):
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


def _floor(phi: tuple[int, int]) -> int | None:
    """⌊Φ⌋; None for +∞, a number below any profit for −∞."""
    num, den = phi
    if den == 0:
        return None if num > 0 else -(1 << 256)
    return num // den


def _segment_sup(phi: _Phi, shift: tuple[int, int] | None, ys: int, ye: int) -> int | None:
    """An integer at least Φ at every integer y in [ys, ye] (Φ is concave); None when unbounded."""
    first = phi.at(ys, shift)
    if ys == ye or _not_above(phi.at(ys + 1, shift), first):
        return _floor(first)
    last = phi.at(ye, shift)
    if _not_above(phi.at(ye - 1, shift), last):
        return _floor(last)
    peak = phi.peak() if shift is None else _peak((), phi.chain(shift))
    return peak[1] if peak is not None else None


def _value(pieces: Sequence[Piece], u: float) -> float:
    for k, m, n, o, c in pieces:
        t = u - c
        den = m + n * t
        u = o + k * t / den if den > 0 else float(o)
    return u


def _argmax_y(phi: _Phi, ys: int, ye: int) -> float:
    """Where in [ys, ye] Φ peaks (floats: only where a search starts)."""
    peak = phi.peak()
    z = float(ys) if peak is None else _value(phi.upto, float(max(peak[0], 0)))
    return min(max(z, float(ys)), float(ye))


def _fee_floor_dominates(phi: _Phi, z: float, gamma: int, period: int) -> bool:
    """Whether the V3 fee floor on the coarse token (up to one unit of it, in a pattern that repeats
    every `period` y) costs more than Φ falls over half a period: then the best y is one with little
    floor loss near the peak, and searching class by class beats walking every y."""
    y = max(int(z), 1)
    top = _floor(phi.at(y))
    floored = _floor(phi.at(y, (gamma, PIPS - gcd(gamma, PIPS))))
    sides = [_floor(phi.at(y + d)) for d in (-(period // 2), period // 2) if y + d >= 1]
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


def _cycle_cap(legs: Sequence[_Leg], too_big: int) -> int:
    """The largest cycle input every hop takes whole, given an input `too_big` some hop refuses.

    Only the hops that refuse an input on the way down are asked for their largest input, and a hop
    that refuses has walked its steps to the end already: a V3 hop that never binds is not walked past
    what the cap gives it. Each round lowers the input to the largest one the refusing hop takes
    (inputs a hop takes form an interval from 0), so it ends, within one round per hop, at the
    largest input every hop takes."""
    x = too_big
    while True:
        amount, refusing = x, None
        for h, leg in enumerate(legs):
            quoted = leg.quote(amount)
            if quoted is None:
                refusing = h
                break
            amount = quoted[0]
        if refusing is None:
            return x
        h = refusing
        first_too_big = _back(legs[:h], legs[h].max_input() + 1) if h else legs[0].max_input() + 1
        assert first_too_big is not None and first_too_big <= x, (h, x)  # x reached past what hop h takes
        x = first_too_big - 1


@dataclass(slots=True)
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

    quotes = [leg.quote for leg in legs]

    def forward_from(x: int) -> _Point | None:
        ins, amounts, states, amount = [], [], [], x
        for quote in quotes:
            quoted = quote(amount)
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
                cap = _cycle_cap(legs, target)
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

    splits: dict[tuple[int, tuple[int, ...]], _Phi] = {}

    def split(kind: int, states: tuple[int, ...]) -> _Phi:
        """Φ of the pieces of one kind for hops in these states (after the coarse hop, up to it)."""
        found = splits.get((kind, states))
        if found is None:
            chosen = [leg.piece(kind, j) for leg, j in zip(legs, states)]
            found = splits[(kind, states)] = _Phi(chosen[k:], chosen[:k])
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
        phi = split(kind, states).at
        here = phi(y)
        return _below(here, best_profit) and _not_above(phi(y + outward), here)

    work = 0  # Φ evaluations, capped at 16 per exact evaluation allowed
    ends: dict[int, list[int | None]] = {}  # id of a point → [first, last] y of its segment, each once asked for

    def segment_edge(at: _Point, direction: int) -> int:
        """The last (direction > 0) or first y of the segment of `at`: a walk in one direction needs one."""
        known = ends.setdefault(id(at), [None, None])
        side = direction > 0
        edge = known[side]
        if edge is None:
            edge = known[side] = segment_end(at) if side else segment_start(at)
        return edge

    def segment(at: _Point) -> tuple[int, int]:
        return segment_edge(at, -1), segment_edge(at, 1)

    def search(at: _Point, directions: tuple[int, ...]) -> tuple[int | None, bool, bool]:
        """Search the y of the segment of `at` that Φ does not rule out, from `at` in `directions`.
        Returns (None, or when the evaluations ran out an integer bound on what the rest of the
        segment could earn; whether every larger y is ruled out; whether every smaller y is).

        Walking y one by one, the tail (up) or head (down) bound is tried first at each y: it holds
        beyond the segment too, so when it closes a side the segment's ends are never computed. A run
        of y that only their own fee floor rules out is passed over at once (`_Phi.floored_run`).

        When the hop after the coarse token is V3, its fee floor ⌊γ·(y − C)/PIPS⌋ loses up to one
        coarse unit in a pattern that repeats every `period` y, and where that loss outweighs how
        Φ falls over half a period, walking y one by one would visit about a period of them. The
        y are then searched by class ρ = γ·(y − C) mod PIPS instead: within a class the floor is
        exact, so Φ with ρ/γ taken off the hop's input (`_Phi.at`'s shift) is concave along the class
        and bounds it tightly, and it falls as ρ grows, so the classes are taken by ρ and the first
        whose bound is below the best profit ends the search.
        """
        nonlocal work
        states = at.states
        local = split(_LOCAL, states)
        phi = local.at
        gamma, period, start, z = 0, 1, 0, 0.0
        pool = legs[k].pool
        if k and isinstance(pool, V3Pool) and pool.fee:
            gamma = PIPS - pool.fee
            start = legs[k].start(states[k])
            candidate = PIPS // gcd(gamma, PIPS)
            if candidate > 1:
                ys, ye = segment(at)
                if ye - ys + 1 >= 2 * candidate:
                    z = _argmax_y(local, ys, ye)  # where the class search below starts
                    if _fee_floor_dominates(local, z, gamma, candidate):
                        period = candidate

        if period == 1:
            closed = {1: False, -1: False}
            for direction in directions:
                y = at.y if direction < 0 else at.y + 1
                wide_phi = split(_TAIL if direction > 0 else _HEAD, states).at
                edge: int | None = None  # the segment's end on this side, once asked for
                while True:
                    if y < 1:
                        closed[direction] = True
                        break
                    if work >= 16 * limit:  # Φ below the best but rising over a long segment: stop, report its bound
                        ys, ye = segment(at)
                        top = _segment_sup(local, None, ys, ye)
                        return (top if top is not None else global_bound()), False, False
                    if y != at.y:
                        if edge is None:
                            if id(at) not in ends:  # the wide bound may close this side for good
                                wide = wide_phi(y)
                                work += 1
                                if _below(wide, best_profit) and _not_above(wide_phi(y + direction), wide):
                                    closed[direction] = True
                                    break
                            edge = segment_edge(at, direction)
                        if (y - edge) * direction > 0:
                            break  # this side of the segment is done; the caller goes on beyond it
                    here = phi(y)
                    work += 1
                    low = _below(here, best_profit)
                    if not low and gamma and _below(phi(y, (gamma, gamma * (y - start) % PIPS)), best_profit):
                        # y's own fee floor rules it out: so may it the next ones, taken in one run
                        if edge is not None:
                            skipped = local.floored_run(y + direction, direction, edge, best_profit, gamma, start,
                                                        16 * limit - work)
                            work += skipped
                            y += direction * skipped
                    elif not low:
                        if len(visited) >= limit or work >= 16 * limit:
                            ys, ye = segment(at)
                            top = _segment_sup(local, None, ys, ye)
                            return (top if top is not None else global_bound()), False, False
                        if visit(y) is None and direction > 0:  # no input reaches y: nor any larger y
                            closed[direction] = True
                            break
                        low = _below(here, best_profit)  # against the best found now
                    if low and _not_above(phi(y + direction), here):
                        # the rest of this side of the segment is out: and beyond it?
                        wide = wide_phi(y)
                        closed[direction] = _below(wide, best_profit) and _not_above(wide_phi(y + direction), wide)
                        break
                    y += direction
            return None, closed[1], closed[-1]

        ys, ye = segment(at)
        step = gcd(gamma, PIPS)
        inverse = pow(gamma // step, -1, period)
        for index in range(period):
            shift = (gamma, index * step)
            top = _segment_sup(local, shift, ys, ye)
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
                    here = phi(y, shift)
                    work += 2
                    if not _below(here, best_profit):
                        if len(visited) >= limit or work >= 16 * limit:
                            return (top if top is not None else global_bound()), False, False
                        visit(y)
                    if _below(here, best_profit) and _not_above(phi(y + outward, shift), here):
                        break
                    y += outward
        return None, False, False

    at = visit(y_start)
    if at is None:
        return None
    gap_bound, up_closed, down_closed = search(at, (-1, 1))
    top_at = bottom_at = at
    while not up_closed and gap_bound is None:
        ye = segment_edge(top_at, 1)
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
        ys = segment_edge(bottom_at, -1)
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
                most = split(kind, where.states).peak()
                beyond = max(beyond, most[1] if most is not None else global_bound())
        gap = max(min(beyond, global_bound()) - best_profit, 0)
    return Sized(best.x, tuple(best.amounts), best_profit, gap)
