"""Following the chain head and pool state through gaps and reorgs, without I/O.

The watcher actor feeds block headers and logs in; these classes decide what is new, what was
orphaned and what the pools' reserves are at each block. Reorgs are detected by parent-hash
mismatch, never by trusting block numbers.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from eth_abi import decode as abi_decode
from eth_abi.exceptions import InsufficientDataBytes, NonEmptyPaddingBytes
from eth_utils import keccak

from scanner.dex.pool import InvalidPool, V3State
from scanner.dex.v3 import V3Pool, V3Revert

log = logging.getLogger(__name__)

SYNC_TOPIC = "0x" + keccak(text="Sync(uint112,uint112)").hex()
SWAP_TOPIC = "0x" + keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()
V3_SWAP_TOPIC = "0x" + keccak(text="Swap(address,address,int256,int256,uint160,uint128,int24)").hex()
V3_MINT_TOPIC = "0x" + keccak(text="Mint(address,address,int24,int24,uint128,uint256,uint256)").hex()
V3_BURN_TOPIC = "0x" + keccak(text="Burn(address,int24,int24,uint128,uint256,uint256)").hex()
POOL_TOPICS = [SYNC_TOPIC, SWAP_TOPIC, V3_SWAP_TOPIC, V3_MINT_TOPIC, V3_BURN_TOPIC]
"""Every event that changes a watched pool's swap state (V2 Sync/Swap, V3 Swap/Mint/Burn)."""


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
            r0, r1 = _uints(_bytes(entry["data"]), (112, 112))
            out.append(PairLog(*where, reserves=(r0, r1)))
        elif topic == SWAP_TOPIC:
            a0_in, a1_in, _, _ = _uints(_bytes(entry["data"]), (256, 256, 256, 256))
            out.append(PairLog(*where, paid_in=(a0_in, a1_in)))
    return out


def _uints(data: bytes, bits: tuple[int, ...]) -> tuple[int, ...]:
    """Static words uint<bits> as `eth_abi.decode` reads them, without its generic machinery (a block
    brings hundreds of pair logs): too little data or a non-zero padding raise its errors."""
    words = []
    for i, width in enumerate(bits):  # word by word, so the first fault is the one eth_abi reports
        if len(data) < 32 * (i + 1):
            raise InsufficientDataBytes(f"word {i} needs bytes {32 * i} to {32 * i + 32}, got {len(data)}")
        word = int.from_bytes(data[32 * i:32 * i + 32], "big")
        if word >> width:
            raise NonEmptyPaddingBytes(f"padding bytes of a uint{width} are not zero: {word:#x}")
        words.append(word)
    return tuple(words)


@dataclass(frozen=True)
class V3Log:
    """One V3 pool event, decoded: a Swap (signed amounts, the state after it) or a Mint/Burn of
    `liquidity` over [tick_lower, tick_upper) (a Burn's liquidity is negative)."""

    pool: str  # lower case
    tx_index: int
    log_index: int
    amount0: int = 0
    amount1: int = 0
    after: tuple[int, int, int] | None = None  # Swap: (sqrtPriceX96, liquidity, tick)
    tick_lower: int = 0
    tick_upper: int = 0
    liquidity: int = 0


def decode_v3_logs(logs: list[dict]) -> list[V3Log]:
    """Swap, Mint and Burn events of V3 pools in log order; other events skipped."""
    out = []
    for entry in sorted(logs, key=lambda e: _int(e["logIndex"])):
        topics = [_hex(t) for t in entry["topics"]]
        where = (entry["address"].lower(), _int(entry["transactionIndex"]), _int(entry["logIndex"]))
        data = _bytes(entry["data"])
        if topics[0] == V3_SWAP_TOPIC:
            a0, a1, sqrt_price, liquidity, tick = abi_decode(["int256", "int256", "uint160", "uint128", "int24"], data)
            out.append(V3Log(*where, amount0=a0, amount1=a1, after=(sqrt_price, liquidity, tick)))
        elif topics[0] in (V3_MINT_TOPIC, V3_BURN_TOPIC):
            lower, upper = (abi_decode(["int24"], _bytes(t))[0] for t in topics[2:4])
            if topics[0] == V3_MINT_TOPIC:
                _, amount, a0, a1 = abi_decode(["address", "uint128", "uint256", "uint256"], data)
            else:
                amount, a0, a1 = abi_decode(["uint128", "uint256", "uint256"], data)
                amount = -amount
            out.append(V3Log(*where, amount0=a0, amount1=a1, tick_lower=lower, tick_upper=upper, liquidity=amount))
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
    """One pool after one block: reserves (V3: virtual reserves at its price and liquidity), the
    swap inflow during the block and, for V3, the initialized ticks its swaps crossed."""

    reserve0: int
    reserve1: int
    amount0_in: int = 0
    amount1_in: int = 0
    ticks_crossed: int = 0


