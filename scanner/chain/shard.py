"""One shard of pools followed block by block: heads, logs, reserves, features, reorgs.

The Ray actor (`actors/watcher.py`) owns the sockets and calls `poll()`; everything that
decides what a block means lives here so it runs against a real node without Ray.

Blocks come from a `BlockSource`: a node (`NodeSource`) when live, a capture store
(`scanner.history.replay.StoreSource`) in a replay. The source only answers what the head is, what a
block and its logs are and what the pools held at a block; applying logs, features, messages and
reorg handling are this one class's, so a replay runs exactly the code that runs live.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np
from eth_utils import to_checksum_address

from scanner.chain.discovery import PoolLens
from scanner.chain.follow import POOL_TOPICS, BlockRef, HeadTracker, NewBlock, PoolBlockState, Reorg, ShardState
from scanner.chain.reference import ReferencePrices
from scanner.chain.rpc import ChainClient
from scanner.chain.v3 import read_pool
from scanner.dex.pool import PoolInfo
from scanner.dex.v3 import V3Pool
from scanner.model.features import N_FEATURES, WEI_PER_GWEI, PoolObservation, compute_features
from scanner.wire.frames import FeatureFrame
from scanner.wire.messages import BlockUpdate, Withdraw

log = logging.getLogger(__name__)


@dataclass
class ShardOutput:
    """What one poll produced, in the order it must be sent."""

    messages: list  # BlockUpdate | Withdraw, in chain order
    features: list[FeatureFrame]


def block_ref(block) -> BlockRef:
    return BlockRef(
        number=int(block["number"]),
        hash=_hex(block["hash"]),
        parent_hash=_hex(block["parentHash"]),
        base_fee=int(block.get("baseFeePerGas", 0) or 0),
        gas_used=int(block["gasUsed"]),
        gas_limit=int(block["gasLimit"]),
    )


class BlockSource(Protocol):
    """Where a watcher's blocks come from: a node, or a capture being replayed."""

    def head(self) -> BlockRef:
        """The newest block there is now."""

    def block(self, number: int) -> BlockRef:
        """Block `number` of the source's chain (to backfill gaps and walk back through reorgs)."""

    def logs(self, ref: BlockRef, addresses: list[str]) -> list[dict]:
        """The pool logs (`follow.POOL_TOPICS`) of block `ref` emitted by `addresses` (checksummed),
        as JSON-RPC log dicts, in log order."""

    def pool_states(self, ref: BlockRef, v2: list[str], v3: list[str]) -> tuple[list[tuple[int, int]], dict[str, V3Pool]]:
        """The pools' state at the end of block `ref`: the V2 reserves of `v2` in order, and each V3
        pool of `v3` by lower-case address."""


@dataclass
class NodeSource:
    """A node over JSON-RPC: the live block source."""

    client: ChainClient

    def head(self) -> BlockRef:
        return block_ref(self.client.get_block("latest"))

    def block(self, number: int) -> BlockRef:
        return block_ref(self.client.get_block(number))

    def logs(self, ref: BlockRef, addresses: list[str]) -> list[dict]:
        # Raw request: web3's formatters cost ~40 ms per call for a few hundred addresses.
        return self.client.rpc("eth_getLogs", {"blockHash": ref.hash, "address": addresses, "topics": [POOL_TOPICS]})

    def pool_states(self, ref: BlockRef, v2: list[str], v3: list[str]) -> tuple[list[tuple[int, int]], dict[str, V3Pool]]:
        """V2 reserves in one lens call, V3 pools one by one."""
        _, reserves = PoolLens(self.client).reserves_of(v2, ref.number) if v2 else (0, [])
        return reserves, {a: read_pool(self.client.w3, a, ref.number) for a in v3}


