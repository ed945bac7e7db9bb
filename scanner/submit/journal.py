"""The outcome journal: what was predicted, simulated and realized for each opportunity, in SQLite.

One table, one row per (opportunity id, stage); the stage's own fields are a JSON column. Writes are
`INSERT ... ON CONFLICT DO NOTHING`, so a restarted submitter that replays a block writes nothing
twice and the first record of a stage stays. Every int inside a record's JSON is a decimal string:
wei amounts pass 2**64, and readers other than Python (SQLite's json_extract among them) would turn
big JSON numbers into floats. `block` is a real INTEGER column, for recovery (`last_block`).

Durability: WAL with `synchronous=NORMAL`. A commit is safe once `write` returns if the process
dies (SIGKILL, OOM); only an OS crash or power loss can lose the last few commits. That is the
right trade here: the journal holds public data that the submitter can re-derive for a replayed
block, and FULL would add an fsync to every block's writes.

In flight: a transaction's hash, opportunity and block records are held in a second table from just
before it is sent until its outcome is journaled (`hold`, then `write(..., release=tx_hash)` in one
transaction), so a submitter killed in between resolves it after its restart (`held`) instead of
losing it.

Secrets: records carry only public data. Free-text fields (`error`) are scrubbed of any run of 64
or more hex digits (the shape of a private key) before they are written, in case a library put
a key into an exception message.
"""
from __future__ import annotations

import json
import re
import sqlite3
import time
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, cast

from scanner.errors import ArbscanError

OUTCOMES = ("landed", "beaten", "reverted", "not_sent")
FREE_TEXT = {"free_text": True}
_HEX_SECRET = re.compile(r"(?:0[xX])?[0-9a-fA-F]{64,}")
REDACTED = "[redacted-hex]"


def scrub(text: str) -> str:
    """`text` without anything shaped like a private key (64+ hex digits, with or without 0x)."""
    return _HEX_SECRET.sub(REDACTED, text)


@dataclass(frozen=True)
class OpportunityRecord:
    """What the aggregator ranked: the cycle, its sizes and its predicted profit (wei of the base token)."""

    STAGE: ClassVar[str] = "opportunity"
    id: str
    block: int
    tokens: list[str]  # the cycle, base token first and last
    pools: list[str]  # one pool per hop
    amounts: list[int]  # wei: the input, then each hop's output
    gas_cost: int
    net_profit: int
    ev: float


@dataclass(frozen=True)
class PredictionRecord:
    """What the LSTM said about it: probability it survives to inclusion, expected slippage in wei."""

    STAGE: ClassVar[str] = "prediction"
    id: str
    block: int
    p_success: float
    expected_slippage: int


@dataclass(frozen=True)
class SimulationRecord:
    """eth_call / eth_estimateGas of the executor transaction at the ranked block."""

    STAGE: ClassVar[str] = "simulation"
    id: str
    block: int
    ok: bool
    profit: int | None
    gas_estimate: int | None
    error: str = field(default="", metadata=FREE_TEXT)


@dataclass(frozen=True)
class BundleRecord:
    """A backrun as a relay would take it: the `eth_sendBundle` transactions (the pending `trigger`,
    then ours, signed), the block they target and our fee caps (below the trigger's, so a node that
    orders by fee runs the trigger first)."""

    STAGE: ClassVar[str] = "bundle"
    id: str
    block: int
    trigger: str
    txs: list[str]
    target_block: int
    tip: int
    max_fee: int


@dataclass(frozen=True)
class TipRecord:
    """The priority fee bid for the opportunity sent (wei per gas), by which policy ("fixed" or "ev"), the
    P(win) the tip model gave it (None without a model) and the expected profit at that tip (ETH wei; None
    without a model): beside its outcome, what makes the model's calibration measurable."""

    STAGE: ClassVar[str] = "tip"
    id: str
    block: int
    policy: str
    tip: int
    p_win: float | None = None
    expected_value: float | None = None


@dataclass(frozen=True)
class OutcomeRecord:
    """What happened on chain: landed, beaten (a competitor got there first), reverted, or not_sent."""

    STAGE: ClassVar[str] = "outcome"
    id: str
    block: int
    status: str
    realized_profit: int | None = None
    tx_hash: str | None = None
    error: str = field(default="", metadata=FREE_TEXT)

    def __post_init__(self) -> None:
        if self.status not in OUTCOMES:
            raise ValueError(f"outcome status must be one of {OUTCOMES}, got {self.status!r}")


Record = OpportunityRecord | PredictionRecord | SimulationRecord | BundleRecord | TipRecord | OutcomeRecord
RECORDS: dict[str, type[Record]] = {cls.STAGE: cls for cls in typing.get_args(Record)}
_KEY_FIELDS = ("id", "block")
_RELEASE = "DELETE FROM inflight WHERE tx_hash = ?"


def _encode(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (float, str)):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return [_encode(v) for v in value]
    raise TypeError(f"journal records hold str/int/float/bool/None and lists of them, got {type(value).__name__}")


