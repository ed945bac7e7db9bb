"""The LSTM risk model: exact route sensitivities, the closed-form success/slippage mapping
checked against simulation, calibration, and its place in the Ranker (with the fallback)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from scanner.dex.v2 import FEE_DENOMINATOR, V2Pool
from scanner.model.lstm import ArbLSTM, Checkpoint
from scanner.rank.ranking import HeuristicRiskModel, Ranker
from scanner.rank.risk import Calibration, LstmRiskModel, route_sensitivity, success_and_slippage, trade_moments

E18 = 10**18


def _outputs(x: float, r_in, r_out, fee) -> list[float]:
    amounts = [x]
    for ri, ro, f in zip(r_in, r_out, fee):
        gamma = FEE_DENOMINATOR - f
        amounts.append(gamma * ro * amounts[-1] / (FEE_DENOMINATOR * ri + gamma * amounts[-1]))
    return amounts


@pytest.mark.parametrize("seed", range(5))
def test_sensitivity_is_the_derivative_of_the_route_output(seed):
    rng = np.random.default_rng(seed)
    hops = int(rng.integers(2, 4))
    r_in, r_out = rng.uniform(1e20, 1e22, hops), rng.uniform(1e20, 1e22, hops)
    fee, z41 = rng.choice([5, 25, 30], hops), rng.random(hops) < 0.5
    x = float(rng.uniform(0.001, 0.05) * r_in[0])
    amounts = _outputs(x, r_in, r_out, fee)
    pad = 3 - hops
    b, g = route_sensitivity(np.array([amounts + [amounts[-1]] * pad]), np.array([list(r_in) + [np.inf] * pad]),
                             np.array([list(fee) + [0] * pad]), np.array([list(z41) + [True] * pad]), np.array([hops]))
    assert g[0] == pytest.approx(math.log(amounts[-1] / x))
    eps = 1e-6
    for i in range(hops):
        logs = []
        for shift in (eps, -eps):
            # A move of log(reserve1/reserve0) along the curve: token0's reserve by e^(-s/2), token1's by e^(s/2).
            s = shift if z41[i] else -shift
            ri, ro = r_in.copy(), r_out.copy()
            ri[i], ro[i] = ri[i] * math.exp(-s / 2), ro[i] * math.exp(s / 2)
            logs.append(math.log(_outputs(x, ri, ro, fee)[-1]))
        assert b[0, i] == pytest.approx((logs[0] - logs[1]) / (2 * eps), rel=1e-5)
    assert (b[0, hops:] == 0).all()


def _route(b, g, mu, sigma, p):
    def row(v):
        return np.array([v], dtype=float)

    return success_and_slippage(row(b), np.array([g]), np.array([1e18]), row(mu), row(sigma), row(p))


def test_mapping_matches_a_simulation_of_the_move_model():
    rng = np.random.default_rng(0)
    b, g = np.array([0.99, -0.98, 0.97]), 0.006  # moves expected against the route: it slips when it lands
    mu, sigma, p = np.array([-0.0015, 0.001, -0.0003]), np.array([0.004, 0.003, 0.002]), np.array([0.3, 0.2, 0.1])
    prob, slip = _route(b, g, mu, sigma, p)
    mean, var = trade_moments(mu, sigma, p)
    n = 400_000
    traded = rng.random((n, 3)) < p
    moves = np.where(traded, mean + np.sqrt(var) * rng.standard_normal((n, 3)), 0.0)
    assert moves.mean(0) == pytest.approx(mu, abs=3e-5) and moves.std(0) == pytest.approx(sigma, rel=0.02)
    z = g + moves @ b
    ok = z > 0
    assert prob[0] == pytest.approx(ok.mean(), abs=0.004)
    expected_slip = math.expm1(g) - np.expm1(z[ok]).mean()
    assert expected_slip > 0 and slip[0] / 1e18 == pytest.approx(expected_slip, rel=0.03)


def test_probability_and_slippage_are_bounded_and_respond_to_risk():
    b, mu = np.array([1.0, -1.0, 0.0]), np.zeros(3)
    sigma, p = np.array([0.003, 0.003, 0.0]), np.array([0.4, 0.4, 0.0])
    base_p, base_s = _route(b, 0.002, mu, sigma, p)
    assert 0 < base_p[0] < 1 and base_s[0] >= 0
    assert _route(b, 0.002, mu, sigma, np.zeros(3))[0][0] == 1.0  # nobody trades ahead: it lands as ranked
    assert _route(b, 0.002, mu, sigma, np.zeros(3))[1][0] == 0.0
    assert _route(2 * b, 0.002, mu, sigma, p)[0][0] < base_p[0]  # more sensitive
    assert _route(b, 0.002, mu, 2 * sigma, p)[0][0] < base_p[0]  # more volatile
    assert _route(b, 0.002, mu, sigma, 1.5 * p)[0][0] < base_p[0]  # more likely traded first
    assert _route(b, 0.004, mu, sigma, p)[0][0] > base_p[0]  # more margin
    adverse = np.array([-0.002, 0.002, 0.0])  # expected moves against the route
    assert _route(b, 0.002, adverse, sigma, p)[0][0] < base_p[0]
    grid = np.linspace(0, 1, 11)
    probs, slips = success_and_slippage(np.tile(b, (11, 1)), np.full(11, 0.001), np.full(11, 1e18),
                                        np.tile(mu, (11, 1)), np.tile(sigma, (11, 1)), np.tile(p * 0, (11, 1)) + grid[:, None])
    assert ((probs >= 0) & (probs <= 1)).all() and (slips >= 0).all() and (np.diff(probs) <= 1e-12).all()


def test_calibration_fits_a_monotone_map_and_round_trips():
    rng = np.random.default_rng(1)
    p = rng.random(20_000)
    y = (rng.random(20_000) < p**2).astype(float)
    slip = rng.uniform(1, 2, 20_000)
    cal = Calibration.fit(p, y, slip, 0.5 * slip)
    grid = np.linspace(0, 1, 101)
    mapped = cal.probability(grid)
    assert (np.diff(mapped) >= 0).all() and mapped.min() >= 0 and mapped.max() <= 1
    assert np.abs(cal.probability(p) - p**2).mean() < 0.03
    assert cal.slippage_scale == pytest.approx(0.5)
    assert Calibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ValueError, match="record more blocks"):
        Calibration.fit(p[:5], y[:5], slip[:5], slip[:5])


def _two_pool_scanner(risk) -> Ranker:
    """WETH/TKN on two DEXes, 2% apart: one 2-hop cycle each way, one of them profitable."""
    pools = [V2Pool("0xa", "WETH", "TKN", 1000 * E18, 2_000_000 * E18, 30),
             V2Pool("0xb", "WETH", "TKN", 500 * E18, 1_040_000 * E18, 30)]
    return Ranker(pools, {"WETH": Fraction(1)}, gas_price=10**9, risk=risk, top_n=5)


def test_scanner_uses_predictions_and_falls_back_without_them():
    model = LstmRiskModel()
    scanner = _two_pool_scanner(model)
    model.attach(scanner.graph)
    heuristic = _two_pool_scanner(HeuristicRiskModel()).full_rescan(1)
    fallback = scanner.full_rescan(1)
    assert [o.success_probability for o in fallback] == [o.success_probability for o in heuristic]

    model.update("0xa", 0.0, 0.004, 0.3)  # one pool predicted: routes through the other still fall back
    assert [o.success_probability for o in scanner.full_rescan(1)] == [o.success_probability for o in heuristic]

    model.update("0xb", 0.0, 0.004, 0.3)
    calm = scanner.full_rescan(2)
    assert calm and all(0 < o.success_probability < 1 and o.expected_slippage >= 0 for o in calm)
    model.update("0xa", 0.0, 0.004, 0.0)
    model.update("0xb", 0.0, 0.004, 0.0)
    quiet = scanner.full_rescan(3)
    assert [o.success_probability for o in quiet] == [1.0] * len(quiet) and quiet[0].expected_slippage == 0
    model.update("0xa", 0.0, 0.02, 0.9)
    model.update("0xb", 0.0, 0.02, 0.9)
    stormy = scanner.full_rescan(4)
    assert not stormy or stormy[0].success_probability < calm[0].success_probability

    model.forget()
    assert [o.success_probability for o in scanner.full_rescan(5)] == [o.success_probability for o in heuristic]

    def late() -> V2Pool:
        return V2Pool("0xc", "WETH", "TKN", 800 * E18, 1_500_000 * E18, 5)

    scanner.add_pool(late())  # added after attach: no prediction yet, so its routes fall back
    reference = _two_pool_scanner(HeuristicRiskModel())
    reference.add_pool(late())
    expected = {o.id: o.success_probability for o in reference.full_rescan(6)}
    model.update("0xa", 0.0, 0.004, 0.3)
    model.update("0xb", 0.0, 0.004, 0.3)
    mixed = scanner.full_rescan(6)
    assert any("0xc" in o.pools for o in mixed) and any("0xc" not in o.pools for o in mixed)
    for o in mixed:
        assert (o.success_probability == expected[o.id]) == ("0xc" in o.pools)


def test_risk_model_refuses_what_it_cannot_use():
    model = LstmRiskModel()
    with pytest.raises(RuntimeError, match="attach"):
        model.update("0xa", 0.0, 0.01, 0.1)
    scanner = _two_pool_scanner(model)
    model.attach(scanner.graph)
    with pytest.raises(KeyError, match="0xc"):
        model.update("0xc", 0.0, 0.01, 0.1)
    bare = Checkpoint.from_model(ArbLSTM())
    with pytest.raises(ValueError, match="train_files"):
        LstmRiskModel.from_checkpoint(bare)
    fitted = Checkpoint.from_model(ArbLSTM(), {"risk": {"calibration": Calibration(slippage_scale=0.5).to_dict()}})
    assert LstmRiskModel.from_checkpoint(fitted).calibration.slippage_scale == 0.5


def test_the_logistic_baseline_is_the_penalised_log_loss_optimum():
    """scikit-learn fits it; the gradient of Σ log loss + ½·|w|² (bias unpenalised) vanishes there."""
    from scanner.sim.evaluate import Baselines

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 5))
    y = (rng.random(2000) < 1 / (1 + np.exp(-(x @ rng.normal(size=5) - 0.4)))).astype(float)
    gross = rng.random(2000) + 0.1
    fitted = Baselines.fit(x, y, gross, 0.01 * gross)
    w = np.asarray(fitted.weights)
    design = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    grad = design.T @ (fitted.success(x) - y) + np.concatenate([[0.0], w[1:]])
    assert np.abs(grad).max() < 1e-4, grad
