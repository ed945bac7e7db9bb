"""Control-plane-sized messages between actors (one per shard per block), as msgpack maps.

Feature rows and predictions travel in the column frames of `scanner.wire.frames`; these carry the
exact pool state the aggregator ranks on: V2 reserves, and V3 slot0, liquidity and the ticks
that changed. Reserves reach 2**112 and V3 prices 2**160, past msgpack's 64-bit ints, so they
travel as 32-byte big-endian strings (any uint256 fits; liquidityNet as two's complement).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from scanner.dex.pool import V3State
from scanner.wire.frames import PredictionFrame, WireError

_INT_BYTES = 32


def _int_to_bytes(value: int) -> bytes:
    return value.to_bytes(_INT_BYTES, "big")


def _int_from_bytes(raw: bytes, signed: bool = False) -> int:
    if not isinstance(raw, bytes) or len(raw) != _INT_BYTES:
        raise WireError(f"expected a {_INT_BYTES}-byte integer, got {raw!r:.40}")
    return int.from_bytes(raw, "big", signed=signed)


def _state_columns(reserves: dict[int, tuple[int, int]], v3: dict[int, V3State]) -> dict[str, list]:
    return {
        "pools": list(reserves), "r0": [_int_to_bytes(r[0]) for r in reserves.values()],
        "r1": [_int_to_bytes(r[1]) for r in reserves.values()],
        "v3": [[pool, _int_to_bytes(s.sqrt_price_x96), s.tick, _int_to_bytes(s.liquidity), s.replace_ticks,
                [[t, _int_to_bytes(gross), net.to_bytes(_INT_BYTES, "big", signed=True)]
                 for t, (gross, net) in s.ticks.items()]] for pool, s in v3.items()],
    }


class _PoolStates:
    """Both kinds of pool state a message carries, as the arguments of each pool's `update`."""

    reserves: dict[int, tuple[int, int]]
    v3: dict[int, V3State]

    @property
    def states(self) -> dict[int, tuple]:
        return {**self.reserves, **self.v3}


@dataclass(frozen=True)
class BlockUpdate(_PoolStates):
    """One shard's view of one block: header numbers and the pools whose state changed."""

    shard: int
    number: int
    hash: str
    parent_hash: str
    base_fee: int
    gas_used: int
    gas_limit: int
    timestamp: int
    reserves: dict[int, tuple[int, int]] = field(default_factory=dict)  # V2 pool id -> (r0, r1)
    v3: dict[int, V3State] = field(default_factory=dict)  # V3 pool id -> its state

    KIND = "block"

    def encode(self) -> bytes:
        return msgpack.packb({
            "kind": self.KIND, "shard": self.shard, "number": self.number, "hash": self.hash,
            "parent": self.parent_hash, "base_fee": self.base_fee, "gas_used": self.gas_used,
            "gas_limit": self.gas_limit, "ts": self.timestamp, **_state_columns(self.reserves, self.v3),
        })


@dataclass(frozen=True)
class Withdraw(_PoolStates):
    """Blocks above `fork_number` were orphaned: drop their rankings, restore these pool states."""

    shard: int
    fork_number: int
    depth: int
    reserves: dict[int, tuple[int, int]] = field(default_factory=dict)
    v3: dict[int, V3State] = field(default_factory=dict)

    KIND = "withdraw"

    def encode(self) -> bytes:
        return msgpack.packb({
            "kind": self.KIND, "shard": self.shard, "fork": self.fork_number, "depth": self.depth,
            **_state_columns(self.reserves, self.v3),
        })


@dataclass(frozen=True)
class PendingUpdate(_PoolStates):
    """The post-state of the watched pools a pending transaction (`trigger`) swaps, simulated on the
    mined state of block `base_block`: what a backrun of it would trade against.

    `sender` and `nonce` identify it across replacements (same sender and nonce, higher fee: the old
    trigger is withdrawn); `tip` and `max_fee` are its fee caps (a node orders its pool by them, so a
    backrun bids below); `seen_at` is the wall-clock time the watcher first saw it (latency figures).
    """

    trigger: str
    sender: str
    nonce: int
    tip: int
    max_fee: int
    base_block: int
    seen_at: float
    reserves: dict[int, tuple[int, int]] = field(default_factory=dict)
    v3: dict[int, V3State] = field(default_factory=dict)

    KIND = "pending"

    def encode(self) -> bytes:
        return msgpack.packb({
            "kind": self.KIND, "trigger": self.trigger, "sender": self.sender, "nonce": self.nonce,
            "tip": _int_to_bytes(self.tip), "max_fee": _int_to_bytes(self.max_fee), "base": self.base_block,
            "seen": self.seen_at, **_state_columns(self.reserves, self.v3),
        })


