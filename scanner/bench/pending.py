"""Benchmark: a pending swap first seen → its backruns ranked and queryable, at a steady offered rate.

Two processes joined by a real ZMQ PUSH/PULL over loopback, as the actors are: the watcher side takes
each pending swap (its router calldata, as the node returns it), decodes it, simulates it on its copy of
the mined state with the exact math and sends the `PendingUpdate`; the aggregator side ranks it with
`AggregatorCore.rank_pending` (a what-if of the mined state over the cycles through the swapped pool,
undone at once) and serves the block's ranking plus the best backruns from a `RankingStore`, as the
aggregator actor does (`ServedBackruns`). The latency of a swap ends when it is ranked and, if its
backruns are among the best served, the store that answers `top` and `get` holds them. The node's side (the
pending filter and `eth_getTransactionByHash`) is not in the figure: it is the RPC round trip of the
node one runs against.

The naive way, timed on the same market: apply the post-state, re-score every cycle
(`Ranker.full_rescan`) and put the state back, per pending swap.
"""
from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from collections import deque
from fractions import Fraction

import numpy as np
import zmq
from eth_abi import encode as abi_encode

from scanner.bench.scan import synthetic_market
from scanner.chain.pending_swaps import ROUTER_SWAP, SwapReverts, decode_swap, v2_after
from scanner.dex.pool import PoolInfo
from scanner.dex.v2 import V2Pool
from scanner.rank.aggregate import AggregatorCore, ServedBackruns, opportunity_dict
from scanner.rank.ranking import Ranker
from scanner.wire.messages import BlockUpdate, PendingUpdate, decode
from scanner.wire.query import RankingStore

BLOCK = 1
WETH = "weth"
GAS_PRICE = 20 * 10**9


def market(pools: int, seed: int) -> dict[int, PoolInfo]:
    """The scan benchmark's synthetic V2 market, with 20-byte pool addresses (calldata carries them)."""
    found, _ = synthetic_market(pools, seed)
    return {i: PoolInfo(f"0x{i + 1:040x}", p.token0.lower(), p.token1.lower(), p.reserve0, p.reserve1, "bench",
                        p.fee_bps)
            for i, p in enumerate(found) if isinstance(p, V2Pool)}


def pending_swaps(pools: dict[int, PoolInfo], n: int, seed: int) -> list[bytes]:
    """`n` router swaps of random pools, each 0.5% to 5% of the reserve it sells into (noise traders' sizes)."""
    rng = np.random.default_rng(seed + 7)
    ids = list(pools)
    out = []
    for _ in range(n):
        p = pools[ids[int(rng.integers(len(ids)))]]
        z41 = bool(rng.random() < 0.5)
        size = max(1, int((p.reserve0 if z41 else p.reserve1) * rng.uniform(0.005, 0.05)))
        out.append(ROUTER_SWAP + abi_encode(["address", "bool", "uint16", "uint256", "uint256", "address"],
                                            [p.address, z41, p.fee_bps, size, 0, "0x" + "11" * 20]))
    return out


def _aggregator(pools: dict[int, PoolInfo], conn, expected: int) -> None:
    """The aggregator side: ingest, rank, serve; sends back each swap's latency (ms) and the backruns found."""
    core = AggregatorCore(pools, [WETH], shards=1, top_n=10)
    store = RankingStore()
    served = ServedBackruns()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind("tcp://127.0.0.1:*")
    conn.send(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    mined: list[dict] = []
    seen: deque[float] = deque()  # first-seen times of the queued updates, in queue order
    latencies: list[float] = []
    found = 0
    while len(latencies) < expected:
        if not sock.poll(1000):
            break
        while sock.poll(0):
            msg = decode(sock.recv())
            if isinstance(msg, BlockUpdate):
                mined = [opportunity_dict(o) for rb in core.on_block(msg) for o in rb.opportunities]
                store.replace(msg.number, mined)
            elif isinstance(msg, PendingUpdate):
                core.on_pending(msg)
                seen.append(msg.seen_at)
        before = sum(core.pending_counts[k] for k in ("ranked", "stale", "invalid"))
        core.rank_pending(budget_s=0.05)
        done = sum(core.pending_counts[k] for k in ("ranked", "stale", "invalid")) - before
        if done:
            backruns, changed = served.update(core, core.last_ranked, opportunity_dict)
            if changed:
                store.replace(core.last_ranked, mined + backruns)
            now = time.time()
            found = max(found, len(core.backruns))
            latencies += [(now - seen.popleft()) * 1e3 for _ in range(done)]
    conn.send((latencies, found, dict(core.pending_counts)))


def run(pools: int = 1000, rate: float = 200.0, seconds: float = 5.0, seed: int = 0, naive_sample: int = 20) -> dict:
    """Offer `rate` pending swaps a second for `seconds` on a `pools`-pool market; percentiles of first seen →
    queryable, and the naive re-scan's median on `naive_sample` of the same swaps."""
    infos = market(pools, seed)
    n = int(rate * seconds)
    swaps = pending_swaps(infos, n, seed)
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=_aggregator, args=(infos, child, n), daemon=True)
    proc.start()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.linger = 1000
    push.connect(parent.recv())
    ids = {p.address: i for i, p in infos.items()}
    reserves = {p.address: (p.reserve0, p.reserve1) for p in infos.values()}
    fees = {p.address: p.fee_bps for p in infos.values()}
    push.send(BlockUpdate(0, BLOCK, "0x01", "0x00", GAS_PRICE, 0, 30_000_000, 0, {}).encode())
    time.sleep(1.0)  # the aggregator ranks the mined block first
    start = time.monotonic()
    for k, data in enumerate(swaps):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        seen = time.time()
        swap = decode_swap(data, ids)
        if swap is None:
            raise RuntimeError("the benchmark's own swap did not decode")
        try:
            post = {ids[swap.pool]: v2_after(swap, reserves[swap.pool], fees[swap.pool])}
        except SwapReverts:
            post = {}
        push.send(PendingUpdate(f"0x{k:064x}", "0x" + "22" * 20, k, 10**9, 3 * 10**9, BLOCK, seen, post).encode())
    offered_s = time.monotonic() - start
    latencies, found, counts = parent.recv()
    proc.join(10)
    push.close()
    ctx.term()
    return {
        "pools": len(infos),
        "pending": rate,
        "offered": n,
        "offered_rate": round(n / offered_s, 1),
        "ranked": len(latencies),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "max_ms": round(max(latencies), 3),
        "backruns_found": found,
        "shed": counts.get("shed", 0),
        "naive_p50_ms": _naive(infos, swaps[:naive_sample], ids, reserves, fees),
    }


def _naive(infos: dict[int, PoolInfo], swaps: list[bytes], ids, reserves, fees) -> float:
    """Per pending swap: its post-state applied, every cycle re-scored and ranked, the state put back."""
    ranker = Ranker([V2Pool(p.address, p.token0, p.token1, p.reserve0, p.reserve1, p.fee_bps) for p in infos.values()],
                    {WETH: Fraction(1)}, GAS_PRICE, top_n=10)
    times = []
    for data in swaps:
        swap = decode_swap(data, ids)
        if swap is None:
            continue
        started = time.perf_counter()
        try:
            post = v2_after(swap, reserves[swap.pool], fees[swap.pool])
        except SwapReverts:
            continue
        pool = ranker.graph.pools[ranker.graph.slots[swap.pool]]
        assert isinstance(pool, V2Pool)
        pool.update(*post)
        ranker.full_rescan(BLOCK)
        pool.update(*reserves[swap.pool])
        times.append((time.perf_counter() - started) * 1e3)
    return round(statistics.median(times), 3)
