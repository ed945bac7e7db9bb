"""The LSTM on real history (issue 15, item 6): the Base Sync day as training data, the time split, the scores.

The store is the committed fixture (`fixtures/base_sync_2024_11_01.json.gz`: 9,363 Syncs of 5 Base V2 pairs,
blocks 21,814,938-21,858,126) written by `scanner.history.syncs.sync_fixture_store`, as
`fixtures/convert_base_sync.py --store DIR` writes it for `arbscan train/eval --capture DIR`.
"""
from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import ndtr

import scanner.sim.history_eval as history_eval
from actors.cli import main
from scanner.chain.shard import PoolWatcherCore
from scanner.errors import ConfigError
from scanner.history.learn import CaptureDataset, capture_dataset, crps_gaussian, rolling_std, time_split
from scanner.history.replay import StoreSource, pool_infos
from scanner.history.store import load
from scanner.history.syncs import read_sync_fixture, sync_fixture_store
from scanner.model.features import FEATURE_NAMES, N_FEATURES, PoolObservation, compute_features
from scanner.model.lstm import ArbLSTM, Checkpoint, ModelConfig
from scanner.model.train import SequenceDataset
from scanner.sim.history_eval import evaluate_capture, score, train_capture

torch.set_num_threads(1)

FIXTURE = Path(__file__).resolve().parent / "fixtures/base_sync_2024_11_01.json.gz"
FIRST_BLOCK, LAST_BLOCK = 21_814_938, 21_858_126
TINY = {"model": ModelConfig(hidden=(8,), head_hidden=8), "max_epochs": 2, "patience": 2, "progress": False}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base-sync")
    sync_fixture_store(FIXTURE, path)
    return path


@pytest.fixture(scope="module")
def day(store) -> CaptureDataset:
    return capture_dataset(load(store))


def _fixture_reserves(pools: list[str]) -> tuple[list[list[tuple[int, int]]], np.ndarray]:
    """From the fixture alone: [pools, blocks] (reserve0, reserve1) at the end of every block FIRST_BLOCK - 1 ..
    LAST_BLOCK (index 0: the state block), and [pools, blocks] whether a Sync of the pool is in the block."""
    data, events = read_sync_fixture(FIXTURE)
    start = {p["address"]: (p["reserve0"], p["reserve1"]) for p in data["pools"]}
    n = LAST_BLOCK - FIRST_BLOCK + 2
    ends = {p: {FIRST_BLOCK - 1: start[p]} for p in pools}
    synced = np.zeros((len(pools), n), dtype=bool)
    for e in events:
        ends[e.pool][e.block] = (e.reserve0, e.reserve1)  # the block's last Sync wins
        synced[pools.index(e.pool), e.block - FIRST_BLOCK + 1] = True
    out = []
    for p in pools:
        now, mine = start[p], []
        for t in range(n):
            now = ends[p].get(FIRST_BLOCK - 1 + t, now)
            mine.append(now)
        out.append(mine)
    return out, synced


def test_the_day_as_sequences_of_the_serving_features(day, store):
    d = day.data
    assert d.features.shape == (5, LAST_BLOCK - FIRST_BLOCK, N_FEATURES)  # the last block only labels the one before
    assert d.next_move.shape == d.next_traded.shape == d.features.shape[:2]
    assert day.blocks.tolist() == list(range(FIRST_BLOCK, LAST_BLOCK)) and day.left_out == []
    # the source has no headers, no Swap logs, no oracle, V2 pools only: those features are constants, not guesses
    varying = ("log_price_change", "log_liquidity")
    assert day.constant_features() == [name for name in FEATURE_NAMES if name not in varying]
    assert set(np.unique(d.features[..., FEATURE_NAMES.index("fee")])) == {np.float32(0.003)}  # 30 bps, every pool
    assert not d.features[..., [i for i, name in enumerate(FEATURE_NAMES) if name not in (*varying, "fee")]].any()

    # a watcher of its own over the same store emits exactly these rows
    capture = load(store)
    infos = dict(enumerate(pool_infos(capture)))
    source = StoreSource(capture)
    watcher = PoolWatcherCore(source, infos, shard=0)
    watcher.bootstrap()
    rows = np.full((5, LAST_BLOCK - FIRST_BLOCK + 1, N_FEATURES), np.nan, dtype=np.float32)
    while source.released < LAST_BLOCK:
        source.release(source.released + 100)
        for frame in watcher.poll().features:
            rows[frame.pool, frame.block - FIRST_BLOCK] = frame.x
    assert [infos[i].address for i in range(5)] == day.pools
    assert np.array_equal(rows[:, :-1], d.features)

    # and they are compute_features of the fixture's reserves: exactly on every block that moved a pool,
    # to float32 rounding on all
    reserves, _ = _fixture_reserves(day.pools)
    fee = FEATURE_NAMES.index("fee")
    moved = 0
    for i in range(5):
        log_r = np.array([[math.log(r0), math.log(r1)] for r0, r1 in reserves[i]])
        price, liquidity = np.diff(log_r[:, 1] - log_r[:, 0]), 0.5 * log_r[1:].sum(1)
        assert np.allclose(d.features[i, :, FEATURE_NAMES.index("log_price_change")], price[:-1], rtol=1e-6, atol=1e-9)
        assert np.allclose(d.features[i, :, FEATURE_NAMES.index("log_liquidity")], liquidity[:-1], rtol=1e-7)
        assert (d.features[i, :, fee] == np.float32(0.003)).all()
        for t in np.flatnonzero(price[:-1]):
            (p0, p1), (r0, r1) = reserves[i][t], reserves[i][t + 1]
            expected = compute_features(PoolObservation(r0, r1, p0, p1, 0, 0, 0, 0, 0.0, 30))
            assert np.array_equal(d.features[i, t], np.asarray(expected, dtype=np.float32))
            moved += 1
    assert moved == 7_640


