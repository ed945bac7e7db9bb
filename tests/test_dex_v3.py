"""Uniswap-V3 exact math: real mainnet swaps replayed to the wei, TickMath, quote consistency, the
Möbius upper bound, and real L2 pool states. Uses only the committed fixtures (tests/fixtures)."""
from __future__ import annotations

import copy
import json
from collections import Counter
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.bench.v3 import naive_swap
from scanner.dex.pool import InvalidPool, Pool
from scanner.dex.v2 import V2Pool
from scanner.dex.v3 import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    Q96,
    SwapResult,
    V3Pool,
    V3Revert,
    mul_div,
    mul_div_rounding_up,
    sqrt_ratio_at_tick,
    tick_at_sqrt_ratio,
)

FIXTURES = Path(__file__).parent / "fixtures"
WBTC_WETH = json.loads((FIXTURES / "v3_wbtc_weth_3000.json").read_text())
L2 = json.loads((FIXTURES / "l2_v3_pools_subset.json").read_text())

# amounts spread over many orders of magnitude: 1 .. ~1e25
amounts = st.builds(lambda mantissa, exponent: mantissa * 10**exponent, st.integers(1, 999), st.integers(0, 22))
quick = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def wbtc_weth() -> V3Pool:
    return V3Pool.from_simulator_json(WBTC_WETH["pool"])


def paid_received(result: SwapResult, zero_for_one: bool) -> tuple[int, int]:
    """(amount paid into the pool, amount it paid out)."""
    return (result.amount0, -result.amount1) if zero_for_one else (result.amount1, -result.amount0)


def gapped_pool(spacing: int) -> V3Pool:
    """A pool whose price sits in a range without liquidity, between ranges several bitmap words away."""
    pool = V3Pool("gapped", "a", "b", 500, spacing, sqrt_ratio_at_tick(0) + 7, 0, 0)
    word = 256 * spacing
    pool.mint(-4 * word - 5 * spacing, -2 * word - 3 * spacing, 10**18)
    pool.mint(-5 * word, -3 * word + 7 * spacing, 3 * 10**17)
    pool.mint(word + 3 * spacing, 4 * word, 2 * 10**18)
    return pool


# -- real mainnet swaps ------------------------------------------------------------------------


def replay_swap(pool: V3Pool, event: dict[str, Any]) -> tuple[str, SwapResult] | None:
    """The mode that reproduces a recorded Swap exactly, trying exact input, exact output, then
    exact input stopped by a price limit at the recorded price."""
    zero_for_one = event["amount0"] > 0
    paid = event["amount0"] if zero_for_one else event["amount1"]
    received = -(event["amount1"] if zero_for_one else event["amount0"])
    recorded = (event["amount0"], event["amount1"], event["sqrtPriceX96"], event["tick"], event["liquidity"])
    tries = (("exact input", paid, None), ("exact output", -received, None),
             ("price limit", paid, event["sqrtPriceX96"]))
    for mode, amount, limit in tries:
        result = pool.swap(zero_for_one, amount, limit)
        if (result.amount0, result.amount1, result.sqrt_price_x96, result.tick, result.liquidity) == recorded:
            return mode, result
    return None


def in_window(state: dict[str, Any], window: list[int]) -> dict[int, tuple[int, int]]:
    return {int(t): (info["liquidityGross"], info["liquidityNet"]) for t, info in state["data"]["ticks"].items()
            if window[0] <= int(t) <= window[1]}


def test_replaying_379_mainnet_events_reproduces_every_swap_and_the_final_state():
    pool = wbtc_weth()
    modes: Counter[str] = Counter()
    crossed = 0
    for event in WBTC_WETH["transactions"]:
        if event["method"] == "SWAP":
            found = replay_swap(pool, event)
            if found is None:
                modes["no match"] += 1
                pool.update(event["sqrtPriceX96"], event["tick"], event["liquidity"])
                continue
            modes[found[0]] += 1
            crossed += found[1].ticks_crossed
            pool.apply(found[1])
        elif event["method"] == "MINT":
            assert pool.mint(event["tickLower"], event["tickUpper"], event["amount"]) == (
                event["amount0"], event["amount1"])
        else:  # the source's Burn records repeat `amount` as amount0; amount1 is the contract's
            assert pool.burn(event["tickLower"], event["tickUpper"], event["amount"])[1] == event["amount1"]
    print(f"\nreplayed swaps: {dict(modes)}, {crossed} initialized ticks crossed")
    assert modes == {"exact input": 313, "exact output": 16}
    after = WBTC_WETH["poolAfter"]
    assert (pool.sqrt_price_x96, pool.tick, pool.liquidity) == (
        after["data"]["slot0"]["sqrtPriceX96"], after["data"]["slot0"]["tick"], after["data"]["liquidity"])
    # each file lists ticks in its own window around the price: compare where both have them
    window = [max(WBTC_WETH["pool"]["tickWindow"][0], after["tickWindow"][0]),
              min(WBTC_WETH["pool"]["tickWindow"][1], after["tickWindow"][1])]
    assert {t: v for t, v in pool.ticks.items() if window[0] <= t <= window[1]} == in_window(after, window)


