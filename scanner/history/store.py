"""The capture store: append-only Parquet files, one pair per committed chunk of blocks, and its reader.

Why Parquet (via pyarrow) and not DuckDB: a capture is written once, in block order, and read back
in block order by replay and by analysis tools that already speak Arrow (pandas, polars, DuckDB
itself queries these files in place). Immutable files give the commit protocol for free — a chunk
exists or it does not — where a database file would need its own transaction log to survive a
SIGKILL, would be one file that only one writer may hold, and could not be copied chunk by chunk.
Columnar compression keeps a log table to a few bytes per repeated address or topic.

Layout of a store directory:

    manifest.json             what was captured (chain, first block, DEXes, the state block's hash and header)
    pools.parquet             every tracked pool's state at the end of block `from - 1`
    ticks.parquet             the initialized ticks of the V3 pools at that block
    lock                      held by the one capture writing the directory
    logs-A-B.parquet          the tracked logs of blocks A..B, in (block, tx index, log index) order
    headers-A-B.parquet       the headers of blocks A..B: the commit marker of chunk A..B

Commit protocol: every file is written to `NAME.tmp`, fsynced, then renamed to NAME (atomic on
POSIX) and the directory fsynced. The initial state is committed when `manifest.json` is renamed
in (after pools and ticks); chunk A..B is committed when `headers-A-B.parquet` is renamed in (after
its logs). A reader sees only committed chunks; a writer that restarts deletes the leftovers of an
interrupted commit and goes on from the block after the last committed chunk, so a capture killed
at any point and restarted holds exactly the data of an uninterrupted one.

Integers wider than 64 bits (reserves, sqrt prices, liquidity) are decimal strings: Parquet has no
256-bit integer and its widest decimal holds 76 digits, fewer than a uint256 may need.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scanner.errors import ConfigError

FORMAT = 1
MANIFEST = "manifest.json"
POOLS = "pools.parquet"
TICKS = "ticks.parquet"
LOCK = "lock"
_CHUNK = re.compile(r"^headers-(\d+)-(\d+)\.parquet$")

HASH = pa.binary(32)
HEADERS_SCHEMA = pa.schema([
    ("number", pa.uint64()), ("hash", HASH), ("parent_hash", HASH), ("timestamp", pa.uint64()),
    ("base_fee", pa.uint64()),  # null before London
    ("gas_used", pa.uint64()), ("gas_limit", pa.uint64()),
])
LOGS_SCHEMA = pa.schema([
    ("block_number", pa.uint64()), ("tx_index", pa.uint32()), ("log_index", pa.uint32()), ("tx_hash", HASH),
    ("address", pa.string()),  # lower case
    ("topics", pa.list_(HASH)), ("data", pa.binary()),
])
POOLS_SCHEMA = pa.schema([
    ("address", pa.string()), ("factory", pa.string()), ("kind", pa.string()), ("dex", pa.string()),
    ("token0", pa.string()), ("token1", pa.string()),
    ("fee_ppm", pa.uint32()),  # millionths of the input: V2 fee_bps · 100, V3's own fee
    ("reserve0", pa.string()), ("reserve1", pa.string()),  # V2
    ("sqrt_price_x96", pa.string()), ("tick", pa.int32()), ("tick_spacing", pa.int32()), ("liquidity", pa.string()),  # V3
])
TICKS_SCHEMA = pa.schema([
    ("pool", pa.string()), ("tick", pa.int32()), ("liquidity_gross", pa.string()), ("liquidity_net", pa.string()),
])


@dataclass(frozen=True)
class Chunk:
    """Blocks `first`..`last` (inclusive), committed."""

    first: int
    last: int

    @property
    def headers(self) -> str:
        return f"headers-{self.first}-{self.last}.parquet"

    @property
    def logs(self) -> str:
        return f"logs-{self.first}-{self.last}.parquet"


@dataclass(frozen=True)
class Header:
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    base_fee: int | None
    gas_used: int
    gas_limit: int


@dataclass(frozen=True)
class Block:
    """One captured block: its header and its tracked logs as JSON-RPC-shaped dicts, in log order
    (what `scanner.chain.follow.decode_pair_logs` and `ShardState.apply_logs` take)."""

    header: Header
    logs: list[dict[str, Any]]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(path: Path, write: Any) -> None:
    """`write(tmp_path)`, fsync, rename to `path`: after this returns the file is whole and durable."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _commit_table(path: Path, table: pa.Table) -> None:
    _commit(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


class Store:
    """The writing side: creates the directory, commits the state and then chunk after chunk.

    One writer at a time: it holds an exclusive lock on `DIR/lock` (released by the kernel when the
    process ends, however it ends), so a second capture into the same directory stops at once.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / LOCK, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ConfigError(f"another capture is writing {self.root}: wait for it to end or stop it first") from None
        for tmp in self.root.glob("*.tmp"):  # an interrupted write
            tmp.unlink()
        committed = {c.logs for c in self.chunks()}
        for logs in self.root.glob("logs-*.parquet"):  # logs whose headers never made it in
            if logs.name not in committed:
                logs.unlink()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.close()

    def manifest(self) -> dict | None:
        path = self.root / MANIFEST
        return json.loads(path.read_text()) if path.exists() else None

    def commit_state(self, manifest: dict, pools: pa.Table, ticks: pa.Table) -> None:
        _commit_table(self.root / POOLS, pools.cast(POOLS_SCHEMA))
        _commit_table(self.root / TICKS, ticks.cast(TICKS_SCHEMA))
        _commit(self.root / MANIFEST, lambda tmp: tmp.write_text(json.dumps({"format": FORMAT, **manifest}, indent=1)))

    def chunks(self) -> list[Chunk]:
        return committed_chunks(self.root)

    def commit_chunk(self, chunk: Chunk, headers: pa.Table, logs: pa.Table) -> None:
        """Logs first, headers last: the headers file's rename is the commit."""
        _commit_table(self.root / chunk.logs, logs.cast(LOGS_SCHEMA))
        _commit_table(self.root / chunk.headers, headers.cast(HEADERS_SCHEMA))


def committed_chunks(root: Path) -> list[Chunk]:
    found = [Chunk(int(m[1]), int(m[2])) for p in root.iterdir() if (m := _CHUNK.match(p.name))]
    return sorted(found, key=lambda c: c.first)


class Capture:
    """The reading side of a store: the state at the first block, then every committed block in order."""

    def __init__(self, root: Path, manifest: dict, chunks: list[Chunk]) -> None:
        self.root, self.manifest, self.chunks = root, manifest, chunks

    @property
    def first_block(self) -> int:
        return int(self.manifest["from_block"])

    @property
    def last_block(self) -> int:
        """The last committed block (`first_block - 1` while no chunk is committed)."""
        return self.chunks[-1].last if self.chunks else self.first_block - 1

    def pools(self) -> pa.Table:
        return pq.read_table(self.root / POOLS, schema=POOLS_SCHEMA)

    def ticks(self) -> pa.Table:
        return pq.read_table(self.root / TICKS, schema=TICKS_SCHEMA)

    def chunk_tables(self, columns: list[str] | None = None, start: int = 0) -> Iterator[tuple[pa.Table, pa.Table]]:
        """(headers, logs) per chunk, in block order, from the chunk that holds block `start` on; `columns`
        limits the logs' columns."""
        for chunk in self.chunks:
            if chunk.last < start:
                continue
            yield (pq.read_table(self.root / chunk.headers, schema=HEADERS_SCHEMA),
                   pq.read_table(self.root / chunk.logs, schema=LOGS_SCHEMA, columns=columns))

    def headers(self) -> pa.Table:
        return pa.concat_tables([h for h, _ in self.chunk_tables(columns=[])]) if self.chunks else HEADERS_SCHEMA.empty_table()

    def logs(self) -> pa.Table:
        return pa.concat_tables([lg for _, lg in self.chunk_tables()]) if self.chunks else LOGS_SCHEMA.empty_table()

    def blocks(self, start: int = 0) -> Iterator[Block]:
        """Every captured block from `start` on, with or without logs, in order: what a replay feeds the
        pipeline (chunks that end before `start` are not read)."""
        for headers, logs in self.chunk_tables(start=start):
            rows = iter(logs.to_pylist())
            row = next(rows, None)
            for header in headers.to_pylist():
                mine = []
                while row is not None and row["block_number"] == header["number"]:
                    mine.append({"blockNumber": row["block_number"], "transactionIndex": row["tx_index"],
                                 "logIndex": row["log_index"], "transactionHash": row["tx_hash"],
                                 "address": row["address"], "topics": row["topics"], "data": row["data"]})
                    row = next(rows, None)
                if header["number"] >= start:
                    yield Block(Header(**header), mine)

    def file_names(self, last: int | None = None) -> list[str]:
        """The committed files (in `root`) that hold the state and the blocks up to `last` (all: None): what a
        process without this directory needs to `unpack` the store and read those blocks."""
        return [MANIFEST, POOLS, TICKS] + [n for c in self.chunks if last is None or c.first <= last for n in (c.logs, c.headers)]


def unpack(files: dict[str, bytes], root: str | Path) -> Capture:
    """Write files named as `Capture.file_names` gives them into the empty directory `root`; read it as a store."""
    for name, data in files.items():
        (Path(root) / name).write_bytes(data)
    return load(root)


def load(root: str | Path) -> Capture:
    """The committed part of the store at `root` (a capture still running or killed reads fine)."""
    root = Path(root)
    path = root / MANIFEST
    if not path.exists():
        raise ConfigError(f"{root} holds no capture (no {MANIFEST}): write one with `arbscan capture --out {root}`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ConfigError(f"{path} is store format {manifest.get('format')}, this arbscan reads format {FORMAT}")
    chunks = committed_chunks(root)
    expected = int(manifest["from_block"])
    for chunk in chunks:
        if chunk.first != expected:
            raise ConfigError(f"{root}: chunk {chunk.first}-{chunk.last} does not follow block {expected - 1}; "
                              "the store was edited by hand: capture it again into an empty directory")
        expected = chunk.last + 1
    return Capture(root, manifest, chunks)
