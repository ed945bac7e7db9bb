"""`arbscan bench e2e`: from a block being mined to its ranking being answerable over the query API.

The whole product on one machine: anvil with a generated market of `pools` pools, a private
local Ray, every actor, real sockets. The naive way, measured in the same run on the same
chain: one process that reads every pool's reserves with one `getReserves` call each and
rescans every cycle from scratch per block.

With `chains` > 1 (`run_chains`): that many anvils (chain ids 31337, 31338, ...), a market of
`pools` pools on each; each chain's latency in one pipeline serving all of them, against the same
chain run alone in the same bench. Chains keep their own clocks, so their blocks seldom meet: each
round mines the chains' blocks in turn, the next once the previous is served and its market is
quiet (`p50_ms`; all of every chain's actors run all along). The worst case, every chain's block at
the same moment, is measured too (`simultaneous_p50_ms`: the chains then share the CPU for one block).
"""
from __future__ import annotations

import dataclasses
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
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
from scanner.cluster.placement import actor_name, chain_suffix
from scanner.config import LOCAL_CHAIN_ID, Config
from scanner.dex.v2 import V2Pool
from scanner.gas.fees import next_base_fee
from scanner.rank.ranking import Ranker
from scanner.serve.client import Subscriber
from scanner.sim.market import Market, MarketSpec


