"""Per-pool, per-block LSTM inputs: the five signals of the brief, a reference-price gap and the
pool's fee, and their normaliser.

One `FeatureRow` describes one pool at one block. The watcher computes it from what it
already has (reserves before and after the block, swap flow, the block's gas numbers, the
price oracle's answer at the block) with `compute_features`; the inference server only ever
sees the floats.

The sixth signal is the brief's "price" seen against a reference: how far the pool's mid price
is from the oracle's. Competing arbitrageurs trade a pool when it strays from the reference
price they watch (a CEX price on mainnet, the oracle here), so this is what makes "will someone
else trade this pool before us" predictable at all; a pool's own price history cannot show it.
Whether a gap is worth closing depends on the pool's fee, so the fee is the seventh input.

The eighth is a Uniswap V3 pool's count of initialized ticks its swaps crossed in the block: a
crossing changes the pool's active liquidity, hence how far the next trade moves its price, which its
virtual reserves after the block do not show. V2 pools have no ticks and read 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

WEI_PER_GWEI = 1_000_000_000


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """The model's input for one pool after one block.

    `pool` is the pool's integer id (the watcher's index into the pool registry, stable for
    the life of the deployment); the address lives in that registry, not in every row.
    """

    pool: int
    block: int
    log_price_change: float  # log(mid price) now minus at the previous block
    volume_to_liquidity: float  # log1p of swap inflow as a fraction of the pool's reserves
    log_gas_price: float  # log1p(base fee + tip, in gwei)
    log_liquidity: float  # log(sqrt(reserve0 * reserve1)), reserves in base units
    congestion: float  # gas used / gas limit of the block, in [0, 1]
    log_price_gap: float  # log(mid price / the oracle's reference price); 0 without an oracle
    fee: float  # the pool's swap fee as a fraction (30 bps: 0.003)
    log_ticks_crossed: float = 0.0  # log1p of initialized ticks the block's swaps crossed (V3; V2: 0)

    def values(self) -> tuple[float, ...]:
        return (self.log_price_change, self.volume_to_liquidity, self.log_gas_price,
                self.log_liquidity, self.congestion, self.log_price_gap, self.fee, self.log_ticks_crossed)


FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(FeatureRow)[2:])
N_FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True, slots=True)
class PoolObservation:
    """What a watcher knows about one pool after one block (integers as on chain)."""

    reserve0: int
    reserve1: int
    prev_reserve0: int
    prev_reserve1: int
    amount0_in: int  # sum of Swap.amount0In over the block
    amount1_in: int  # sum of Swap.amount1In over the block
    base_fee_wei: int
    tip_wei: int  # the priority fee the scanner would pay (e.g. the median tip of fee history)
    gas_used_ratio: float  # gas used / gas limit of the block
    fee_bps: int = 30
    ref_log_price: float | None = None  # log(raw token1 per raw token0) at the oracle's prices; None: no oracle
    ticks_crossed: int = 0  # initialized V3 ticks the block's swaps crossed (V2: 0)


def compute_features(obs: PoolObservation) -> tuple[float, ...]:
    """The features of one observation, in `FEATURE_NAMES` order.

    Volume is measured on each side against the reserve it enters, so it is a fraction of
    the pool and needs no price; log1p keeps a quiet block at 0 and tames whale swaps.
    Gas uses log1p so a zero base fee (fresh local chain) stays finite. Without a reference
    price the gap is 0 (the pool reads as fairly priced); `ref_log_price` must be finite.
    """
    for name in ("reserve0", "reserve1", "prev_reserve0", "prev_reserve1"):
        if getattr(obs, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(obs, name)}: "
                             "skip pools that are empty at this block")
    if min(obs.amount0_in, obs.amount1_in, obs.base_fee_wei, obs.tip_wei, obs.ticks_crossed) < 0:
        raise ValueError(f"swap amounts, fees and ticks crossed must be non-negative, got {obs}")
    if not 0 <= obs.fee_bps < 10_000:
        raise ValueError(f"fee_bps must be in [0, 10000), got {obs.fee_bps}")
    if not 0.0 <= obs.gas_used_ratio <= 1.0:
        raise ValueError(f"gas_used_ratio must be gas used / gas limit in [0, 1], got {obs.gas_used_ratio}")
    if obs.ref_log_price is not None and not math.isfinite(obs.ref_log_price):
        raise ValueError(f"ref_log_price must be finite, got {obs.ref_log_price}: the oracle answered a zero "
                         "or missing price")
    log_r0, log_r1 = math.log(obs.reserve0), math.log(obs.reserve1)  # math.log takes big ints exactly
    price_change = (log_r1 - log_r0) - (math.log(obs.prev_reserve1) - math.log(obs.prev_reserve0))
    gap = 0.0 if obs.ref_log_price is None else (log_r1 - log_r0) - obs.ref_log_price
    volume = obs.amount0_in / obs.prev_reserve0 + obs.amount1_in / obs.prev_reserve1
    gas_gwei = (obs.base_fee_wei + obs.tip_wei) / WEI_PER_GWEI
    return (price_change, math.log1p(volume), math.log1p(gas_gwei), 0.5 * (log_r0 + log_r1),
            float(obs.gas_used_ratio), gap, obs.fee_bps / 10_000, math.log1p(obs.ticks_crossed))


class NonFiniteFeatureError(ValueError):
    """A feature row holds NaN or infinity: the sender computed it from bad data.

    Fitting and training refuse such rows with this error; the inference server drops them
    and counts them (`rows_invalid`), since one bad pool must not stop the others.
    """


def check_finite(x: np.ndarray) -> None:
    """Raise `NonFiniteFeatureError` naming the first bad row and feature of `x` [..., F]."""
    bad = ~np.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteFeatureError(
            f"feature {FEATURE_NAMES[where[-1]]!r} is {x[where]} at index {where[:-1]} "
            f"({int(bad.any(axis=-1).sum())} rows affected): fix the observation that produced it "
            "or drop the row")


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Per-feature mean and standard deviation, fitted on training data and saved with the model."""

    mean: np.ndarray  # float32 [F]
    std: np.ndarray  # float32 [F], strictly positive

    MIN_STD = 1e-6  # a feature that never moved in training is centred but not blown up

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            arr = np.asarray(getattr(self, name), dtype=np.float32)
            if arr.shape != (N_FEATURES,) or not np.isfinite(arr).all():
                raise ValueError(f"normalizer {name} must be {N_FEATURES} finite numbers, got {arr}")
            object.__setattr__(self, name, arr)
        if (self.std <= 0).any():
            raise ValueError(f"normalizer std must be positive, got {self.std}")

    @classmethod
    def fit(cls, x: np.ndarray) -> Normalizer:
        """Fit on raw features [..., F] (any leading shape)."""
        flat = np.asarray(x, dtype=np.float64).reshape(-1, N_FEATURES)
        if len(flat) < 2:
            raise ValueError("fitting a normalizer needs at least two feature rows")
        check_finite(flat)
        return cls(flat.mean(0), np.maximum(flat.std(0), cls.MIN_STD))

    @classmethod
    def identity(cls) -> Normalizer:
        return cls(np.zeros(N_FEATURES), np.ones(N_FEATURES))

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Normalizer:
        return cls(np.asarray(d["mean"]), np.asarray(d["std"]))
