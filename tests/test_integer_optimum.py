"""The exact integer optimum of V2 cycles (`scanner.route.integer_optimum`) against the truth.

- Small reserves: every input is tried (numpy, exact in int64 at these sizes); the optimizer must
  find the best exact profit on every cycle: 2, 3 and 4 hops, fees of 5 to 100 bps, middle tokens
  whose unit is worth ~1e3–3e4 base units (like a 6-decimal token against an 18-decimal base),
  ~10–300 (8 decimals) or ≤ 1 (18 decimals).
- Realistic reserves (1 to 1000 ETH, 6-, 8- and 18-decimal middles worth 1e-4 to 10 ETH): a slow
  certified search (`scanner.bench.sizing.certified_best`: every plateau start of a token inside
  the window where the continuous bound could still beat the result, with the pools' own quote
  functions) must find nothing better.
- The pieces the proof rests on: the Euclid minimum of a line mod q, and the rounding bound.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from scanner.bench.sizing import certified_best, exact_profit
from scanner.dex.v2 import FEE_DENOMINATOR, MAX_RESERVE, V2Pool
from scanner.route.integer_optimum import _plan, _Search, compose_all, min_mod_linear, optimize_cycles, v2_curve
from scanner.route.sizing import refine

PlainHop = tuple[int, int, int]


def check(hops: list[PlainHop], best: int) -> None:
    """The optimizer (plain numbers, and `refine` on pools) finds `best`, proven, with exact amounts."""
    found = optimize_cycles([hops])[0]
    pools = [(V2Pool(f"p{h}", f"T{h}", f"T{h + 1}", r_in, r_out, fee), True) for h, (r_in, r_out, fee) in enumerate(hops)]
    sized = refine(pools, 0.0, budget=1024)
    if best <= 0:
        assert found is None and sized is None
        return
    assert found is not None and sized is not None
    assert found.profit == sized.gross_profit == best and found.gap == sized.gap == 0
    assert exact_profit(hops, found.amount_in) == best
    amount = found.amount_in
    for (r_in, _, _), out in zip(hops, found.amounts):
        assert 0 < amount <= MAX_RESERVE - r_in
        amount = out
    assert found.amounts[-1] - found.amount_in == best


# -- small reserves: every input --------------------------------------------------------------------


def every_input_best(hops: list[PlainHop]) -> int:
    """The best exact profit over every input that could profit (int64 is exact at these sizes)."""
    big_k, big_m, big_n = compose_all([v2_curve(*hop) for hop in hops])
    if big_k <= big_m:
        return 0
    x = np.arange(1, (big_k - big_m) // big_n + 2, dtype=np.int64)  # beyond: even the continuous profit < 0
    amount = x
    for r_in, r_out, fee in hops:
        with_fee = amount * (FEE_DENOMINATOR - fee)
        assert float(with_fee[-1]) * r_out < 2**63, "int64 would overflow: smaller reserves"
        amount = with_fee * r_out // (r_in * FEE_DENOMINATOR + with_fee)
    return max(int((amount - x).max()), 0)


GRAINS = {"6 decimals": (2.5, 3.5), "8 decimals": (1.0, 2.0), "18 decimals": (-1.0, 0.0)}  # log10 base units per unit


@st.composite
def small_cycles(draw) -> list[PlainHop]:
    """Base token B (1 unit = 1), middles of a drawn grain, pools of 3e5 to 3e6 B (so that a trade buys
    tens to thousands of units of a coarse middle), mispriced by 1% to 10% (less the fees: not all profit)."""
    n = draw(st.sampled_from([2, 3, 4]))
    grains = [draw(st.sampled_from(sorted(GRAINS))) for _ in range(n - 1)]
    event(f"{n} hops")
    for grain in grains:
        event(grain)
    value = [1.0] + [10 ** draw(st.floats(*GRAINS[g])) for g in grains] + [1.0]
    gain = (1 + draw(st.floats(0.01, 0.1))) ** (1 / n)
    hops = []
    for h in range(n):
        depth = 10 ** draw(st.floats(5.5, 6.5))
        r_in = int(depth / value[h])
        r_out = int(r_in * value[h] / value[h + 1] * gain)
        hops.append((r_in, r_out, draw(st.integers(5, 100))))
    return hops


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_cycles())
def test_small_cycles_match_every_input(hops):
    best = every_input_best(hops)
    event("profitable" if best > 0 else "unprofitable")
    check(hops, best)


# -- realistic reserves: the certified search --------------------------------------------------------


@st.composite
def realistic_cycles(draw) -> list[PlainHop]:
    """18-decimal base, middles of 6, 8 or 18 decimals worth 1e-4 to 10 base tokens, 1 to 1000 ETH deep;
    2 and 3 hops (with 4, one middle token's rounding is left out of the bound, and a cycle may end
    with a proven gap instead: see `integer_optimum._plan`)."""
    n = draw(st.sampled_from([2, 3]))
    decimals = [18] + [draw(st.sampled_from([6, 8, 18])) for _ in range(n - 1)] + [18]
    event(f"{n} hops, middles of {decimals[1:-1]} decimals")
    value = [1.0] + [10 ** draw(st.floats(-4, 1)) for _ in range(n - 1)] + [1.0]
    gain = (1 + draw(st.floats(0.005, 0.05))) ** (1 / n)
    hops = []
    for h in range(n):
        depth = 10 ** draw(st.floats(0, 3))
        r_in = int(depth / value[h] * 10 ** decimals[h])
        r_out = int(r_in * (value[h] / 10 ** decimals[h]) / (value[h + 1] / 10 ** decimals[h + 1]) * gain)
        hops.append((max(r_in, 1), max(r_out, 1), draw(st.integers(5, 100))))
    return hops


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(realistic_cycles())
def test_realistic_cycles_match_the_certified_search(hops):
    found = optimize_cycles([hops])[0]
    profit = found.profit if found is not None else 0
    event("profitable" if profit > 0 else "unprofitable")
    best = certified_best(hops, profit, limit=200_000)
    assume(best is not None)  # every token finer than the base: the window is too wide to enumerate
    check(hops, best)


def test_two_coarse_middles_beat_a_neighbour_scan():
    """USDC-like then USDT-like middle (6 decimals each, 1e8 wei a unit): the profit is jagged by the
    second token's rounding across thousands of plateau starts of the first; the best is not next to
    the continuous optimum, and the optimizer proves it with a few evaluations."""
    e18, e6 = 10**18, 10**6
    hops = [(300 * e18, 1_000_000 * e6, 30), (2_000_000 * e6, 2_010_000 * e6, 5), (1_000_000 * e6, 303 * e18, 30)]
    found = optimize_cycles([hops])[0]
    assert found is not None and found.gap == 0
    assert certified_best(hops, found.profit) == found.profit
    curves = [v2_curve(*hop) for hop in hops]
    big_k, big_m, big_n = compose_all(curves)
    x_star = int((float(big_k) ** 0.5 * float(big_m) ** 0.5 - big_m) / big_n)
    near = max(exact_profit(hops, x_star + d) for d in range(-50, 51))
    assert found.profit > near
    assert found.evaluations <= 32


# -- the pieces ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 400), st.integers(1, 10**6), st.integers(-(10**7), 10**7), st.integers(-(10**7), 10**7))
def test_min_mod_linear_is_the_least_value(count, modulus, a, b):
    assert min_mod_linear(count, modulus, a, b) == min((a * t + b) % modulus for t in range(count))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(realistic_cycles(), st.integers(1, 5000), st.floats(0.0, 1.0))
def test_the_rounding_bound_never_exceeds_the_rounding(hops, length, where):
    """At every y of an interval, each line's bound on its rounding (in units of 1/q) is at most the exact
    fractional part of the continuous amount of that token (after T_k), or its deficit (before T_k); and
    the y the search evaluates for a line is where the line's least value is."""
    curves = [v2_curve(*hop) for hop in hops]
    big_k, big_m, big_n = compose_all(curves)
    if big_k <= big_m:
        return
    floats = [(float(ck), float(cm), float(cn)) for ck, cm, cn in curves]
    k, roundings, y_star = _plan(floats, (float(big_k) ** 0.5 * float(big_m) ** 0.5 - big_m) / big_n)
    search = _Search(curves, [MAX_RESERVE - r for r, _, _ in hops], k, roundings, budget=1)
    a = max(int(y_star * (0.5 + where)), 1)
    b = min(a + length, search.y_max)
    if b <= a:
        return
    search.roundings_at(a, b)
    for j, curve, lam in search.rounding_curves:
        line = search.line(j, curve, lam, a, b)
        if line is None:
            continue
        event(f"rounding {'after' if j > k else 'before'} T_k")
        kk, mm, nn = curve
        for y in range(a, b + 1, max((b - a) // 200, 1)):
            if j > k:
                amount = Fraction(kk * y, mm + nn * y)
                rounding = amount - (amount.numerator // amount.denominator)
            else:
                amount = Fraction(mm * y, kk - nn * y)
                rounding = -(-amount.numerator // amount.denominator) - amount
            least = (line.p * (y - line.a) + line.start) % line.q
            assert Fraction(least - line.width, line.q) <= rounding
        least, value = line.least(a, b)
        y = line.where(a, value)
        assert a <= y <= b and (line.p * (y - line.a) + line.start) % line.q == value


# -- the scanner's ranking -------------------------------------------------------------------------------


def test_the_rankings_profits_are_the_certified_optimum():
    """On a seeded synthetic market, every opportunity the ranker returns is sized at the certified
    optimum of its cycle (so no other sizing of it earns more: a changed profit can only go up), and
    at least what an integer ternary search over the input finds."""
    from scanner.bench.scan import GAS_PRICE, synthetic_market
    from scanner.bench.sizing import ternary
    from scanner.rank.ranking import Ranker

    market, bases = synthetic_market(600, seed=3)
    by_address = {pool.address: pool for pool in market}
    ranking = Ranker(market, bases, GAS_PRICE, top_n=30).full_rescan(0)
    assert len(ranking) >= 10
    for opportunity in ranking:
        hops = [(*by_address[address].reserves(z41), by_address[address].fee_bps)
                for address, z41 in zip(opportunity.pools, opportunity.zero_for_one)]
        assert opportunity.optimality_gap == 0
        assert exact_profit(hops, opportunity.amount_in) == opportunity.gross_profit
        assert certified_best(hops, opportunity.gross_profit, limit=200_000) == opportunity.gross_profit
        assert opportunity.gross_profit >= ternary(hops)[1]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(realistic_cycles(), st.floats(0.0, 1.2))
def test_the_window_is_where_phi_reaches_the_bar(hops, share):
    """`solve_window` (a square root to ~150 bits, then exact steps) gives exactly the y where Φ(y) ≥
    profit + 1: Φ reaches it at both ends, not one step beyond (Φ is concave: so nowhere outside)."""
    curves = [v2_curve(*hop) for hop in hops]
    big_k, big_m, big_n = compose_all(curves)
    if big_k <= big_m:
        return
    floats = [(float(ck), float(cm), float(cn)) for ck, cm, cn in curves]
    k, roundings, _ = _plan(floats, (float(big_k) ** 0.5 * float(big_m) ** 0.5 - big_m) / big_n)
    search = _Search(curves, [MAX_RESERVE - r for r, _, _ in hops], k, roundings, budget=1)
    search.profit = int(share * (float(big_k) ** 0.5 - float(big_m) ** 0.5) ** 2 / big_n)

    def reaches(y: int) -> bool:
        num, den = search.phi(y)
        return num >= (search.profit + 1) * den

    window = search.solve_window()
    event("empty" if window is None else "an interval")
    if window is None:
        assert not any(reaches(y) for y in {search.find_peak(1), 1} if 1 <= y <= search.y_max)
        return
    lo, hi = window
    assert reaches(lo) and reaches(hi)
    assert lo == 1 or not reaches(lo - 1)
    assert hi == search.y_max or not reaches(hi + 1)
