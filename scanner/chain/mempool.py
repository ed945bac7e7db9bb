"""Following the node's pool of pending transactions: each pending swap of a watched pool becomes a
`PendingUpdate` (the pool's state after it, on the mined head), and each one that stops standing
(mined, dropped, replaced) a `PendingWithdraw`.

New hashes come from a pending-transaction filter (`eth_newPendingTransactionFilter`), or, on a node
without one, from polling `txpool_content`. The mined state is a `PoolWatcherCore` of every watched
pool; after each mined block every still-pending swap is simulated again on the new head. Work per
poll is bounded (`max_per_poll` new transactions, as many re-simulations per block): beyond that the
excess is shed, counted and logged, so a flood costs this watcher a bounded time and never reaches the
mined-block path (the pool watchers are other actors with their own sockets).
"""
from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable

from scanner.chain.pending_swaps import (
    DecodedSwap,
    PendingBook,
    PendingTx,
    SwapReverts,
    Undecodable,
    decode_swap,
    v2_after,
    v3_after,
)
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.dex.pool import PoolInfo
from scanner.errors import ChainError
from scanner.wire.messages import BlockUpdate, PendingUpdate, PendingWithdraw, Withdraw

log = logging.getLogger(__name__)

BATCH = 200  # transactions fetched per JSON-RPC batch
SEEN_WINDOW = 50_000  # hashes remembered as handled (the txpool poll sees a pending one again and again)

PendingMessage = PendingUpdate | PendingWithdraw


