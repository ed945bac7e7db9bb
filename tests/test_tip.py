"""The tip model: fitted on synthetic contests with a known P(win | tip, size), the EV-optimal tip, the file."""
from __future__ import annotations

import math

import numpy as np
import pytest

from scanner.config import ConfigError, from_dict
from scanner.errors import ArbscanError
from scanner.submit.tip import Contest, TipModel, expected_profit

GAS = 110_000
SHARE = (0.01, 0.2)  # the synthetic bots bid share × size / gas, share uniform here
BEHIND = 0.25  # the chance our route still lands behind a rival that outbid it


def contested(size: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(np.log(size) - math.log(3e14))))  # small opportunities often go unbid


def true_p_win(tip: float, size: float) -> float:
    share = tip * GAS / size
    beats = min(1.0, max(0.0, (share - SHARE[0]) / (SHARE[1] - SHARE[0])))
    c = float(contested(np.array([size]))[0])
    outbid = (1 - c) + c * beats
    return outbid + (1 - outbid) * BEHIND


def synthetic(n: int, seed: int = 0) -> list[Contest]:
    rng = np.random.default_rng(seed)
    size = np.exp(rng.uniform(math.log(1e13), math.log(1e18), n))
    bid = rng.random(n) < contested(size)
    rival = np.where(bid, np.maximum(1, rng.uniform(*SHARE, n) * size / GAS), 0).astype(np.int64)
    ours = np.exp(rng.uniform(math.log(1e6), math.log(1e12), n)).astype(np.int64)  # half of them we sent, at random tips
    landed = (ours > rival) | (rng.random(n) < BEHIND)
    return [Contest(float(s), int(r), int(t), bool(w)) if i % 2 else Contest(float(s), int(r))
            for i, (s, r, t, w) in enumerate(zip(size, rival, ours, landed))]


@pytest.fixture(scope="module")
def model() -> TipModel:
    return TipModel.fit(synthetic(4000))


def test_fit_recovers_a_known_win_probability(model):
    worst = 0.0
    for size in (1e14, 1e15, 1e16, 1e17):
        for share in (0.0, 0.005, 0.03, 0.08, 0.12, 0.18, 0.3):
            tip = int(share * size / GAS)
            worst = max(worst, abs(float(model.p_win(tip, size)[0]) - true_p_win(tip, size)))
    assert worst < 0.06, worst
    assert abs(model.rival[1] - 1.0) < 0.05  # the rival's tip scales with the size, as the bots bid
    assert abs(model.behind - BEHIND) < 0.03


def test_win_probability_is_monotone_in_the_tip(model):
    tips = np.geomspace(1e6, 1e13, 400)
    for size in (1e14, 1e16, 1e18):
        p = model.p_win(tips, size)
        assert (np.diff(p) >= 0).all() and 0 <= p[0] <= p[-1] <= 1


def test_best_tip_maximizes_expected_profit_in_integer_wei(model):
    base_fee = 10**9
    for size in (5e14, 3e15, 4e16):
        choice = model.best_tip(size, GAS, base_fee, GAS)
        assert isinstance(choice.tip, int) and 0 <= choice.tip <= size // GAS
        assert choice.p_win == pytest.approx(float(model.p_win(choice.tip, size)[0]))
        by_hand = choice.p_win * (size - GAS * (base_fee + choice.tip)) - (1 - choice.p_win) * GAS * (base_fee + choice.tip)
        assert choice.expected_value == pytest.approx(by_hand)
        fine = np.arange(0, int(size // GAS), max(1, int(size // GAS) // 20_000))  # every tip, finely: no better one
        ev = expected_profit(model.p_win(fine, size), size, GAS, base_fee, fine.astype(float), GAS)
        assert choice.expected_value >= ev.max() - 0.002 * abs(ev.max())
    small, big = (model.best_tip(s, GAS, base_fee, GAS).tip for s in (5e14, 4e16))
    assert big > 10 * small  # a bigger opportunity is worth a bigger bid


def test_best_tip_respects_a_ceiling_and_a_tiny_opportunity(model):
    assert model.best_tip(4e16, GAS, 10**9, GAS, ceiling=12345).tip <= 12345
    assert model.best_tip(4e16, GAS, 10**9, GAS, ceiling=0).tip == 0
    tiny = model.best_tip(1e9, GAS, 10**9, GAS)  # worth less than its gas: nothing to win
    assert tiny.expected_value < 0


def test_save_load_round_trip_and_errors(model, tmp_path):
    path = tmp_path / "tip.json"
    model.save(path)
    assert TipModel.load(path) == model
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ArbscanError, match="not a tip model"):
        TipModel.load(tmp_path / "bad.json")
    with pytest.raises(ArbscanError, match="tip_policy"):
        TipModel.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="at least 2 contested"):
        TipModel.fit([Contest(1e15, 0), Contest(2e15, 0)])


def test_the_tip_policy_is_fixed_by_default_and_ev_needs_a_model():
    assert from_dict({}).submitter.tip_policy == "fixed"
    assert from_dict({"submitter": {"tip_policy": "ev", "tip_model": "tip.json"}}).submitter.tip_model == "tip.json"
    for submitter, message in (({"tip_policy": "auction"}, 'must be "fixed" or "ev"'),
                               ({"tip_policy": "ev"}, "needs submitter.tip_model")):
        with pytest.raises(ConfigError, match=message) as e:
            from_dict({"submitter": submitter})
        assert str(e.value).startswith("submitter.tip_policy")


@pytest.mark.chain
def test_the_submitter_sends_the_ev_optimal_tip_and_journals_it(anvil, tmp_path, model):
    from scanner.sim.tip_eval import TipRun
    from scanner.submit.journal import Journal, SimulationRecord

    run = TipRun(anvil, seed=5, tmp=tmp_path, send=True, tip_wei=1, tip_model=model)
    for _ in range(30):  # bounded: the market has a profitable route within a few blocks
        run.step()
        if run.submitter.stats.sent:
            break
    run.finish()
    assert run.submitter.stats.sent >= 1, run.submitter.stats
    with Journal(run.journal_path) as journal:
        sent = [(t, o) for t, o in journal.tip_outcomes() if o.tx_hash]
        assert sent
        for tip, outcome in sent:
            sim = next(r for r in journal.records(tip.id) if isinstance(r, SimulationRecord))
            tx = run.client.rpc("eth_getTransactionByHash", outcome.tx_hash)
            assert int(tx["maxPriorityFeePerGas"], 16) == tip.tip and tip.policy == "ev"  # sent as journaled
            base_fee = int(run.client.rpc("eth_getBlockByNumber", hex(tip.block), False)["baseFeePerGas"], 16)
            again = model.best_tip(float(sim.profit), sim.gas_estimate, base_fee, sim.gas_estimate)
            assert (tip.tip, tip.p_win, tip.expected_value) == (again.tip, again.p_win, again.expected_value)
            assert tip.tip != 1 and tip.expected_value > 0
            assert outcome.status in ("landed", "beaten", "reverted")