@dataclass
class ShardState:
    """A shard's pools (V2 reserves, V3 pool objects), with per-block history so a reorg rolls back
    exactly. A V3 pool's history keeps slot0, liquidity and the previous value of each tick the
    block changed ((0, 0): was not initialized)."""

    reserves: dict[str, tuple[int, int]]  # V2 pool address (lower case) -> (reserve0, reserve1)
    history_blocks: int = 64
    v3: dict[str, V3Pool] = field(default_factory=dict)  # V3 pool address (lower case) -> its state
    _history: OrderedDict[int, dict[str, tuple[int, int]]] = field(default_factory=OrderedDict)
    _v3_history: OrderedDict[int, dict[str, V3State]] = field(default_factory=OrderedDict)
    v3_skipped: int = 0  # V3 events our state could not apply (logged): the pool is re-read at the next snapshot

    def apply_logs(self, block: int, logs: list[dict]) -> dict[str, PoolBlockState]:
        """Apply one block's pool logs (in log order); returns the pools that changed."""
        before: dict[str, tuple[int, int]] = {}
        changed: dict[str, PoolBlockState] = {}
        for pair_log in decode_pair_logs(logs):
            pool = pair_log.pool
            if pool not in self.reserves:
                continue
            state = changed.get(pool) or PoolBlockState(*self.reserves[pool])
            if pair_log.reserves is not None:
                state.reserve0, state.reserve1 = pair_log.reserves
            elif pair_log.paid_in is not None:
                state.amount0_in += pair_log.paid_in[0]
                state.amount1_in += pair_log.paid_in[1]
            before.setdefault(pool, self.reserves[pool])
            changed[pool] = state
        for pool, state in changed.items():
            self.reserves[pool] = (state.reserve0, state.reserve1)
        self._history[block] = before
        self._v3_history[block] = self._apply_v3(logs, changed) if self.v3 else {}
        for history in (self._history, self._v3_history):
            while len(history) > self.history_blocks:
                history.popitem(last=False)
        return changed

    def _apply_v3(self, logs: list[dict], changed: dict[str, PoolBlockState]) -> dict[str, V3State]:
        before: dict[str, V3State] = {}
        for event in decode_v3_logs(logs):
            pool = self.v3.get(event.pool)
            if pool is None:
                continue
            saved = before.setdefault(event.pool, V3State(pool.sqrt_price_x96, pool.tick, pool.liquidity, {}))
            state = changed.get(event.pool) or PoolBlockState(*virtual_reserves(pool))
            try:
                if event.after is not None:
                    sqrt_price, liquidity, tick = event.after
                    tick_before = pool.tick
                    pool.update(sqrt_price, tick, liquidity)
                    state.ticks_crossed += pool.ticks_crossed(tick_before, tick)
                    state.amount0_in += max(event.amount0, 0)
                    state.amount1_in += max(event.amount1, 0)
                else:
                    for t in (event.tick_lower, event.tick_upper):
                        saved.ticks.setdefault(t, pool.ticks.get(t, (0, 0)))
                    if event.liquidity >= 0:
                        pool.mint(event.tick_lower, event.tick_upper, event.liquidity)
                    else:
                        pool.burn(event.tick_lower, event.tick_upper, -event.liquidity)
            except (InvalidPool, V3Revert) as e:
                self.v3_skipped += 1
                log.error("V3 pool %s: event %d of transaction %d does not apply to our state (%s); skipped",
                          event.pool, event.log_index, event.tx_index, e)
            state.reserve0, state.reserve1 = virtual_reserves(pool)
            changed[event.pool] = state
        return before

    def all_reserves(self) -> dict[str, tuple[int, int]]:
        """Every pool's reserves: V2 as they are, V3 as virtual reserves of its in-range liquidity."""
        return self.reserves | {a: virtual_reserves(p) for a, p in self.v3.items()}

    def v3_update(self, pool: str, ticks: Iterable[int] | None = None) -> V3State:
        """What a receiver needs to bring `pool` to its state now: slot0, liquidity and the values
        of `ticks` (those that changed), or the whole state when `ticks` is None."""
        v3 = self.v3[pool]
        if ticks is None:
            return v3.state()
        return V3State(v3.sqrt_price_x96, v3.tick, v3.liquidity, {t: v3.ticks.get(t, (0, 0)) for t in ticks})

    def ticks_changed(self, block: int, pool: str) -> set[int]:
        """The ticks of V3 `pool` that block `block` changed (from the history)."""
        saved = self._v3_history.get(block, {}).get(pool)
        return set(saved.ticks) if saved else set()

    def rollback(self, fork_number: int) -> tuple[set[str], dict[str, V3State]]:
        """Undo every block above `fork_number`: (V2 pools whose reserves were restored, the
        restored V3 pools' states with every tick that was put back)."""
        restored: set[str] = set()
        touched: dict[str, set[int]] = {}
        for block in sorted((b for b in self._history if b > fork_number), reverse=True):
            for pool, reserves in self._history.pop(block).items():
                self.reserves[pool] = reserves
                restored.add(pool)
            for pool, saved in self._v3_history.pop(block, {}).items():
                self.v3[pool].update(*saved)
                touched.setdefault(pool, set()).update(saved.ticks)
        return restored, {pool: self.v3_update(pool, ticks) for pool, ticks in touched.items()}


def virtual_reserves(pool: V3Pool) -> tuple[int, int]:
    """A V3 pool's reserves as a constant-product pair of its in-range liquidity would hold at its
    price: what its LSTM features (price, depth) are computed from, like a V2 pair's."""
    return pool.reserve_in(True), pool.reserve_in(False)


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