class PendingWatcherCore:
    """Pending swaps of `pools` (id -> PoolInfo) turned into post-state updates; `poll()` does one round."""

    def __init__(self, client: ChainClient, pools: dict[int, PoolInfo], *, max_per_poll: int = 2000,
                 capacity: int = 20_000, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.mined = PoolWatcherCore(client, pools, shard=0)
        self.ids = self.mined.ids
        self.fees = {p.address.lower(): p.fee_bps for p in pools.values()}
        self.max_per_poll = max_per_poll
        self.book = PendingBook(capacity)
        self.swaps: dict[str, DecodedSwap] = {}  # hash -> its decoded swap, for re-simulation on a new head
        self.first_seen: dict[str, float] = {}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.counts: Counter[str] = Counter()
        self.clock = clock
        self.filter_id: str | None = None

    def start(self) -> None:
        """Read the mined state at the head and open the pending filter (polling `txpool_content` without one)."""
        self.mined.bootstrap()
        try:
            self.filter_id = self.client.rpc("eth_newPendingTransactionFilter")
        except ChainError as e:
            log.warning("pending watcher: no pending-transaction filter (%s); polling txpool_content", e)
            self.filter_id = None

    @property
    def head(self) -> int:
        ref = self.mined.tracker.head
        return ref.number if ref else -1

    def poll(self) -> list[PendingMessage]:
        """New mined blocks first (withdraw what they mined, re-simulate the rest), then new pending transactions."""
        out: list[PendingMessage] = []
        events = self.mined.poll().messages
        if events:
            mined = {h for m in events if isinstance(m, BlockUpdate) for h in self._block_txs(m.hash)}
            out += self._withdraw([h for h in self.book.by_hash if h in mined], "mined")
            if any(isinstance(m, Withdraw) for m in events):
                self.counts["reorgs"] += 1
            out += self._resimulate()
        out += self._take(self._new_hashes())
        return out

    # -- sources ------------------------------------------------------------------------------
    def _new_hashes(self) -> list[str]:
        if self.filter_id is not None:
            try:
                return list(self.client.rpc("eth_getFilterChanges", self.filter_id))
            except ChainError as e:  # a node that restarted forgot the filter: open it again
                log.warning("pending watcher: filter lost (%s); opening a new one", e)
                self.start_filter_again()
                return []
        content = self.client.rpc("txpool_content")
        hashes = [tx["hash"] for by_sender in content.get("pending", {}).values() for tx in by_sender.values()]
        return [h for h in hashes if h not in self.seen]

    def start_filter_again(self) -> None:
        try:
            self.filter_id = self.client.rpc("eth_newPendingTransactionFilter")
        except ChainError:
            self.filter_id = None

    def _block_txs(self, block_hash: str) -> list[str]:
        block = self.client.rpc("eth_getBlockByHash", block_hash, False)
        return list(block["transactions"]) if block else []

    def _fetch(self, hashes: list[str]) -> list[dict | None]:
        out: list[dict | None] = []
        for i in range(0, len(hashes), BATCH):
            out += self.client.rpc_batch([("eth_getTransactionByHash", [h]) for h in hashes[i:i + BATCH]])
        return out

    # -- pending transactions -----------------------------------------------------------------
    def _take(self, hashes: list[str]) -> list[PendingMessage]:
        if not hashes:
            return []
        now = self.clock()
        if len(hashes) > self.max_per_poll:
            shed = len(hashes) - self.max_per_poll
            self.counts["shed"] += shed
            log.warning("pending watcher: %d new pending transactions in one poll, %d over the budget of %d: "
                        "shed unread (counted as shed)", len(hashes), shed, self.max_per_poll)
            self._remember(hashes[self.max_per_poll:])
            hashes = hashes[: self.max_per_poll]
        self._remember(hashes)
        out: list[PendingMessage] = []
        for raw in self._fetch(hashes):
            self.counts["seen"] += 1
            if raw is None or raw.get("blockNumber") is not None:
                continue  # dropped or mined before we read it
            tx = PendingTx.from_rpc(raw)
            old = self.book.replaced_by(tx)
            if old is not None:
                self.counts["replaced"] += 1
                out += self._withdraw([old], "replaced")
            try:
                swap = decode_swap(tx.input, self.ids)
            except Undecodable:
                self.counts["undecodable"] += 1
                continue
            if swap is None:
                self.counts["not_swap"] += 1
                continue
            self.counts["swaps"] += 1
            self.first_seen[tx.hash] = now
            self.swaps[tx.hash] = swap
            out += self._withdraw([h for h in self.book.add(tx) if h != old], "capacity")
            out += self._simulated(tx)
        return out

    def _remember(self, hashes: Iterable[str]) -> None:
        for h in hashes:
            self.seen[h] = None
        while len(self.seen) > SEEN_WINDOW:
            self.seen.popitem(last=False)

    def _simulated(self, tx: PendingTx) -> list[PendingMessage]:
        """The tx's post-state on the mined head; a swap that would revert there has none (counted; a
        backrun it had is withdrawn)."""
        swap = self.swaps[tx.hash]
        state = self.mined.state
        try:
            if swap.v3:
                post_v3 = {self.ids[swap.pool]: v3_after(swap, state.v3[swap.pool])}
                post_v2: dict[int, tuple[int, int]] = {}
            else:
                post_v2 = {self.ids[swap.pool]: v2_after(swap, state.reserves[swap.pool], self.fees[swap.pool])}
                post_v3 = {}
        except SwapReverts:
            self.counts["would_revert"] += 1
            return [PendingWithdraw((tx.hash,), "reverts")]
        self.counts["updates"] += 1
        return [PendingUpdate(tx.hash, tx.sender, tx.nonce, tx.tip, tx.max_fee, self.head, self.first_seen[tx.hash],
                              post_v2, post_v3)]

    def _resimulate(self) -> list[PendingMessage]:
        """After a mined block: what is still pending, on the new head (dropped ones withdrawn); at most
        `max_per_poll` of them, the newest first, the older rest shed."""
        hashes = list(self.book.by_hash)
        if len(hashes) > self.max_per_poll:
            old = hashes[: len(hashes) - self.max_per_poll]
            self.counts["shed"] += len(old)
            log.warning("pending watcher: %d pending swaps to re-simulate at block %d, over the budget of %d: "
                        "the %d oldest shed", len(hashes), self.head, self.max_per_poll, len(old))
            out = self._withdraw(old, "shed")
            hashes = hashes[len(old):]
        else:
            out = []
        gone = []
        for h, raw in zip(hashes, self._fetch(hashes)):
            if raw is None or raw.get("blockNumber") is not None:
                gone.append(h)
        out += self._withdraw(gone, "dropped")
        for h in hashes:
            tx = self.book.by_hash.get(h)
            if tx is not None:
                out += self._simulated(tx)
        return out

    def _withdraw(self, hashes: list[str], reason: str) -> list[PendingMessage]:
        for h in hashes:
            self.book.remove(h)
            self.swaps.pop(h, None)
            self.first_seen.pop(h, None)
        if not hashes:
            return []
        self.counts[f"withdrawn_{reason}"] += len(hashes)
        return [PendingWithdraw(tuple(hashes), reason)]
