"""A capture store from a list of Uniswap V2 Sync events: for data sources that hold no block headers and
no Swap logs, such as the recorded day of Base Sync events (`tests/fixtures/base_sync_2024_11_01.json.gz`,
written by `tests/fixtures/convert_base_sync.py`).

What such a source does not hold, the store cannot invent: every block of the range gets a header with a
made-up hash (its number as 32 bytes, so parents chain), timestamp 0, base fee 0 and gas used 0 of a
30M limit, so a replay prices gas at 0 and reads congestion 0 on every block; and there are no Swap
logs, so the watchers' volume feature reads 0. The reserves are exact: every Sync is stored as the raw
log the pair emitted (topic, two ABI-encoded uint112), which the watchers decode as they decode a node's.

    .venv/bin/python tests/fixtures/convert_base_sync.py --store runs/base-sync
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from eth_abi import encode as abi_encode

from scanner.chain.follow import SYNC_TOPIC
from scanner.errors import ConfigError
from scanner.history.store import HEADERS_SCHEMA, LOGS_SCHEMA, POOLS_SCHEMA, TICKS_SCHEMA, Capture, Chunk, Store, load

GAS_LIMIT = 30_000_000  # of every made-up header (gas used 0: congestion reads 0)


@dataclass(frozen=True)
class SyncEvent:
    pool: str  # lower-case address
    block: int
    tx_index: int
    log_index: int
    reserve0: int  # after the event
    reserve1: int


def made_up_hash(number: int) -> bytes:
    """The hash given to block `number` of a source without headers: parents chain by number."""
    return number.to_bytes(32, "big")


def write_sync_store(out: str | Path, pools: Sequence[dict], events: Sequence[SyncEvent], first: int, last: int,
                     chain_id: int) -> Capture:
    """A store of blocks `first`..`last` holding `events` (in chain order) as Sync logs, with `pools` (dicts with
    address, token0, token1, fee_bps and the reserves at the end of block `first - 1`) as its initial state."""
    if any(not first <= e.block <= last for e in events):
        raise ValueError(f"every event must lie in blocks {first}..{last}")
    keys = [(e.block, e.tx_index, e.log_index) for e in events]
    if any(b <= a for a, b in zip(keys, keys[1:])):
        raise ValueError("events must be in strictly increasing (block, tx index, log index) order")
    numbers = list(range(first, last + 1))
    with Store(out) as store:
        if store.manifest() is not None or store.chunks():
            raise ConfigError(f"{out} already holds a store: write into an empty directory")
        store.commit_state(
            {"chain_id": chain_id, "from_block": first, "dexes": [], "state_block_hash": made_up_hash(first - 1).hex(),
             "state_header": {"parent_hash": made_up_hash(first - 2).hex(), "base_fee": 0, "gas_used": 0,
                              "gas_limit": GAS_LIMIT}},
            pa.Table.from_pylist([{"address": p["address"].lower(), "factory": "", "kind": "uniswap-v2", "dex": "uniswap-v2",
                                   "token0": p["token0"].lower(), "token1": p["token1"].lower(), "fee_ppm": p["fee_bps"] * 100,
                                   "reserve0": str(p["reserve0"]), "reserve1": str(p["reserve1"])} for p in pools],
                                 schema=POOLS_SCHEMA),
            TICKS_SCHEMA.empty_table())
        zeros = [0] * len(numbers)
        headers = pa.table({"number": numbers, "hash": [made_up_hash(n) for n in numbers],
                            "parent_hash": [made_up_hash(n - 1) for n in numbers], "timestamp": zeros, "base_fee": zeros,
                            "gas_used": zeros, "gas_limit": [GAS_LIMIT] * len(numbers)}, schema=HEADERS_SCHEMA)
        topic = bytes.fromhex(SYNC_TOPIC[2:])
        logs = pa.table({"block_number": [e.block for e in events], "tx_index": [e.tx_index for e in events],
                         "log_index": [e.log_index for e in events], "tx_hash": [bytes(32)] * len(events),
                         "address": [e.pool.lower() for e in events], "topics": [[topic]] * len(events),
                         "data": [abi_encode(["uint112", "uint112"], (e.reserve0, e.reserve1)) for e in events]},
                        schema=LOGS_SCHEMA)
        store.commit_chunk(Chunk(first, last), headers, logs)
    return load(out)


def read_sync_fixture(path: str | Path) -> tuple[dict, list[SyncEvent]]:
    """The converter's fixture (`tests/fixtures/convert_base_sync.py`): its JSON and its events."""
    data = json.loads(gzip.decompress(Path(path).read_bytes()))
    pools, c = data["pools"], data["columns"]
    events = [SyncEvent(pools[p]["address"], b, t, i, r0, r1) for p, b, t, i, r0, r1 in
              zip(c["pool"], c["block"], c["tx_index"], c["log_index"], c["reserve0"], c["reserve1"], strict=True)]
    return data, events


BASE_CHAIN_ID = 8453


def sync_fixture_store(fixture: str | Path, out: str | Path, first: int | None = None, last: int | None = None) -> Capture:
    """The store of a Sync fixture's blocks (default: from its first to its last event's block)."""
    data, events = read_sync_fixture(fixture)
    first = events[0].block if first is None else first
    last = events[-1].block if last is None else last
    chain_id = BASE_CHAIN_ID if data.get("chain") == "base" else 0
    return write_sync_store(out, data["pools"], events, first, last, chain_id)