def test_real_swaps_cross_ticks_and_word_boundaries_like_the_literal_loop():
    pool = wbtc_weth()
    for zero_for_one, amount in ((True, 10**6), (True, 2 * 10**11), (False, 10**17), (False, 5 * 10**21),
                                 (True, -10**20), (False, -10**9)):
        assert pool.swap(zero_for_one, amount) == naive_swap(pool, zero_for_one, amount)
    assert pool.swap(True, 2 * 10**11).ticks_crossed >= 10


# -- TickMath ----------------------------------------------------------------------------------


def test_tick_math_known_values():
    assert sqrt_ratio_at_tick(0) == Q96
    assert sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    assert tick_at_sqrt_ratio(MIN_SQRT_RATIO) == MIN_TICK
    assert tick_at_sqrt_ratio(MAX_SQRT_RATIO - 1) == MAX_TICK - 1
    assert tick_at_sqrt_ratio(Q96) == 0
    assert tick_at_sqrt_ratio(Q96 - 1) == -1


@settings(max_examples=300, deadline=None)
@given(st.integers(MIN_TICK, MAX_TICK))
def test_sqrt_ratio_is_sqrt_of_1_0001_to_the_tick(tick):
    with localcontext() as ctx:
        ctx.prec = 80
        exact = (Decimal("1.0001") ** tick).sqrt() * Q96
        assert abs(Decimal(sqrt_ratio_at_tick(tick)) - exact) <= exact * Decimal("1e-17") + 1


@settings(max_examples=300, deadline=None)
@given(st.integers(MIN_TICK, MAX_TICK - 1))
def test_tick_at_sqrt_ratio_inverts_sqrt_ratio_at_tick(tick):
    ratio = sqrt_ratio_at_tick(tick)
    assert ratio < sqrt_ratio_at_tick(tick + 1)
    assert tick_at_sqrt_ratio(ratio) == tick
    assert tick_at_sqrt_ratio(sqrt_ratio_at_tick(tick + 1) - 1) == tick


@settings(max_examples=300, deadline=None)
@given(st.integers(MIN_SQRT_RATIO, MAX_SQRT_RATIO - 1))
def test_tick_at_sqrt_ratio_is_the_greatest_tick_at_or_below(price):
    tick = tick_at_sqrt_ratio(price)
    assert sqrt_ratio_at_tick(tick) <= price
    assert tick == MAX_TICK - 1 or price < sqrt_ratio_at_tick(tick + 1)


# -- quotes ------------------------------------------------------------------------------------


@quick
@given(st.booleans(), amounts)
def test_exact_output_of_an_exact_input_swap_needs_no_more_input(zero_for_one, amount):
    pool = wbtc_weth()
    paid, received = paid_received(pool.swap(zero_for_one, amount), zero_for_one)
    if received == 0:
        return
    paid_out, received_out = paid_received(pool.swap(zero_for_one, -received), zero_for_one)
    assert received_out == received
    assert paid_out <= paid


@quick
@given(st.booleans(), amounts)
def test_quote_in_is_the_smallest_sufficient_input(zero_for_one, amount_out):
    pool = wbtc_weth()
    amount_in = pool.quote_in(zero_for_one, amount_out)
    if amount_in is None:
        assert pool.quote_out(zero_for_one, pool.max_input(zero_for_one)) < amount_out
        return
    assert pool.quote_out(zero_for_one, amount_in) >= amount_out
    assert pool.quote_out(zero_for_one, amount_in - 1) < amount_out


@quick
@given(st.booleans(), amounts, st.integers(1, 10**6))
def test_quote_out_is_monotone_and_below_the_mobius_curve(zero_for_one, amount, more):
    pool = wbtc_weth()
    k, m, n = pool.mobius(zero_for_one)
    out = pool.quote_out(zero_for_one, amount)
    assert out == paid_received(pool.swap(zero_for_one, amount), zero_for_one)[1]
    assert out * (m + n * amount) <= k * amount
    assert pool.quote_out(zero_for_one, amount + more) >= out


