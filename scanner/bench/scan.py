"""Benchmark: re-score and rank after one block, incremental and vectorised, against the
straightforward way (every cycle, every block, exact integer ternary search in pure Python).

The market is synthetic but shaped like mainnet V2: a few hundred tokens around a handful of
base tokens, several DEX fees, 6-, 8- and 18-decimal tokens, pool depths over six orders of
magnitude, most pools priced within fees of each other and a few with real gaps. With
`v3_share`, that share of the pools are Uniswap V3 pools at the same price and depth (a few
concentrated positions around it), moved each block by an exact swap.
"""
from __future__ import annotations

import math
import random
import resource
import statistics
import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from scanner.bench.v3 import random_v3_pool
from scanner.dex.pool import Pool, V3State
from scanner.dex.v2 import MAX_RESERVE, V2Pool, amount_out
from scanner.dex.v3 import V3Pool
from scanner.gas.fees import GasModel, gas_cost_in_token
from scanner.rank.ranking import Ranker

# (symbol, decimals, ETH per whole token)
BASE_TOKENS = (("WETH", 18, 1.0), ("USDC", 6, 1 / 3000), ("USDT", 6, 1 / 3000), ("WBTC", 8, 20.0), ("DAI", 18, 1 / 3000))
DEX_FEES_BPS = (30, 25, 5, 100, 20, 30)  # one V2-style DEX per entry
GAS_PRICE = 20 * 10**9