def test_labels_are_the_next_blocks_syncs_and_moves(day):
    d = day.data
    reserves, synced = _fixture_reserves(day.pools)
    # row t (after block FIRST_BLOCK + t) labels block FIRST_BLOCK + t + 1: index t + 2 of the fixture arrays
    changed = np.array([[reserves[i][t] != reserves[i][t - 1] for t in range(2, len(reserves[i]))] for i in range(5)])
    traded = d.next_traded.astype(bool)
    assert np.array_equal(traded, changed)
    assert (synced[:, 2:] | ~traded).all()  # every block labelled traded has a Sync of the pool
    # and, on this day, every pool-block with a Sync is one: its 5 Syncs that left the reserves as they were each
    # share their block with Syncs of the pool that moved them
    assert int(traded.sum()) == int(synced[:, 2:].sum()) == 7_640
    for i in range(5):
        log_price = np.array([math.log(r1) - math.log(r0) for r0, r1 in reserves[i]])
        assert np.allclose(d.next_move[i], np.diff(log_price)[1:], rtol=1e-6, atol=1e-9)
        assert (d.next_move[i][~traded[i]] == 0).all()
    assert 0.03 < d.next_traded.mean() < 0.04  # most blocks are quiet for a pool: the real base rate


def _tampered(day: CaptureDataset, split: int) -> CaptureDataset:
    """The day with every feature and label of the scored rows (from `split` on) changed."""
    d = day.data
    x, move, traded = d.features.copy(), d.next_move.copy(), d.next_traded.copy()
    x[:, split:, 0] = 0.05
    x[:, split:, 3] += 1.0
    move[:, split:] = -0.05
    traded[:, split:] = 1 - traded[:, split:]
    return replace(day, data=SequenceDataset(x, move, traded))


