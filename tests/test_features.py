import math

import numpy as np
import pytest

from scanner.model.features import (
    FEATURE_NAMES,
    N_FEATURES,
    FeatureRow,
    NonFiniteFeatureError,
    Normalizer,
    PoolObservation,
    compute_features,
)


def obs(**changes) -> PoolObservation:
    base = dict(reserve0=2_000 * 10**18, reserve1=4_000_000 * 10**6, prev_reserve0=2_010 * 10**18,
                prev_reserve1=3_980_000 * 10**6, amount0_in=5 * 10**18, amount1_in=30_000 * 10**6,
                base_fee_wei=30 * 10**9, tip_wei=2 * 10**9, gas_used_ratio=0.75)
    return PoolObservation(**{**base, **changes})


def test_feature_names_follow_the_row():
    row = FeatureRow(7, 100, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    assert FEATURE_NAMES == ("log_price_change", "volume_to_liquidity", "log_gas_price", "log_liquidity", "congestion",
                             "log_price_gap", "fee", "log_ticks_crossed")
    assert N_FEATURES == 8
    assert row.values() == tuple(getattr(row, n) for n in FEATURE_NAMES) == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)


def test_compute_features_values():
    o = obs()
    price, volume, gas, liquidity, congestion, gap, fee, crossed = compute_features(o)
    assert price == pytest.approx(math.log((4_000_000e6 / 2_000e18) / (3_980_000e6 / 2_010e18)))
    assert volume == pytest.approx(math.log1p(5 / 2_010 + 30_000 / 3_980_000))
    assert gas == pytest.approx(math.log1p(32.0))
    assert liquidity == pytest.approx(math.log(math.sqrt(2_000e18 * 4_000_000e6)))
    assert congestion == 0.75
    assert gap == 0.0  # no reference price: the pool reads as fairly priced
    assert fee == 0.003  # the default 30 bps
    assert crossed == 0.0  # a V2 pool has no ticks


def test_ticks_crossed_feature():
    for crossed in (0, 1, 7, 6_827):
        assert compute_features(obs(ticks_crossed=crossed))[7] == math.log1p(crossed)
    # It depends on nothing else and nothing else depends on it.
    assert compute_features(obs(ticks_crossed=3))[:7] == compute_features(obs())[:7]
    with pytest.raises(ValueError, match="ticks crossed must be non-negative"):
        compute_features(obs(ticks_crossed=-1))


def test_price_gap_and_fee_features():
    mid = math.log(4_000_000e6 / 2_000e18)  # raw token1 per raw token0 of the pool
    for ref in (mid, mid - 0.01, mid + 0.25, math.log(1e-12)):
        *_, gap, fee, _ = compute_features(obs(ref_log_price=ref, fee_bps=5))
        assert gap == pytest.approx(mid - ref, abs=1e-12)
        assert fee == 0.0005
    *_, gap, fee, _ = compute_features(obs(ref_log_price=None, fee_bps=0))
    assert (gap, fee) == (0.0, 0.0)
    *_, fee, _ = compute_features(obs(fee_bps=9_999))
    assert fee == 0.9999
    # The other five features do not depend on the reference price or the fee.
    assert compute_features(obs(ref_log_price=mid + 1.0, fee_bps=100))[:5] == compute_features(obs())[:5]


@pytest.mark.parametrize("ref", [math.nan, math.inf, -math.inf])
def test_non_finite_reference_price_is_refused(ref):
    with pytest.raises(ValueError, match="ref_log_price must be finite"):
        compute_features(obs(ref_log_price=ref))


@pytest.mark.parametrize("fee_bps", [-1, 10_000, 10_001])
def test_fee_outside_its_range_is_refused(fee_bps):
    with pytest.raises(ValueError, match=r"fee_bps must be in \[0, 10000\)"):
        compute_features(obs(fee_bps=fee_bps))


def test_quiet_block_and_huge_reserves():
    big = 2**112 - 1  # the V2 reserve limit: beyond float range for numpy ints, fine for math.log
    price, volume, gas, liquidity, *_ = compute_features(
        obs(reserve0=big, reserve1=big, prev_reserve0=big, prev_reserve1=big, amount0_in=0, amount1_in=0,
            base_fee_wei=0, tip_wei=0))
    assert (price, volume, gas) == (0.0, 0.0, 0.0)
    assert liquidity == pytest.approx(112 * math.log(2))


@pytest.mark.parametrize("changes, message", [
    ({"reserve0": 0}, "reserve0 must be positive"),
    ({"prev_reserve1": 0}, "prev_reserve1 must be positive"),
    ({"amount0_in": -1}, "non-negative"),
    ({"gas_used_ratio": 1.5}, "gas_used_ratio"),
])
def test_compute_features_rejects_impossible_observations(changes, message):
    with pytest.raises(ValueError, match=message):
        compute_features(obs(**changes))


def test_normalizer_fit_and_round_trip():
    rng = np.random.default_rng(0)
    x = rng.normal([0.0, 0.01, 3.0, 20.0, 0.5, 0.0, 0.003, 0.1], [0.01, 0.02, 0.3, 2.0, 0.1, 0.005, 0.001, 0.3],
                   size=(40, 50, 8))
    x[..., 4] = 0.5  # a feature that never moves keeps a usable scale
    norm = Normalizer.fit(x)
    z = (x - norm.mean) / norm.std
    moving = [0, 1, 2, 3, 5, 6, 7]
    np.testing.assert_allclose(z[..., moving].reshape(-1, 7).mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z[..., moving].reshape(-1, 7).std(0), 1, atol=1e-4)
    assert norm.std[4] == Normalizer.MIN_STD
    again = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(again.mean, norm.mean)
    np.testing.assert_array_equal(again.std, norm.std)


def test_normalizer_rejects_non_finite_input_naming_the_feature():
    x = np.zeros((10, 8))
    x[3, 2] = np.nan
    with pytest.raises(NonFiniteFeatureError, match=r"'log_gas_price' is nan at index \(3,\)"):
        Normalizer.fit(x)
    x[3, 2] = np.inf
    with pytest.raises(NonFiniteFeatureError, match="1 rows affected"):
        Normalizer.fit(x)


def test_normalizer_rejects_bad_statistics():
    with pytest.raises(ValueError, match="8 finite numbers"):
        Normalizer(np.zeros(7), np.ones(7))  # a normalizer of the older seven-feature set
    with pytest.raises(ValueError, match="8 finite numbers"):
        Normalizer(np.zeros(8), np.full(8, np.nan))
    with pytest.raises(ValueError, match="positive"):
        Normalizer(np.zeros(8), np.zeros(8))
