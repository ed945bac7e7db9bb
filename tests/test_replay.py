"""`arbscan replay` on real parts: a live run of the simulated market (V2 and V3 pools) through the whole
Ray pipeline, captured with `arbscan capture`'s code, then replayed from the store through a fresh Ray
pipeline: every block's served ranking is the same, field for field.

What makes the two runs comparable, exactly:
- risk: both rank with the heuristic risk model (`launch(lstm_risk=False)`), a function of the pools'
  state; the LSTM still runs in both pipelines, but its predictions arrive when inference is done, so a
  ranking that used them would depend on timing, not on the chain;
- gas: the replay has no fee history, so it prices gas at the next base fee with no tip; the live gas
  oracle reads the 0th tip percentile of the last block, and every market block holds the price feed's
  update, which pays no tip: 0 as well. The submitter (whose gas calibration would reach the
  aggregator at some moment) is off;
- timing: the live run mines a block only once the previous one is served, the replay releases a block
  only once the previous one is published, and no shard times out in either. A second replay with eight
  blocks in flight serves the same: the aggregator ranks blocks in order, each on its own updates.
"""
from __future__ import annotations

import dataclasses

import pytest
from web3 import HTTPProvider, Web3

from actors.demo import local_config
from actors.history import ReplayReport, run_replay, wait_served
from actors.launcher import launch
from scanner.chain.anvil import searcher_key_file
from scanner.chain.rpc import ChainClient
from scanner.history.capture import capture
from scanner.serve.client import QueryClient
from scanner.sim.market import Market, MarketSpec

pytestmark = pytest.mark.ray
BLOCKS = 30
FIELDS = ("id", "pools", "zero_for_one", "amount_in", "amounts", "gross_profit", "gas_price", "gas_cost", "net_profit",
          "success_probability", "expected_slippage", "expected_value")


def _fields(served: list[dict]) -> list[tuple[int, list[tuple]]]:
    return [(top["block"], [tuple(str(o[k]) for k in FIELDS) for o in top["opportunities"]]) for top in served]


def test_a_replayed_capture_serves_the_rankings_the_live_run_served(local_ray, anvil, tmp_path):
    w3 = Web3(HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
    market = Market(w3, MarketSpec.with_v3(seed=5))
    dep = market.deploy()
    market.step()  # the state block: a market block (its tips are those of every later block)
    config = local_config(anvil, dep, tmp_path / "journal.sqlite", searcher_key_file(tmp_path))
    config = dataclasses.replace(config, submitter=dataclasses.replace(config.submitter, enabled=False),
                                 gas=dataclasses.replace(config.gas, history_blocks=1, percentiles=[0.0, 0.0, 0.0]))
    state_block = w3.eth.block_number
    pipeline = launch(config, lstm_risk=False, progress=False)
    try:
        with QueryClient(pipeline.endpoints["query"], timeout_s=5.0) as client:
            live = [wait_served(client, state_block, 60.0)]
            for _ in range(BLOCKS):
                live.append(wait_served(client, market.step().number, 15.0))
        live_timeouts = pipeline.stats()["aggregator"]["shard_timeouts"]
    finally:
        pipeline.stop()
    assert live_timeouts == 0

    store = tmp_path / "capture"
    capture(ChainClient(anvil.url), config.dexes, state_block + 1, w3.eth.block_number, str(store), progress=False)
    report: ReplayReport = run_replay(config, str(store), lstm_risk=False, progress=False)

    assert report.shard_timeouts == 0 and report.blocks == BLOCKS and report.first == state_block
    assert [t["block"] for t in report.served] == [t["block"] for t in live] == list(range(state_block, state_block + BLOCKS + 1))
    assert sum(len(t["opportunities"]) for t in live) >= BLOCKS  # there was something to rank
    assert any("uniswap-v3" in o["kinds"] for t in live for o in t["opportunities"])
    assert _fields(report.served) == _fields(live)

    # Eight blocks in flight: the stages overlap, and the aggregator still ranks each block on its own updates.
    windowed = run_replay(config, str(store), window=8, lstm_risk=False, progress=False)
    assert windowed.shard_timeouts == 0 and _fields(windowed.served) == _fields(live)
