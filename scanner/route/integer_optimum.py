"""The exact integer optimum of a Uniswap-V2 cycle, with the argument that no other input does better.

A V2 hop pays ⌊k·u / (m + n·u)⌋ for u in (its Möbius curve (k, m, n), see `scanner.dex.pool`), and
the smallest input that buys at least v is ⌈m·v / (k − n·v)⌉ (none when k ≤ n·v). Tokens are T_0 = the
base token (the input x), T_1 … T_{n−1} in the middle, T_n = the base token again (the output).

1. Plateau starts. Pick a token T_k (k < n) and group inputs by the amount y of T_k they buy. Within a
   group the later hops see the same y, so the output is fixed and the best input is the smallest,
   A(y), the chain of exact ceiling inverses. So the optimum is the best P(y) = profit(A(y)) over y.
   T_k is the coarsest middle token (the one whose unit costs the most input at the continuous
   optimum; with two hops, the input itself when it is coarser): the sawtooth of its floors becomes
   the grid itself.
2. The window. P(y) ≤ Φ(y) = after(y) − upto⁻¹(y), the continuous profit of reaching y (floors only
   lose, ceilings only add), and Φ is concave, at most Φ* = (√K − √M)²/N. Once an input with profit
   p is known, only the y with Φ(y) ≥ p + 1 can do better (profits are integers): none when p + 1 > Φ*,
   else an interval, the integer roots of a quadratic (`_Search.solve_window`).
3. Roundings. The other roundings make P jagged across the window: when a middle token is coarse too
   (USDC → USDT) by up to one of its units, and the window can hold thousands of y. Two of them are
   subtracted from the bound: the coarsest rounding after T_k (a middle token's floor, or the output's)
   and the coarsest before it (a middle token's ceiling, or the input's). Each is λ·r(y), where r is
   the fractional part of the continuous amount of that token (a floor), or its deficit to the next
   unit (a ceiling), and λ is at most what one unit of it is worth there (concavity). That amount is
   a Möbius function of y, concave (after) or convex (before), so on an interval it lies within a
   proven distance of its chord, and the least fractional part of a line over an interval is exact
   arithmetic (`min_mod_linear`, Euclid's steps). An interval I is dropped when sup Φ(I) minus those
   least losses is below p + 1. Surviving intervals evaluate the y where a rounding costs least and
   split around it, nearest Φ's peak first; intervals of up to SMALL y are checked y by y. The search
   runs outward in rings from Φ's integer peak until the window lies inside. With two or three hops
   every rounding is counted (`_plan`), so the bound is tight and few y are ever evaluated.

Amounts, Φ, Φ*, windows and fractional parts are exact integers; floats only choose T_k, the roundings
and where to start, and give λ (a derivative, taken 1e-9 smaller than computed, so the bound stays
a bound). The search stops at `budget` exact evaluations; then `gap` bounds what the optimum could
add (0: proven optimal).
"""
from __future__ import annotations

from collections.abc import Sequence
from math import gcd, inf, isqrt, sqrt
from typing import NamedTuple

from scanner.dex.pool import Mobius
from scanner.dex.v2 import FEE_DENOMINATOR, MAX_RESERVE

IDENTITY: Mobius = (1, 1, 0)
SMALL = 32  # intervals of at most this many y are checked y by y rather than split
LAMBDA_SLACK = 1 - 1e-9  # λ is a float derivative: taken smaller than computed, so the bound stays a bound
MINOR = 1e-4  # a rounding whose unit is worth less than this share of the other's is not subtracted


class V2Optimum(NamedTuple):
    """The exact best trade around a V2 cycle and what it took to prove it."""

    amount_in: int
    amounts: tuple[int, ...]  # exact output of each hop
    profit: int  # amounts[-1] − amount_in, > 0
    gap: int  # proven bound on what the exact optimum could add; 0 = optimal
    evaluations: int  # exact evaluations of the cycle made to find and prove it


