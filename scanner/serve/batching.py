"""The two halves of batched inference: when to run a batch, and how a batch advances pools.

`DynamicBatcher` decides *when*: rows queue, and a batch runs when `max_batch` rows wait or
the oldest has waited `max_delay_s` (the Triton / Ray Serve dynamic-batching rule).

`StreamingBatcher` decides *how* (Triton's sequence batcher): every pool's LSTM state lives
on the model's device in one tensor indexed by pool slot (a row holds h and c of each layer);
a batch gathers its pools' rows, advances them one step and scatters them back, so a block
costs one LSTM step per updated pool instead of a 100-block window.

How the modes relate: streaming from a pool's first row carries its whole history, while
window mode sees only the last `WINDOW` blocks from a zero state. Over the same blocks from
a zero state they agree to float rounding; over a longer history they differ by what the
window forgets. `window_gap` measures that difference.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from scanner.model.lstm import WINDOW, ArbLSTM, Prediction
from scanner.wire.frames import FeatureFrame, PredictionFrame


@dataclass
class _Chunk:
    arrived: float
    frame: FeatureFrame


class DynamicBatcher:
    """Bounded queue of feature rows with the dynamic-batching dispatch rule.

    Overflow policy: when more than `max_pending` rows wait, every row superseded by a newer
    row of the same pool is dropped (and counted in `dropped`); the newest row of each pool
    is always kept, so the queue holds at most max(max_pending, pools) rows and an
    overloaded server falls back to predicting from each pool's freshest block.
    Pure logic: time comes only from `clock`, so tests drive it with a fake one.
    """

    def __init__(self, max_batch: int = 256, max_delay_s: float = 0.002, max_pending: int = 16384,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_batch < 1 or max_delay_s < 0 or max_pending < max_batch:
            raise ValueError(f"need max_batch >= 1, max_delay_s >= 0 and max_pending >= max_batch, got "
                             f"{max_batch}, {max_delay_s}, {max_pending}")
        self.max_batch, self.max_delay_s, self.max_pending = max_batch, max_delay_s, max_pending
        self.clock = clock
        self.dropped = 0
        self._chunks: deque[_Chunk] = deque()
        self._pending = 0

    def __len__(self) -> int:
        return self._pending

    def add(self, frame: FeatureFrame) -> int:
        """Queue a frame's rows (arrival = now); returns how many rows the overflow policy dropped."""
        if len(frame):
            self._chunks.append(_Chunk(self.clock(), frame))
            self._pending += len(frame)
        return self._coalesce() if self._pending > self.max_pending else 0

    def due(self) -> bool:
        return self.wait_s() == 0.0

    def wait_s(self) -> float | None:
        """Seconds until a batch is due: 0 when it is, None when nothing waits."""
        if not self._chunks:
            return None
        if self._pending >= self.max_batch:
            return 0.0
        return max(0.0, self._chunks[0].arrived + self.max_delay_s - self.clock())

    def take(self, limit: int | None = None) -> FeatureFrame:
        """The oldest rows, at most `limit` (default `max_batch`) of them, in arrival order.

        A server under load passes a larger `limit`: a backlog then runs as one big batch,
        which steps more rows per second than several of `max_batch`.
        """
        parts: list[FeatureFrame] = []
        limit = self.max_batch if limit is None else limit
        if limit < 1:
            raise ValueError(f"take(limit) needs a limit of at least one row, got {limit}")
        room = limit
        while self._chunks and room:
            chunk = self._chunks[0]
            if len(chunk.frame) <= room:
                parts.append(self._chunks.popleft().frame)
            else:
                parts.append(chunk.frame.take(slice(0, room)))
                chunk.frame = chunk.frame.take(slice(room, None))
            room -= len(parts[-1])
        if not parts:
            raise IndexError("take() on an empty DynamicBatcher: check due() first")
        self._pending -= limit - room
        return FeatureFrame.concat(parts)

    def _coalesce(self) -> int:
        pools = np.concatenate([c.frame.pool for c in self._chunks])
        newest = len(pools) - 1 - np.unique(pools[::-1], return_index=True)[1]
        keep = np.zeros(len(pools), dtype=bool)
        keep[newest] = True
        kept: deque[_Chunk] = deque()
        start = 0
        for chunk in self._chunks:
            mask = keep[start:start + len(chunk.frame)]
            start += len(chunk.frame)
            if mask.any():
                kept.append(_Chunk(chunk.arrived, chunk.frame if mask.all() else chunk.frame.take(mask)))
        dropped = len(pools) - len(newest)
        self._chunks, self._pending = kept, len(newest)
        self.dropped += dropped
        return dropped


