"""Control-plane-sized messages between actors (one per shard per block), as msgpack maps.

Feature rows and predictions travel in the column frames of `scanner.wire.frames`; these carry the
exact pool state the aggregator ranks on. Reserves reach 2**112, past msgpack's 64-bit ints,
so they travel as 32-byte big-endian strings (any uint256 fits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from scanner.wire.frames import PredictionFrame, WireError

_INT_BYTES = 32


def _int_to_bytes(value: int) -> bytes:
    return value.to_bytes(_INT_BYTES, "big")


def _int_from_bytes(raw: bytes) -> int:
    if not isinstance(raw, bytes) or len(raw) != _INT_BYTES:
        raise WireError(f"expected a {_INT_BYTES}-byte integer, got {raw!r:.40}")
    return int.from_bytes(raw, "big")


def _reserve_columns(reserves: dict[int, tuple[int, int]]) -> dict[str, list]:
    return {"pools": list(reserves), "r0": [_int_to_bytes(r[0]) for r in reserves.values()],
            "r1": [_int_to_bytes(r[1]) for r in reserves.values()]}


@dataclass(frozen=True)
class BlockUpdate:
    """One shard's view of one block: header numbers and the pools whose reserves changed."""

    shard: int
    number: int
    hash: str
    parent_hash: str
    base_fee: int
    gas_used: int
    gas_limit: int
    timestamp: int
    reserves: dict[int, tuple[int, int]] = field(default_factory=dict)  # pool id -> (r0, r1)

    KIND = "block"

    def encode(self) -> bytes:
        return msgpack.packb({
            "kind": self.KIND, "shard": self.shard, "number": self.number, "hash": self.hash,
            "parent": self.parent_hash, "base_fee": self.base_fee, "gas_used": self.gas_used,
            "gas_limit": self.gas_limit, "ts": self.timestamp, **_reserve_columns(self.reserves),
        })


@dataclass(frozen=True)
class Withdraw:
    """Blocks above `fork_number` were orphaned: drop their rankings, restore these reserves."""

    shard: int
    fork_number: int
    depth: int
    reserves: dict[int, tuple[int, int]] = field(default_factory=dict)

    KIND = "withdraw"

    def encode(self) -> bytes:
        return msgpack.packb({
            "kind": self.KIND, "shard": self.shard, "fork": self.fork_number, "depth": self.depth,
            **_reserve_columns(self.reserves),
        })


@dataclass(frozen=True)
class GasUpdate:
    """The gas market after one block: what a transaction in the next block will pay."""

    number: int
    base_fee: int
    next_base_fee: int
    tips: tuple[int, int, int]  # 25th, 50th, 75th percentile priority fee of recent blocks
    gas_used_ratio: float
    feed_answer: int = 0  # the configured AggregatorV3 gas feed, 0 when none

    KIND = "gas"

    def encode(self) -> bytes:
        return msgpack.packb({
            "kind": self.KIND, "number": self.number, "base_fee": self.base_fee,
            "next_base_fee": self.next_base_fee, "tips": list(self.tips),
            "ratio": self.gas_used_ratio, "feed": self.feed_answer,
        })


def _reserves(msg: dict) -> dict[int, tuple[int, int]]:
    pools, r0, r1 = msg["pools"], msg["r0"], msg["r1"]
    if not (len(pools) == len(r0) == len(r1)):
        raise WireError("pool and reserve columns differ in length")
    return {int(p): (_int_from_bytes(a), _int_from_bytes(b)) for p, a, b in zip(pools, r0, r1)}


def decode(data: bytes) -> BlockUpdate | Withdraw | GasUpdate:
    """Any of the messages above; `WireError` for anything else."""
    try:
        msg = msgpack.unpackb(data, raw=False)
        kind = msg["kind"]
        if kind == BlockUpdate.KIND:
            return BlockUpdate(msg["shard"], msg["number"], msg["hash"], msg["parent"], msg["base_fee"],
                               msg["gas_used"], msg["gas_limit"], msg["ts"], _reserves(msg))
        if kind == Withdraw.KIND:
            return Withdraw(msg["shard"], msg["fork"], msg["depth"], _reserves(msg))
        if kind == GasUpdate.KIND:
            return GasUpdate(msg["number"], msg["base_fee"], msg["next_base_fee"], tuple(msg["tips"]),
                             float(msg["ratio"]), msg["feed"])
    except WireError:
        raise
    except Exception as e:
        raise WireError(f"malformed message ({type(e).__name__}: {e})") from e
    raise WireError(f"unknown message kind {kind!r}")


def decode_ingest(data: bytes) -> BlockUpdate | Withdraw | GasUpdate | PredictionFrame:
    """A message above or a prediction frame (the aggregator's ingest carries both), by its kind."""
    try:
        msg = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise WireError(f"malformed frame ({type(e).__name__}: {e})") from e
    if isinstance(msg, dict) and msg.get("kind") == PredictionFrame.KIND:
        return PredictionFrame.decode(data)
    return decode(data)