class _Line:
    """One rounding over y ≥ a as a line: q·r(a + t) ≥ ((p·t + start) mod q) − width, with λ at most what
    one unit of the rounded token is worth there (see `_Search.line`)."""

    __slots__ = ("a", "q", "p", "start", "width", "lam", "_solve")

    def __init__(self, a: int, q: int, p: int, start: int, width: int, lam: float):
        self.a, self.q, self.p, self.start, self.width, self.lam = a, q, p, start, width, lam
        self._solve: tuple[int, int] | None = None  # (gcd(p, q), the inverse of p / gcd modulo q / gcd)

    def loss(self, y: int) -> float:
        """A lower bound on what this rounding takes from y."""
        least = (self.p * (y - self.a) + self.start) % self.q
        return self.lam * (least - self.width) / self.q if least > self.width else 0.0

    def least(self, a: int, b: int) -> tuple[float, int]:
        """(a lower bound on what this rounding takes from every y in [a, b], the least line value)."""
        q = self.q
        least = min_mod_linear(b - a + 1, q, self.p, self.start + self.p * (a - self.a))
        return (self.lam * (least - self.width) / q if least > self.width else 0.0), least

    def where(self, a: int, least: int) -> int:
        """The y ≥ a where the line takes the value `least` first (one of `least`'s results)."""
        q, p = self.q, self.p
        if not p:
            return a
        if self._solve is None:
            g = gcd(p, q)
            self._solve = g, pow(p // g, -1, q // g)
        g, inverse = self._solve  # p·t ≡ least − start (mod q)
        start = (self.start + p * (a - self.a)) % q
        return a + (least - start) // g * inverse % (q // g)


def compose(first: Mobius, second: Mobius) -> Mobius:
    """The curve of `first` then `second`."""
    k1, m1, n1 = first
    k2, m2, n2 = second
    return k1 * k2, m1 * m2, m2 * n1 + n2 * k1


def compose_all(curves: Sequence[Mobius]) -> Mobius:
    out = IDENTITY
    for c in curves:
        out = compose(out, c)
    return out


def v2_curve(reserve_in: int, reserve_out: int, fee_bps: int) -> Mobius:
    """A V2 hop's Möbius curve from plain numbers (`V2Pool.mobius` without the pool)."""
    if reserve_in <= 0 or reserve_out <= 0:
        return (0, 1, 0)
    gamma = FEE_DENOMINATOR - fee_bps
    return gamma * reserve_out, FEE_DENOMINATOR * reserve_in, gamma


def min_mod_linear(count: int, modulus: int, a: int, b: int) -> int:
    """min over 0 ≤ t < count of (a·t + b) mod modulus (modulus > 0, count ≥ 1).

    The values rise by a and wrap; the smallest is b or one just after a wrap. After the w-th wrap
    the value is (b − w·modulus) mod a, so the same question with modulus a: Euclid's steps.
    """
    best = modulus
    while count > 0 and modulus:
        a %= modulus
        b %= modulus
        if b < best:
            best = b
        count = (a * (count - 1) + b) // modulus
        b -= modulus * count
        modulus, a = a, modulus
    return best


def _plan(curves: Sequence[tuple[float, float, float]], x: float) -> tuple[int, tuple[int, ...], float]:
    """(k, the roundings to subtract, y at x). Floats: they choose, never decide.

    T_k is the middle token whose unit costs the most input at input x (with two hops, the input
    itself when it is coarser). The roundings are the costliest middle token after T_k, else the
    output's floor, and the costliest before it, else the input's ceiling (none when y is the input).
    The profit's own integrality covers one more: the output's floor when the input's ceiling is
    subtracted or y is the input, else the input's ceiling. So with two or three hops every rounding
    is counted; with four, one middle token's is not. A rounding worth less than MINOR of the other
    is left out: where it could matter, the other's bound is already sharp enough.
    """
    n = len(curves)
    costs, amounts = [1.0], [x]
    slope, amount = 1.0, x
    for fk, fm, fn in curves[:-1]:
        den = fm + fn * amount
        slope *= fk * fm / (den * den)
        amount = fk * amount / den
        costs.append(1 / slope if slope > 0 else 0.0)
        amounts.append(amount)
    costs.append(1.0)  # the output: a base unit
    k = _costliest(costs, 0 if n == 2 else 1, n)
    if k == 0:
        return k, (1,), x
    after = _costliest(costs, k + 1, n) if k + 1 < n else n
    before = _costliest(costs, 1, k) if k > 1 else 0
    if costs[before] < MINOR * costs[after]:
        return k, (after,), amounts[k]
    if costs[after] < MINOR * costs[before]:
        return k, (before,), amounts[k]
    return k, (after, before), amounts[k]


def _costliest(costs: list[float], lo: int, hi: int) -> int:
    """The index in [lo, hi) of the largest cost (the first of equals)."""
    best = lo
    for h in range(lo + 1, hi):
        if costs[h] > costs[best]:
            best = h
    return best


class _Search:
    """One cycle's search over y, the amount of T_k (see the module)."""

    def __init__(self, curves: Sequence[Mobius], caps: Sequence[int], k: int, roundings: tuple[int, ...], budget: int):
        self.curves, self.caps, self.k, self.roundings, self.budget = curves, caps, k, roundings, budget
        self.inverse = curves[k - 1::-1] if k else ()
        self.upto, self.after = compose_all(curves[:k]), compose_all(curves[k:])
        self.whole = compose(self.upto, self.after)
        ku, _, nu = self.upto
        self.y_max = (ku - 1) // nu if nu else MAX_RESERVE  # upto⁻¹ exists below ku / nu
        self.evaluations = self.profit = 0
        self.best: int | None = None  # the input of the best profit
        self.seen: set[int] = set()
        self.stale = True  # the window is to be solved again (profit or y_max changed)
        self._window: tuple[int, int] | None = None
        self._root: int | None = None
        self.peak = 0  # the integer y where Φ is largest
        self.open = False  # the budget ran out before the search ended
        self.rounding_curves: list[tuple[int, Mobius, float]] = []

    @property
    def window(self) -> tuple[int, int] | None:
        if self.stale:
            self._window, self.stale = self.solve_window(), False
        return self._window

    def evaluate(self, y: int) -> None:
        """The exact profit of A(y); an unreachable y or one past a pool's cap bounds y_max."""
        self.evaluations += 1
        self.seen.add(y)
        x = y
        for ck, cm, cn in self.inverse:
            d = ck - cn * x
            if d <= 0:
                self.y_max, self.stale = min(self.y_max, y - 1), True
                return
            x = -(-cm * x // d)
        u = x
        for (ck, cm, cn), cap in zip(self.curves, self.caps):
            if u > cap:
                self.y_max, self.stale = min(self.y_max, y - 1), True
                return
            u = ck * u // (cm + cn * u)
        if u - x > self.profit:
            self.profit, self.best, self.stale = u - x, x, True

    def amounts(self, x: int) -> tuple[int, ...]:
        """The exact output of every hop for input x."""
        amounts = []
        for ck, cm, cn in self.curves:
            x = ck * x // (cm + cn * x)
            amounts.append(x)
        return tuple(amounts)

    def phi(self, y: int) -> tuple[int, int]:
        """Φ(y) as (numerator, denominator > 0), for 0 < y ≤ y_max."""
        ku, mu, nu = self.upto
        ka, ma, na = self.after
        d1, d2 = ma + na * y, ku - nu * y
        return y * (ka * d2 - mu * d1), d1 * d2

    def admits(self, y: int, excess: float, lines: list[_Line]) -> bool:
        """Whether Φ(y) minus the roundings' losses at y reaches profit + 1 (`excess`: sup Φ − (profit + 1)
        over an interval holding y, rounded up: the cheap test first)."""
        loss = 0.0
        for line in lines:
            loss += line.loss(y)
        if excess < loss:
            return False
        num, den = self.phi(y)
        return (num - (self.profit + 1) * den) / den * (1 + 1e-12) >= loss

    @property
    def root(self) -> int:
        """⌊√(KM)⌋ of the whole cycle's curve (once: a square root of a thousand bits costs)."""
        if self._root is None:
            big_k, big_m, _ = self.whole
            self._root = isqrt(big_k * big_m)
        return self._root

    def phi_star(self) -> tuple[int, int]:
        """An upper bound on Φ everywhere: (√K − √M)²/N ≤ (K + M − 2⌊√(KM)⌋)/N."""
        big_k, big_m, big_n = self.whole
        return big_k + big_m - 2 * self.root, big_n

    def beats_phi_star(self) -> bool:
        """Whether profit + 1 > Φ* = (√K − √M)²/N, so no y can do better (squared twice: no root)."""
        big_k, big_m, big_n = self.whole
        c = (self.profit + 1) * big_n
        rest = big_k - big_m - c  # Φ* < c/N ⟺ rest < 2√(M·c)
        return rest < 0 or rest * rest < 4 * big_m * c

    def solve_window(self) -> tuple[int, int] | None:
        """The integers y in [1, y_max] with Φ(y) ≥ profit + 1, or None when there is none.

        Φ(y) ≥ c ⟺ −A·y² + B·y − C ≥ 0 (multiplied by the positive denominators); A ≤ 0 only when c
        is above after's asymptote, so above Φ everywhere.
        """
        ku, mu, nu = self.upto
        ka, ma, na = self.after
        c = self.profit + 1
        a = ka * nu + mu * na - c * na * nu
        if a <= 0:
            return None
        b = ka * ku - mu * ma + c * (ma * nu - na * ku)
        cc = c * ma * ku
        disc = b * b - 4 * a * cc
        if disc < 0:
            return None
        # √disc to ~150 bits is plenty (the roots then lie within a small fraction of 1 of the bounds
        # below) and far cheaper than to all of its ~1000: √disc ∈ [r·2^h, (r + 1)·2^h)
        shift = max(disc.bit_length() - 300, 0) & ~1
        r, h = isqrt(disc >> shift), shift // 2
        lo, hi = -((((r + 1) << h) - b) // (2 * a)), (b + ((r + 1) << h)) // (2 * a)  # ≤ the roots' ceiling, ≥ floor
        while lo <= hi and (b - a * lo) * lo < cc:
            lo += 1
        while hi >= lo and (b - a * hi) * hi < cc:
            hi -= 1
        lo, hi = max(lo, 1), min(hi, self.y_max)
        return (lo, hi) if lo <= hi else None

    def find_peak(self, y: int) -> int:
        """The integer y where Φ is largest. Φ is concave on the integers, so its steps Φ(y + 1) − Φ(y)
        only fall, and the first that does not rise marks it: walked to from y, a float estimate, then
        from the exact continuous optimum y* = upto(x*) when that is more than a few steps off, and
        bisected for as a last resort."""
        def rise(y: int) -> bool:
            (n1, d1), (n2, d2) = self.phi(y), self.phi(y + 1)
            return n2 * d1 > n1 * d2

        for attempt in range(2):
            y = min(max(y, 1), self.y_max)
            step = 1 if y < self.y_max and rise(y) else -1
            for _ in range(4):
                nxt = y + step
                if not 1 <= nxt <= self.y_max or rise(min(y, nxt)) != (step > 0):
                    return y
                y = nxt
            if attempt == 0:  # Φ′(y*) = 0: √(Ka·Ma)·(Ku − Nu·y*) = √(Mu·Ku)·(Ma + Na·y*)
                ku, mu, nu = self.upto
                ka, ma, na = self.after
                s1, s2 = isqrt(ka * ma), isqrt(mu * ku)
                y = (s1 * ku - s2 * ma) // (s1 * nu + s2 * na)
        lo, hi = 1, self.y_max
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if rise(mid) else (lo, mid)
        return lo

    def sup_phi(self, a: int, b: int) -> tuple[int, int]:
        """The largest Φ over the integers of [a, b], as (numerator, denominator > 0)."""
        return self.phi(min(max(self.peak, a), b))

    def roundings_at(self, lo: int, hi: int) -> None:
        """For each rounding subtracted: its token's curve from or to y, and λ for every y in [lo, hi]
        (the window, which only shrinks): the slope on from the most of T_j (after), or the input per
        T_j at the least (before); floats, taken LAMBDA_SLACK smaller."""
        k, curves = self.k, self.curves
        self.rounding_curves = []
        for j in self.roundings:
            if j > k:
                ks, ms, ns = curve = compose_all(curves[k:j])
                u, lam = ks * hi / (ms + ns * hi), LAMBDA_SLACK
                for ck, cm, cn in curves[j:]:
                    den = cm + cn * u
                    lam *= ck * cm / den / den
                    u = ck * u / den
            else:
                kt, mt, nt = curve = compose_all(curves[j:k])
                u, lam = mt * lo / (kt - nt * lo), LAMBDA_SLACK
                for ck, cm, cn in reversed(curves[:j]):
                    v = cm * u / (ck - cn * u)
                    den = cm + cn * v
                    lam *= den * den / (ck * cm)
                    u = v
            self.rounding_curves.append((j, curve, lam))

    def line(self, j: int, curve: Mobius, lam: float, a: int, b: int) -> _Line | None:
        """The rounding at T_j over [a, b] (a < b) as a line; None where its amount bends too much over
        [a, b] for the line to help."""
        n = b - a
        q = 1 << (n.bit_length() + 24)  # fractions in units of 1/q
        kk, mm, nn = curve
        if j > self.k:  # φ = s(y), the amount of T_j (concave); loss ≥ λ·frac(s)
            da, db = mm + nn * a, mm + nn * b
            fa, fb = q * kk * a // da, q * kk * b // db
            e = -(-q * n * kk * mm * (db * db - da * da) // (4 * da * da * db * db))
        else:  # φ = −t(y), t the T_j needed (convex); loss ≥ λ·(⌈t⌉ − t)
            da, db = kk - nn * a, kk - nn * b
            if db <= 0:
                return None
            fa, fb = -q * mm * a // da, -q * mm * b // db
            e = -(-q * n * kk * mm * (da * da - db * db) // (4 * da * da * db * db))
        # q·φ(a + t) lies in [fa + p·t − 1, that + width]: the chord, its rounding, and how far a concave
        # φ rises above its chord, at most (φ′(a) − φ′(b))·n/4
        width = n + 3 + e
        if width * 64 >= q:
            return None
        return _Line(a, q, (fb - fa) // n % q, (fa - 1 + width) % q, width, lam)

    def run(self, y_start: float) -> None:
        """Evaluate around y_start; unless that proves the best, search outward in rings of growing
        width until the window lies inside."""
        if self.y_max < 1:
            return
        y0 = min(max(int(y_start), 1), self.y_max) if 0 < y_start < inf else 1  # floats: a start, no more
        for y in (y0, y0 + 1):
            if y <= self.y_max and self.evaluations < self.budget:
                self.evaluate(y)
                if self.beats_phi_star():
                    return
        window = self.window
        if window is None:
            return
        self.peak = y0 = self.find_peak(y0)  # the rings are centred on Φ's peak, whatever the hint was
        if y0 not in self.seen and self.evaluations < self.budget:
            self.evaluate(y0)
            if self.beats_phi_star():
                return
        window = self.window
        if window is None:
            return
        self.roundings_at(*window)
        radius = SMALL // 2
        if not self.search(y0 - radius, y0 + radius, y0):
            return
        while (window := self.window) is not None and (window[0] < y0 - radius or window[1] > y0 + radius):
            wider = 8 * radius
            if not (self.search(y0 + radius + 1, y0 + wider, y0) and self.search(y0 - wider, y0 - radius - 1, y0)):
                return
            radius = wider

    def search(self, a: int, b: int, y0: int) -> bool:
        """Branch and bound over [a, b], the part nearer y0 first. False when the budget ran out."""
        stack: list[tuple[int, int, tuple[int, int], float, list[tuple[_Line, int]]]] = []
        self.push(stack, a, b)
        while stack:
            a0, b, (num, den), loss, lines = stack.pop()
            window = self.window
            if window is None:
                return True
            a, b = max(a0, window[0]), min(b, window[1])
            excess = (num - (self.profit + 1) * den) / den * (1 + 1e-12)  # sup Φ − (profit + 1), rounded up
            if a > b or excess < loss:
                continue
            if b - a < SMALL:  # each y whose own bound does not rule it out
                points = [y for y in range(a, b + 1)
                          if y not in self.seen and self.admits(y, excess, [line for line, _ in lines])]
            else:  # where a rounding costs least
                targets = [line.where(a0, value) for line, value in lines]
                points = [y for y in targets if a <= y <= b and y not in self.seen]
            for y in points:
                window = self.window
                if window is None:
                    return True
                if window[0] <= y <= window[1]:
                    if self.evaluations >= self.budget:
                        self.open = True
                        return False
                    self.evaluate(y)
            if b - a >= SMALL:  # split around the first target (now evaluated), and at the middle
                cut = next((y for y in targets if a <= y <= b), -1)  # too when it is near an end
                quarter = (b - a) // 4
                mid = min(max(y0, a), b - 1) if a <= y0 <= b else (a + b) // 2
                if a + quarter <= cut <= b - quarter:
                    parts = [(a, cut - 1), (cut + 1, b)]
                elif cut > mid:
                    parts = [(a, mid), (mid + 1, cut - 1), (cut + 1, b)]
                elif cut >= a:
                    parts = [(a, cut - 1), (cut + 1, mid), (mid + 1, b)]
                else:
                    parts = [(a, mid), (mid + 1, b)]
                parts.sort(key=lambda part: -abs(part[0] + part[1] - 2 * y0))
                kept = [line for line, _ in lines] if len(lines) == len(self.rounding_curves) else []
                for part in parts:  # the part nearest y0 is pushed last, so searched first
                    self.push(stack, *part, kept)
        return True

    def push(self, stack: list[tuple[int, int, tuple[int, int], float, list[tuple[_Line, int]]]], a: int, b: int,
             inherited: Sequence[_Line | None] = ()) -> None:
        """Stack [a, b] with its bound (sup Φ, the least rounding losses) and each rounding's line with its
        least value, unless the bound already rules it out. A line of the interval [a, b] came from is
        kept where its slack (λ·width/q) is small against sup Φ − (profit + 1); else one is drawn anew."""
        window = self.window
        if window is None:
            return
        a, b = max(a, window[0]), min(b, window[1])
        if a > b:
            return
        sup = num, den = self.sup_phi(a, b)
        excess = (num - (self.profit + 1) * den) / den * (1 + 1e-12)  # sup Φ − (profit + 1), rounded up
        loss, lines = 0.0, []
        if b > a:
            for (j, curve, lam), line in zip(self.rounding_curves, inherited or [None] * len(self.rounding_curves)):
                if line is None or line.lam * line.width > excess * line.q / 16:
                    line = self.line(j, curve, lam, a, b)
                if line is not None:
                    least, value = line.least(a, b)
                    loss += least
                    lines.append((line, value))
        if excess < loss:
            return
        stack.append((a, b, sup, loss, lines))

    def gap(self) -> int:
        """0 when nothing is left to search; else how much more than the best the rest could earn."""
        if not self.open or self.window is None:
            return 0
        num, den = self.phi_star()
        return max(num // den - self.profit, 0)


def optimize(curves: Sequence[Mobius], caps: Sequence[int], x_hint: float | None = None,
             budget: int = 1024) -> V2Optimum | None:
    """The exact integer input that maximises the exact profit around V2 hops given as Möbius curves
    (`caps`: the largest input each hop takes); None when no input has a positive exact profit.

    `x_hint` (the continuous optimum, when the caller has it) is where the search starts; `budget`
    caps the exact evaluations (the result's `gap` then bounds what it may miss).
    """
    if len(curves) < 2 or len(caps) != len(curves):
        raise ValueError(f"a cycle needs 2 or more hops and a cap for each: got {len(curves)} curves, {len(caps)} caps")
    floats = [(float(ck), float(cm), float(cn)) for ck, cm, cn in curves]
    if x_hint is None or not 0 < x_hint < inf:
        big_k, big_m, big_n = 1.0, 1.0, 0.0  # the closed form in floats: only where to start
        for fk, fm, fn in floats:
            big_k, big_m, big_n = big_k * fk, big_m * fm, fm * big_n + fn * big_k
        if big_k < big_m * (1 - 1e-9) or big_n <= 0:
            return None  # (√K − √M)² < 0 with room for float error: no input profits
        x_hint = (sqrt(big_k) * sqrt(big_m) - big_m) / big_n
    k, roundings, y_start = _plan(floats, x_hint if 1 <= x_hint < inf else 1.0)
    search = _Search(curves, caps, k, roundings, budget)
    big_k, big_m, big_n = search.whole
    if big_k <= big_m or big_n <= 0:
        return None
    search.run(y_start)
    if search.best is None:
        return None
    return V2Optimum(search.best, search.amounts(search.best), search.profit, search.gap(), search.evaluations)


def optimize_cycles(cycles: Sequence[Sequence[tuple[int, int, int]]], budget: int = 1024) -> list[V2Optimum | None]:
    """`optimize` over many cycles given as plain numbers: each hop (reserve in, reserve out, fee bps)."""
    out: list[V2Optimum | None] = []
    for hops in cycles:
        curves = [v2_curve(r_in, r_out, fee) for r_in, r_out, fee in hops]
        out.append(optimize(curves, [MAX_RESERVE - r_in for r_in, _, _ in hops], None, budget))
    return out
