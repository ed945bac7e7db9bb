"""A capture store as the LSTM's training data, computed by the serving code.

`capture_dataset` runs `PoolWatcherCore` over `StoreSource` block by block, as `arbscan replay` runs it,
and keeps what the watcher sends the inference server: every pool's feature row after every block
(`FeatureFrame`). The labels of the row after block b describe block b + 1, as in the simulated
market's recordings (`scanner.sim.record`):

- `next_move`: the pool's log mid-price move over block b + 1, i.e. the log price change feature the
  watcher computes for block b + 1 from the reserves (0 when nothing touched the pool);
- `next_traded`: 1 if block b + 1 changed the pool's state (a Sync that changed the V2 reserves; a V3
  swap, mint or burn that changed slot0 or the liquidity), from the watcher's own block updates.

A capture knows only what a node serves: no fee history (no tips) and no oracle prices, so the price
gap reads 0; a store written from a source without headers (`scanner.history.syncs`) also reads gas and
congestion 0 on every block. Such features are constant in the data: the model cannot learn from them,
and `constant_features` names them.

The split in time (`time_split`) keeps the last part of the blocks out of everything that is fitted:
rows before the split block have labels up to the split block, rows from it on are only scored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from scanner.chain.shard import PoolWatcherCore
from scanner.errors import ConfigError
from scanner.history.replay import StoreSource, pool_infos
from scanner.history.store import Capture
from scanner.model.features import FEATURE_NAMES, N_FEATURES
from scanner.model.train import SequenceDataset
from scanner.wire.messages import BlockUpdate, Withdraw

PRICE = FEATURE_NAMES.index("log_price_change")
ROLLING_BLOCKS = 100  # the rolling-std baseline's window


@dataclass(frozen=True, eq=False)
class CaptureDataset:
    """The capture's pools as sequences on one block axis: row t holds the features after `blocks[t]`
    and the labels of block `blocks[t] + 1`."""

    data: SequenceDataset  # [pools, rows, N_FEATURES], [pools, rows], [pools, rows]
    blocks: np.ndarray  # int64 [rows]
    pools: list[str]  # lower-case addresses, in row order
    left_out: list[str]  # pools without a feature row at some block (empty at some point): not in `data`

    @property
    def rows(self) -> int:
        return len(self.blocks)

    def part(self, start: int, stop: int) -> SequenceDataset:
        """Rows [start, stop) of every pool."""
        d = self.data
        return SequenceDataset(d.features[:, start:stop], d.next_move[:, start:stop], d.next_traded[:, start:stop])

    def constant_features(self, stop: int | None = None) -> list[str]:
        """The features that take one value over rows [0, stop): unknown to the source, or never varying."""
        x = self.data.features[:, :stop].reshape(-1, N_FEATURES)
        return [name for i, name in enumerate(FEATURE_NAMES) if np.all(x[:, i] == x[0, i])]


def watcher_frames(capture: Capture, progress: bool = False) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Run the watcher over every block of `capture`: (pool addresses, block numbers [N], features [P, N, F]
    with NaN where the watcher sent no row, changed [P, N] bool: the block changed the pool's state)."""
    infos = dict(enumerate(pool_infos(capture)))
    if not infos:
        raise ConfigError(f"{capture.root} holds no pool with a state at its first block: nothing to learn from")
    source = StoreSource(capture)
    watcher = PoolWatcherCore(source, infos, shard=0)
    snapshot = watcher.bootstrap()
    state: dict[int, object] = {**snapshot.reserves, **{i: _v3_key(s) for i, s in snapshot.v3.items()}}
    numbers = np.arange(capture.first_block, capture.last_block + 1, dtype=np.int64)
    x = np.full((len(infos), len(numbers), N_FEATURES), np.nan, dtype=np.float32)
    changed = np.zeros((len(infos), len(numbers)), dtype=bool)
    bar = tqdm(total=len(numbers), unit="block", desc="features", disable=not progress)
    while source.released < capture.last_block:
        source.release(source.released + watcher.backfill_max_blocks)
        out = watcher.poll()
        for frame in out.features:
            t = int(frame.block[0]) - capture.first_block if len(frame.block) else None
            if t is not None:
                x[frame.pool, t] = frame.x
        for message in out.messages:
            if isinstance(message, Withdraw):
                raise ConfigError(f"{capture.root}: a reorg at block {message.fork_number} in a capture: capture it again")
            assert isinstance(message, BlockUpdate)
            t = message.number - capture.first_block
            for pool, now in [*message.reserves.items(), *((i, _v3_key(s)) for i, s in message.v3.items())]:
                changed[pool, t] = state.get(pool) != now
                state[pool] = now
            bar.update(1)
    bar.close()
    if watcher.blocks_seen != len(numbers):
        raise ConfigError(f"the watcher saw {watcher.blocks_seen} blocks of {capture.root}, not {len(numbers)}")
    return [infos[i].address.lower() for i in range(len(infos))], numbers, x, changed


