"""msgpack frame formats of the data plane.

A frame carries many rows in columns (one little-endian byte string per column), so a
watcher sends one frame per block, not one per pool, and decoding is a few `frombuffer`s.
Every frame is a map `{"v": WIRE_VERSION, "kind": ..., "n": rows, "cols": {name: [bytes, shape]}}`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import msgpack
import numpy as np

from scanner.model.features import FEATURE_NAMES, N_FEATURES, FeatureRow

WIRE_VERSION = 1


class WireError(ValueError):
    """A frame this code cannot read; the message says what is wrong with it."""


class _ColumnFrame:
    """Base of the column frames: subclasses are dataclasses whose fields are the columns."""

    KIND: ClassVar[str]
    DTYPES: ClassVar[dict[str, str]]

    def __post_init__(self) -> None:
        n = None
        for name, dtype in self.DTYPES.items():
            value = getattr(self, name)
            if value is None:  # a column left out (the chain of a single-chain frame) reads 0 in every row
                value = np.zeros(n or 0, dtype=dtype)
            arr = np.ascontiguousarray(value, dtype=dtype)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(f"{self.KIND} frame column {name!r} has {len(arr)} rows, expected {n}")
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(getattr(self, next(iter(self.DTYPES))))

    def take(self, index: Any) -> Self:
        """Rows selected by a slice, index array or boolean mask."""
        return type(self)(**{name: getattr(self, name)[index] for name in self.DTYPES})

    @classmethod
    def concat(cls, frames: Sequence[Self]) -> Self:
        if len(frames) == 1:
            return frames[0]
        return cls(**{name: np.concatenate([getattr(f, name) for f in frames]) for name in cls.DTYPES})

    def encode(self) -> bytes:
        cols = {name: [getattr(self, name).tobytes(), list(getattr(self, name).shape)] for name in self.DTYPES}
        return msgpack.packb({"v": WIRE_VERSION, "kind": self.KIND, "n": len(self), "cols": cols})

    @classmethod
    def decode(cls, data: bytes) -> Self:
        try:
            msg = msgpack.unpackb(data)
        except Exception as e:  # msgpack raises several types for garbage
            raise WireError(f"not a msgpack frame ({type(e).__name__}: {e})") from e
        if not isinstance(msg, dict) or msg.get("kind") != cls.KIND:
            kind = msg.get("kind") if isinstance(msg, dict) else type(msg).__name__
            raise WireError(f"expected a {cls.KIND!r} frame, got {kind!r}: check which socket sends here")
        if msg.get("v") != WIRE_VERSION:
            raise WireError(f"{cls.KIND} frame has wire version {msg.get('v')}, this code reads {WIRE_VERSION}: "
                            "run the same arbscan version on both ends")
        try:
            arrays = {}
            for name, dtype in cls.DTYPES.items():
                raw, shape = msg["cols"][name]
                arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
            frame = cls(**arrays)
        except (KeyError, TypeError, ValueError) as e:
            raise WireError(f"malformed {cls.KIND} frame: {e!r}") from e
        if len(frame) != msg.get("n"):
            raise WireError(f"{cls.KIND} frame says {msg.get('n')} rows but carries {len(frame)}")
        return frame


@dataclass(frozen=True, eq=False)
class FeatureFrame(_ColumnFrame):
    """Feature rows of many pools (usually one watcher's shard at one block)."""

    pool: np.ndarray  # int64 [n]
    block: np.ndarray  # int64 [n]
    x: np.ndarray  # float32 [n, F], columns in FEATURE_NAMES order
    chain: np.ndarray = None  # type: ignore[assignment]  # int64 [n]: each row's chain id; None = 0 in every row

    KIND: ClassVar[str] = "features"
    DTYPES: ClassVar[dict[str, str]] = {"pool": "<i8", "block": "<i8", "x": "<f4", "chain": "<i8"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.x.ndim != 2 or self.x.shape[1] != N_FEATURES:
            raise ValueError(f"feature frame x must be [rows, {N_FEATURES}] ({', '.join(FEATURE_NAMES)}), "
                             f"got shape {self.x.shape}")

    @classmethod
    def from_rows(cls, rows: Sequence[FeatureRow]) -> FeatureFrame:
        return cls(np.array([r.pool for r in rows], dtype=np.int64), np.array([r.block for r in rows], dtype=np.int64),
                   np.array([r.values() for r in rows], dtype=np.float32).reshape(len(rows), N_FEATURES))


@dataclass(frozen=True, eq=False)
class PredictionFrame(_ColumnFrame):
    """Next-block predictions, one per feature row processed (see `scanner.model.lstm.Prediction`)."""

    pool: np.ndarray  # int64 [n]
    block: np.ndarray  # int64 [n]: the block whose features produced it; it predicts block + 1
    mu: np.ndarray  # float32 [n]: mean log mid-price move
    sigma: np.ndarray  # float32 [n]: its standard deviation
    p_trade: np.ndarray  # float32 [n]: probability someone else trades the pool
    chain: np.ndarray = None  # type: ignore[assignment]  # int64 [n]: the chain id that routes it to its aggregator

    KIND: ClassVar[str] = "predictions"
    DTYPES: ClassVar[dict[str, str]] = {"pool": "<i8", "block": "<i8", "mu": "<f4", "sigma": "<f4", "p_trade": "<f4",
                                        "chain": "<i8"}