@quick
@given(st.sampled_from([1, 10, 60]), st.booleans(), amounts, st.booleans(), st.integers(-6, 6))
def test_fast_swap_equals_the_literal_contract_loop(spacing, zero_for_one, amount, exact_input, limit_word):
    """Also through ranges without liquidity (merged steps) and limits on bitmap-word boundaries."""
    pool = gapped_pool(spacing)
    limit = sqrt_ratio_at_tick(limit_word * 256 * spacing) if limit_word else None
    signed = amount if exact_input else -amount
    try:
        expected = naive_swap(pool, zero_for_one, signed, limit)
    except V3Revert as revert:
        with pytest.raises(V3Revert, match=revert.reason):
            pool.swap(zero_for_one, signed, limit)
        return
    assert pool.swap(zero_for_one, signed, limit) == expected
    k, m, n = pool.mobius(zero_for_one)
    assert pool.quote_out(zero_for_one, amount) * (m + n * amount) <= k * amount


@pytest.mark.parametrize("zero_for_one, first", [(True, -2 * 2560 - 3 * 10), (False, 2560 + 3 * 10)])
def test_the_curve_of_a_pool_priced_between_ranges_starts_where_liquidity_does(zero_for_one, first):
    """An empty range is crossed for free, so the bound is priced at the first tick with liquidity
    ahead, not at the pool's own price (a pool stranded past its liquidity would look like an
    arbitrage that pays nothing)."""
    pool = gapped_pool(10)
    k, m, _ = pool.mobius(zero_for_one)
    price = sqrt_ratio_at_tick(first) ** 2 / 2**192
    rate = (price if zero_for_one else 1 / price) * (1 - 500 / 1e6)
    assert k / m == pytest.approx(rate, rel=1e-12)
    assert pool.quote_out(zero_for_one, 10**12) * m <= k * 10**12 < pool.quote_out(zero_for_one, 10**12) * m * 1.01


def test_a_swap_to_the_limit_on_a_word_boundary_through_empty_ranges_sets_the_tick_below_it():
    pool = gapped_pool(10)
    boundary = -256 * 10  # a word boundary in the range without liquidity around the price
    result = pool.swap(True, 10**30, sqrt_ratio_at_tick(boundary))
    assert (result.sqrt_price_x96, result.tick, result.amount0, result.amount1) == (
        sqrt_ratio_at_tick(boundary), boundary - 1, 0, 0)
    assert result == naive_swap(pool, True, 10**30, sqrt_ratio_at_tick(boundary))


def test_swap_does_not_change_the_pool_and_apply_does():
    pool = wbtc_weth()
    before = (pool.sqrt_price_x96, pool.tick, pool.liquidity)
    result = pool.swap(True, 3 * 10**10)
    assert (pool.sqrt_price_x96, pool.tick, pool.liquidity) == before
    pool.apply(result)
    assert (pool.sqrt_price_x96, pool.tick, pool.liquidity) == (result.sqrt_price_x96, result.tick, result.liquidity)
    assert pool.quote_out(True, 3 * 10**10) < -result.amount1  # the price moved against the seller


def test_mint_then_burn_restores_the_ticks_and_rounds_against_the_owner():
    pool = wbtc_weth()
    original = copy.deepcopy((pool.ticks, pool.liquidity))
    for lower, upper in ((257700, 257880), (250020, 251040), (262020, 263040), (257400, 257460)):
        paid = pool.mint(lower, upper, 10**15 + 1)
        owed = pool.burn(lower, upper, 10**15 + 1)
        assert all(0 <= p - o <= 1 for p, o in zip(paid, owed))
        assert (pool.ticks, pool.liquidity) == original


def test_fee_fields():
    pool = wbtc_weth()
    assert (pool.fee, pool.fee_bps, pool.tick_spacing) == (3000, 30, 60)
    assert isinstance(pool, Pool)


# -- bad input ---------------------------------------------------------------------------------


def make(**overrides: Any) -> V3Pool:
    fields: dict[str, Any] = dict(address="0xbad", token0="a", token1="b", fee=3000, tick_spacing=60,
                                  sqrt_price_x96=Q96, tick=0, liquidity=10**18, ticks={-60: (1, 1), 60: (1, -1)})
    fields.update(overrides)
    return V3Pool(**fields)


@pytest.mark.parametrize("overrides, message", [
    (dict(sqrt_price_x96=0), "not initialized"),
    (dict(sqrt_price_x96=MAX_SQRT_RATIO, tick=MAX_TICK), "sqrtPriceX96 .* is outside"),
    (dict(sqrt_price_x96=MIN_SQRT_RATIO - 1, tick=MIN_TICK), "sqrtPriceX96 .* is outside"),
    (dict(tick=MAX_TICK + 1), "tick 887273 is outside"),
    (dict(tick=5), "does not match"),
    (dict(ticks={30: (1, 1)}), "tick 30 is not a multiple of the tick spacing 60"),
    (dict(ticks={MAX_TICK + 60 - MAX_TICK % 60: (1, 1)}), "is outside"),
    (dict(ticks={60: (0, 0)}), "liquidityGross 0"),
    (dict(fee=10**6), "fee"),
    (dict(token1="a"), "both tokens"),
    (dict(liquidity=-1), "liquidity -1"),
])
def test_invalid_pools_are_refused_with_the_pool_and_the_reason(overrides, message):
    with pytest.raises(InvalidPool, match=f"pool 0xbad: .*{message}"):
        make(**overrides)


