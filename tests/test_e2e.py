"""End to end on real parts: anvil + the simulated market, a local Ray with every actor, ZMQ sockets."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import ray
from web3 import HTTPProvider, Web3

from actors.demo import local_config, searcher_key_file, wait_for_block
from actors.launcher import launch
from scanner.serve.client import QueryClient, Subscriber
from scanner.sim.market import Market, MarketSpec
from scanner.submit.calibrate import execute_fn
from scanner.submit.journal import Journal

from live import tagged_processes

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def live(request, local_ray, anvil, tmp_path):
    """A deployed market (V2 only, or with V3 pools when parametrized "v3") and the whole pipeline
    scanning it; everything stopped afterwards."""
    w3 = Web3(HTTPProvider(anvil.url))
    spec = MarketSpec.with_v3(seed=5) if getattr(request, "param", "v2") == "v3" else MarketSpec(seed=5)
    market = Market(w3, spec)
    dep = market.deploy()
    config = local_config(anvil, dep, tmp_path / "journal.sqlite", searcher_key_file(tmp_path))
    symbols = {addr: sym for sym, addr in dep.tokens.items()}
    pipeline = launch(config, symbols=symbols, progress=False)
    yield market, pipeline, config, w3
    pipeline.stop()


def _run_blocks(market, client, blocks):
    """Mine blocks one at a time, each once the previous one is ranked; returns (summary, top) pairs."""
    out = []
    for _ in range(blocks):
        summary = market.step()
        out.append((summary, wait_for_block(client, summary.number, timeout_s=10.0)))
    return out


@pytest.mark.parametrize("live", ["v3"], indirect=True)
def test_pipeline_ranks_every_gap_the_market_opened_and_proves_the_top(live):
    """On a market with V2 and V3 pools: mixed cycles are ranked, live V3 state is exact (the best
    opportunity of every block pays on chain exactly what was predicted)."""
    market, pipeline, config, w3 = live
    client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
    with Subscriber(pipeline.endpoints["publish"], timeout_s=10.0) as sub:
        time.sleep(0.5)  # PUB/SUB slow joiner: let the subscription reach the publisher
        ranked = _run_blocks(market, client, 12)
        first = ranked[0][0].number
        streamed = []
        while not streamed or streamed[-1] < ranked[-1][0].number:
            streamed.append(sub.recv().block)
    # The stream: one ranking per block, in order, none skipped.
    streamed = [b for b in streamed if b >= first]
    assert streamed == list(range(first, ranked[-1][0].number + 1))

    v3_factories = [d.factory for d in config.dexes if d.kind == "uniswap-v3"]
    matched = two_hop = mixed = 0
    for summary, top in ranked:
        assert top.block == summary.number
        truth = {frozenset((g.pool_buy.lower(), g.pool_sell.lower())) for g in summary.gaps}
        found = {frozenset(p.lower() for p in o["pools"]) for o in top.opportunities if len(o["pools"]) == 2}
        two_hop += len(found)
        # No false positives: every 2-pool opportunity is a gap the market really opened.
        assert found <= truth, (summary.number, found - truth)
        matched += len(found)
        mixed += sum(len(set(o["kinds"])) == 2 for o in top.opportunities)
        if top.opportunities:
            best = top.opportunities[0]
            fn = execute_fn(w3, config.submitter.executor, best, v3_factories=v3_factories)
            profit = fn.call({"from": market.searcher}, block_identifier=summary.number)
            assert profit == best["gross_profit"]  # to the wei
    # The gaps show up: most blocks carry some, and the ranking finds 2-pool ones among them.
    assert sum(1 for s, _ in ranked if s.gaps) >= 6
    assert matched >= 6 and mixed >= 6
    last = ranked[-1][1]
    if last.opportunities:  # `get` serves one opportunity of the current block with every number
        assert client.get(last.opportunities[0]["id"]) == last.opportunities[0]
    health = client.health()
    assert health.status == "ok", health.reasons


def test_submitter_journal_matches_predictions_to_the_wei(live):
    market, pipeline, config, _ = live
    client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
    submitter = pipeline.actors["submitter"]
    # Blocks until routes of both hop counts were simulated and the calibration reached the aggregator.
    for _ in range(40):
        _run_blocks(market, client, 1)
        stats = ray.get(submitter.stats.remote())
        if stats.get("simulated", 0) >= 5 and stats.get("gas_model"):
            break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ray.get(submitter.stats.remote()).get("gas_model"):
        time.sleep(0.2)
    stats = ray.get(submitter.stats.remote())
    assert stats["simulated"] >= 5 and stats["exact"] == stats["simulation_ok"] >= 5
    # Routes of two hop counts were measured: the aggregator now prices gas with that calibration.
    assert stats["gas_model"] and ray.get(pipeline.actors["aggregator"].stats.remote())["gas_model"] == stats["gas_model"]
    bundle = ray.get(pipeline.actors["submitter"].last_bundle.remote())
    assert bundle["method"] == "eth_sendBundle" and bundle["params"][0]["txs"][0].startswith("0x")
    # A block's rows are journaled once the outcome of the transaction it sent is known (at a later
    # block's turn, and the submitter runs behind the market): step on until that happened, bounded.
    with Journal(config.submitter.journal) as journal:
        for _ in range(10):
            if journal.last_block() is not None:
                break
            _run_blocks(market, client, 1)
            time.sleep(0.2)
        assert journal.last_block() is not None


@pytest.mark.parametrize("chains", [1, 2])
def test_demo_exits_by_itself_and_leaves_nothing_running(tmp_path, chains):
    """One chain (the mempool market and its backruns), then two at once: Ethereum's and OP-stack fee
    rules, one ranking whose rows name their chain, a submitter on each chain."""
    tag = f"ARBSCAN_TEST_TAG={uuid.uuid4().hex}"
    env = dict(os.environ, ARBSCAN_TEST_TAG=tag.split("=")[1], RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run([sys.executable, "-m", "actors.cli", "demo", "--blocks", "3", "--interval", "0.5",
                           "--chains", str(chains), "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ray dashboard: http://127.0.0.1:" in proc.stdout
    if chains == 1:
        assert proc.stdout.count("\nblock ") >= 3
    else:
        assert "chain id 31338, OP-stack fee rules" in proc.stderr
        assert proc.stdout.count("\nblocks main ") == 3
        # rows of the merged ranking name their chain; the best of each chain shows even when one
        # chain's gaps fill the whole top 10
        paths = re.findall(r"^\s*\d+ (\S+)\s+v[23]", proc.stdout, flags=re.M)  # the ranking rows' path column
        assert paths and all(p.split(":")[0] in {"main", "op"} and ":" in p for p in paths), proc.stdout[-3000:]
        best = [dict(re.findall(r"(main|op) ([+-]\d+\.\d+) ETH \(", line))
                for line in re.findall(r"^best per chain: .*$", proc.stdout, flags=re.M)]
        assert len(best) == 3 and any(b.keys() == {"main", "op"} for b in best), proc.stdout[-3000:]
        ranked = dict(re.findall(r"aggregator@(main|op): (\d+) blocks ranked", proc.stdout))
        assert ranked.keys() == {"main", "op"} and all(int(n) >= 3 for n in ranked.values()), ranked
        # a submitter per chain, each proving its own chain's rows on its own node
        proven = {c: (int(s), int(e)) for c, s, e in re.findall(r"submitter@(main|op): (\d+) simulated \((\d+) exact", proc.stdout)}
        assert proven.keys() == {"main", "op"} and all(s > 0 and e == s for s, e in proven.values()), proven
    deadline = time.monotonic() + 15
    while tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert tagged_processes(tag) == []


def test_new_heads_over_websocket_wake_the_watchers(local_ray, anvil, tmp_path):
    """With polling every 30 s, only the newHeads subscription can get each block ranked in time."""
    import dataclasses

    market = Market(Web3(HTTPProvider(anvil.url)), MarketSpec(seed=9))
    dep = market.deploy()
    config = local_config(anvil, dep, tmp_path / "journal.sqlite", searcher_key_file(tmp_path))
    config = dataclasses.replace(config, chain=dataclasses.replace(config.chain, poll_interval_s=30.0),
                                 submitter=dataclasses.replace(config.submitter, enabled=False))
    pipeline = launch(config, progress=False)
    try:
        client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
        wait_for_block(client, market.w3.eth.block_number, timeout_s=15.0)  # every shard bootstrapped
        for _ in range(3):
            summary = market.step()
            assert wait_for_block(client, summary.number, timeout_s=5.0).block == summary.number
    finally:
        pipeline.stop()
