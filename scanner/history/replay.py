"""A capture store as a watcher's block source, so a replay runs the live watcher code unchanged.

`StoreSource` answers `PoolWatcherCore` the way a node does, over the blocks of a store: the head is
the last block the replay has released (`release`), blocks and their logs come from the Parquet
chunks, read ahead as far as the head and forgotten once far behind, and pool states are the store's
state at its first block with every later block's logs applied (`follow.ShardState`, the watchers' own
log applier). Releasing blocks one at a time is what lets a replay wait for each block to be ranked.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from scanner.chain.follow import BlockRef, ShardState
from scanner.chain.shard import BlockSource
from scanner.dex.pool import PoolInfo, V3State
from scanner.dex.v3 import V3Pool
from scanner.errors import ConfigError
from scanner.gas.fees import congestion, next_base_fee
from scanner.history.store import Block, Capture, Header
from scanner.wire.messages import GasUpdate

V2, V3 = "uniswap-v2", "uniswap-v3"
ZERO_HASH = "0x" + "00" * 32


def ref_of(header: Header) -> BlockRef:
    return BlockRef(header.number, "0x" + header.hash.hex(), "0x" + header.parent_hash.hex(), header.base_fee or 0,
                    header.gas_used, header.gas_limit)


def state_ref(capture: Capture) -> BlockRef:
    """Block `first - 1`, whose end state the store holds. A store written before its header was kept
    gets fee fields that leave the first block's base fee as the next one (gas used at an elasticity-2
    target), so a ranking of the state block prices gas as the node's would on Ethereum."""
    manifest = capture.manifest
    header = manifest.get("state_header")
    if header is None:
        first = next((h for h, _ in capture.chunk_tables(columns=[])), None)
        base_fee, limit = (int(first["base_fee"][0].as_py() or 0), int(first["gas_limit"][0].as_py())) if first else (0, 2)
        header = {"parent_hash": ZERO_HASH[2:], "base_fee": base_fee, "gas_used": limit // 2, "gas_limit": limit}
    return BlockRef(capture.first_block - 1, "0x" + manifest["state_block_hash"], "0x" + header["parent_hash"],
                    header["base_fee"] or 0, header["gas_used"], header["gas_limit"])


def pool_infos(capture: Capture) -> list[PoolInfo]:
    """The pools of the store's initial state, as discovery describes them (V3 pools not yet initialized at
    the first block are left out, as discovery leaves them out)."""
    ticks: dict[str, dict[int, tuple[int, int]]] = {}
    for row in capture.ticks().to_pylist():
        ticks.setdefault(row["pool"], {})[row["tick"]] = (int(row["liquidity_gross"]), int(row["liquidity_net"]))
    out = []
    for p in capture.pools().to_pylist():
        if p["kind"] == V2:
            out.append(PoolInfo(p["address"], p["token0"], p["token1"], int(p["reserve0"]), int(p["reserve1"]), p["dex"],
                                p["fee_ppm"] // 100))
        elif int(p["sqrt_price_x96"]):
            state = V3State(int(p["sqrt_price_x96"]), p["tick"], int(p["liquidity"]), ticks.get(p["address"], {}))
            out.append(PoolInfo(p["address"], p["token0"], p["token1"], 0, 0, p["dex"], p["fee_ppm"] // 100, kind=V3,
                                tick_spacing=p["tick_spacing"], v3=state))
    return out


def v3_pool(info: PoolInfo) -> V3Pool:
    state = info.v3
    assert state is not None  # pool_infos gives every V3 pool its state
    return V3Pool(info.address, info.token0, info.token1, info.fee_bps * 100, info.tick_spacing, state.sqrt_price_x96,
                  state.tick, state.liquidity, dict(state.ticks))


def gas_update(header: Header) -> GasUpdate:
    """What the gas oracle would publish after `header`'s block, from the header alone: a capture holds no
    fee history, so tips are 0 (gas is priced at the next base fee)."""
    base_fee = header.base_fee or 0
    return GasUpdate(header.number, base_fee, next_base_fee(base_fee, header.gas_used, header.gas_limit), (0, 0, 0),
                     congestion(header.gas_used, header.gas_limit))


@dataclass
class _Cursor:
    """Blocks read from the store in order, the recent ones kept for lookups by number."""

    blocks: Iterator[Block]
    kept: OrderedDict[int, Block]
    keep: int

    def get(self, number: int) -> Block:
        while number not in self.kept:
            block = next(self.blocks, None)
            if block is None or block.header.number > number:
                raise ConfigError(f"block {number} is not in the capture (or was read past): replay releases blocks in order")
            self.kept[block.header.number] = block
            while len(self.kept) > self.keep:
                self.kept.popitem(last=False)
        return self.kept[number]


class StoreSource(BlockSource):
    """The blocks of `capture` as a `BlockSource`; the head is the state block until `release` moves it.

    With `start`, the source begins at block `start - 1` instead of the capture's state block: its state
    is the capture's initial state with every block before `start` applied (see `pool_states`), which is
    how a chunk of a long capture warms up on its own."""

    def __init__(self, capture: Capture, keep: int = 512, start: int | None = None) -> None:
        self.capture = capture
        first = capture.first_block
        if start is None or start == first:
            self.state_block = state_ref(capture)
        elif first < start <= capture.last_block:
            self.state_block = ref_of(next(capture.blocks(start - 1)).header)
        else:
            raise ConfigError(f"block {start} is not in the capture ({first}..{capture.last_block}): start inside it")
        self.released = self.state_block.number
        self.keep = keep
        self._cursor = _Cursor(capture.blocks(self.state_block.number + 1), OrderedDict(), keep)
        self._asked: list[str] = []
        self._wanted: set[str] = set()

    @property
    def last_block(self) -> int:
        return self.capture.last_block

    def release(self, number: int) -> int:
        """Make blocks up to `number` (at most the last captured one) visible; returns the new head."""
        self.released = max(self.released, min(number, self.capture.last_block))
        return self.released

    def head(self) -> BlockRef:
        return self.block(self.released)

    def block(self, number: int) -> BlockRef:
        if number == self.state_block.number:
            return self.state_block
        if not self.state_block.number < number <= self.released:
            raise ConfigError(f"block {number} is outside the replayed range {self.state_block.number}..{self.released}")
        return ref_of(self._cursor.get(number).header)

    def logs(self, ref: BlockRef, addresses: list[str]) -> list[dict]:
        block = self._cursor.get(ref.number)
        if ref_of(block.header).hash != ref.hash:
            raise ConfigError(f"block {ref.number} of the capture is {ref_of(block.header).hash}, not {ref.hash}")
        if addresses is not self._asked:  # a watcher asks with the same list every block
            self._asked, self._wanted = addresses, {a.lower() for a in addresses}
        return [log for log in block.logs if log["address"] in self._wanted]

    def pool_states(self, ref: BlockRef, v2: list[str], v3: list[str]) -> tuple[list[tuple[int, int]], dict[str, V3Pool]]:
        """The initial state with every block up to `ref` applied (read again from the store: a snapshot
        after the first block costs a pass over the blocks before it)."""
        infos = {p.address: p for p in pool_infos(self.capture)}
        missing = [a for a in [*v2, *v3] if a.lower() not in infos]
        if missing:
            raise ConfigError(f"pools {missing[:3]} are not in the capture's initial state: replay the pools it holds")
        state = ShardState({a.lower(): (infos[a.lower()].reserve0, infos[a.lower()].reserve1) for a in v2}, history_blocks=1,
                           v3={a: v3_pool(infos[a]) for a in v3})
        if ref.number >= self.capture.first_block:
            for block in self.capture.blocks():
                if block.header.number > ref.number:
                    break
                state.apply_logs(block.header.number, block.logs)
        return [state.reserves[a.lower()] for a in v2], state.v3
