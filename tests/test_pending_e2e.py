"""Backruns end to end on real parts: anvil with the mempool market, a local Ray with every actor and the
PendingWatcher, ZMQ between them; backruns appear in the query API while their triggers are pending."""
from __future__ import annotations

import time

import pytest
import ray
from web3 import HTTPProvider, Web3

from actors.demo import local_config, searcher_key_file, wait_for_block
from actors.launcher import ROLES, launch
from actors.ray_session import NAMESPACE
from scanner.serve.client import QueryClient
from scanner.sim.market import Market, MarketSpec

pytestmark = pytest.mark.ray


def test_pending_swaps_become_queryable_backruns_that_the_submitter_proves(local_ray, anvil, tmp_path):
    market = Market(Web3(HTTPProvider(anvil.url)), MarketSpec(seed=3, mempool=True, mempool_window_s=0.8))
    dep = market.deploy()
    config = local_config(anvil, dep, tmp_path / "journal.sqlite", searcher_key_file(tmp_path))
    pipeline = launch(config, symbols={addr: sym for sym, addr in dep.tokens.items()}, progress=False, pending=True)
    try:
        actor = ray.get_actor("pending-watcher", namespace=NAMESPACE)  # an explicit name, like every role
        assert ROLES["pending-watcher"].max_restarts == -1
        client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
        found: list[tuple[int, list[dict]]] = []  # (served block, its backruns) seen while the triggers wait

        def watch_pending() -> None:
            deadline = time.monotonic() + 0.7
            while time.monotonic() < deadline:
                top = client.top(n=100)
                backruns = [o for o in top.opportunities if o.get("trigger")]
                if backruns:
                    found.append((top.block, backruns))
                    return
                time.sleep(0.02)

        wait_for_block(client, market.w3.eth.block_number, timeout_s=20.0)
        for _ in range(6):
            summary = market.step(on_pending=watch_pending)
            wait_for_block(client, summary.number, timeout_s=10.0)
        market.step()
        time.sleep(1.0)
        stats = pipeline.stats()
        assert ray.get(actor.health.remote(), timeout=10)["status"] == "ok"
    finally:
        pipeline.stop()
    assert len(found) >= 3, (found, stats)
    for block, backruns in found:
        for o in backruns:
            assert o["block"] == block and o["trigger"].startswith("0x") and len(o["trigger"]) == 66
            assert o["net_profit"] > 0 and o["id"] not in {m["id"] for m in backruns if m is not o}
    watcher, aggregator, submitter = stats["pending-watcher"], stats["aggregator"], stats["submitter"]
    assert watcher["updates"] >= 10 and watcher["dropped"] == 0, watcher
    assert aggregator["pending"]["ranked"] >= 10, aggregator
    # The submitter proves what it reaches to the wei (on a loaded machine it skips to the newest ranking).
    assert submitter["backruns_exact"] >= 1 and submitter["backruns_sent"] >= 1, submitter
