"""`arbscan bench replay`, the parts without Ray: the benchmark's chain and the in-process replay.

The chain: anvil with a generated market of `pools` V2 pools whose noise traders make about 30 pool
logs per block (a swap is a Sync and a Swap). The Ray side (`actors.history.bench_replay`) follows
those blocks live with the whole pipeline, captures them and replays the capture through a fresh
pipeline; `cores_blocks_per_s` here is the floor under that: the watcher and aggregator cores over
the same store in one process, no sockets, no inference.
"""
from __future__ import annotations

import time

from web3 import HTTPProvider, Web3

from scanner.chain.anvil import Anvil
from scanner.chain.shard import PoolWatcherCore
from scanner.history.replay import StoreSource, pool_infos
from scanner.history.store import Capture
from scanner.rank.aggregate import AggregatorCore
from scanner.sim.market import Market, MarketSpec

NOISE_TRADES_PER_BLOCK = 6.0  # with the competitors' arbitrages, ~30 pool logs per block


def market(node: Anvil, pools: int, seed: int) -> Market:
    """The benchmark's market, deployed on `node`."""
    m = Market(Web3(HTTPProvider(node.url, request_kwargs={"timeout": 60})),
               MarketSpec.generated(pools, seed, noise_trades_per_block=NOISE_TRADES_PER_BLOCK))
    m.deploy()
    return m


def logs_per_block(capture: Capture) -> float:
    return capture.logs().num_rows / max(1, capture.last_block - capture.first_block + 1)


def cores_blocks_per_s(capture: Capture, base_tokens: list[str], max_hops: int, shards: int = 2) -> float:
    """Blocks per second of `shards` watcher cores and the aggregator core (heuristic risk, cycles of up to
    `max_hops` as the pipeline ranks them) over the store, in one process: what the pipeline's sockets,
    inference and actors add comes on top."""
    pools = dict(enumerate(pool_infos(capture)))
    sources = [StoreSource(capture) for _ in range(shards)]
    watchers = [PoolWatcherCore(s, {i: p for i, p in pools.items() if i % shards == k}, k) for k, s in enumerate(sources)]
    core = AggregatorCore(pools, base_tokens, shards, max_hops=max_hops)
    for w in watchers:
        core.on_block(w.bootstrap())
    started = time.perf_counter()
    for number in range(capture.first_block, capture.last_block + 1):
        for source, watcher in zip(sources, watchers, strict=True):
            source.release(number)
            for message in watcher.poll().messages:
                core.on_block(message)
    return (capture.last_block - capture.first_block + 1) / (time.perf_counter() - started)