class QuietRows:
    """The feature rows of the pools a block did not touch, for a whole shard at once.

    A quiet pool's row is `compute_features` of reserves equal to the previous block's: no price change,
    no volume, no ticks crossed, the block's gas and congestion, its own liquidity, price gap (mid
    price against the oracle's) and fee. The per-pool parts are kept here (as `compute_features` computes them, so every
    float is the same) and only the pools a block changed are recomputed: one Python call per changed
    pool, not per pool.
    """

    def __init__(self, reserves: dict[str, tuple[int, int]], ids: dict[str, int], fees: dict[str, int],
                 tokens: dict[str, tuple[str, str]]) -> None:
        self.reserves = dict(reserves)  # row order: the pools' order in the shard state
        self.row = {a: i for i, a in enumerate(self.reserves)}
        self.ids = np.array([ids[a] for a in self.reserves], dtype=np.int64)
        self.fee = np.array([fees[a] / 10_000 for a in self.reserves])
        names = sorted({t.lower() for a in self.reserves for t in tokens[a]})
        self.token_names = names
        index = {t: i for i, t in enumerate(names)}
        self.token0 = np.array([index[tokens[a][0].lower()] for a in self.reserves], dtype=np.int64)
        self.token1 = np.array([index[tokens[a][1].lower()] for a in self.reserves], dtype=np.int64)
        n = len(self.reserves)
        self.live, self.log_mid, self.log_liquidity = np.zeros(n, dtype=bool), np.zeros(n), np.zeros(n)
        for address, (r0, r1) in self.reserves.items():
            self.set(address, r0, r1)

    def set(self, address: str, r0: int, r1: int) -> None:
        i = self.row[address]
        self.reserves[address] = (r0, r1)
        self.live[i] = min(r0, r1) > 0  # an empty pool has no price: no row until it holds liquidity
        if self.live[i]:
            log_r0, log_r1 = math.log(r0), math.log(r1)
            self.log_mid[i], self.log_liquidity[i] = log_r1 - log_r0, 0.5 * (log_r0 + log_r1)

    def rows(self, gas_gwei: float, congestion: float, prices: dict[str, float]) -> np.ndarray:
        """[pools, N_FEATURES] float64, every pool as if quiet."""
        x = np.zeros((len(self.reserves), N_FEATURES))
        x[:, 2], x[:, 3], x[:, 4], x[:, 6] = math.log1p(gas_gwei), self.log_liquidity, congestion, self.fee
        if prices:
            logs = np.array([prices.get(t, np.nan) for t in self.token_names])
            ref = logs[self.token0] - logs[self.token1]
            x[:, 5] = np.where(np.isnan(ref), 0.0, self.log_mid - ref)
        return x


