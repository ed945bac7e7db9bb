"""Sizing: the closed form over folded curves, then the exact integer search, against brute force."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scanner.dex.v2 import FEE_DENOMINATOR, MAX_RESERVE, V2Pool
from scanner.route.sizing import compose, fold, forward, optimum, profit_upper_bound, refine, refine_mixed

FEES = st.sampled_from([0, 5, 25, 30, 100, 300])


def cycle(reserves: list[tuple[int, int]], fees: list[int]) -> list[tuple[V2Pool, bool]]:
    """Pools B→T1→…→B where hop h sells its reserve_in side (token0 of each pool)."""
    names = ["B"] + [f"T{h}" for h in range(1, len(reserves))] + ["B"]
    return [
        (V2Pool(f"p{h}", names[h], names[h + 1], r_in, r_out, fee), True)
        for h, ((r_in, r_out), fee) in enumerate(zip(reserves, fees))
    ]


def closed_form(hops) -> tuple[float, float]:
    curves = np.array([[pool.mobius(z) for pool, z in hops]], dtype=float)  # (1, hops, 3)
    x, profit = optimum(*fold(curves[..., 0], curves[..., 1], curves[..., 2]))
    return float(x[0]), float(profit[0])


def brute_force(hops) -> int:
    """Best exact profit over every input that could possibly profit (int64 is exact at these sizes)."""
    x = np.arange(1, hops[-1][0].reserves(hops[-1][1])[1] + 1, dtype=np.int64)
    amount = x
    for pool, z in hops:
        r_in, r_out = pool.reserves(z)
        with_fee = amount * (FEE_DENOMINATOR - pool.fee_bps)
        amount = with_fee * r_out // (r_in * FEE_DENOMINATOR + with_fee)
    return max(int((amount - x).max()), 0)


# Base-token reserves up to 1e6 "wei" keep brute force over every input cheap. Middle tokens come
# in three grains: coarse like a 6-decimal token against an 18-decimal base (a unit is worth up to
# ~5e4 base units), 8-decimal-like, and as fine as the base token itself.
base_side = st.integers(1_000, 1_000_000)
middle_side = st.one_of(st.integers(20, 500), st.integers(500, 20_000), st.integers(20_000, 1_000_000))


@st.composite
def small_cycles(draw):
    n = draw(st.sampled_from([2, 3]))
    middles = [draw(middle_side) for _ in range(n - 1)]
    reserves = [(draw(base_side), middles[0])]
    for h in range(1, n - 1):
        reserves.append((middles[h - 1], middles[h]))
    reserves.append((middles[-1], draw(base_side)))
    return cycle(reserves, [draw(FEES) for _ in range(n)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_cycles())
def test_refinement_reaches_the_brute_force_optimum(hops):
    best = brute_force(hops)
    x_star, _ = closed_form(hops)
    sized = refine(hops, x_star, budget=10**6)
    if best == 0:
        assert sized is None
        return
    assert sized is not None and sized.gap == 0
    assert sized.gross_profit == best
    assert list(sized.amounts) == forward(hops, sized.amount_in)
    assert sized.amounts[-1] - sized.amount_in == best


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_cycles())
def test_capped_search_proves_its_gap(hops):
    """Cut short (one point each side), the result still says by how much it may fall short."""
    best = brute_force(hops)
    sized = refine(hops, closed_form(hops)[0], budget=1)
    if sized is None:
        return
    event(f"gap {'> 0' if sized.gap else '= 0'}")
    assert sized.gross_profit <= best <= sized.gross_profit + sized.gap


@settings(max_examples=300, deadline=None)
@given(small_cycles())
def test_continuous_profit_bounds_the_exact_one(hops):
    x, profit = closed_form(hops)
    bound = float(profit_upper_bound(np.array([x]), np.array([profit]))[0])
    assert brute_force(hops) <= bound


def test_coarse_middle_token_defeats_a_neighbour_scan():
    """A 6-decimal middle token between 18-decimal sides: the exact profit is a staircase whose
    steps are ~1e12 wei wide, and the best step is not next to the continuous optimum."""
    e18, e6 = 10**18, 10**6
    hops = cycle([(1_000 * e18, 3_000_000 * e6), (2_900_000 * e6, 1_000 * e18)], [30, 5])
    x_star, _ = closed_form(hops)
    sized = refine(hops, x_star)
    assert sized is not None and sized.gap == 0

    def profit(x: int) -> int:
        return forward(hops, x)[-1] - x

    near = max(profit(int(x_star) + d) for d in range(-3, 4))
    assert sized.gross_profit > near
    # brute force over the relevant staircase: every input is at or after a step of the USDC output
    y_star = forward(hops[:1], int(x_star))[0]
    steps = [hops[0][0].quote_in(True, y) for y in range(y_star - 2_000, y_star + 2_000)]
    assert sized.gross_profit == max(profit(x) for x in steps)


def test_no_profit_when_the_fold_says_k_not_above_m():
    hops = cycle([(1_000_000, 1_000_000), (1_000_000, 1_000_000)], [30, 30])
    k, m, n = compose(hops[0][0].mobius(True), hops[1][0].mobius(True))
    assert k <= m
    x, profit = closed_form(hops)
    assert x == 0 and profit == 0
    assert refine(hops, x) is None
    assert brute_force(hops) == 0


@pytest.mark.parametrize("r_in, r_out", [(0, 10**6), (10**6, 0), (1, 1), (0, 0)])
def test_empty_and_one_wei_pools_give_nothing(r_in, r_out):
    hops = cycle([(r_in, r_out), (10**6, 10**9)], [30, 30])
    x, profit = closed_form(hops)
    sized = refine(hops, x)
    assert sized is None or sized.gross_profit == brute_force(hops)


def test_reserves_at_the_uint112_limit_stay_within_it():
    """An enormous gap: the optimum input would overflow the first pool's uint112 reserve."""
    hops = cycle([(MAX_RESERVE // 2, MAX_RESERVE), (1_000, MAX_RESERVE - 5)], [30, 30])
    x, _ = closed_form(hops)
    sized = refine(hops, x)
    assert sized is not None and sized.gross_profit > 0
    for (pool, z), amount in zip(hops, (sized.amount_in, *sized.amounts[:-1])):
        assert amount <= pool.max_input(z)
    assert sized.amounts[-1] <= hops[-1][0].reserves(True)[1]
    assert list(sized.amounts) == forward(hops, sized.amount_in)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_cycles())
def test_the_mixed_search_reaches_the_brute_force_optimum_on_v2_cycles(hops):
    """The search that sizes cycles with V3 hops takes any pools: on these it proves the brute
    force optimum too, without the closed form's hint."""
    best = brute_force(hops)
    sized = refine_mixed(hops, budget=10**5)
    if best == 0:
        assert sized is None
        return
    assert sized is not None and sized.gap == 0
    assert sized.gross_profit == best
    assert list(sized.amounts) == forward(hops, sized.amount_in)