def synthetic_market(pools: int, seed: int, v3_share: float = 0.0) -> tuple[list[Pool], dict[str, Fraction]]:
    """`pools` pools (a `v3_share` of them V3) and the base tokens' token-per-ETH rates."""
    rng = np.random.default_rng(seed)
    v3_rng = random.Random(seed)
    tokens = [(s, d, p) for s, d, p in BASE_TOKENS]
    for i in range(max(50, pools // 33)):
        decimals = int(rng.choice([18, 6, 8, 12], p=[0.7, 0.15, 0.1, 0.05]))
        tokens.append((f"T{i:04d}", decimals, float(10 ** rng.uniform(-7, 1))))
    n_base = len(BASE_TOKENS)
    popularity = 1.0 / np.arange(1, len(tokens) - n_base + 1) ** 0.8
    popularity /= popularity.sum()

    pairs: dict[tuple[int, int], int] = {}  # token indices → number of DEXes listing the pair

    def list_pair(a: int, b: int, dexes: int) -> None:
        if a != b:
            key = (min(a, b), max(a, b))
            pairs[key] = max(pairs.get(key, 0), min(dexes, len(DEX_FEES_BPS)))

    for a in range(n_base):
        for b in range(a + 1, n_base):
            list_pair(a, b, len(DEX_FEES_BPS))
    for t in range(n_base, len(tokens)):
        list_pair(0, t, 1 + rng.geometric(0.45))
        for base, chance in ((1, 0.5), (2, 0.3), (3, 0.15), (4, 0.2)):
            if rng.random() < chance:
                list_pair(base, t, rng.geometric(0.6))
    while sum(pairs.values()) < pools:
        a, b = n_base + rng.choice(len(popularity), size=2, p=popularity)
        list_pair(int(a), int(b), rng.geometric(0.6))

    result: list[Pool] = []
    for (a, b), dexes in pairs.items():
        base_pair = b < n_base
        for dex in rng.permutation(len(DEX_FEES_BPS))[:dexes]:
            if len(result) == pools:
                break
            depth_eth = 10 ** (rng.uniform(3, 5) if base_pair else rng.uniform(-1, 4.5))
            gap = rng.normal(0, 0.002) if rng.random() > 0.03 else rng.choice([-1, 1]) * rng.uniform(0.01, 0.05)
            reserves = [depth_eth / tokens[t][2] * 10 ** tokens[t][1] for t in (a, b)]
            reserves[1] *= 1 + gap
            r0, r1 = (min(max(int(r), 1), MAX_RESERVE) for r in reserves)
            name = f"0xpool{len(result):05d}"
            if v3_rng.random() < v3_share:
                result.append(random_v3_pool(v3_rng, name, tokens[a][0], tokens[b][0], r1 / r0, r0))
            else:
                result.append(V2Pool(name, tokens[a][0], tokens[b][0], r0, r1, DEX_FEES_BPS[dex]))
    bases = {s: Fraction(10**d, 10**18) / Fraction(p).limit_denominator(10**12) for s, d, p in BASE_TOKENS}
    return result, bases


def block_updates(pools: list[Pool], changed: int, rng: np.random.Generator) -> dict[str, tuple]:
    """New states for `changed` random pools: swaps that move the price a little, and now and
    then liquidity coming or going (V2); an exact swap of a fraction of the virtual reserve (V3)."""
    updates: dict[str, tuple] = {}
    for i in rng.choice(len(pools), size=changed, replace=False):
        pool = pools[i]
        if isinstance(pool, V3Pool):
            z41 = bool(rng.random() < 0.5)
            size = int(pool.reserve_in(z41) * abs(rng.normal(0, 0.002)))
            if size > 0 and pool.quote_out(z41, size) > 0:
                after = pool.swap(z41, size)
                updates[pool.address] = V3State(after.sqrt_price_x96, after.tick, after.liquidity, {})
            continue
        assert isinstance(pool, V2Pool)
        move = math.exp(rng.normal(0, 0.004))
        liquidity = math.exp(rng.normal(0, 0.05)) if rng.random() < 0.1 else 1.0
        r0 = min(max(int(pool.reserve0 * math.sqrt(move) * liquidity), 1), MAX_RESERVE)
        r1 = min(max(int(pool.reserve1 / math.sqrt(move) * liquidity), 1), MAX_RESERVE)
        updates[pool.address] = (r0, r1)
    return updates


def naive_scan(cycles: list[tuple[list[tuple[Pool, bool]], Fraction]], gas_price: int, gas_model: GasModel,
               top_n: int, prefilter: bool = False) -> list[tuple[float, int]]:
    """The straightforward way: for every cycle, ternary-search the exact integer profit over the
    input, check the neighbours, subtract gas, keep the best `top_n` (net profit in ETH, input).
    A V3 hop is quoted with its exact swap loop.

    `prefilter` first skips cycles whose product of marginal prices at zero input is not above
    one (exact integers for V2, the Möbius slope for V3), the one shortcut a careful
    straightforward scanner would take.
    """
    found = []
    for hops, token_per_eth in cycles:
        if prefilter:
            gain, loss = 1, 1
            for pool, z41 in hops:
                k, m, _ = pool.mobius(z41)
                gain, loss = gain * k, loss * m
            if gain <= loss:
                continue

        def profit(x: int, hops: list[tuple[Pool, bool]] = hops) -> int:
            amount = x
            for pool, z41 in hops:
                if isinstance(pool, V2Pool):
                    r_in, r_out = pool.reserves(z41)
                    amount = amount_out(amount, r_in, r_out, pool.fee_bps)
                else:
                    amount = pool.quote_out(z41, amount)
            return amount - x

        lo, hi = 1, max(hops[0][0].reserve_in(hops[0][1]), 1)
        while hi - lo > 2:
            m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
            if profit(m1) < profit(m2):
                lo = m1 + 1
            else:
                hi = m2
        best_x = max(range(max(lo - 2, 1), hi + 3), key=profit)
        net = profit(best_x) - gas_cost_in_token(gas_model.units(len(hops)), gas_price, token_per_eth)
        if net > 0:
            found.append((net / float(token_per_eth), best_x))
    found.sort(reverse=True)
    return found[:top_n]


def run(pools: int = 10_000, changed: int = 500, seed: int = 0, repeats: int = 30, naive_repeats: int = 1,
        v3_share: float = 0.0, naive_sample: int = 2_000) -> dict:
    """Time `repeats` blocks that each change `changed` random pools (median of re-score + rank),
    and the naive full scan on the same market (median of `naive_repeats`). With V3 pools the
    naive scan is timed on `naive_sample` random cycles and scaled to all of them
    (`naive_cycles_timed` says how many were)."""
    if not 0 < changed <= pools:
        raise ValueError(f"changed pools per block must be in [1, {pools}], got {changed}")
    if not 0.0 <= v3_share <= 1.0:
        raise ValueError(f"--v3-share must be in [0, 1], got {v3_share}")
    rng = np.random.default_rng(seed + 1)
    market, bases = synthetic_market(pools, seed, v3_share)
    started = time.perf_counter()
    scanner = Ranker(market, bases, GAS_PRICE)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    scanner.full_rescan(0)
    full_ms = (time.perf_counter() - started) * 1e3

    times, affected, found = [], [], 0
    for block in range(1, repeats + 1):
        updates = block_updates(market, changed, rng)
        affected.append(len(scanner.graph.cycles_of([scanner.graph.slots[a] for a in updates])))
        started = time.perf_counter()
        top = scanner.apply_updates(updates, block)
        times.append((time.perf_counter() - started) * 1e3)
        found = len(top)

    graph = scanner.graph
    result = {
        "pools": len(market),
        "v3_pools": sum(isinstance(p, V3Pool) for p in market),
        "tokens": len({t for p in market for t in (p.token0, p.token1)}),
        "base_tokens": len(bases),
        "cycles": len(graph),
        "changed": changed,
        "affected_cycles": int(statistics.median(affected)),
        "repeats": repeats,
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(float(np.percentile(times, 90)), 3),
        "full_rescan_ms": round(full_ms, 1),
        "scanner_build_s": round(build_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "opportunities": found,
    }
    if naive_repeats:
        result |= _naive(scanner, v3_share, naive_sample, naive_repeats, seed, result["median_ms"])
    return result


def _naive(scanner: Ranker, v3_share: float, naive_sample: int, repeats: int, seed: int, median_ms: float) -> dict:
    """The naive full scan on the scanner's cycles (a sample, scaled, when V3 pools make it slow)."""
    graph = scanner.graph
    rows: Sequence[int] = range(len(graph))
    if v3_share and len(graph) > naive_sample:  # a V3 quote walks ticks: time a sample, scale to every cycle
        rows = sorted(random.Random(seed).sample(rows, naive_sample))
    cycles = [(graph.hops_of(row), scanner.token_per_eth[int(graph.cycle_base[row])]) for row in rows]
    scale = len(graph) / len(cycles)
    naive_times: list[float] = []
    prefiltered_times: list[float] = []
    for _ in range(repeats):
        for prefilter, bucket in ((False, naive_times), (True, prefiltered_times)):
            started = time.perf_counter()
            naive_scan(cycles, GAS_PRICE, scanner.gas_model, scanner.top_n, prefilter)
            bucket.append((time.perf_counter() - started) * 1e3 * scale)
    naive_ms = statistics.median(naive_times)
    return {"naive_median_ms": round(naive_ms, 1), "naive_cycles_timed": len(cycles),
            "naive_prefiltered_ms": round(statistics.median(prefiltered_times), 1),
            "speedup": round(naive_ms / median_ms, 1)}


SWEEP_POOLS = (1_000, 10_000, 30_000, 100_000)


def sweep(seed: int = 0, repeats: int = 20, pools: Sequence[int] = SWEEP_POOLS) -> dict:
    """Median re-score + rank at each market size (2 % of the pools changed per block), and the
    exponent of a power law fitted to median ms against affected cycles: 1 or below means the
    cost grows no faster than the work a block creates. Each size runs in a fresh process so one
    size's memory does not weigh on the next."""
    import multiprocessing

    points = []
    context = multiprocessing.get_context("spawn")
    for n in pools:
        with context.Pool(1) as worker:
            point = worker.apply(run, (n, max(20, n // 50), seed, repeats, 0))
        points.append({k: point[k] for k in ("pools", "cycles", "changed", "affected_cycles", "median_ms",
                                             "p90_ms", "peak_rss_mb")})
    slope = float(np.polyfit(np.log([p["affected_cycles"] for p in points]),
                             np.log([p["median_ms"] for p in points]), 1)[0])
    return {"sizes": points, "exponent_vs_affected_cycles": round(slope, 3)}