def _v3_key(state) -> tuple[int, int]:
    return state.sqrt_price_x96, state.liquidity


def capture_dataset(capture: Capture, progress: bool = False) -> CaptureDataset:
    """The LSTM's sequences of every pool of `capture` that has a feature row at every block (module doc)."""
    pools, numbers, x, changed = watcher_frames(capture, progress)
    if len(numbers) < 2:
        raise ConfigError(f"{capture.root} holds {len(numbers)} blocks: a label needs the block after its row")
    whole = np.isfinite(x).all(axis=(1, 2))
    if not whole.any():
        raise ConfigError(f"no pool of {capture.root} has a feature row at every block (all were empty at some block)")
    x, changed = x[whole], changed[whole]
    data = SequenceDataset(x[:, :-1], x[:, 1:, PRICE], changed[:, 1:].astype(np.float32))
    return CaptureDataset(data, numbers[:-1], [p for p, w in zip(pools, whole) if w],
                          [p for p, w in zip(pools, whole) if not w])


def time_split(rows: int, train_fraction: float) -> int:
    """The first row that is only scored: rows before it (labels up to its block) are for fitting."""
    if not 0 < train_fraction < 1:
        raise ConfigError(f"--train-fraction must be in (0, 1), got {train_fraction}")
    return int(round(rows * train_fraction))


# -- baselines and scores of the price-move head ------------------------------------------------------


def rolling_std(moves: np.ndarray, blocks: int = ROLLING_BLOCKS) -> np.ndarray:
    """[pools, rows] -> the std of each pool's last `blocks` moves up to and including each row (fewer at the
    start; 0 at the first row): what is known when the row's prediction is made."""
    m = np.asarray(moves, dtype=np.float64)
    zero = np.zeros((m.shape[0], 1))
    s1, s2 = np.concatenate([zero, np.cumsum(m, axis=1)], 1), np.concatenate([zero, np.cumsum(m * m, axis=1)], 1)
    hi = np.arange(1, m.shape[1] + 1)
    lo = np.maximum(0, hi - blocks)
    n = hi - lo
    mean = (s1[:, hi] - s1[:, lo]) / n
    var = (s2[:, hi] - s2[:, lo]) / n - mean * mean
    return np.sqrt(np.maximum(var, 0.0))


def crps_gaussian(mu: np.ndarray, sigma: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of N(mu, sigma²) at y, closed form (Gneiting & Raftery 2007); sigma 0 is the point mass: |y - mu|."""
    from scipy.special import ndtr

    mu, sigma, y = (np.asarray(a, dtype=np.float64) for a in (mu, sigma, y))
    point = sigma <= 0
    s = np.where(point, 1.0, sigma)
    z = (y - mu) / s
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    crps = s * (z * (2 * ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
    return np.where(point, np.abs(y - mu), crps)
