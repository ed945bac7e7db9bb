"""Exact V2 math: the pair's K check accepts exactly what amount_out and amount_in say."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.dex.v2 import FEE_DENOMINATOR, MAX_RESERVE, amount_in, amount_out

reserves = st.integers(0, MAX_RESERVE)
amounts = st.integers(0, 2**128)
fees = st.integers(0, 1_000)
EXAMPLES = settings(max_examples=400, deadline=None)


def k_check_passes(x: int, out: int, r_in: int, r_out: int, fee: int) -> bool:
    """FeePair.swap's invariant check for paying x in and taking out."""
    return (r_in * FEE_DENOMINATOR + x * (FEE_DENOMINATOR - fee)) * (r_out - out) >= r_in * r_out * FEE_DENOMINATOR


@EXAMPLES
@given(amounts, reserves, reserves, fees)
def test_amount_out_is_the_most_the_k_check_allows(x, r_in, r_out, fee):
    out = amount_out(x, r_in, r_out, fee)
    assert 0 <= out < max(r_out, 1)
    if x > 0 and r_in > 0 and r_out > 0:
        assert k_check_passes(x, out, r_in, r_out, fee)
        assert out + 1 >= r_out or not k_check_passes(x, out + 1, r_in, r_out, fee)


@EXAMPLES
@given(amounts, reserves, reserves, fees)
def test_amount_in_inverts_amount_out(x, r_in, r_out, fee):
    out = amount_out(x, r_in, r_out, fee)
    if out == 0:
        return
    needed = amount_in(out, r_in, r_out, fee)
    assert needed is not None and needed <= x
    assert amount_out(needed, r_in, r_out, fee) >= out
    assert amount_out(needed - 1, r_in, r_out, fee) < out  # and it is the smallest such input


@EXAMPLES
@given(st.integers(1, MAX_RESERVE), reserves, reserves, fees)
def test_amount_in_is_the_least_the_k_check_allows(out, r_in, r_out, fee):
    needed = amount_in(out, r_in, r_out, fee)
    if needed is None:
        assert r_in == 0 or out >= r_out
        return
    assert k_check_passes(needed, out, r_in, r_out, fee)
    assert not k_check_passes(needed - 1, out, r_in, r_out, fee)


@EXAMPLES
@given(amounts, amounts, reserves, reserves, fees)
def test_amount_out_is_monotone_in_the_input(a, b, r_in, r_out, fee):
    lo, hi = sorted((a, b))
    assert amount_out(lo, r_in, r_out, fee) <= amount_out(hi, r_in, r_out, fee)


@EXAMPLES
@given(amounts, reserves, reserves, fees, fees)
def test_a_higher_fee_never_pays_more(x, r_in, r_out, fee_a, fee_b):
    lo, hi = sorted((fee_a, fee_b))
    assert amount_out(x, r_in, r_out, hi) <= amount_out(x, r_in, r_out, lo)


@pytest.mark.parametrize("r_in, r_out", [(0, 0), (0, 10**18), (10**18, 0), (1, 1), (1, 0), (0, 1)])
def test_empty_and_one_wei_reserves_give_zero(r_in, r_out):
    for x in (0, 1, 10**18, MAX_RESERVE):
        assert amount_out(x, r_in, r_out, 30) == 0
    assert amount_in(1, r_in, r_out, 30) is None


def test_matches_the_canonical_997_over_1000():
    x, r_in, r_out = 10**18, 123 * 10**18, 456_789 * 10**6
    assert amount_out(x, r_in, r_out, 30) == x * 997 * r_out // (r_in * 1000 + x * 997)
