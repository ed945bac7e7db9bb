"""`arbscan bench e2e`: from a block being mined to its ranking being answerable over the query API.

The whole product on one machine: anvil with a generated market of `pools` pools, a private
local Ray, every actor, real sockets. The naive way, measured in the same run on the same
chain: one process that reads every pool's reserves with one `getReserves` call each and
rescans every cycle from scratch per block.
"""
from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import ray
from web3 import HTTPProvider, Web3

from actors.demo import local_config, searcher_key_file
from actors.launcher import launch
from actors.ray_session import attach_ray
from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.dex.v2 import V2Pool
from scanner.gas.fees import next_base_fee
from scanner.rank.ranking import Ranker
from scanner.serve.client import QueryClient
from scanner.sim.market import Market, MarketSpec


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _naive_block_ms(w3: Web3, market: Market) -> float:
    """Per-pool RPC reads and a full rescan: what a simple single-process scanner does each block."""
    dep = market.deployment
    start = time.perf_counter()
    pools = []
    for p in dep.pools:
        r0, r1, _ = artifacts.at(w3, "UniswapV2Pair", p.address).functions.getReserves().call()
        pools.append(V2Pool(p.address.lower(), p.token0.lower(), p.token1.lower(), r0, r1, p.fee_bps))
    head = w3.eth.get_block("latest")
    gas_price = next_base_fee(head["baseFeePerGas"], head["gasUsed"], head["gasLimit"])
    Ranker(pools, {dep.base.lower(): Fraction(1)}, gas_price).full_rescan(head["number"])
    return (time.perf_counter() - start) * 1000


def run(pools: int = 1000, blocks: int = 50, seed: int = 0, naive_blocks: int = 10) -> dict:
    with tempfile.TemporaryDirectory(prefix="arbscan-bench-") as tmp, Anvil.start() as node:
        w3 = Web3(HTTPProvider(node.url))
        market = Market(w3, MarketSpec.generated(pools, seed))
        dep = market.deploy()
        config = local_config(node, dep, Path(tmp) / "journal.sqlite", searcher_key_file(Path(tmp)))
        config = dataclasses.replace(
            config, chain=dataclasses.replace(config.chain, poll_interval_s=0.01),
            submitter=dataclasses.replace(config.submitter, enabled=False))
        started_ray = not ray.is_initialized()
        if started_ray:
            attach_ray(None, config)
        pipeline = launch(config, progress=False)
        try:
            client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
            latencies: list[float] = []

            def wait_ranked(number: int) -> None:
                while True:
                    top = client.top(n=1)
                    if top.block is not None and top.block >= number:
                        latencies.append((time.monotonic() - market.last_mined_at) * 1000)
                        return
                    if time.monotonic() - market.last_mined_at > 10:
                        raise RuntimeError(f"block {number} not ranked within 10 s")
                    time.sleep(0.001)

            for _ in range(blocks + 3):
                market.step(on_mined=wait_ranked)
            latencies = latencies[3:]  # the first blocks warm up sockets and caches
            stats = pipeline.stats()
        finally:
            pipeline.stop()
            if started_ray:
                ray.shutdown()
        naive = []
        for _ in range(naive_blocks):
            market.step()
            naive.append(_naive_block_ms(w3, market))
    inference = stats.get("inference", {})
    p50 = statistics.median(latencies)
    return {
        "pools": len(dep.pools),
        "cycles": stats.get("aggregator", {}).get("cycles"),
        "blocks": len(latencies),
        "p50_ms": round(p50, 2),
        "p99_ms": round(_pct(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "inference_batch_mean": round(inference.get("batch_mean", 0.0), 1),
        "inference_model": inference.get("model"),
        "shard_timeouts": stats.get("aggregator", {}).get("shard_timeouts"),
        "naive_p50_ms": round(statistics.median(naive), 2),
        "speedup_p50": round(statistics.median(naive) / p50, 2),
    }