def test_the_time_split_keeps_the_scored_blocks_out_of_training(day, store, tmp_path, monkeypatch):
    split = time_split(day.rows, 0.8)
    assert split == 34_550
    seen: list[SequenceDataset] = []
    real_train = history_eval.train

    def spy(ds, config):
        seen.append(ds)
        return real_train(ds, config)

    monkeypatch.setattr(history_eval, "train", spy)
    monkeypatch.setattr(history_eval, "capture_dataset", lambda capture, progress: day)
    a = train_capture(store, tmp_path / "a.pt", 0.8, **TINY)
    assert seen[0].features.shape[1] == split  # training and its early stopping see only the first 80 % of rows
    assert np.array_equal(seen[0].next_traded, day.data.next_traded[:, :split])
    assert a["train_label_blocks"] == [FIRST_BLOCK + 1, FIRST_BLOCK + split]
    assert a["blocks"] == split and a["val_windows"] == 5 * ((split - round(split * 0.8)) // 100)

    monkeypatch.setattr(history_eval, "capture_dataset", lambda capture, progress: _tampered(day, split))
    b = train_capture(store, tmp_path / "b.pt", 0.8, **TINY)
    ca, cb = Checkpoint.load(tmp_path / "a.pt"), Checkpoint.load(tmp_path / "b.pt")
    assert all(torch.equal(ca.state_dict[k], cb.state_dict[k]) for k in ca.state_dict)  # not one bit learned from them
    assert (a["val_loss"], a["best_epoch"]) == (b["val_loss"], b["best_epoch"])
    # while one label changed in the training windows changes the weights, and one in the validation
    # windows (the latest 20 % of the first 80 %) the validation loss that early stopping reads
    d = day.data
    for row, name in ((1_000, "c"), (split - 200, "d")):
        traded = d.next_traded.copy()
        traded[:, row] = 1 - traded[:, row]
        monkeypatch.setattr(history_eval, "capture_dataset", lambda capture, progress, t=traded: replace(
            day, data=SequenceDataset(d.features, d.next_move, t)))
        report = train_capture(store, tmp_path / f"{name}.pt", 0.8, **TINY)
        other = Checkpoint.load(tmp_path / f"{name}.pt")
        same = all(torch.equal(ca.state_dict[k], other.state_dict[k]) for k in ca.state_dict)
        assert (same, report["val_loss"] == a["val_loss"]) == ((False, False) if name == "c" else (True, False))


def test_a_base_rate_model_scores_zero_skill_and_a_clairvoyant_one_full_skill(day):
    split = time_split(day.rows, 0.8)
    d = day.data
    y, move = d.next_traded[:, split:].astype(np.float64), d.next_move[:, split:].astype(np.float64)
    base = float(d.next_traded[:, :split].astype(np.float64).mean())
    sd = float(d.next_move[:, :split].std())
    constant = np.stack([np.zeros_like(y), np.full_like(y, sd), np.full_like(y, base)], -1)
    clairvoyant = np.stack([move, np.zeros_like(move), y], -1)
    result = score(day, split, {"constant": constant, "clairvoyant": clairvoyant})
    assert result["train_base_rate"] == base and result["scored_rows"] == day.rows - split
    assert result["success"]["constant"]["brier_skill"] == 0.0 == result["success"]["base_rate"]["brier_skill"]
    assert result["success"]["constant"]["auc"] == 0.5
    assert result["success"]["clairvoyant"]["brier_skill"] == 1.0 and result["success"]["clairvoyant"]["auc"] == 1.0
    assert result["crps"]["all"]["clairvoyant"] == 0.0 == result["crps"]["traded"]["clairvoyant"]
    assert result["crps"]["all"]["zero"] == pytest.approx(np.abs(move).mean())
    assert result["scored_traded"] == int(y.sum()) and result["crps"]["traded"]["zero"] == pytest.approx(
        np.abs(move[y.astype(bool)]).mean())
    # the training base rate is not the scored part's: against the latter even the base rate has (slightly) negative skill
    assert result["success"]["base_rate"]["brier_skill_vs_scored_rate"] < 0


def test_crps_and_rolling_std_against_their_definitions():
    rng = np.random.default_rng(0)
    for mu, sigma, y in [(0.0, 1.0, 0.3), (0.2, 0.5, -1.0), (-1.0, 2.0, 4.0)]:
        below, above = np.linspace(-40, y, 400_001), np.linspace(y, 40, 400_001)  # the integrand jumps at y
        numeric = np.trapezoid(ndtr((below - mu) / sigma) ** 2, below) + np.trapezoid((1 - ndtr((above - mu) / sigma)) ** 2, above)
        assert crps_gaussian(np.array(mu), np.array(sigma), np.array(y)) == pytest.approx(numeric, abs=1e-6)
    assert crps_gaussian(np.array(0.1), np.array(0.0), np.array(-0.2)) == pytest.approx(0.3)
    moves = rng.normal(size=(2, 50)) * (rng.random((2, 50)) < 0.3)
    sd = rolling_std(moves, 10)
    for p in range(2):
        for t in range(50):
            assert sd[p, t] == pytest.approx(moves[p, max(0, t - 9):t + 1].std(), abs=1e-12)


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_arbscan_train_and_eval_on_the_capture(store, tmp_path):
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["train", "--capture", str(store), "--out", str(tmp_path / "m.pt"), "--max-epochs", "1"]) == 0
    trained = json.loads(out.getvalue())
    assert trained["epochs_run"] == 1 and trained["train_label_blocks"] == [FIRST_BLOCK + 1, FIRST_BLOCK + 34_550]

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["eval", "--capture", str(store), "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "ev"),
                     "--json"]) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert _finite(result) and None not in (result["success"]["lstm"]["auc"], result["success"]["logistic"]["auc"])
    assert result["scored_label_blocks"] == [FIRST_BLOCK + 34_551, LAST_BLOCK] and result["pools"] == 5
    for model in ("lstm", "lstm_window", "base_rate", "pool_base_rate", "logistic"):
        assert set(result["success"][model]) == {"brier", "brier_skill", "brier_skill_vs_scored_rate", "ece", "auc"}
    for subset in ("all", "traded"):
        assert set(result["crps"][subset]) == {"lstm", "lstm_window", "rolling_std", "zero"}
    assert result["success"]["base_rate"]["brier_skill"] == 0.0
    assert result["training"]["epochs_run"] == 1 and result["training"]["window"] == 100
    assert (tmp_path / "ev" / "capture_reliability.png").stat().st_size > 0
    assert json.loads((tmp_path / "ev" / "capture_evaluation.json").read_text())["success"] == result["success"]


def test_eval_refuses_what_it_cannot_score(store, tmp_path):
    Checkpoint.from_model(ArbLSTM(), {"train_seeds": [1]}).save(tmp_path / "sim.pt")  # trained on market seeds
    with pytest.raises(ConfigError, match="not trained on a capture"):
        evaluate_capture(store, tmp_path / "sim.pt")
    assert main(["eval", "--capture", str(store), "--seeds", "1"]) == 2  # --capture takes --model, not --seeds
    assert main(["train", "--out", str(tmp_path / "x.pt")]) == 2  # neither --data nor --capture
    with pytest.raises(ConfigError, match="train-fraction"):
        time_split(100, 1.0)