def _decode(value: Any, tp: Any) -> Any:
    """Inverse of `_encode`, led by the field's annotation: `int`, `int | None`, `list[int]`."""
    if value is None:
        return None
    if tp is int or (int in typing.get_args(tp) and typing.get_origin(tp) is not list):
        return int(value)
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return [_decode(v, item) for v in value]
    return value


class Journal:
    """One SQLite file; use one Journal per thread (sqlite3 connections stay on their thread)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, timeout=5.0)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            self._db.close()
            raise ArbscanError(f"journal {self.path} cannot use WAL (got journal_mode={mode}): put it on a local "
                               "filesystem file, not :memory: or a network share")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS journal ("
                " id TEXT NOT NULL, stage TEXT NOT NULL, block INTEGER NOT NULL, written_at REAL NOT NULL,"
                " data TEXT NOT NULL, PRIMARY KEY (id, stage)) WITHOUT ROWID")
            self._db.execute("CREATE INDEX IF NOT EXISTS journal_block ON journal (block)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS inflight ("
                " tx_hash TEXT PRIMARY KEY, block INTEGER NOT NULL, opportunity TEXT NOT NULL, records TEXT NOT NULL)")

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def write(self, *records: Record, release: str | None = None) -> int:
        """Commit `records` in one transaction, which also drops the in-flight entry `release` (a tx
        hash) if given; returns how many records were new (a replayed stage is skipped)."""
        now = time.time()
        rows = [(r.id, r.STAGE, r.block, now, json.dumps(self._data(r))) for r in records]
        with self._db:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT INTO journal (id, stage, block, written_at, data) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id, stage) DO NOTHING", rows)
            new = self._db.total_changes - before
            if release is not None:
                self._db.execute(_RELEASE, (release,))
            return new

    def hold(self, tx_hash: str, block: int, opportunity: dict, records: list[Record]) -> None:
        """Keep a transaction about to be sent (or its block's records so far, again) until its outcome."""
        data = json.dumps([[r.STAGE, r.id, r.block, self._data(r)] for r in records])
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO inflight (tx_hash, block, opportunity, records) VALUES (?, ?, ?, ?)",
                             (tx_hash, block, json.dumps(opportunity), data))

    def release(self, tx_hash: str) -> None:
        """Forget an in-flight entry whose transaction never left (the send failed)."""
        with self._db:
            self._db.execute(_RELEASE, (tx_hash,))

    def held(self) -> list[tuple[str, dict, int, list[Record]]]:
        """Every in-flight transaction: (tx hash, opportunity, block, its block's records)."""
        out = []
        for tx_hash, block, opportunity, records in self._db.execute(
                "SELECT tx_hash, block, opportunity, records FROM inflight ORDER BY block, tx_hash"):
            out.append((tx_hash, json.loads(opportunity), block,
                        [_record(stage, id, b, data) for stage, id, b, data in json.loads(records)]))
        return out

    @staticmethod
    def _data(record: Record) -> dict[str, Any]:
        data = {}
        for f in fields(record):
            if f.name in _KEY_FIELDS:
                continue
            value = getattr(record, f.name)
            data[f.name] = scrub(value) if f.metadata.get("free_text") else _encode(value)
        return data

    def last_block(self) -> int | None:
        """The highest block with any row: where a restarted writer resumes."""
        return self._db.execute("SELECT MAX(block) FROM journal").fetchone()[0]

    def bundles(self, block: int) -> list[BundleRecord]:
        """The backrun bundles journaled for opportunities ranked at `block`."""
        rows = self._db.execute("SELECT id, data FROM journal WHERE stage = 'bundle' AND block = ?", (block,)).fetchall()
        return [cast(BundleRecord, _record("bundle", id, block, json.loads(data))) for id, data in rows]

    def tip_outcomes(self) -> list[tuple[TipRecord, OutcomeRecord]]:
        """Every journaled tip with its opportunity's outcome, by block: predicted P(win) against what happened."""
        rows = self._db.execute(
            "SELECT t.id, t.block, t.data, o.block, o.data FROM journal t JOIN journal o ON o.id = t.id"
            " AND o.stage = 'outcome' WHERE t.stage = 'tip' ORDER BY t.block, t.id").fetchall()
        return [(cast(TipRecord, _record("tip", id, block, json.loads(tip))),
                 cast(OutcomeRecord, _record("outcome", id, o_block, json.loads(outcome))))
                for id, block, tip, o_block, outcome in rows]

    def records(self, id: str) -> list[Record]:
        """Every stage journaled for opportunity `id`, in pipeline order."""
        rows = self._db.execute("SELECT stage, block, data FROM journal WHERE id = ?", (id,)).fetchall()
        found = {stage: _record(stage, id, block, json.loads(data)) for stage, block, data in rows}
        return [found[stage] for stage in RECORDS if stage in found]


def _record(stage: str, id: str, block: int, data: dict[str, Any]) -> Record:
    """A record from its stage, key and JSON fields (as `Journal._data` wrote them)."""
    cls = RECORDS[stage]
    hints = typing.get_type_hints(cls)
    return cls(id=id, block=block, **{k: _decode(v, hints[k]) for k, v in data.items()})
