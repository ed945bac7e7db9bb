import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scanner.model.features import NonFiniteFeatureError
from scanner.model.lstm import WINDOW, Checkpoint, Prediction
from scanner.model.train import SequenceDataset, TrainConfig, synthetic_dataset, train
from scanner.serve.batching import window_gap

torch.set_num_threads(1)  # two shared cores: intra-op threads only contend with each other


@pytest.fixture(scope="module")
def trained() -> Checkpoint:
    return train(synthetic_dataset(pools=64, blocks=1000, seed=0), TrainConfig(max_epochs=25, progress=False))


def test_beats_the_base_rate_on_held_out_data(trained):
    meta = trained.metadata
    assert meta["val_bce"] < 0.95 * meta["base_bce"], meta  # validation: the latest 20% of blocks

    fresh = synthetic_dataset(pools=32, blocks=300, seed=1)  # a market it never saw
    model = trained.build("cpu")
    traded, move = torch.from_numpy(fresh.next_traded), torch.from_numpy(fresh.next_move)
    with torch.no_grad():
        pred, _ = model.sequence(torch.from_numpy(fresh.features))
        nll, bce = model.loss(pred, move, traded)
        constant = Prediction(torch.full_like(move, float(move.mean())), torch.full_like(move, float(move.std())),
                              torch.zeros_like(move))
        constant_nll, _ = model.loss(constant, move, traded)
    base_bce = F.binary_cross_entropy(torch.full_like(traded, meta["base_rate"]), traded)
    assert bce < 0.95 * base_bce
    assert nll < constant_nll - 0.1


def test_checkpoint_carries_what_loading_needs(trained, tmp_path):
    trained.save(tmp_path / "t.pt")
    loaded = Checkpoint.load(tmp_path / "t.pt")
    assert loaded.metadata["best_epoch"] >= 1 and loaded.metadata["window"] == WINDOW
    np.testing.assert_array_equal(loaded.normalizer.mean, trained.normalizer.mean)
    assert abs(float(loaded.normalizer.mean[4]) - 0.5) < 0.2  # congestion's training mean, not identity


def test_streaming_vs_window_on_the_trained_model(trained):
    model = trained.build("cpu")
    x = synthetic_dataset(pools=32, blocks=400, seed=2).features
    same = window_gap(model, x[:, :WINDOW])
    assert same["max_abs_mu_in_sigmas"] < 1e-4 and same["max_abs_p_trade"] < 1e-5
    gaps = {w: window_gap(model, x, window=w) for w in (10, 25, 50, WINDOW)}
    print("\nstreaming over 400 blocks vs window mode (trained model):")
    for w, g in gaps.items():
        print(f"  window {w:3d}: mu {g['max_abs_mu_in_sigmas']:.2e} sigmas, sigma {g['max_rel_sigma']:.2e} rel, "
              f"p_trade {g['max_abs_p_trade']:.2e}")
    assert gaps[10]["max_abs_p_trade"] >= gaps[WINDOW]["max_abs_p_trade"]


def test_training_is_deterministic_and_reports_progress(capsys):
    data = synthetic_dataset(pools=8, blocks=300, seed=3)
    config = TrainConfig(window=50, max_epochs=2, progress=True)
    a, b = train(data, config), train(data, config)
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k], atol=0, rtol=0)
    err = capsys.readouterr().err
    assert "[train] epoch 1/2 train" in err and "base-rate bce" in err


def test_early_stopping_keeps_the_best_epoch():
    ckpt = train(synthetic_dataset(pools=4, blocks=300, seed=4),
                 TrainConfig(window=50, max_epochs=200, patience=3, lr=1e-2, progress=False))
    meta = ckpt.metadata
    assert meta["epochs_run"] < 200 and meta["epochs_run"] - meta["best_epoch"] == 3


def test_dataset_is_validated():
    data = synthetic_dataset(pools=2, blocks=150, seed=5)
    bad = data.features.copy()
    bad[1, 7, 0] = np.nan
    with pytest.raises(NonFiniteFeatureError, match="log_price_change"):
        SequenceDataset(bad, data.next_move, data.next_traded)
    with pytest.raises(ValueError, match=r"next_move must be \[pools, blocks\]"):
        SequenceDataset(data.features, data.next_move[:, 1:], data.next_traded)
    with pytest.raises(ValueError, match="record more blocks"):
        train(data, TrainConfig(progress=False))


def test_train_options_by_name():
    assert TrainConfig.of(max_epochs=3, lr=0.01) == TrainConfig(max_epochs=3, lr=0.01)
    with pytest.raises(ValueError, match=r"unknown training options \['epochs'\]"):
        TrainConfig.of(epochs=3)
