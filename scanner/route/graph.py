"""The token graph: one edge per pool and direction, every cycle of 2 to `max_hops` hops through
a base token, and the pool → cycles index that lets one block re-score only what it touched.

Cycles live in numpy arrays so scoring is vectorised: `cycle_pools[c, h]` is the pool slot of
hop h (PAD past a cycle's last hop) and `cycle_zero_for_one[c, h]` its direction. `cycle_edges`
encodes both as 2·slot + (0 if zero_for_one else 1), with PAD kept as -1 so that numpy gathers
the last entry of an edge array, where callers keep an identity hop.

Longer cycles are many more (each hop multiplies by a token's neighbours and a pair's pools), so
`max_hops` is 3 by default: the scan of 100k mainnet-like pools stays within a block. Cycles are
not pruned by price when they are enumerated (prices move every block): the vectorised bound of
each block does that, and only cycles whose bound beats their gas are sized exactly.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product
from typing import cast

import numpy as np

from scanner.dex.pool import InvalidPool, Pool

MAX_HOPS = 3  # the default longest cycle
LONGEST = 6  # what `max_hops` may be: beyond it the cycles of even a small market do not fit in memory
PAD = -1


@dataclass(frozen=True)
class Rejection:
    """A pool the graph refused, and why."""

    address: str
    reason: str


class TokenGraph:
    """Pools as edges between tokens, with all 2-hop (same pair, two pools) and 3-hop
    (triangular) cycles that start and end at a base token.

    A cycle through two base tokens appears once per base it can start from: the trades hold
    different tokens, so they are different opportunities.
    """

    def __init__(self, base_tokens: Iterable[str], pools: Iterable[Pool] = (), max_hops: int = MAX_HOPS):
        self.base_tokens: tuple[str, ...] = tuple(dict.fromkeys(base_tokens))
        if not self.base_tokens:
            raise ValueError("a token graph needs at least one base token")
        if not 2 <= max_hops <= LONGEST:
            raise ValueError(f"max_hops must be in [2, {LONGEST}], got {max_hops}")
        self.max_hops = max_hops
        self._base_index = {t: i for i, t in enumerate(self.base_tokens)}
        self.pools: list[Pool | None] = []  # slot → pool; None once removed (slots are never reused)
        self.slots: dict[str, int] = {}
        self.rejected: list[Rejection] = []
        self._pair_slots: dict[tuple[str, str], list[int]] = {}
        self._neighbours: dict[str, set[str]] = {}
        self._new: list[tuple[int, ...]] = []  # rows not yet in the arrays
        self._removed: set[int] = set()
        self._dirty = False
        self._set_arrays(np.zeros((0, max_hops), np.int32), np.zeros((0, max_hops), bool), np.zeros(0, np.int8),
                         np.zeros(0, np.int16))
        for pool in pools:
            try:
                self.add_pool(pool)
            except InvalidPool as err:
                self.rejected.append(Rejection(err.address, err.reason))
        self._flush()

    # -- topology -------------------------------------------------------------------------

    def add_pool(self, pool: Pool) -> int:
        """Add a pool and the cycles it closes; returns its slot. Raises InvalidPool naming it."""
        if pool.address in self.slots:
            raise InvalidPool(pool.address, "duplicate address")
        if pool.token0 == pool.token1:
            raise InvalidPool(pool.address, f"both tokens are {pool.token0}")
        slot = len(self.pools)
        self.pools.append(pool)
        self.slots[pool.address] = slot
        a, b = pool.token0, pool.token1
        self._add_two_hop(slot, a, b)
        if self.max_hops >= 3:
            for c in self._neighbours.get(a, set()) & self._neighbours.get(b, set()):
                self._add_around(slot, a, b, (c,))
        for middle in self._longer_paths(b, a):
            self._add_around(slot, a, b, middle)
        self._pair_slots.setdefault(_pair(a, b), []).append(slot)
        self._neighbours.setdefault(a, set()).add(b)
        self._neighbours.setdefault(b, set()).add(a)
        self._dirty = True
        return slot

    def remove_pool(self, address: str) -> None:
        """Remove a pool and every cycle through it. Raises KeyError naming an unknown pool."""
        if address not in self.slots:
            raise KeyError(f"pool {address} is not in the graph")
        slot = self.slots.pop(address)
        pool = cast(Pool, self.pools[slot])  # live slots always hold a pool
        self.pools[slot] = None
        pair = _pair(pool.token0, pool.token1)
        self._pair_slots[pair].remove(slot)
        if not self._pair_slots[pair]:
            del self._pair_slots[pair]
            self._neighbours[pool.token0].discard(pool.token1)
            self._neighbours[pool.token1].discard(pool.token0)
        self._removed.add(slot)
        self._dirty = True

    def _add_two_hop(self, slot: int, a: str, b: str) -> None:
        for other in self._pair_slots.get(_pair(a, b), ()):
            for start, end in ((a, b), (b, a)):
                if start in self._base_index:
                    self._add_cycle(start, ((slot, start), (other, end)))
                    self._add_cycle(start, ((other, start), (slot, end)))

    def _longer_paths(self, start: str, end: str) -> list[tuple[str, ...]]:
        """The tokens strictly between `start` and `end` on every simple path of 3 to max_hops − 1
        edges between them (the paths that close 4-hop and longer cycles with the edge end-start)."""
        found: list[tuple[str, ...]] = []
        if self.max_hops < 4:
            return found
        stack: list[tuple[str, ...]] = [(start,)]
        while stack:
            path = stack.pop()
            neighbours = self._neighbours.get(path[-1], set())
            if len(path) >= 3 and end in neighbours:
                found.append(path[1:])
            if len(path) < self.max_hops - 1:
                stack += [(*path, t) for t in sorted(neighbours) if t != end and t not in path]
        return found

    def _add_around(self, slot: int, a: str, b: str, middle: tuple[str, ...]) -> None:
        """Cycles around the token loop a-b-middle… that use the new pool (on a-b) and existing
        pools on every other pair, both ways round, from every base token on the loop."""
        loop = (a, b, *middle)
        for order in (loop, (b, a, *middle[::-1])):  # the two orientations
            for shift in range(len(order)):
                path = order[shift:] + order[:shift]
                if path[0] not in self._base_index:
                    continue
                choices = [
                    [slot] if _pair(u, v) == _pair(a, b) else self._pair_slots[_pair(u, v)]
                    for u, v in zip(path, path[1:] + path[:1])
                ]
                for slots in product(*choices):
                    self._add_cycle(path[0], tuple(zip(slots, path)))

    def _add_cycle(self, base: str, hops: tuple[tuple[int, str], ...]) -> None:
        """`hops` is (pool slot, token sold) per hop."""
        width = self.max_hops
        row = [PAD] * width + [1] * width
        for h, (slot, token_in) in enumerate(hops):
            row[h] = slot
            row[width + h] = cast(Pool, self.pools[slot]).token0 == token_in
        self._new.append((*row, len(hops), self._base_index[base]))

    # -- arrays and index -------------------------------------------------------------------

    def _flush(self) -> None:
        """Fold added rows and removals into the arrays and rebuild the pool → cycles index."""
        if not self._dirty:
            return
        pools, z41, hops, base = self._cycle_pools, self._cycle_z41, self._cycle_hops, self._cycle_base
        if self._new:
            width = self.max_hops
            new = np.array(self._new, dtype=np.int64).reshape(-1, 2 * width + 2)
            pools = np.concatenate([pools, new[:, :width].astype(np.int32)])
            z41 = np.concatenate([z41, new[:, width:2 * width].astype(bool)])
            hops = np.concatenate([hops, new[:, -2].astype(np.int8)])
            base = np.concatenate([base, new[:, -1].astype(np.int16)])
        if self._removed:
            keep = ~np.isin(pools, np.fromiter(self._removed, np.int32)).any(axis=1)
            pools, z41, hops, base = pools[keep], z41[keep], hops[keep], base[keep]
        self._new.clear()
        self._removed.clear()
        self._dirty = False
        self._set_arrays(pools, z41, hops, base)

    def _set_arrays(self, pools: np.ndarray, z41: np.ndarray, hops: np.ndarray, base: np.ndarray) -> None:
        self._cycle_pools, self._cycle_z41, self._cycle_hops, self._cycle_base = pools, z41, hops, base
        self._cycle_edges = np.where(pools == PAD, PAD, 2 * pools + (~z41).astype(np.int32)).astype(np.intp)
        flat = pools.ravel()
        rows = np.repeat(np.arange(len(pools), dtype=np.int32), pools.shape[1])
        used = flat != PAD
        flat, rows = flat[used], rows[used]
        order = np.argsort(flat, kind="stable")
        self._index_rows = rows[order]
        self._index_ptr = np.zeros(len(self.pools) + 1, np.int64)
        np.cumsum(np.bincount(flat, minlength=len(self.pools)), out=self._index_ptr[1:])

    @property
    def cycle_pools(self) -> np.ndarray:
        self._flush()
        return self._cycle_pools

    @property
    def cycle_zero_for_one(self) -> np.ndarray:
        self._flush()
        return self._cycle_z41

    @property
    def cycle_edges(self) -> np.ndarray:
        self._flush()
        return self._cycle_edges

    @property
    def cycle_hops(self) -> np.ndarray:
        self._flush()
        return self._cycle_hops

    @property
    def cycle_base(self) -> np.ndarray:
        """Index into `base_tokens` of each cycle's start token."""
        self._flush()
        return self._cycle_base

    def __len__(self) -> int:
        return len(self.cycle_pools)

    def cycles_of(self, slots: np.ndarray | Iterable[int]) -> np.ndarray:
        """Sorted rows of every cycle through any of the given pool slots."""
        self._flush()
        slots = np.asarray(list(slots) if not isinstance(slots, np.ndarray) else slots, dtype=np.int64)
        starts, ends = self._index_ptr[slots], self._index_ptr[slots + 1]
        lengths = ends - starts
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        positions = offsets + np.arange(lengths.sum())
        hit = np.zeros(len(self._cycle_pools), bool)
        hit[self._index_rows[positions]] = True
        return np.flatnonzero(hit)

    def hops_of(self, row: int) -> list[tuple[Pool, bool]]:
        """(pool, zero_for_one) per hop of a cycle, for the exact math."""
        pools, z41 = self.cycle_pools[row], self.cycle_zero_for_one[row]
        return [(self.pools[s], bool(z)) for s, z in zip(pools.tolist(), z41.tolist()) if s != PAD]

    def tokens_of(self, row: int) -> tuple[str, ...]:
        """The tokens a cycle passes through, starting and ending at its base token."""
        tokens = [self.base_tokens[int(self.cycle_base[row])]]
        for pool, z41 in self.hops_of(row):
            tokens.append(pool.token_out(z41))
        return tuple(tokens)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)
