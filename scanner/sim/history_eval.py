"""`arbscan train --capture` / `arbscan eval --capture`: the LSTM trained and judged on a capture of real blocks.

The data is what the watchers would have sent the inference server over the capture
(`scanner.history.learn.capture_dataset`). The blocks are split in time: the model, its early stopping
(`scanner.model.train.train` validates on the latest part of what it is given) and every baseline are
fitted on the first `train_fraction` of the blocks; scores are over the rest only.

Scored per pool and block, over the scored blocks:
- the success head P(the pool is traded in the next block): Brier score and Brier skill against the
  training part's base rate (so that rate itself scores exactly 0), ECE and AUC
  (`scanner.sim.evaluate.classification`), against the base rate, each pool's own base rate, and a
  logistic regression on the row's normalised features plus the absolute price change (a signed move
  says nothing linear about the next trade; its size says whether this block traded);
- the price-move head N(mu, sigma²) of the next block's log price move: mean CRPS (closed form) over
  every pool-block and over those where the pool traded, against a zero-mean Gaussian with the std of
  the pool's last 100 moves (rolling std) and the point mass at 0 (CRPS |move|).
The LSTM is run as the server runs it (streamed over the whole capture from a zero state: `lstm`) and as
it was trained (each prediction from a zero state over the pool's last `window` blocks: `lstm_window`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from scanner.errors import ConfigError
from scanner.history.learn import PRICE, ROLLING_BLOCKS, CaptureDataset, capture_dataset, crps_gaussian, rolling_std, time_split
from scanner.history.store import load
from scanner.model.features import Normalizer
from scanner.model.lstm import ArbLSTM, Checkpoint
from scanner.model.train import TrainConfig, train
from scanner.sim.evaluate import _jsonable, brier, classification

SOURCE = "capture"
WINDOW_BATCH = 2048  # windows per forward pass in window mode


def train_capture(store: str | Path, out: str | Path, train_fraction: float = 0.8, progress: bool = True,
                  **overrides: Any) -> dict:
    """Train on the first `train_fraction` of the capture's blocks, save to `out`; `overrides` are TrainConfig fields."""
    config = TrainConfig.of(**{"progress": progress, **overrides})
    torch.set_num_threads(1)
    started = time.monotonic()
    capture = load(store)
    ds = capture_dataset(capture, progress)
    split = time_split(ds.rows, train_fraction)
    checkpoint = train(ds.part(0, split), config)
    checkpoint.metadata |= {
        "train_source": SOURCE, "capture": str(store), "train_fraction": train_fraction,
        "capture_blocks": [int(ds.blocks[0]), int(ds.blocks[-1]) + 1],
        "train_label_blocks": [int(ds.blocks[0]) + 1, int(ds.blocks[split - 1]) + 1],  # every label the fit saw
        "train_pools": ds.pools, "pools_left_out": ds.left_out, "constant_features": ds.constant_features(split),
        "max_epochs": config.max_epochs, "patience": config.patience, "val_fraction": config.val_fraction,
        "hidden": list(config.model.hidden), "train_seconds": round(time.monotonic() - started, 1),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(out)
    keys = ("val_loss", "val_nll", "val_bce", "base_bce", "best_epoch", "epochs_run", "max_epochs", "patience", "window",
            "train_windows", "val_windows", "pools", "blocks", "train_label_blocks", "constant_features", "train_seconds")
    return {k: checkpoint.metadata[k] for k in keys} | {"out": str(out), "bytes": out.stat().st_size}


@torch.inference_mode()
def streamed(model: ArbLSTM, x: np.ndarray) -> np.ndarray:
    """[P, T, 3] (mu, sigma, p) after every row, each pool streamed from a zero state (as served)."""
    pred, _ = model.sequence(torch.from_numpy(np.ascontiguousarray(x)))
    return torch.stack([pred.mu, pred.sigma, pred.p_trade], -1).double().numpy()


@torch.inference_mode()
def windowed(model: ArbLSTM, x: np.ndarray, start: int, window: int) -> np.ndarray:
    """[P, T - start, 3]: the prediction after each row from `start` on, from a zero state over the pool's
    last `window` rows (fewer at the very start), as the model was trained."""
    pools, rows, _ = x.shape
    if start < window - 1:
        raise ValueError(f"window mode needs {window - 1} rows of history before row {start}")
    idx = np.arange(start, rows)[:, None] + np.arange(1 - window, 1)  # [n, window]
    out = np.empty((pools, rows - start, 3))
    for p in range(pools):
        for a in range(0, len(idx), WINDOW_BATCH):
            pred, _ = model.sequence(torch.from_numpy(x[p, idx[a:a + WINDOW_BATCH]]))
            out[p, a:a + WINDOW_BATCH] = torch.stack([pred.mu[:, -1], pred.sigma[:, -1], pred.p_trade[:, -1]], -1).numpy()
    return out


def logistic_inputs(x: np.ndarray, normalizer: Normalizer) -> np.ndarray:
    """[..., F] -> [n, F + 1]: normalised features and the absolute normalised price change."""
    z = ((x - normalizer.mean) / normalizer.std).reshape(-1, x.shape[-1])
    return np.concatenate([z, np.abs(z[:, [PRICE]])], axis=1)


def score(ds: CaptureDataset, split: int, predictions: dict[str, np.ndarray], rolling: int = ROLLING_BLOCKS) -> dict:
    """Every figure over rows [split, end); baselines fitted on rows [0, split).

    `predictions`: per model, [pools, rows - split, 3] (mu, sigma, p) of the scored rows."""
    d = ds.data
    if not 0 < split < ds.rows:
        raise ConfigError(f"the split row {split} leaves no rows to fit or to score of {ds.rows}")
    y_fit, y = d.next_traded[:, :split].astype(np.float64), d.next_traded[:, split:].astype(np.float64)
    move = d.next_move[:, split:].astype(np.float64)
    base = float(y_fit.mean())
    normalizer = Normalizer.fit(d.features[:, :split])
    logistic = LogisticRegression(max_iter=1000).fit(logistic_inputs(d.features[:, :split], normalizer), y_fit.ravel())
    p_logistic = logistic.predict_proba(logistic_inputs(d.features[:, split:], normalizer))[:, 1].reshape(y.shape)
    probabilities = {name: pred[..., 2] for name, pred in predictions.items()} | {
        "base_rate": np.full(y.shape, base), "pool_base_rate": np.broadcast_to(y_fit.mean(axis=1, keepdims=True), y.shape),
        "logistic": p_logistic}
    reference = brier(np.full(y.size, base), y.ravel())
    success = {}
    for name, p in probabilities.items():
        figures = classification(p.ravel(), y.ravel())
        success[name] = {"brier": figures["brier"], "brier_skill": 1 - figures["brier"] / reference,
                         "brier_skill_vs_scored_rate": figures["brier_skill"], "ece": figures["ece"], "auc": figures["auc"]}
    sd = rolling_std(d.features[:, :, PRICE], rolling)[:, split:]
    crps = {name: crps_gaussian(pred[..., 0], pred[..., 1], move) for name, pred in predictions.items()} | {
        "rolling_std": crps_gaussian(np.zeros_like(move), sd, move), "zero": np.abs(move)}
    traded = y.astype(bool)
    price = {subset: {name: float(c[mask].mean()) for name, c in crps.items()}
             for subset, mask in (("all", np.ones_like(traded)), ("traded", traded))}
    return {
        "pools": len(ds.pools), "fit_rows": split, "scored_rows": ds.rows - split,
        "fit_label_blocks": [int(ds.blocks[0]) + 1, int(ds.blocks[split - 1]) + 1],
        "scored_label_blocks": [int(ds.blocks[split]) + 1, int(ds.blocks[-1]) + 1],
        "train_base_rate": base, "scored_base_rate": float(y.mean()), "scored_traded": int(traded.sum()),
        "success": success, "crps": price,
        "skill": {
            **{f"{m}_brier_skill": success[m]["brier_skill"] for m in predictions},
            **{f"{m}_brier_vs_logistic": 1 - success[m]["brier"] / success["logistic"]["brier"] for m in predictions},
            **{f"{m}_crps_vs_rolling_std_{s}": 1 - price[s][m] / price[s]["rolling_std"] for m in predictions for s in price},
        },
        "rolling_std_blocks": rolling, "constant_features": ds.constant_features(split),
        "_series": {"y": y.ravel(), **{name: p.ravel() for name, p in probabilities.items()}, "base": base},
    }


def evaluate_capture(store: str | Path, model: str | Path, out_dir: str | Path | None = None, window_mode: bool = True,
                     progress: bool = False) -> dict:
    """Score checkpoint `model` (trained by `train_capture`) on the capture's blocks after its training part."""
    torch.set_num_threads(1)
    started = time.monotonic()
    checkpoint = Checkpoint.load(model)
    meta = checkpoint.metadata
    if meta.get("train_source") != SOURCE:
        raise ConfigError(f"{model} was not trained on a capture (`arbscan train --capture`): evaluate it on market seeds")
    ds = capture_dataset(load(store), progress)
    split = int(np.searchsorted(ds.blocks + 1, meta["train_label_blocks"][1], side="right"))
    if split == 0 or split >= ds.rows:
        raise ConfigError(f"{store} holds no blocks {'before' if split == 0 else 'after'} the model's training labels "
                          f"(blocks {meta['train_label_blocks']}): evaluate on the capture it was trained on")
    net = checkpoint.build("cpu")
    predictions = {"lstm": streamed(net, ds.data.features)[:, split:]}
    window = int(meta.get("window", 100))
    if window_mode and split >= window - 1:
        predictions["lstm_window"] = windowed(net, ds.data.features, split, window)
    result = score(ds, split, predictions)
    series = result.pop("_series")
    result |= {
        "model": str(model), "capture": str(store),
        "training": {k: meta.get(k) for k in ("window", "batch_size", "lr", "max_epochs", "patience", "val_fraction",
                                               "hidden", "epochs_run", "best_epoch", "val_loss", "train_windows",
                                               "val_windows", "train_fraction", "train_label_blocks", "train_seconds")},
        "eval_seconds": round(time.monotonic() - started, 1),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result["plot"] = reliability_plot(series, out / "capture_reliability.png")
        (out / "capture_evaluation.json").write_text(json.dumps(_jsonable(result), indent=1))
    return _jsonable(result)


def reliability_plot(series: dict, path: Path, bins: int = 10) -> str:
    """Observed trade rate against predicted probability, in equal-count bins of each model's predictions
    (most predictions are near the base rate: equal-width bins would hold them all in the first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = series["y"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    hi = 0.0
    for name in ("lstm", "lstm_window", "logistic", "pool_base_rate"):
        if name not in series:
            continue
        p = series[name]
        order = np.argsort(p, kind="stable")
        groups = np.array_split(order, bins)
        xs, ys = [float(p[g].mean()) for g in groups if len(g)], [float(y[g].mean()) for g in groups if len(g)]
        hi = max(hi, *xs, *ys)
        ax.plot(xs, ys, "o-", ms=4, label=name)
    ax.axhline(series["base"], color="grey", lw=1, ls=":", label=f"training base rate {series['base']:.4f}")
    hi = min(1.0, 1.1 * hi) if hi > 0 else 1.0
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="perfect")
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="predicted P(traded next block)", ylabel="observed rate",
           title="Success head on the scored blocks (equal-count bins)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)