class PoolWatcherCore:
    """Follows `pools` (id -> PoolInfo) for shard `shard`; `poll()` turns new heads into messages.

    `source` is a node's `ChainClient` (read through `NodeSource`) or any `BlockSource`; reference
    prices (`price_oracle`) are read from a node only.
    """

    def __init__(
        self,
        source: ChainClient | BlockSource,
        pools: dict[int, PoolInfo],
        shard: int,
        *,
        backfill_max_blocks: int = 256,
        reorg_window: int = 64,
        price_oracle: str = "",
        chain_id: int = 0,
    ) -> None:
        self.source: BlockSource = NodeSource(source) if isinstance(source, ChainClient) else source
        self.shard = shard
        self.chain_id = chain_id  # marks every feature row: one inference actor serves every chain
        self.backfill_max_blocks = backfill_max_blocks
        self.ids = {p.address.lower(): i for i, p in pools.items()}
        self.addresses: list[str] = [to_checksum_address(p.address) for p in pools.values()]
        self.v3_addresses = {p.address.lower() for p in pools.values() if p.kind == "uniswap-v3"}
        self.tokens = {p.address.lower(): (p.token0, p.token1) for p in pools.values()}
        self.fees = {p.address.lower(): p.fee_bps for p in pools.values()}
        tokens = [t for pair in self.tokens.values() for t in pair]
        self.reference = None
        if price_oracle:
            if not isinstance(source, ChainClient):
                raise ValueError("reference prices are read from a node: a watcher on another block source takes no price_oracle")
            self.reference = ReferencePrices(source, price_oracle, tokens)
        self.tracker = HeadTracker(window=reorg_window)
        self.state = ShardState(reserves={}, history_blocks=reorg_window)
        self.tip_wei = 0
        self.blocks_seen = 0
        self.reorgs_seen = 0
        self.quiet: QuietRows | None = None  # set at bootstrap

    def bootstrap(self) -> BlockUpdate:
        """Read every pool's state at the head (V2 reserves in one lens call, V3 pools one by one)
        and start following from there."""
        head = self.source.head()
        v2 = [a for a in self.addresses if a.lower() not in self.v3_addresses]
        reserves, self.state.v3 = self.source.pool_states(head, v2, sorted(self.v3_addresses))
        self.state.reserves = {a.lower(): r for a, r in zip(v2, reserves)}
        self.tracker.start_at(head)
        self.quiet = QuietRows(self.state.all_reserves(), self.ids, self.fees, self.tokens)
        if self.reference:
            self.reference.log_prices(head.hash)  # a wrong oracle address fails here, by name, not every block
        return self._update(head, {a.lower() for a in self.addresses}, snapshot=True)

    def poll(self) -> ShardOutput:
        """Everything new since the last poll: backfilled blocks, reorgs, features.

        All or nothing: every new block's logs are read before anything changes, so when the node
        fails half-way (ChainError) the next poll starts from the same place and no block is skipped.
        """
        head = self.source.head()
        saved = self.tracker.save()
        events = self.tracker.advance(head, self.source.block, self.backfill_max_blocks)
        try:
            new = [e.ref for e in events if isinstance(e, NewBlock)]
            logs = {ref.hash: self.source.logs(ref, self.addresses) for ref in new}
            prices = {ref.hash: self.reference.log_prices(ref.hash) if self.reference else {} for ref in new}
        except BaseException:
            self.tracker.restore(saved)
            raise
        out = ShardOutput([], [])
        for event in events:
            if isinstance(event, Reorg):
                self.reorgs_seen += 1
                restored, restored_v3 = self.state.rollback(event.fork_number)
                self.quiet = QuietRows(self.state.all_reserves(), self.ids, self.fees, self.tokens)
                log.warning("shard %d: reorg of depth %d above block %d", self.shard, event.depth, event.fork_number)
                out.messages.append(Withdraw(self.shard, event.fork_number, event.depth,
                                             {self.ids[p]: self.state.reserves[p] for p in restored},
                                             {self.ids[p]: state for p, state in restored_v3.items()}))
            elif isinstance(event, NewBlock):
                out.messages.append(self._apply_block(event.ref, logs[event.ref.hash], prices[event.ref.hash], out))
        return out

    def _apply_block(self, ref: BlockRef, logs: list[dict], prices: dict[str, float], out: ShardOutput) -> BlockUpdate:
        changed = self.state.apply_logs(ref.number, logs)
        self.blocks_seen += 1
        out.features.append(self._features(ref, changed, prices))
        return self._update(ref, set(changed))

    def _update(self, ref: BlockRef, changed: set[str], snapshot: bool = False) -> BlockUpdate:
        """The block's message: changed V2 reserves, and each changed V3 pool's slot0, liquidity and
        the ticks the block changed (every tick in a snapshot)."""
        v3 = {self.ids[p]: self.state.v3_update(p, None if snapshot else self.state.ticks_changed(ref.number, p))
              for p in changed & self.v3_addresses}
        return BlockUpdate(self.shard, ref.number, ref.hash, ref.parent_hash, ref.base_fee, ref.gas_used,
                           ref.gas_limit, 0, {self.ids[p]: self.state.reserves[p] for p in changed - self.v3_addresses},
                           v3)

    def _features(self, ref: BlockRef, changed: dict[str, PoolBlockState], prices: dict[str, float]) -> FeatureFrame:
        """One row per pool of the shard (quiet pools too: the LSTM steps every pool every block).

        `prices`: the oracle's log prices per raw unit at this block (empty without an oracle)."""
        quiet = cast(QuietRows, self.quiet)
        ratio = min(1.0, ref.gas_used / ref.gas_limit) if ref.gas_limit else 0.0
        x = quiet.rows((ref.base_fee + self.tip_wei) / WEI_PER_GWEI, float(ratio), prices)
        keep = quiet.live.copy()
        for address, c in changed.items():
            (p0, p1), (r0, r1) = quiet.reserves[address], (c.reserve0, c.reserve1)
            quiet.set(address, r0, r1)
            i = quiet.row[address]
            keep[i] = min(r0, r1, p0, p1) > 0
            if keep[i]:
                x[i] = compute_features(PoolObservation(r0, r1, p0, p1, c.amount0_in, c.amount1_in, ref.base_fee,
                                                        self.tip_wei, ratio, self.fees[address],
                                                        ReferencePrices.pool_log_price(prices, *self.tokens[address]),
                                                        c.ticks_crossed))
        ids = quiet.ids[keep]
        return FeatureFrame(ids, np.full(len(ids), ref.number, dtype=np.int64), x[keep].astype(np.float32),
                            np.full(len(ids), self.chain_id, dtype=np.int64))


def _hex(value) -> str:
    return value.to_0x_hex() if hasattr(value, "to_0x_hex") else str(value)
