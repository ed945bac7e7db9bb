"""Evaluation: the metrics are the textbook ones, the baselines fit, and a tiny end-to-end run
(record -> train_files -> evaluate on another seed) produces every figure and plot."""
from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest
import torch

from scanner.model.lstm import Checkpoint
from scanner.sim.evaluate import TARGETS, Baselines, auc, brier, classification, ece, evaluate, train_files
from scanner.sim.record import record

torch.set_num_threads(1)


def test_auc_counts_ordered_pairs_with_ties_as_half():
    rng = np.random.default_rng(0)
    score, y = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.4
    pos, neg = score[y], score[~y]
    pairs = [(a > b) + 0.5 * (a == b) for a, b in product(pos, neg)]
    assert auc(score, y) == pytest.approx(np.mean(pairs))
    assert auc(np.arange(4.0), np.array([0, 0, 1, 1])) == 1.0


def test_brier_skill_and_ece():
    rng = np.random.default_rng(1)
    p = rng.random(50_000)
    y = (rng.random(50_000) < p).astype(float)
    assert ece(p, y) < 0.01 and ece(np.clip(p + 0.1, 0, 1), y) > 0.05
    assert brier(p, y) == pytest.approx(np.mean((p - y) ** 2))
    assert classification(np.full_like(p, y.mean()), y)["brier_skill"] == pytest.approx(0.0, abs=1e-12)
    assert classification(p, y)["brier_skill"] > 0.3


def test_logistic_baseline_recovers_a_known_model():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20_000, 3))
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(0.5 + x @ [1.0, -2.0, 0.0])))).astype(float)
    gross = np.full(20_000, 100.0)
    fitted = Baselines.fit(x, y, gross, 0.1 * gross, l2=1e-3)
    assert np.allclose(fitted.weights, [0.5, 1.0, -2.0, 0.0], atol=0.1)
    assert fitted.impact == pytest.approx(0.1) and np.allclose(fitted.slippage(x, gross), 10.0)
    assert Baselines.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted


@pytest.mark.chain
def test_record_train_evaluate_end_to_end(tmp_path):
    data = tmp_path / "seed7.npz"
    record(120, 7, data, policy="profit", progress=False)
    model = tmp_path / "m.pt"
    metrics = train_files([data], model, window=20, max_epochs=2, progress=False)
    assert metrics["train_seeds"] == [7] and metrics["calibration_rows"] > 20 and metrics["bytes"] < 1_000_000
    assert set(Checkpoint.load(model).metadata["risk"]) >= {"calibration", "baselines"}

    out = tmp_path / "eval"
    result = evaluate(model, [8], 25, out)
    json.dumps(result)
    for key in ("model_brier", "model_brier_skill", "model_ece", "model_auc", "logistic_brier", "logistic_auc",
                "slippage_mae_model_eth", "slippage_mae_logistic_eth", "slippage_mae_constant_eth",
                "realized_net_ev_eth", "realized_net_profit_eth", "paired_ev_over_profit",
                "perfect_foresight_over_profit", *TARGETS):
        assert key in result, key
    assert set(result["targets"]) == set(TARGETS)
    assert 0 <= result["model_brier"] <= 1 and result["candidates"] > 0
    assert result["perfect_foresight_over_profit"] >= result["paired_ev_over_profit"] - 1e-9
    assert [r["policy"] for r in result["runs"]["ev"]] == ["ev"] and result["runs"]["ev"][0]["risk_model"] == "lstm m.pt"
    for name in ("reliability.png", "slippage.png", "profit.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "evaluation.json").read_text())["seeds"] == [8]
    with pytest.raises(ValueError, match="used to train"):
        evaluate(model, [7], 5, out)


def test_tip_evaluation_refuses_training_seeds_and_plots_predicted_against_observed(tmp_path):
    from scanner.sim.tip_eval import evaluate_tips, plot_win_curves
    from scanner.submit.tip import Contest, TipModel

    with pytest.raises(ValueError, match=r"\[2\] are training seeds"):
        evaluate_tips([1, 2], [2, 3], 10, tmp_path)
    rng = np.random.default_rng(1)
    sizes = np.exp(rng.uniform(np.log(1e14), np.log(1e17), 300))
    rivals = (rng.uniform(0.01, 0.2, 300) * sizes / 110_000).astype(int)
    tips = rng.choice([10**8, 10**9, 10**10, 10**11], 300)
    sends = [Contest(float(s), int(r), int(t), bool(t > r)) for s, r, t in zip(sizes, rivals, tips)]
    path = plot_win_curves(TipModel.fit(sends), sends, tmp_path / "tip_win.png")
    assert (tmp_path / "tip_win.png").stat().st_size > 10_000 and path.endswith("tip_win.png")