def states_kept(pools: int) -> int:
    """Past states anvil keeps (the pipeline reads a few blocks back). Each is a full copy of the chain
    state in anvil's memory: 300 of a 10,000-pool market's grew anvil past 7 GB during its set-up."""
    return max(32, 300_000 // pools)


def bench_market(pools: int, seed: int) -> MarketSpec:
    """The generated market, its blocks large enough for its price oracle's update: at 10,000 pools
    the update of 1,251 tokens' prices alone takes 31M gas, over the 30M default (the scanner's work
    per block does not depend on the gas limit; the market fills blocks in proportion to it)."""
    spec = MarketSpec.generated(pools, seed)
    return dataclasses.replace(spec, gas_limit=max(spec.gas_limit, 4 * Market.oracle_gas(spec)))


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


# Several chains' watchers wake on their node's newHeads (the configs name its WebSocket), so each
# polls only as a fallback: at the one-chain bench's 10 ms, 2 chains' 6 polling loops would spend
# the CPU the chains share on asking for heads that have not moved.
CHAINS_POLL_S = 0.1


def _bench_config(node: Anvil, market: Market, tmp: Path, poll_interval_s: float = 0.01) -> Config:
    """The local market's config, polling fast, without the submitter."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = local_config(node, market.deploy(), tmp / "journal.sqlite", searcher_key_file(tmp))
    return dataclasses.replace(config, chain=dataclasses.replace(config.chain, poll_interval_s=poll_interval_s),
                               submitter=dataclasses.replace(config.submitter, enabled=False))


@dataclasses.dataclass
class Latencies:
    """Per block, in ms: mined → served (`total`), and of it mined → the aggregator had a first shard's
    update (`watch`: head seen, logs read and decoded, sent) and that update → served (`aggregate`: the
    other shards, re-score, rank, publish). The parts are read from the aggregator after the block
    (monotonic clocks: one clock for all processes on Linux); a block the aggregator had already
    passed by then has no parts."""

    total: list[float] = dataclasses.field(default_factory=list)
    watch: list[float] = dataclasses.field(default_factory=list)
    aggregate: list[float] = dataclasses.field(default_factory=list)

    def after_warm_up(self, blocks: int = 3) -> Latencies:
        return Latencies(self.total[blocks:], self.watch[blocks:], self.aggregate[blocks:])


def _timed(config: Config, markets: dict[str, Market], blocks: int,
           in_turn: bool = True) -> tuple[dict[str, Latencies], dict]:
    """Launch `config`, then `blocks` rounds (3 more to warm up) that mine one block of every market,
    in turn or all at once, each timed from mined to served for its chain; per chain latencies, and
    stats. Served is when the top-N stream carries the block's ranking: the query server publishes
    it the moment it serves it, and waiting on the stream adds no polling load."""
    pipeline = launch(config, progress=False)
    latencies = {name: Latencies() for name in markets}
    aggregators = {name: pipeline.actors[actor_name("aggregator", chain_suffix(name, len(markets)))] for name in markets}
    rounds = threading.Barrier(len(markets))
    turn = threading.Condition()
    upcoming = [0]  # whose turn it is (in turn)
    errors: list[BaseException] = []

    def step(index: int, market: Market, wait_ranked) -> None:
        if not in_turn:
            rounds.wait(timeout=60)
            market.step(on_mined=wait_ranked)
            return
        with turn:
            if not turn.wait_for(lambda: upcoming[0] == index or bool(errors), timeout=60) or errors:
                raise RuntimeError("another chain's thread stopped")
        market.step(on_mined=wait_ranked)
        with turn:
            upcoming[0] = (index + 1) % len(markets)
            turn.notify_all()

    def follow(index: int, name: str, market: Market) -> None:
        # one per thread (a socket is not shared); a chain's own topic when there are several
        stream = Subscriber(pipeline.endpoints["publish"], timeout_s=10.0, chain=name if len(markets) > 1 else None)

        def wait_ranked(number: int) -> None:
            while True:
                top = stream.recv()  # QueryTimeout after 10 s without one
                if top.block is not None and top.block >= number:
                    mined = market.last_mined_at
                    latencies[name].total.append((time.monotonic() - mined) * 1000)
                    stats = ray.get(aggregators[name].stats.remote())
                    if stats["block"] == number:
                        latencies[name].watch.append((stats["last_received_at"] - mined) * 1000)
                        latencies[name].aggregate.append(stats["last_rank_latency_ms"])
                    return

        try:
            time.sleep(0.5)  # PUB/SUB slow joiner: the subscription reaches the publisher first
            for _ in range(blocks + 3):
                step(index, market, wait_ranked)
        except BaseException as e:  # reported by the caller; the barrier and the turns let the others out
            errors.append(e)
            rounds.abort()
            with turn:
                turn.notify_all()
        finally:
            stream.close()

    try:
        threads = [threading.Thread(target=follow, args=(i, *item)) for i, item in enumerate(markets.items())]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        stats = pipeline.stats()
    finally:
        pipeline.stop()
    return {name: values.after_warm_up() for name, values in latencies.items()}, stats


def run_chains(pools: int = 1000, blocks: int = 50, seed: int = 0, chains: int = 2) -> dict:
    """Each of `chains` chains alone, then all of them in one pipeline (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="arbscan-bench-") as tmp, ExitStack() as stack:
        names = [f"chain{i}" for i in range(chains)]
        specs = [bench_market(pools, seed + i) for i in range(chains)]
        nodes = [stack.enter_context(Anvil.start(chain_id=LOCAL_CHAIN_ID + i, states_kept=states_kept(pools),
                                                 gas_limit=spec.gas_limit))
                 for i, spec in enumerate(specs)]
        markets = {name: Market(Web3(HTTPProvider(node.url)), spec) for name, node, spec in zip(names, nodes, specs)}
        configs = [_bench_config(node, market, Path(tmp) / name, CHAINS_POLL_S)
                   for node, (name, market) in zip(nodes, markets.items())]
        chain_specs = [dataclasses.replace(c.networks()[0], name=name, chain_id=LOCAL_CHAIN_ID + i)
                       for i, (c, name) in enumerate(zip(configs, names))]
        started_ray = not ray.is_initialized()
        if started_ray:
            attach_ray(None, configs[0])
        try:
            alone = {name: _timed(dataclasses.replace(config, chains=[spec]), {name: markets[name]}, blocks)[0][name]
                     for name, config, spec in zip(names, configs, chain_specs)}
            timed, stats = _timed(dataclasses.replace(configs[0], chains=chain_specs), markets, blocks)
            single = {name: t.total for name, t in alone.items()}
            together = {name: t.total for name, t in timed.items()}
            simultaneous = {name: t.total for name, t in
                            _timed(dataclasses.replace(configs[0], chains=chain_specs), markets, blocks, in_turn=False)[0].items()}
        finally:
            if started_ray:
                ray.shutdown()
    per_chain = {name: {"p50_ms": round(statistics.median(together[name]), 2),
                        "p99_ms": round(_pct(together[name], 99), 2),
                        "single_p50_ms": round(statistics.median(single[name]), 2),
                        "simultaneous_p50_ms": round(statistics.median(simultaneous[name]), 2),
                        # the parts (see Latencies), together and alone: where a chain's extra time goes
                        "watch_p50_ms": round(_pct(timed[name].watch, 50), 2),
                        "aggregate_p50_ms": round(_pct(timed[name].aggregate, 50), 2),
                        "single_watch_p50_ms": round(_pct(alone[name].watch, 50), 2),
                        "single_aggregate_p50_ms": round(_pct(alone[name].aggregate, 50), 2)} for name in names}
    everything = [v for values in together.values() for v in values]
    return {
        "pools_per_chain": pools,
        "blocks": blocks,
        "p50_ms": round(statistics.median(everything), 2),
        "p99_ms": round(_pct(everything, 99), 2),
        "inference_batch_mean": round(stats.get("inference", {}).get("batch_mean", 0.0), 1),
        "within_20pct_of_single": all(c["p50_ms"] <= 1.2 * c["single_p50_ms"] for c in per_chain.values()),
        "chains": per_chain,
    }


def run(pools: int = 1000, blocks: int = 50, seed: int = 0, naive_blocks: int = 10) -> dict:
    spec = bench_market(pools, seed)
    with tempfile.TemporaryDirectory(prefix="arbscan-bench-") as tmp, \
            Anvil.start(states_kept=states_kept(pools), gas_limit=spec.gas_limit) as node:
        w3 = Web3(HTTPProvider(node.url))
        market = Market(w3, spec)
        config = _bench_config(node, market, Path(tmp))
        dep = market.deployment
        started_ray = not ray.is_initialized()
        if started_ray:
            attach_ray(None, config)
        try:
            timed, stats = _timed(config, {"main": market}, blocks)
        finally:
            if started_ray:
                ray.shutdown()
        naive = []
        for _ in range(naive_blocks):
            market.step()
            naive.append(_naive_block_ms(w3, market))
    inference = stats.get("inference", {})
    latencies = timed["main"]
    p50 = statistics.median(latencies.total)
    return {
        "pools": len(dep.pools),
        "cycles": stats.get("aggregator", {}).get("cycles"),
        "blocks": len(latencies.total),
        "p50_ms": round(p50, 2),
        "p99_ms": round(_pct(latencies.total, 99), 2),
        "max_ms": round(max(latencies.total), 2),
        "watch_p50_ms": round(_pct(latencies.watch, 50), 2),
        "aggregate_p50_ms": round(_pct(latencies.aggregate, 50), 2),
        "parts_of_blocks": len(latencies.watch),
        "inference_batch_mean": round(inference.get("batch_mean", 0.0), 1),
        "inference_model": inference.get("model"),
        "shard_timeouts": stats.get("aggregator", {}).get("shard_timeouts"),
        "naive_p50_ms": round(statistics.median(naive), 2),
        "speedup_p50": round(statistics.median(naive) / p50, 2),
    }