@dataclass(frozen=True)
class PendingWithdraw:
    """Pending transactions that no longer stand (mined, dropped, replaced): their backruns go."""

    triggers: tuple[str, ...]
    reason: str  # "mined", "dropped", "replaced"

    KIND = "pending_withdraw"

    def encode(self) -> bytes:
        return msgpack.packb({"kind": self.KIND, "triggers": list(self.triggers), "reason": self.reason})


@dataclass(frozen=True)
class GasUpdate:
    """The gas market after one block: what a transaction in the next block will pay."""

    number: int
    base_fee: int
    next_base_fee: int
    tips: tuple[int, int, int]  # 25th, 50th, 75th percentile priority fee of recent blocks
    gas_used_ratio: float
    feed_answer: int = 0  # the configured AggregatorV3 gas feed, 0 when none
    # L2s: the values the L1 fee is computed from, the fields of the chain's `scanner.rank.l1.L1_PRICING`
    # class in order (OP-stack: l1 base fee, blob base fee, base fee scalar, blob base fee scalar;
    # Arbitrum: L1 price per unit, brotli level); () elsewhere
    l1: tuple[int, ...] = ()

    KIND = "gas"

    def encode(self) -> bytes:
        return msgpack.packb({
            "kind": self.KIND, "number": self.number, "base_fee": self.base_fee,
            "next_base_fee": self.next_base_fee, "tips": list(self.tips),
            "ratio": self.gas_used_ratio, "feed": self.feed_answer, "l1": [str(v) for v in self.l1],
        })


def _reserves(msg: dict) -> dict[int, tuple[int, int]]:
    pools, r0, r1 = msg["pools"], msg["r0"], msg["r1"]
    if not (len(pools) == len(r0) == len(r1)):
        raise WireError("pool and reserve columns differ in length")
    return {int(p): (_int_from_bytes(a), _int_from_bytes(b)) for p, a, b in zip(pools, r0, r1)}


def _v3_states(msg: dict) -> dict[int, V3State]:
    out = {}
    for pool, sqrt_price, tick, liquidity, replace, ticks in msg.get("v3", []):
        out[int(pool)] = V3State(_int_from_bytes(sqrt_price), int(tick), _int_from_bytes(liquidity),
                                 {int(t): (_int_from_bytes(g), _int_from_bytes(n, signed=True)) for t, g, n in ticks},
                                 bool(replace))
    return out


Message = BlockUpdate | Withdraw | GasUpdate | PendingUpdate | PendingWithdraw


def decode(data: bytes) -> Message:
    """Any of the messages above; `WireError` for anything else."""
    try:
        msg = msgpack.unpackb(data, raw=False)
        kind = msg["kind"]
        if kind == BlockUpdate.KIND:
            return BlockUpdate(msg["shard"], msg["number"], msg["hash"], msg["parent"], msg["base_fee"],
                               msg["gas_used"], msg["gas_limit"], msg["ts"], _reserves(msg), _v3_states(msg))
        if kind == Withdraw.KIND:
            return Withdraw(msg["shard"], msg["fork"], msg["depth"], _reserves(msg), _v3_states(msg))
        if kind == PendingUpdate.KIND:
            return PendingUpdate(str(msg["trigger"]), str(msg["sender"]), int(msg["nonce"]), _int_from_bytes(msg["tip"]),
                                 _int_from_bytes(msg["max_fee"]), int(msg["base"]), float(msg["seen"]), _reserves(msg),
                                 _v3_states(msg))
        if kind == PendingWithdraw.KIND:
            return PendingWithdraw(tuple(str(t) for t in msg["triggers"]), str(msg["reason"]))
        if kind == GasUpdate.KIND:
            return GasUpdate(msg["number"], msg["base_fee"], msg["next_base_fee"], tuple(msg["tips"]),
                             float(msg["ratio"]), msg["feed"], tuple(int(v) for v in msg.get("l1", ())))
    except WireError:
        raise
    except Exception as e:
        raise WireError(f"malformed message ({type(e).__name__}: {e})") from e
    raise WireError(f"unknown message kind {kind!r}")


def decode_ingest(data: bytes) -> Message | PredictionFrame:
    """A message above or a prediction frame (the aggregator's ingest carries both), by its kind."""
    try:
        msg = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise WireError(f"malformed frame ({type(e).__name__}: {e})") from e
    if isinstance(msg, dict) and msg.get("kind") == PredictionFrame.KIND:
        return PredictionFrame.decode(data)
    return decode(data)
