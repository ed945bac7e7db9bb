"""Training: Adam on 100-block windows, validated on the latest blocks, stopped early.

Each window starts from a zero LSTM state and is scored at every step (the prediction after
block t against block t + 1), so the model learns to work both on a fresh pool and on a
long history; streaming inference then carries the state across windows.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import torch

from scanner.model.features import N_FEATURES, Normalizer, check_finite
from scanner.model.lstm import WINDOW, ArbLSTM, Checkpoint, ModelConfig, default_device


class RecordedSeries(Protocol):
    """What training reads of a recording (`scanner.sim.record.Recording`): arrays per block and pool."""

    @property
    def blocks(self) -> np.ndarray: ...  # [blocks]
    @property
    def features(self) -> np.ndarray: ...  # float32 [blocks, pools, F]
    @property
    def next_move(self) -> np.ndarray: ...  # [blocks, pools]
    @property
    def next_traded(self) -> np.ndarray: ...  # [blocks, pools]


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Per-pool sequences on a common block axis; the labels at t describe block t + 1."""

    features: np.ndarray  # float32 [pools, blocks, F], raw (unnormalised)
    next_move: np.ndarray  # float32 [pools, blocks]: log mid-price move over the next block
    next_traded: np.ndarray  # float32 [pools, blocks]: 1 if someone else traded the pool in the next block

    def __post_init__(self) -> None:
        x = np.asarray(self.features, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != N_FEATURES:
            raise ValueError(f"features must be [pools, blocks, {N_FEATURES}], got {x.shape}")
        check_finite(x)
        for name in ("next_move", "next_traded"):
            arr = np.asarray(getattr(self, name), dtype=np.float32)
            if arr.shape != x.shape[:2]:
                raise ValueError(f"{name} must be [pools, blocks] = {x.shape[:2]}, got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} holds NaN or infinity: fix the recorder's labels")
            object.__setattr__(self, name, arr)
        if not np.isin(self.next_traded, (0.0, 1.0)).all():
            raise ValueError("next_traded must be 0 or 1")
        object.__setattr__(self, "features", x)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    window: int = WINDOW
    batch_size: int = 32  # windows per Adam step
    lr: float = 1e-3
    max_epochs: int = 400
    patience: int = 40  # epochs without a better validation loss before stopping
    val_fraction: float = 0.2  # the latest blocks, for every pool
    seed: int = 0
    progress: bool = True  # one line per epoch on stderr

    @classmethod
    def of(cls, **options: Any) -> TrainConfig:
        """The config with `options` (field names) changed, refusing an unknown name by name."""
        names = [f.name for f in fields(cls)]
        unknown = set(options) - set(names)
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}: use TrainConfig fields {names}")
        return cls(**options)


