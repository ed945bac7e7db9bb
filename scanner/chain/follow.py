"""Following the chain head and pool state through gaps and reorgs, without I/O.

The watcher actor feeds block headers and logs in; these classes decide what is new, what was
orphaned and what the pools' reserves are at each block. Reorgs are detected by parent-hash
mismatch, never by trusting block numbers.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from eth_abi import decode as abi_decode
from eth_utils import keccak

SYNC_TOPIC = "0x" + keccak(text="Sync(uint112,uint112)").hex()
SWAP_TOPIC = "0x" + keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()


@dataclass(frozen=True)
class PairLog:
    """One V2 pair event, decoded: a Sync (the reserves after it) or a Swap (the amounts paid in)."""

    pool: str  # lower case
    tx_index: int
    log_index: int
    reserves: tuple[int, int] | None = None  # Sync
    paid_in: tuple[int, int] | None = None  # Swap


def decode_pair_logs(logs: list[dict]) -> list[PairLog]:
    """Sync and Swap events of V2 pairs in log order, from raw JSON-RPC or web3 log dicts; others skipped."""
    out = []
    for entry in sorted(logs, key=lambda e: _int(e["logIndex"])):
        topic = _hex(entry["topics"][0])
        where = (entry["address"].lower(), _int(entry["transactionIndex"]), _int(entry["logIndex"]))
        if topic == SYNC_TOPIC:
            r0, r1 = abi_decode(["uint112", "uint112"], _bytes(entry["data"]))
            out.append(PairLog(*where, reserves=(r0, r1)))
        elif topic == SWAP_TOPIC:
            a0_in, a1_in, _, _ = abi_decode(["uint256"] * 4, _bytes(entry["data"]))
            out.append(PairLog(*where, paid_in=(a0_in, a1_in)))
    return out


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str
    parent_hash: str
    base_fee: int = 0
    gas_used: int = 0
    gas_limit: int = 1


@dataclass(frozen=True)
class Reorg:
    """Blocks above `fork_number` were orphaned; `depth` of them."""

    fork_number: int
    depth: int


@dataclass(frozen=True)
class NewBlock:
    ref: BlockRef


class ReorgTooDeep(Exception):
    """The new chain does not meet ours within the remembered window: resync from scratch."""


class HeadTracker:
    """The canonical chain's last `window` blocks, advanced one head at a time.

    `advance` returns, in order, a `Reorg` if the new head does not extend what we have, then a
    `NewBlock` for every block from the fork point (or our last block) up to the head, so gaps
    are backfilled and a reorged range is replayed from the new chain.
    """

    def __init__(self, window: int = 64) -> None:
        self.window = window
        self._chain: OrderedDict[int, BlockRef] = OrderedDict()

    @property
    def head(self) -> BlockRef | None:
        return next(reversed(self._chain.values())) if self._chain else None

    def start_at(self, ref: BlockRef) -> None:
        self._chain.clear()
        self._chain[ref.number] = ref

    def save(self) -> OrderedDict[int, BlockRef]:
        """What `restore` needs to undo an `advance` whose blocks could not be processed."""
        return OrderedDict(self._chain)

    def restore(self, saved: OrderedDict[int, BlockRef]) -> None:
        self._chain = OrderedDict(saved)

    def advance(self, new_head: BlockRef, fetch: Callable[[int], BlockRef], max_backfill: int) -> list:
        """Events that take us from our head to `new_head`; `fetch(n)` reads block n of the node's chain."""
        head = self.head
        if head is None:
            self.start_at(new_head)
            return [NewBlock(new_head)]
        if self._known(new_head.number, new_head.hash):
            return []  # a head we already have (a lagging node answered)
        # Walk the node's chain down from the new head until it meets a block we know.
        pending: list[BlockRef] = [new_head]
        while not self._known(pending[-1].number - 1, pending[-1].parent_hash):
            parent = pending[-1].number - 1
            if parent < next(iter(self._chain)):
                raise ReorgTooDeep(f"the chain at {new_head.number} forks below our window (block {parent})")
            if len(pending) > max_backfill:
                raise ReorgTooDeep(f"more than {max_backfill} blocks between our head {head.number} and {new_head.number}")
            pending.append(fetch(parent))
        fork = pending[-1].number - 1
        events: list = []
        if fork < head.number:
            events.append(Reorg(fork_number=fork, depth=head.number - fork))
            for n in [n for n in self._chain if n > fork]:
                del self._chain[n]
        for ref in reversed(pending):
            self._chain[ref.number] = ref
            events.append(NewBlock(ref))
        while len(self._chain) > self.window:
            self._chain.popitem(last=False)
        return events

    def _known(self, number: int, hash_: str) -> bool:
        ref = self._chain.get(number)
        return ref is not None and ref.hash == hash_


@dataclass
class PoolBlockState:
    """One pool after one block: reserves and the swap inflow during the block."""

    reserve0: int
    reserve1: int
    amount0_in: int = 0
    amount1_in: int = 0


@dataclass
class ShardState:
    """Reserves of a shard's pools, with per-block history so a reorg can roll back exactly."""

    reserves: dict[str, tuple[int, int]]  # pool address (lower case) -> (reserve0, reserve1)
    history_blocks: int = 64
    _history: OrderedDict[int, dict[str, tuple[int, int]]] = field(default_factory=OrderedDict)

    def apply_logs(self, block: int, logs: list[dict]) -> dict[str, PoolBlockState]:
        """Apply one block's Sync/Swap logs (in log order); returns the pools that changed."""
        before: dict[str, tuple[int, int]] = {}
        changed: dict[str, PoolBlockState] = {}
        for log in decode_pair_logs(logs):
            pool = log.pool
            if pool not in self.reserves:
                continue
            state = changed.get(pool) or PoolBlockState(*self.reserves[pool])
            if log.reserves is not None:
                state.reserve0, state.reserve1 = log.reserves
            elif log.paid_in is not None:
                state.amount0_in += log.paid_in[0]
                state.amount1_in += log.paid_in[1]
            before.setdefault(pool, self.reserves[pool])
            changed[pool] = state
        for pool, state in changed.items():
            self.reserves[pool] = (state.reserve0, state.reserve1)
        self._history[block] = before
        while len(self._history) > self.history_blocks:
            self._history.popitem(last=False)
        return changed

    def rollback(self, fork_number: int) -> set[str]:
        """Undo every block above `fork_number`; returns the pools whose reserves were restored."""
        restored: set[str] = set()
        for block in sorted((b for b in self._history if b > fork_number), reverse=True):
            for pool, reserves in self._history.pop(block).items():
                self.reserves[pool] = reserves
                restored.add(pool)
        return restored


def _int(value) -> int:
    """A quantity as raw JSON-RPC (hex string) or web3 (int) gives it."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _hex(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value.lower() if value.startswith("0x") else "0x" + value.lower()


def _bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)