def test_l2_states_without_a_price_are_refused():
    with pytest.raises(InvalidPool, match="no sqrt_price"):
        V3Pool.from_l2_state("0xnone", {"sqrt_price": None, "tick": None, "liquidity": None, "ticks": {}},
                             "a", "b", 500)
    with pytest.raises(InvalidPool, match="fee tier 123"):
        V3Pool.from_l2_state("0xodd", {"sqrt_price": str(Q96), "tick": "0", "liquidity": "0", "ticks": {}},
                             "a", "b", 123)


def test_the_contracts_reverts():
    pool = make()
    with pytest.raises(V3Revert, match="AS"):
        pool.swap(True, 0)
    with pytest.raises(V3Revert, match="SPL"):
        pool.swap(True, 10, Q96 + 1)
    with pytest.raises(V3Revert, match="SPL"):
        pool.swap(True, 10, MIN_SQRT_RATIO)
    with pytest.raises(V3Revert, match="SPL"):
        pool.swap(False, 10, MAX_SQRT_RATIO)
    with pytest.raises(V3Revert, match="T"):
        sqrt_ratio_at_tick(MIN_TICK - 1)
    for price in (MIN_SQRT_RATIO - 1, MAX_SQRT_RATIO):
        with pytest.raises(V3Revert, match="R"):
            tick_at_sqrt_ratio(price)
    with pytest.raises(V3Revert, match="exceeds uint256"):
        mul_div(2**255, 2, 1)
    with pytest.raises(V3Revert, match="exceeds uint256"):
        mul_div_rounding_up(2**256 - 1, 2**256 - 1, 2**256 - 2)
    with pytest.raises(V3Revert, match="by zero"):
        mul_div(1, 1, 0)
    assert mul_div_rounding_up(2**200, 3, 2) == 3 * 2**199
    assert mul_div_rounding_up(7, 3, 2) == 11
    for lower, upper, reason in ((60, 60, "TLU"), (MIN_TICK - 1, 0, "TLM"), (0, MAX_TICK + 1, "TUM"),
                                 (30, 120, "TickBitmap")):
        with pytest.raises(V3Revert, match=reason):
            pool.mint(lower, upper, 1)
    with pytest.raises(V3Revert, match="LS"):
        pool.burn(-60, 60, 2)
    assert pool.ticks == {-60: (1, 1), 60: (1, -1)}  # a reverted burn leaves no trace


def test_a_pool_without_liquidity_quotes_nothing():
    pool = make(liquidity=0, ticks={})
    assert pool.quote_out(True, 10**18) == 0
    assert pool.quote_in(True, 1) is None
    assert pool.max_input(True) == 0
    assert pool.mobius(False) == (0, 1, 0)


# -- real L2 pool states -----------------------------------------------------------------------


def l2_pools() -> list[tuple[dict[str, Any], Pool]]:
    pools: list[tuple[dict[str, Any], Pool]] = []
    for meta in L2["pools"]:
        state = L2["states"][meta["address"]]
        t0, t1 = meta["token0"]["address"], meta["token1"]["address"]
        if meta["version"] == "v3":
            pools.append((meta, V3Pool.from_l2_state(meta["address"], state, t0, t1, int(meta["feeTier"]))))
        else:
            pools.append((meta, V2Pool(meta["address"], t0, t1, int(state["reserve0"]), int(state["reserve1"]))))
    return pools


def test_l2_pools_quote_both_ways_at_five_sizes():
    pools = l2_pools()
    assert Counter(meta["chain"] for meta, _ in pools) == {"base": 5, "arbitrum": 2, "optimism": 2}
    for meta, pool in pools:
        for zero_for_one in (True, False):
            decimals = int(meta["token0" if zero_for_one else "token1"]["decimals"])
            k, m, n = pool.mobius(zero_for_one)
            outs = []
            for size in (10 ** (decimals + e) for e in range(-3, 2)):
                out = pool.quote_out(zero_for_one, size)
                assert out * (m + n * size) <= k * size, meta["address"]
                amount_in = pool.quote_in(zero_for_one, out)
                assert amount_in is not None and amount_in <= size
                outs.append(out)
            assert outs == sorted(outs) and outs[0] > 0, (meta["address"], zero_for_one, outs)
