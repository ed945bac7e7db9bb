"""Security on real parts: the searcher's key never leaves memory, nothing is broadcast off the local chain.

The query socket's refusal to bind off loopback without CURVE keys is tested where the socket is
(tests/test_queryserver.py::test_off_loopback_without_curve_is_refused) and the config gate in
tests/test_config.py; this file does not repeat them.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
import ray
from eth_account import Account

from scanner.chain.anvil import searcher_key_file
from scanner.chain.rpc import ChainClient
from scanner.errors import ArbscanError
from scanner.submit.journal import Journal
from scanner.submit.submitter import BroadcastRefused, Simulation, SubmitterCore, load_key

from live import Live

EXECUTOR = "0x" + "5e" * 20  # no code needed: nothing here may get as far as running it
OPP = {"id": "feed", "pools": ["0x" + "01" * 20, "0x" + "02" * 20], "zero_for_one": [True, False],
       "fees_bps": [30, 30], "amount_in": 10**18}


def _account(tmp_path: Path):
    key_file = searcher_key_file(tmp_path)
    return key_file, load_key(None, str(key_file))


def _nothing_sent(url: str, address: str) -> bool:
    client = ChainClient(url)
    pool = client.rpc("txpool_status")
    return client.w3.eth.get_transaction_count(address, "pending") == 0 and int(pool["pending"], 16) == 0 \
        and int(pool["queued"], 16) == 0


def test_submitter_refuses_to_send_on_any_chain_but_the_local_one(anvil_factory, tmp_path):
    mainnet = anvil_factory(chain_id=1)
    _, account = _account(tmp_path)
    client = ChainClient(mainnet.url)
    with Journal(tmp_path / "journal.sqlite") as journal:
        with pytest.raises(BroadcastRefused, match="chain 1"):
            SubmitterCore(client, EXECUTOR, account, journal, send=True)
        # Simulating is allowed; and if `send` were flipped on anyway, the guard before the send refuses.
        core = SubmitterCore(client, EXECUTOR, account, journal, send=False)
        core.send = True
        with pytest.raises(BroadcastRefused, match="refusing to broadcast on chain 1"):
            core._submit(OPP, client.block_number(), Simulation(True, 1, 100_000))
        assert core.stats.sent == 0 and core.stats.last_bundle  # the bundle was built, never sent
        assert journal.held() == []  # refused before anything was held for sending
    assert _nothing_sent(mainnet.url, account.address)


def test_broadcast_guard_rechecks_the_node_before_every_send(anvil_factory, tmp_path):
    """The node behind the configured URL changes chains under a running submitter: it stops sending."""
    local = anvil_factory()
    _, account = _account(tmp_path)
    client = ChainClient(local.url, max_retries=1)
    with Journal(tmp_path / "journal.sqlite") as journal:
        core = SubmitterCore(client, EXECUTOR, account, journal, send=True)
        core.broadcast_guard()  # chain 31337: allowed
        local.stop()
        mainnet = anvil_factory(port=local.port, chain_id=1)
        with pytest.raises(BroadcastRefused, match="chain 1"):
            core.broadcast_guard()
        with pytest.raises(BroadcastRefused):
            core._submit(OPP, client.block_number(), Simulation(True, 1, 100_000))
        assert journal.held() == []
    assert _nothing_sent(mainnet.url, account.address)


def test_a_bad_key_is_refused_without_echoing_it(tmp_path):
    secret = "ab" * 31 + "zz"  # key-shaped, not hex
    for env, path in ((secret, None), (None, tmp_path / "bad.key")):
        if path:
            path.write_text(secret)
        with pytest.raises(ArbscanError) as e:
            load_key(env, str(path) if path else None)
        assert secret not in str(e.value) and "ab" * 31 not in repr(e.value)
    with pytest.raises(ArbscanError, match="no private key"):
        load_key(None, None)


def _run(live: Live, blocks: int) -> None:
    for _ in range(blocks):
        live.step()


def _wait_submitter(pipeline, key: str, at_least: int, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    stats = {}
    while time.monotonic() < deadline:
        stats = ray.get(pipeline.actors["submitter"].stats.remote())
        if stats.get(key, 0) >= at_least:
            break
        time.sleep(0.2)
    return stats


def _journal_rows(path: Path) -> list[tuple[str, str, dict]]:
    with sqlite3.connect(path) as db:
        return [(oid, stage, json.loads(data)) for oid, stage, data in db.execute("SELECT id, stage, data FROM journal")]


@pytest.mark.ray
def test_a_pipeline_on_mainnet_chain_id_simulates_and_never_sends(local_ray, anvil_factory, tmp_path):
    node = anvil_factory(chain_id=1)
    live = Live(node, tmp_path, chain_id=1)
    market, config, pipeline = live.market, live.config, live.pipeline
    try:
        searcher = market.searcher
        nonce = market.w3.eth.get_transaction_count(searcher, "pending")
        pid = ray.get(pipeline.actors["submitter"].health.remote())["pid"]
        _run(live, 8)
        stats = _wait_submitter(pipeline, "simulated", 3)
        health = ray.get(pipeline.actors["submitter"].health.remote())
        bundle = ray.get(pipeline.actors["submitter"].last_bundle.remote())
    finally:
        live.close()
    # It ran (no crash loop: same process, healthy), simulated and built bundles, and sent nothing.
    assert health["status"] == "ok" and health["pid"] == pid, health
    assert stats["chain_id"] == 1 and stats["sending"] is False and stats["simulated"] >= 3, stats
    assert stats["sent"] == 0 and bundle.get("method") == "eth_sendBundle"
    assert market.w3.eth.get_transaction_count(searcher, "pending") == nonce
    outcomes = [data["status"] for _, stage, data in _journal_rows(Path(config.submitter.journal)) if stage == "outcome"]
    assert outcomes and set(outcomes) == {"not_sent"}


def _files_holding(root: Path, needles: list[bytes]) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(path)
    return found


@pytest.mark.ray
def test_the_private_key_never_reaches_logs_or_the_journal(local_ray, anvil, tmp_path):
    live = Live(anvil, tmp_path)
    config, key_file, pipeline = live.config, live.key_file, live.pipeline
    try:
        _run(live, 10)
        stats = _wait_submitter(pipeline, "sent", 2)
        # A submitter crash and restart runs the start-up and error paths with the key loaded too.
        ray.kill(pipeline.actors["submitter"], no_restart=False)
        _run(live, 4)
        for _ in range(15):  # rows land once a block's outcome is known; a restart can delay that
            if live.journal.exists() and _journal_rows(live.journal):
                break
            _run(live, 1)
    finally:
        live.close()
    assert stats["sent"] >= 2 and stats["simulation_ok"] >= 2, stats  # the key really signed transactions
    key = Account.from_key(key_file.read_text().strip()).key
    needles = [key.hex().encode(), key.hex().upper().encode(), key]
    assert _files_holding(key_file.parent, needles) == [key_file]  # the search finds it where it is
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    logs = [p for p in session.rglob("*") if p.is_file()]
    assert len(logs) > 10 and any(p.suffix in (".out", ".err", ".log") and p.stat().st_size for p in logs)
    assert _files_holding(session, needles) == []
    journal = Path(config.submitter.journal)
    assert _journal_rows(journal)  # it did journal
    assert _files_holding(journal.parent, needles) == [key_file]  # journal, -wal and -shm hold no key
