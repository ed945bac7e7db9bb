import numpy as np
import pytest
import torch

from scanner.model.features import FEATURE_NAMES, N_FEATURES, Normalizer
from scanner.model.lstm import WINDOW, ArbLSTM, Checkpoint, CheckpointError, ModelConfig

torch.set_num_threads(1)  # two shared cores: intra-op threads only contend with each other


# Typical scale of each feature (FEATURE_NAMES order: price change, volume, gas, liquidity,
# congestion, price gap, fee).
MEAN = np.array([0.0, 0.01, 3.0, 20.0, 0.5, 0.0, 0.003, 0.1])
STD = np.array([0.01, 0.02, 0.3, 2.0, 0.1, 0.005, 0.001, 0.3])


@pytest.fixture
def model() -> ArbLSTM:
    torch.manual_seed(0)
    m = ArbLSTM()
    m.set_normalizer(Normalizer(MEAN, STD))
    return m.eval()


def raw_features(*shape: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = rng.normal(MEAN, STD, size=(*shape, N_FEATURES))
    return torch.as_tensor(x, dtype=torch.float32)


def test_default_architecture():
    m = ArbLSTM()
    assert N_FEATURES == 8
    assert m.config == ModelConfig(8, (50, 30), 32)
    assert [(layer.input_size, layer.hidden_size) for layer in m.layers] == [(8, 50), (50, 30)]


def test_shapes_and_ranges(model):
    x = raw_features(4, WINDOW)
    with torch.no_grad():
        window = model(x)
        seq, state = model.sequence(x)
        step, _ = model.step(x[:, 0], model.zero_state(4))
    assert all(t.shape == (4,) for t in window) and all(t.shape == (4,) for t in step)
    assert all(t.shape == (4, WINDOW) for t in seq)
    assert [tuple(h.shape) for h, _ in state] == [(4, 50), (4, 30)]
    assert (window.sigma > 0).all() and ((window.p_trade > 0) & (window.p_trade < 1)).all()


def test_streaming_from_zero_state_equals_window(model):
    x = raw_features(6, WINDOW)
    with torch.no_grad():
        window = model(x)
        state = model.zero_state(6)
        for t in range(WINDOW):
            step, state = model.step(x[:, t], state)
        seq, _ = model.sequence(x)
    for a, b, c in zip(window, step, seq):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a, c[:, -1], atol=1e-5, rtol=1e-5)


def test_left_padded_short_history_equals_its_own_sequence(model):
    x = raw_features(3, WINDOW)
    lengths = torch.tensor([WINDOW, 37, 1])
    padded = x.clone()
    padded[1, :WINDOW - 37] = 1e6  # padding content must not matter
    padded[2, :WINDOW - 1] = float("nan")
    with torch.no_grad():
        out = model(padded, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone = model(x[b:b + 1, WINDOW - n:])
            for got, want in zip(out, alone):
                torch.testing.assert_close(got[b:b + 1], want, atol=1e-5, rtol=1e-5)


def test_bad_lengths_and_feature_count_are_refused(model):
    with pytest.raises(ValueError, match=r"lengths must be B=2 values in \[1, T=10\]"):
        model(raw_features(2, 10), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="expected 8 features"):
        model(torch.zeros(2, 10, 7))  # rows of the older seven-feature set


def test_loss_is_finite_and_differentiable(model):
    x = raw_features(2, 20)
    pred, _ = model.sequence(x)
    nll, bce = model.loss(pred, torch.zeros(2, 20), torch.ones(2, 20))
    (nll + bce).backward()
    assert torch.isfinite(nll) and torch.isfinite(bce)
    assert all(p.grad is not None for p in model.parameters())


def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "m.pt"
    Checkpoint.from_model(model, {"note": "unit test", "epochs": 3}).save(path)
    loaded = Checkpoint.load(path)
    assert loaded.config == model.config and loaded.metadata == {"note": "unit test", "epochs": 3}
    np.testing.assert_array_equal(loaded.normalizer.std, model.normalizer().std)
    rebuilt = loaded.build("cpu")
    x = raw_features(3, 50)
    with torch.no_grad():
        for a, b in zip(model(x), rebuilt(x)):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not (tmp_path / "m.pt.tmp").exists()


def edited(model: ArbLSTM, tmp_path, **changes):
    path = tmp_path / "edited.pt"
    Checkpoint.from_model(model).save(path)
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    return path


def test_checkpoint_refuses_another_architecture(model, tmp_path):
    with pytest.raises(CheckpointError, match="holds a 'ArbGRU' model"):
        Checkpoint.load(edited(model, tmp_path, architecture="ArbGRU"))
    other = ArbLSTM(hidden=(64, 32))
    with pytest.raises(CheckpointError, match="do not fit an ArbLSTM"):
        Checkpoint.load(edited(model, tmp_path, state_dict=other.state_dict()))
    with pytest.raises(CheckpointError, match="unknown model config keys"):
        Checkpoint.load(edited(model, tmp_path, config={"n_features": 7, "hidden": [50, 30], "head_hidden": 32,
                                                         "bidirectional": True}))


def test_checkpoint_refuses_another_feature_set(model, tmp_path):
    names = ["log_price_change", "volume", "log_gas_price", "log_liquidity", "congestion", "log_price_gap", "fee"]
    with pytest.raises(CheckpointError, match="trained on features"):
        Checkpoint.load(edited(model, tmp_path, feature_names=names))
    # A checkpoint of the old five-feature set (as shipped before the price-gap and fee features).
    with pytest.raises(CheckpointError, match="trained on features"):
        Checkpoint.load(edited(model, tmp_path, feature_names=list(FEATURE_NAMES[:5])))


def test_checkpoint_refuses_other_versions_and_files(model, tmp_path):
    with pytest.raises(CheckpointError, match="format version 99"):
        Checkpoint.load(edited(model, tmp_path, version=99))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an arbscan LSTM checkpoint"):
        Checkpoint.load(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        Checkpoint.load(tmp_path / "missing.pt")


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.99])
def test_checkpoint_refuses_truncated_file(model, tmp_path, keep):
    path = tmp_path / "m.pt"
    Checkpoint.from_model(model).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint"):
        Checkpoint.load(path)


def test_checkpoint_refuses_metadata_it_could_not_load_back(model, tmp_path):
    with pytest.raises(TypeError, match=r"metadata \['torch'\]"):
        Checkpoint.from_model(model, {"torch": torch.__version__}).save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_the_shipped_checkpoint_matches_the_current_features():
    """The inference actor loads it when no checkpoint is configured: a feature change must come with a retrain."""
    from scanner.model.lstm import SHIPPED_CHECKPOINT
    from scanner.rank.risk import LstmRiskModel

    ckpt = Checkpoint.load(SHIPPED_CHECKPOINT)  # refuses another feature set, naming both
    assert ckpt.config.n_features == N_FEATURES and ckpt.normalizer.mean.shape == (N_FEATURES,)
    assert ckpt.normalizer.std[FEATURE_NAMES.index("log_price_gap")] > Normalizer.MIN_STD  # trained with an oracle
    LstmRiskModel.from_checkpoint(ckpt)  # the calibration serving needs is there
    with torch.no_grad():
        pred = ckpt.build("cpu")(raw_features(4, 20))
    assert all(torch.isfinite(t).all() for t in pred)
