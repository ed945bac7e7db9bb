"""The stacked LSTM that predicts each pool's next block, and its checkpoint file.

The model takes raw features (it holds the normaliser's statistics as buffers) and gives
raw outputs, so every caller (training, window mode, the streaming batcher, the bench)
feeds it `FeatureRow.values()` and reads log price moves, with nothing to forget. The
head works in normalised units; mu and sigma are scaled back with the statistics of the
log price change feature, which is the same quantity one block earlier.

Three ways to run it, one set of weights:
- `sequence(x, state)`: every step of [B, T, F]; training uses it on 100-block windows
  from a zero state, so each window yields 100 labelled predictions.
- `forward(x, lengths)` (window mode): the prediction after the last step of a window.
  A pool with fewer than T blocks of history is left-padded: its row holds zeros (or
  anything) first and its `lengths[b]` real blocks last; the padding is skipped, never fed
  to the LSTM, so the result equals running the pool's short history from a zero state.
- `step(x, state)` (streaming mode): one block for B pools whose state the caller keeps;
  `scanner.serve.batching.StreamingBatcher` keeps it on the device for every pool.
Running `step` T times from a zero state equals `forward` over the same T blocks (to
float rounding); streaming over a longer history differs because the window forgets what
came before it.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from scanner.model.features import FEATURE_NAMES, N_FEATURES, Normalizer

WINDOW = 100  # blocks of history in window mode and in training windows
SIGMA_FLOOR = 1e-2  # in units of the training move's std: keeps the NLL bounded on quiet pools

State = list[tuple[Tensor, Tensor]]  # per LSTM layer: (h, c), each [B, hidden]


SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "arb_lstm.pt"
"""The checkpoint that ships with the package (see checkpoints/README.md)."""


def shipped_checkpoint() -> Path | None:
    """The shipped checkpoint when the install has it, else None (the heuristic risk model is used)."""
    return SHIPPED_CHECKPOINT if SHIPPED_CHECKPOINT.is_file() else None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class ModelConfig:
    n_features: int = N_FEATURES
    hidden: tuple[int, ...] = (50, 30)
    head_hidden: int = 32

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        unknown = set(d) - {"n_features", "hidden", "head_hidden"}
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}: this code builds ArbLSTM "
                             "from n_features, hidden and head_hidden only")
        return cls(int(d["n_features"]), tuple(int(h) for h in d["hidden"]), int(d["head_hidden"]))


class Prediction(NamedTuple):
    """Next-block prediction per pool (tensors of equal shape)."""

    mu: Tensor  # mean of the pool's log mid-price move
    sigma: Tensor  # its standard deviation (> 0)
    logit: Tensor  # logit of P(someone else trades the pool)

    @property
    def p_trade(self) -> Tensor:
        return torch.sigmoid(self.logit)


class ArbLSTM(nn.Module):
    """Stacked LSTM (50 then 30 units by default) with a dense head giving (mu, sigma, logit)."""

    in_mean: Tensor  # buffers registered in __init__
    in_std: Tensor

    def __init__(self, n_features: int = N_FEATURES, hidden: tuple[int, ...] = (50, 30),
                 head_hidden: int = 32) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one LSTM layer size, e.g. (50, 30)")
        self.config = ModelConfig(n_features, tuple(hidden), head_hidden)
        sizes = (n_features, *hidden)
        self.layers = nn.ModuleList(nn.LSTM(i, o, batch_first=True) for i, o in zip(sizes, sizes[1:]))
        self.head = nn.Sequential(nn.Linear(sizes[-1], head_hidden), nn.ReLU(), nn.Linear(head_hidden, 3))
        # Not in the state_dict: the checkpoint stores the normaliser once, by name.
        self.register_buffer("in_mean", torch.zeros(n_features), persistent=False)
        self.register_buffer("in_std", torch.ones(n_features), persistent=False)

    def set_normalizer(self, normalizer: Normalizer) -> None:
        if normalizer.mean.shape != (self.config.n_features,):
            raise ValueError(f"normalizer has {normalizer.mean.shape[0]} features, model has {self.config.n_features}")
        self.in_mean.copy_(torch.from_numpy(normalizer.mean))
        self.in_std.copy_(torch.from_numpy(normalizer.std))

    def normalizer(self) -> Normalizer:
        return Normalizer(self.in_mean.cpu().numpy(), self.in_std.cpu().numpy())

    def zero_state(self, batch: int) -> State:
        dev = self.in_mean.device
        return [(torch.zeros(batch, h, device=dev), torch.zeros(batch, h, device=dev)) for h in self.config.hidden]

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Prediction:
        """Window mode: x [B, T, F] raw features, optionally left-padded (see module doc); -> [B]."""
        z = self._normalize(x)
        run_input: Tensor | PackedSequence = z
        if lengths is not None:
            lengths = lengths.to(torch.long).cpu()
            if lengths.shape != (x.shape[0],) or (lengths < 1).any() or (lengths > x.shape[1]).any():
                raise ValueError(f"lengths must be B={x.shape[0]} values in [1, T={x.shape[1]}], got {lengths.tolist()}")
            # Left-padded -> right-padded so the packed sequence starts at each pool's first real block.
            shift = (torch.arange(x.shape[1]) + x.shape[1] - lengths[:, None]) % x.shape[1]
            z = torch.gather(z, 1, shift.to(z.device)[:, :, None].expand_as(z))
            run_input = pack_padded_sequence(z, lengths, batch_first=True, enforce_sorted=False)
        _, state = self._run(run_input, None)
        return self._heads(state[-1][0])

    def sequence(self, x: Tensor, state: State | None = None) -> tuple[Prediction, State]:
        """Predictions after every step of x [B, T, F] ([B, T] each) and the final state."""
        out, state = self._run(self._normalize(x), state)
        return self._heads(out), state

    def step(self, x: Tensor, state: State) -> tuple[Prediction, State]:
        """Streaming mode: one block x [B, F] for B pools in `state` -> predictions [B], new state."""
        pred, state = self.sequence(x.unsqueeze(1), state)
        return Prediction(*(t.squeeze(1) for t in pred)), state

    def loss(self, pred: Prediction, move: Tensor, traded: Tensor) -> tuple[Tensor, Tensor]:
        """(Gaussian NLL of the move, BCE of the trade flag), means over all elements.

        The NLL is measured in units of the training move's std (constant terms dropped),
        so its value reads the same whatever the pool's price scale.
        """
        nll = 0.5 * ((move - pred.mu) / pred.sigma) ** 2 + torch.log(pred.sigma / self.in_std[0])
        return nll.mean(), F.binary_cross_entropy_with_logits(pred.logit, traded)

    def _normalize(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.config.n_features:
            raise ValueError(f"expected {self.config.n_features} features in the last axis, got shape {tuple(x.shape)}")
        return (x - self.in_mean) / self.in_std

    def _run(self, z: Any, state: State | None) -> tuple[Any, State]:
        new_state: State = []
        for i, lstm in enumerate(self.layers):
            hx = None if state is None else (state[i][0].unsqueeze(0).contiguous(), state[i][1].unsqueeze(0).contiguous())
            z, (h, c) = lstm(z, hx)
            new_state.append((h[0], c[0]))
        return z, new_state

    def _heads(self, h: Tensor) -> Prediction:
        o = self.head(h)
        mean, std = self.in_mean[0], self.in_std[0]
        return Prediction(mean + std * o[..., 0], std * (F.softplus(o[..., 1]) + SIGMA_FLOOR), o[..., 2])


FORMAT = "arbscan-lstm-checkpoint"
FORMAT_VERSION = 1
ARCHITECTURE = "ArbLSTM"


class CheckpointError(ValueError):
    """A checkpoint file that this code cannot use; the message says why and what to do."""


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained model: loading needs nothing else."""

    config: ModelConfig
    normalizer: Normalizer
    state_dict: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)  # plain values only (weights_only load)

    @classmethod
    def from_model(cls, model: ArbLSTM, metadata: dict[str, Any] | None = None) -> Checkpoint:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return cls(model.config, model.normalizer(), state, dict(metadata or {}))

    def build(self, device: torch.device | str | None = None) -> ArbLSTM:
        """The model in eval mode on `device` (CUDA when present by default)."""
        model = ArbLSTM(**asdict(self.config))
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint weights do not fit an ArbLSTM with config {self.config}: {e}; "
                                  "it was saved by a different architecture, retrain or use its own code") from e
        model.set_normalizer(self.normalizer)
        return model.to(device or default_device()).eval()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temp file + rename), so a crash never leaves half a checkpoint."""
        payload = {
            "format": FORMAT, "version": FORMAT_VERSION, "architecture": ARCHITECTURE,
            "config": {**asdict(self.config), "hidden": list(self.config.hidden)},
            "feature_names": list(FEATURE_NAMES), "normalizer": self.normalizer.to_dict(),
            "state_dict": self.state_dict, "metadata": self.metadata,
        }
        bad = [k for k, v in self.metadata.items() if not _plain(v)]
        if bad:
            raise TypeError(f"checkpoint metadata {bad} must hold only str, int, float, bool, None, lists and dicts "
                            "(loading uses torch.load(weights_only=True)): convert them, e.g. with str()")
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """Read and validate; raises `CheckpointError` for anything but a complete, matching checkpoint."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}: train one with scanner.model.train.train(...).save(path)")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated or foreign files
            raise CheckpointError(f"{path} is truncated or not a torch checkpoint ({type(e).__name__}: {e}); "
                                  "re-save or retrain it") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise CheckpointError(f"{path} is a torch file but not an arbscan LSTM checkpoint")
        if d.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{path} has checkpoint format version {d.get('version')}, this code reads "
                                  f"{FORMAT_VERSION}: retrain with this version")
        if d.get("architecture") != ARCHITECTURE:
            raise CheckpointError(f"{path} holds a {d.get('architecture')!r} model, this code runs {ARCHITECTURE!r}")
        if tuple(d.get("feature_names", ())) != FEATURE_NAMES:
            raise CheckpointError(f"{path} was trained on features {d.get('feature_names')}, this code computes "
                                  f"{list(FEATURE_NAMES)}: retrain on the current features")
        try:
            ckpt = cls(ModelConfig.from_dict(d["config"]), Normalizer.from_dict(d["normalizer"]),
                       dict(d["state_dict"]), dict(d.get("metadata", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path} is an incomplete or inconsistent checkpoint: {e!r}") from e
        ckpt.build("cpu")  # refuse weights that do not fit the config now, not at first use
        return ckpt



def _plain(value: Any) -> bool:
    """Whether torch.load(weights_only=True) can read `value` back (exact types: subclasses pickle by class)."""
    if type(value) in (list, tuple):
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return value is None or type(value) in (str, int, float, bool)
