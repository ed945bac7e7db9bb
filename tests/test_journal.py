"""The outcome journal on real SQLite files, including a writer killed mid-run."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scanner.submit.journal import (
    REDACTED,
    Journal,
    OpportunityRecord,
    OutcomeRecord,
    PredictionRecord,
    SimulationRecord,
    TipRecord,
    scrub,
)

ROOT = Path(__file__).resolve().parents[1]
WETH, USDC = "0x" + "ee" * 20, "0x" + "cc" * 20
SECRET = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


def opportunity(oid: str, block: int = 100, amount: int = 2**200) -> OpportunityRecord:
    return OpportunityRecord(oid, block, [WETH, USDC, WETH], ["0x" + "01" * 20, "0x" + "02" * 20],
                             [amount, 3 * 10**24, amount + 12345], 21_000 * 10**9, 12345 - 21_000 * 10**9, 0.75)


def test_wal_mode_and_synchronous(tmp_path):
    with Journal(tmp_path / "j.sqlite") as journal:
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_idempotent_writes_keep_the_first_record(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        assert journal.write(opportunity("a"), PredictionRecord("a", 100, 0.9, 10**18)) == 2
        assert journal.write(opportunity("a")) == 0
        assert journal.write(opportunity("a", amount=5), opportunity("b")) == 1
    with Journal(path) as reopened:  # a restarted writer replaying the same block
        assert reopened.write(opportunity("a"), opportunity("b")) == 0
        assert [r.STAGE for r in reopened.records("a")] == ["opportunity", "prediction"]
        assert reopened.records("a")[0] == opportunity("a")
    count = sqlite3.connect(path).execute("SELECT COUNT(*) FROM journal WHERE id = 'a' AND stage = 'opportunity'")
    assert count.fetchone()[0] == 1


def test_every_stage_round_trips_with_exact_big_ints(tmp_path):
    records = [
        opportunity("x", amount=2**255 - 19),
        PredictionRecord("x", 100, 0.625, 2**70 + 1),
        SimulationRecord("x", 100, True, -(2**130), 187_654),
        OutcomeRecord("x", 101, "landed", 2**64 + 7, "0x" + "ab" * 32),
    ]
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.write(*reversed(records))
        assert journal.records("x") == records
        assert journal.records("missing") == []
        assert journal.last_block() == 101
        raw = journal._db.execute("SELECT data FROM journal WHERE stage = 'opportunity'").fetchone()[0]
    assert f'"{2**255 - 19}"' in raw  # stored as decimal TEXT, exact for every reader


def test_tips_round_trip_and_meet_their_outcomes(tmp_path):
    tips = [TipRecord("a", 100, "ev", 2**70 + 3, 0.8125, 1.5e15), TipRecord("b", 101, "fixed", 2 * 10**9)]
    outcomes = [OutcomeRecord("a", 100, "landed", 10**16, "0x" + "aa" * 32), OutcomeRecord("b", 101, "beaten", 0)]
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.write(opportunity("a"), tips[0], outcomes[0], opportunity("b", 101), tips[1])
        assert journal.tip_outcomes() == [(tips[0], outcomes[0])]  # b's outcome is not known yet
        journal.write(outcomes[1])
        assert journal.tip_outcomes() == list(zip(tips, outcomes))
        assert [r.STAGE for r in journal.records("a")] == ["opportunity", "tip", "outcome"]
        assert journal.records("b")[1] == tips[1] and tips[1].p_win is None


def test_empty_journal_has_no_last_block(tmp_path):
    with Journal(tmp_path / "j.sqlite") as journal:
        assert journal.last_block() is None


def test_outcome_status_is_checked():
    with pytest.raises(ValueError, match="landed"):
        OutcomeRecord("x", 1, "won")


def test_scrub_removes_key_shaped_hex():
    assert scrub(f"signing with 0x{SECRET} failed") == f"signing with {REDACTED} failed"
    assert scrub(f"key={SECRET.upper()}") == f"key={REDACTED}"
    assert scrub(f"calldata 0xdeadbeef{SECRET}00") == f"calldata {REDACTED}"
    assert scrub(f"pool {WETH} reverted: K") == f"pool {WETH} reverted: K"  # addresses (40 hex) stay


def test_journal_never_holds_a_secret_from_free_text(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        for i in range(50):
            journal.write(
                SimulationRecord(f"o{i}", i, False, None, None, f"eth_call failed for key 0x{SECRET} (attempt {i})"),
                OutcomeRecord(f"o{i}", i, "not_sent", error=f"account {SECRET}: nonce too low"),
            )
        assert REDACTED in journal.records("o7")[0].error
        journal._db.execute("PRAGMA wal_checkpoint(FULL)")
    for file in tmp_path.iterdir():  # the db, and the WAL / shm if any are left
        data = file.read_bytes()
        assert SECRET.encode() not in data and SECRET.upper().encode() not in data, file


WRITER = """
import sys
from scanner.submit.journal import Journal, OpportunityRecord
journal = Journal(sys.argv[1])
for i in range(100_000):
    journal.write(OpportunityRecord(f"op{i}", i, ["a", "b", "a"], ["p"], [2**200 + i], 1, i, 0.5))
    print(f"op{i}", flush=True)
"""


def test_rows_reported_committed_survive_sigkill(tmp_path):
    path = tmp_path / "j.sqlite"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    committed = []
    try:
        deadline = time.monotonic() + 30
        while len(committed) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            committed.append(line.strip())
        assert len(committed) >= 300, f"writer reported only {len(committed)} commits in 30 s"
        os.kill(child.pid, signal.SIGKILL)  # mid-run: it is still writing
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
    committed += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    assert child.returncode == -signal.SIGKILL
    assert len(committed) < 100_000, "writer finished before the kill"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    present = {row[0] for row in db.execute("SELECT id FROM journal")}
    assert set(committed) <= present
    db.close()
    with Journal(path) as journal:  # recovery: the last block written, big ints intact
        assert journal.last_block() >= len(committed) - 1
        last = committed[-1]
        assert journal.records(last)[0].amounts == [2**200 + int(last[2:])]


def test_in_flight_transactions_survive_a_reopen_and_leave_with_their_outcome(tmp_path):
    path = tmp_path / "j.sqlite"
    opp = {"id": "a", "pools": ["0x" + "01" * 20], "amount_in": 2**200, "zero_for_one": [True]}
    records = [opportunity("a"), PredictionRecord("a", 100, 0.9, 10**18),
               SimulationRecord("a", 100, False, None, None, error=f"boom {SECRET}")]
    with Journal(path) as journal:
        journal.hold("0xaa", 100, opp, records[:2])
        journal.hold("0xaa", 100, opp, records)  # again, with the block's later rows: replaces
        journal.hold("0xbb", 101, opp, records[:1])
        journal.release("0xbb")  # its send failed
    with Journal(path) as reopened:  # the submitter restarted
        (held,) = reopened.held()
        tx_hash, got_opp, block, got_records = held
        assert (tx_hash, got_opp, block) == ("0xaa", opp, 100)
        assert got_records[:2] == records[:2] and got_records[2].error == f"boom {REDACTED}"
        assert reopened.write(*got_records, OutcomeRecord("a", 100, "landed", 7, tx_hash), release=tx_hash) == 4
        assert reopened.held() == [] and reopened.records("a")[-1].tx_hash == "0xaa"