DIRECT_IDS = 1 << 22  # pool ids below this map to slots through an array of up to 32 MB


class StreamingBatcher:
    """Per-pool LSTM state on the device, advanced one block per row.

    Pools (any int64 ids) get slots on their first row, with a zero state (a new pool has no
    history); the table grows by doubling, or further when a batch brings more new pools. A pool's rows must come in block order: a row whose block is
    not after the last one applied to that pool (a duplicate or a late frame) is skipped and
    counted in `stale`, since applying it would corrupt the state. A block a pool has no row
    for is simply not stepped; watchers send every pool every block to match training.
    """

    def __init__(self, model: ArbLSTM, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least one pool slot, got {capacity}")
        self.model = model.eval()
        self.device = model.in_mean.device
        self.stale = 0
        # One row per slot, h then c of each layer side by side (new pools are zeroed in one call);
        # a batch gathers each of the four column blocks into its own contiguous tensor, as the LSTM takes them.
        self._widths = [h for h in model.config.hidden for _ in "hc"]
        self._state = torch.zeros(0, sum(self._widths), device=self.device)
        self._last_block = np.zeros(0, dtype=np.int64)
        self._mark = np.zeros(0, dtype=np.int64)  # scratch per slot: finds repeated pools in a batch in O(rows)
        # Pool id -> slot as two arrays sorted by pool: one searchsorted maps a whole batch of any
        # int64 ids (a dict lookup per row took 1.3 ms of a 4096-row batch, a quarter of its LSTM step).
        self._pools = np.zeros(0, dtype=np.int64)
        self._pool_slots = np.zeros(0, dtype=np.int64)
        # The same map for ids in [0, DIRECT_IDS) as one array indexed by id (-1: no slot): watchers
        # number pools 0, 1, 2, ... (their registry index), and indexing skips searchsorted's 0.4 ms.
        self._direct = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []
        self._grow(capacity)

    def __len__(self) -> int:
        return len(self._pools)

    def release(self, pool: int) -> None:
        """Forget a pool (it left the watch list, or a reorg invalidated its history)."""
        at = int(np.searchsorted(self._pools, pool))
        if at < len(self._pools) and self._pools[at] == pool:
            self._free.append(int(self._pool_slots[at]))
            self._pools, self._pool_slots = np.delete(self._pools, at), np.delete(self._pool_slots, at)
            if 0 <= pool < len(self._direct):
                self._direct[pool] = -1

    def step(self, frame: FeatureFrame) -> PredictionFrame:
        """Advance every row's pool by its block; one prediction per row applied.

        Rows of the same pool in one batch are applied in order, one round per repeat.
        """
        slots = self._slots(frame.pool)
        rounds = self._repeats(slots)
        if not rounds.any() and (frame.block > self._last_block[slots]).all():
            # the usual batch, one fresh row per pool: applied whole, no row copied
            self._last_block[slots] = frame.block
            mu, sigma, p_trade = self._advance(slots, frame.x)
            return PredictionFrame(frame.pool, frame.block, mu, sigma, p_trade, frame.chain)
        applied, values = [np.zeros(0, dtype=np.int64)], [np.zeros((3, 0), dtype=np.float32)]
        for r in range(int(rounds.max(initial=-1)) + 1):
            rows = np.flatnonzero(rounds == r)
            fresh = frame.block[rows] > self._last_block[slots[rows]]
            self.stale += int(len(rows) - fresh.sum())
            rows = rows[fresh]
            if len(rows):
                self._last_block[slots[rows]] = frame.block[rows]
                applied.append(rows)
                values.append(self._advance(slots[rows], frame.x[rows]))
        rows = np.concatenate(applied)
        mu, sigma, p_trade = np.concatenate(values, axis=1)
        return PredictionFrame(frame.pool[rows], frame.block[rows], mu, sigma, p_trade, frame.chain[rows])

    @torch.inference_mode()
    def _advance(self, slots: np.ndarray, x: np.ndarray) -> np.ndarray:
        index = torch.from_numpy(slots).to(self.device)
        tables = self._state.split(self._widths, dim=1)
        parts = [t.index_select(0, index) for t in tables]
        pred, state = self.model.step(torch.from_numpy(x).to(self.device), list(zip(parts[0::2], parts[1::2])))
        for table, new in zip(tables, (t for hc in state for t in hc)):
            table.index_copy_(0, index, new)
        return torch.stack([pred.mu, pred.sigma, pred.p_trade]).cpu().numpy()

    def _slots(self, pools: np.ndarray) -> np.ndarray:
        """Each row's slot; pools seen for the first time get fresh zeroed ones."""
        if len(pools) and pools.min() >= 0 and pools.max() < len(self._direct):
            slots = self._direct[pools]
            if (slots >= 0).all():
                return slots
        at = np.searchsorted(self._pools, pools)
        known = at < len(self._pools)
        known[known] = self._pools[at[known]] == pools[known]
        if not known.all():
            self._allocate(np.unique(pools[~known]))
            at = np.searchsorted(self._pools, pools)
        return self._pool_slots[at]

    def _allocate(self, pools: np.ndarray) -> None:
        """Zeroed slots for `pools` (new, distinct), growing the tables when too few are free."""
        if len(pools) > len(self._free):
            self._grow(max(2 * len(self._last_block), len(self._last_block) + len(pools) - len(self._free)))
        slots = np.array([self._free.pop() for _ in range(len(pools))], dtype=np.int64)
        self._state.index_fill_(0, torch.from_numpy(slots).to(self.device), 0.0)
        self._last_block[slots] = np.iinfo(np.int64).min
        where = np.searchsorted(self._pools, pools)
        self._pools, self._pool_slots = np.insert(self._pools, where, pools), np.insert(self._pool_slots, where, slots)
        direct = (pools >= 0) & (pools < DIRECT_IDS)
        if direct.any():
            top = int(pools[direct].max()) + 1
            if top > len(self._direct):
                size = min(max(top, 2 * len(self._direct)), DIRECT_IDS)
                self._direct = np.concatenate([self._direct, np.full(size - len(self._direct), -1, dtype=np.int64)])
            self._direct[pools[direct]] = slots[direct]

    def _repeats(self, slots: np.ndarray) -> np.ndarray:
        """For each row, how many earlier rows of the batch have its slot (its pool): all zeros, found
        in O(rows), for the usual batch with one row per pool."""
        rows = np.arange(len(slots))
        self._mark[slots] = rows
        if (self._mark[slots] == rows).all():
            return np.zeros(len(slots), dtype=np.int64)
        return _occurrence(slots)

    def _grow(self, capacity: int) -> None:
        old = len(self._last_block)
        self._state = torch.cat([self._state, self._state.new_zeros(capacity - old, self._state.shape[1])])
        self._last_block = np.concatenate([self._last_block, np.zeros(capacity - old, dtype=np.int64)])
        self._mark = np.zeros(capacity, dtype=np.int64)
        self._free.extend(range(capacity - 1, old - 1, -1))


def _occurrence(pools: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows of the batch belong to the same pool."""
    order = np.argsort(pools, kind="stable")
    sorted_pools = pools[order]
    starts = np.ones(len(pools), dtype=bool)
    starts[1:] = sorted_pools[1:] != sorted_pools[:-1]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(pools)), 0))
    rank = np.empty(len(pools), dtype=np.int64)
    rank[order] = np.arange(len(pools)) - group_start
    return rank


def window_gap(model: ArbLSTM, x: np.ndarray, window: int = WINDOW) -> dict[str, float]:
    """How far streaming over all of x [pools, T, F] lands from window mode over its last `window` blocks.

    Streams every block through a `StreamingBatcher` (the production path), then compares
    the final predictions with `model(x[:, -window:])`. Differences are max absolute over
    pools: mu in units of the window's sigma, sigma relative, p_trade in probability.
    """
    streamer = StreamingBatcher(model, capacity=len(x))
    pools = np.arange(len(x), dtype=np.int64)
    for t in range(x.shape[1]):
        out = streamer.step(FeatureFrame(pools, np.full(len(x), t), x[:, t]))
    with torch.inference_mode():
        win: Prediction = model(torch.as_tensor(x[:, -window:], dtype=torch.float32, device=streamer.device))
    w_mu, w_sigma, w_p = (t.cpu().numpy() for t in (win.mu, win.sigma, win.p_trade))
    return {
        "history_blocks": int(x.shape[1]), "window_blocks": int(min(window, x.shape[1])),
        "max_abs_mu_in_sigmas": float(np.max(np.abs(out.mu - w_mu) / w_sigma)),
        "max_rel_sigma": float(np.max(np.abs(out.sigma - w_sigma) / w_sigma)),
        "max_abs_p_trade": float(np.max(np.abs(out.p_trade - w_p))),
    }