def train(dataset: SequenceDataset, config: TrainConfig = TrainConfig()) -> Checkpoint:
    """Fit an ArbLSTM; returns the checkpoint of the epoch with the best validation loss."""
    blocks = dataset.features.shape[1]
    split = validation_start(blocks, config.val_fraction)
    if split - 1 < config.window or blocks - split < config.window:
        raise ValueError(f"{blocks} blocks leave fewer than window={config.window} blocks for training or "
                         f"validation at val_fraction={config.val_fraction}: record more blocks or shorten the window")
    device = default_device()
    # Training stops one block before validation starts: its label is the first validation block.
    train_x, train_move, train_traded = _windows(dataset, 0, split - 1, config.window, device)
    val_x, val_move, val_traded = _windows(dataset, split, blocks, config.window, device)
    normalizer = Normalizer.fit(dataset.features[:, :split - 1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ArbLSTM(**asdict(config.model))
    model.set_normalizer(normalizer)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    shuffle = torch.Generator().manual_seed(config.seed)

    # What predicting the training base rate for every pool would score on validation.
    base_rate = float(train_traded.mean())
    base_bce = float(torch.nn.functional.binary_cross_entropy(torch.full_like(val_traded, base_rate), val_traded))
    best_loss, best_epoch, best_state, best_scores = math.inf, 0, {}, {}
    started = time.monotonic()
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=shuffle)
        train_loss = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size].to(device)
            pred, _ = model.sequence(train_x[idx])
            nll, bce = model.loss(pred, train_move[idx], train_traded[idx])
            optimizer.zero_grad()
            (nll + bce).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            train_loss += float(nll.detach() + bce.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            val_nll, val_bce = (float(v) for v in model.loss(model.sequence(val_x)[0], val_move, val_traded))
        val_loss = val_nll + val_bce
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_scores = {"val_loss": val_loss, "val_nll": val_nll, "val_bce": val_bce}
        if config.progress:
            print(f"[train] epoch {epoch}/{config.max_epochs} train {train_loss / len(train_x):.4f} "
                  f"val {val_loss:.4f} (nll {val_nll:.4f} bce {val_bce:.4f}, base-rate bce {base_bce:.4f}) "
                  f"best {best_loss:.4f}@{best_epoch} {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
        if epoch - best_epoch >= config.patience:
            break

    if not best_state:
        raise RuntimeError(f"validation loss was never finite in {epoch} epochs: lower lr (now {config.lr}) "
                           "or check the labels")
    model.load_state_dict(best_state)
    metadata = {
        **best_scores, "best_epoch": best_epoch, "epochs_run": epoch, "base_rate": base_rate, "base_bce": base_bce,
        "train_windows": len(train_x), "val_windows": len(val_x), "pools": dataset.features.shape[0],
        "blocks": blocks, "window": config.window, "batch_size": config.batch_size, "lr": config.lr,
        "seed": config.seed, "torch": str(torch.__version__), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return Checkpoint.from_model(model, metadata)


def validation_start(blocks: int, val_fraction: float) -> int:
    """The first block of the validation part: the latest `val_fraction` of every pool's blocks."""
    return int(round(blocks * (1 - val_fraction)))


def recorded_dataset(recordings: Sequence[RecordedSeries]) -> SequenceDataset:
    """Every recording's pools as sequences on one block axis (cut to the shortest recording)."""
    if not recordings:
        raise ValueError("no recordings given: record some with `arbscan record`")
    blocks = min(len(r.blocks) for r in recordings)
    return SequenceDataset(
        np.concatenate([r.features[:blocks].transpose(1, 0, 2) for r in recordings]),
        np.concatenate([r.next_move[:blocks].T for r in recordings]),
        np.concatenate([r.next_traded[:blocks].T for r in recordings]),
    )


def _windows(ds: SequenceDataset, start: int, stop: int, window: int,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Non-overlapping windows of blocks [start, stop) of every pool, as [N, window, ...] tensors."""
    n = (stop - start) // window
    end = start + n * window

    def cut(a: np.ndarray) -> torch.Tensor:
        part = a[:, start:end].reshape(a.shape[0] * n, window, *a.shape[2:])
        return torch.from_numpy(np.ascontiguousarray(part)).to(device)

    return cut(ds.features), cut(ds.next_move), cut(ds.next_traded)


def synthetic_dataset(pools: int = 64, blocks: int = 1000, seed: int = 0) -> SequenceDataset:
    """A market with a learnable signal, for tests and smoke runs until recorded history exists.

    Each pool has a hidden, persistent activity level; the network has a congestion level.
    The chance that the pool is traded in the next block rises with both, a trade shows up
    as volume and moves the price (more when activity is high), and gas follows congestion.
    A model that reads recent volume and congestion beats the base rate.
    """
    rng = np.random.default_rng(seed)
    steps = blocks + 1

    def ar1(shape: tuple[int, ...], rho: float) -> np.ndarray:
        out = np.empty(shape)
        out[..., 0] = rng.normal(size=shape[:-1])
        shocks = rng.normal(size=shape) * math.sqrt(1 - rho**2)
        for t in range(1, shape[-1]):
            out[..., t] = rho * out[..., t - 1] + shocks[..., t]
        return out

    activity = ar1((pools, steps), 0.95)
    congestion = 1 / (1 + np.exp(-1.5 * ar1((steps,), 0.9)))
    gas = np.log1p(20 * np.exp(2 * (congestion - 0.5) + 0.1 * rng.normal(size=steps)))
    p_trade = 1 / (1 + np.exp(-(-1.2 + 1.2 * activity + 4 * (congestion - 0.5))))
    traded = np.zeros((pools, steps))
    traded[:, 1:] = rng.random((pools, steps - 1)) < p_trade[:, :-1]
    volume = traded * np.log1p(np.exp(-5 + 0.8 * activity + 0.5 * rng.normal(size=(pools, steps))))
    move = np.zeros((pools, steps))
    move[:, 1:] = traded[:, 1:] * rng.normal(size=(pools, steps - 1)) * 0.002 * np.exp(0.5 * activity[:, :-1])
    liquidity = rng.normal(12, 2, size=(pools, 1)) + np.cumsum(0.01 * rng.normal(size=(pools, steps)), axis=1)
    fee = np.broadcast_to(rng.choice([0.0005, 0.0025, 0.003], size=(pools, 1)), (pools, steps))
    crossed = np.log1p(traded * rng.poisson(np.exp(activity)))  # a trade crosses more ticks in an active pool
    features = np.stack([move, volume, np.broadcast_to(gas, (pools, steps)), liquidity,
                         np.broadcast_to(congestion, (pools, steps)), np.zeros((pools, steps)), fee, crossed], axis=-1)
    return SequenceDataset(features[:, :-1], move[:, 1:], traded[:, 1:])
