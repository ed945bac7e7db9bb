"""How fast `V3Pool` quotes, against a literal port of the contract's swap loop, and how fast the
exact optimum of a cycle mixing V2 and V3 pools is found.

The literal port (`naive_swap`) walks the ticks one tick spacing at a time, as a contract without
a tick bitmap would, allocates a step record per step, recomputes every sqrt ratio and the tick
after every partial step. It stops where the contract stops (initialized ticks and bitmap-word
ends), so its amounts are the contract's: `run` asserts the fast path gives the same.

The mixed cycles (`mixed_cycles`) are 3-hop: WETH-like base, middles of 6, 8 or 18 decimals, one
or two V3 hops with their liquidity in several positions a few tick spacings around the price,
V2 hops of 1 to 1000 ETH, mispriced by 0.3% to 3% around the cycle.
"""
from __future__ import annotations

import copy
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from scanner.dex.pool import Pool
from scanner.dex.v2 import MAX_RESERVE, V2Pool
from scanner.dex.v3 import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    TICK_SPACINGS,
    SwapResult,
    V3Pool,
    add_delta,
    compute_swap_step,
    sqrt_ratio_at_tick,
    tick_at_sqrt_ratio,
)
from scanner.route.sizing import Hop, refine

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "v3_wbtc_weth_3000.json"
"""The real WBTC/WETH 0.3% pool state (Ethereum mainnet, block 16,944,668), when run from a checkout."""


@dataclass
class _Step:
    sqrt_price_start: int
    tick_next: int
    initialized: bool
    sqrt_price_next: int


def _next_tick(pool: V3Pool, tick: int, lte: bool) -> tuple[int, bool]:
    """The next initialized tick within the current bitmap word, found one tick spacing at a time."""
    spacing = pool.tick_spacing
    compressed = tick // spacing
    if lte:
        word_start = compressed >> 8 << 8
        while compressed >= word_start:
            if compressed * spacing in pool.ticks:
                return compressed * spacing, True
            compressed -= 1
        return word_start * spacing, False
    compressed += 1
    word_end = (compressed >> 8 << 8) + 255
    while compressed <= word_end:
        if compressed * spacing in pool.ticks:
            return compressed * spacing, True
        compressed += 1
    return word_end * spacing, False


def naive_swap(pool: V3Pool, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None
               ) -> SwapResult:
    """UniswapV3Pool.swap as written, without the fast path's shortcuts (same checks as `V3Pool.swap`)."""
    limit = pool.check_swap(zero_for_one, amount_specified, sqrt_price_limit_x96)
    exact_input = amount_specified > 0
    remaining, calculated, crossed = amount_specified, 0, 0
    sqrt_price, tick, liquidity = pool.sqrt_price_x96, pool.tick, pool.liquidity
    while remaining != 0 and sqrt_price != limit:
        tick_next, initialized = _next_tick(pool, tick, zero_for_one)
        tick_next = min(max(tick_next, MIN_TICK), MAX_TICK)
        step = _Step(sqrt_price, tick_next, initialized, sqrt_ratio_at_tick.__wrapped__(tick_next))
        beyond = step.sqrt_price_next < limit if zero_for_one else step.sqrt_price_next > limit
        sqrt_price, amount_in, amount_out, fee_amount = compute_swap_step(
            sqrt_price, limit if beyond else step.sqrt_price_next, liquidity, remaining, pool.fee)
        if exact_input:
            remaining -= amount_in + fee_amount
            calculated -= amount_out
        else:
            remaining += amount_out
            calculated += amount_in + fee_amount
        if sqrt_price == step.sqrt_price_next:
            if step.initialized:
                net = pool.ticks[step.tick_next][1]
                liquidity = add_delta(liquidity, -net if zero_for_one else net)
                crossed += 1
            tick = step.tick_next - 1 if zero_for_one else step.tick_next
        elif sqrt_price != step.sqrt_price_start:
            tick = tick_at_sqrt_ratio(sqrt_price)
    if zero_for_one == exact_input:
        amount0, amount1 = amount_specified - remaining, calculated
    else:
        amount0, amount1 = calculated, amount_specified - remaining
    return SwapResult(amount0, amount1, sqrt_price, tick, liquidity, crossed)


def synthetic_pool() -> V3Pool:
    """A WBTC/WETH-like pool (fee 3000, spacing 60) with 40 overlapping positions around the price."""
    pool = V3Pool("synthetic", "token0", "token1", 3000, 60, sqrt_ratio_at_tick(257_779) + 12345, 257_779, 0)
    for i in range(40):
        pool.mint(257_760 - 60 * (i + 1), 257_820 + 60 * (i // 2 + 1), 10**16 * (i % 7 + 1))
    return pool


def _median_us(call: Callable[[], Any], repeats: int, number: int) -> float:
    """Median over `repeats` batches of the time of one call, in µs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            call()
        times.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(times)


def random_v3_pool(rng: random.Random, name: str, token0: str, token1: str, price: float, depth0: float) -> V3Pool:
    """A V3 pool at `price` (raw token1 per raw token0) with 3 to 7 positions within a few tick
    spacings of it, some around the price and some on one side only."""
    fee = rng.choice([100, 500, 3000, 10000])
    spacing = TICK_SPACINGS[fee]
    sqrt_price = min(max(int(math.sqrt(price) * 2**96), MIN_SQRT_RATIO + 1), MAX_SQRT_RATIO - 2)
    tick = tick_at_sqrt_ratio(sqrt_price)
    pool = V3Pool(name, token0, token1, fee, spacing, sqrt_price, tick, 0)
    liquidity = max(int(depth0 * math.sqrt(price)), 1)
    here = tick // spacing
    for _ in range(rng.randint(3, 7)):
        kind = rng.random()
        if kind < 0.7:
            lower, upper = here - rng.randint(0, 5), here + rng.randint(1, 5)
        elif kind < 0.85:
            upper = here - rng.randint(0, 3)
            lower = upper - rng.randint(1, 5)
        else:
            lower = here + rng.randint(1, 3)
            upper = lower + rng.randint(1, 5)
        pool.mint(lower * spacing, upper * spacing, max(int(liquidity * rng.uniform(0.1, 1.0)), 1))
    return pool


def mixed_cycles(count: int, seed: int = 0) -> list[list[Hop]]:
    """`count` profitable 3-hop cycles B → T0 → T1 → B with one or two V3 hops (see the module)."""
    rng = random.Random(seed)
    cycles: list[list[Hop]] = []
    while len(cycles) < count:
        decimals, value = {"B": 18}, {"B": 1.0}
        for token in ("T0", "T1"):
            decimals[token], value[token] = rng.choice([6, 8, 18]), 10 ** rng.uniform(-4, 1)
        path = ["B", "T0", "T1", "B"]
        v3_hops = set(rng.sample(range(3), rng.choice([1, 2])))
        per_hop = (1 + rng.uniform(0.003, 0.03)) ** (1 / 3)
        hops: list[Hop] = []
        for h in range(3):
            flip = rng.random() < 0.5
            token0, token1 = (path[h + 1], path[h]) if flip else (path[h], path[h + 1])
            fair = (value[token0] / 10 ** decimals[token0]) / (value[token1] / 10 ** decimals[token1])
            gain = per_hop * (1 + rng.uniform(-0.002, 0.002))
            price = fair / gain if flip else fair * gain
            depth0 = 10 ** rng.uniform(0, 3) / value[token0] * 10 ** decimals[token0]
            if h in v3_hops:
                pool: Pool = random_v3_pool(rng, f"p{h}", token0, token1, price, depth0)
            else:
                pool = V2Pool(f"p{h}", token0, token1, min(max(int(depth0), 1), MAX_RESERVE),
                              min(max(int(depth0 * price), 1), MAX_RESERVE), rng.choice([5, 25, 30]))
            hops.append((pool, not flip))
        if refine(copy.deepcopy(hops), 0.0) is not None:
            cycles.append(hops)
    return cycles


def mixed_cycle_figures(count: int = 50, repeats: int = 5, budget: int = 32) -> dict[str, Any]:
    """Median over `count` cycles of each one's median µs to its exact optimum with the scanner's
    refine budget (32), from pools whose swap-step tables are not built yet, as after the block
    that moved them (`mixed_cycle_optimum_us`), and again with the tables built, as for the later
    cycles through the same pools in that block (`mixed_cycle_optimum_warm_us`); how many results
    are proven optimal (gap 0; the others carry a proven bound on what they may miss)."""
    cycles = mixed_cycles(count)
    cold, warm, proven = [], [], 0
    for hops in cycles:
        cold_times: list[float] = []
        warm_times: list[float] = []
        for fresh in [copy.deepcopy(hops) for _ in range(repeats)]:
            for times in (cold_times, warm_times):
                started = time.perf_counter()
                sized = refine(fresh, 0.0, budget)
                times.append((time.perf_counter() - started) * 1e6)
        proven += sized is not None and sized.gap == 0
        cold.append(statistics.median(cold_times))
        warm.append(statistics.median(warm_times))
    return {
        "mixed_cycles": len(cycles),
        "mixed_cycle_optimum_us": round(statistics.median(cold), 1),
        "mixed_cycle_optimum_p90_us": round(sorted(cold)[int(0.9 * len(cold))], 1),
        "mixed_cycle_optimum_warm_us": round(statistics.median(warm), 1),
        "mixed_cycles_proven_optimal": proven,
    }


def run(repeats: int = 7, state_path: str | Path | None = None) -> dict[str, Any]:
    """Median µs of one exact-input quote within a tick range (`quote_us`), of one crossing about
    10 initialized ticks (`cross_quote_us`), and of the literal port on the same quotes; and the
    mixed-cycle figures of `mixed_cycle_figures`.

    The state is the pool of `state_path` (a v3_wbtc_weth_3000.json fixture), by default the
    repository's fixture when it is there, else `synthetic_pool()`; `state` says which.
    """
    path = Path(state_path) if state_path is not None else FIXTURE
    if state_path is not None or path.exists():
        pool = V3Pool.from_simulator_json(json.loads(path.read_text())["pool"])
        state = str(path)
    else:
        pool, state = synthetic_pool(), "synthetic"
    small = 10**6  # token0 in
    if pool.swap(True, small).ticks_crossed:
        raise ValueError(f"{state}: a swap of {small} crosses a tick; the one-range quote needs a deeper pool")
    lo, big = small, 2 * small  # the smallest input crossing 10 initialized ticks
    while pool.swap(True, big).ticks_crossed < 10:
        lo, big = big, 2 * big
    while big - lo > 1:
        mid = (lo + big) // 2
        lo, big = (lo, mid) if pool.swap(True, mid).ticks_crossed >= 10 else (mid, big)
    crossed = pool.swap(True, big).ticks_crossed
    figures: dict[str, Any] = {"state": state, "ticks_crossed": crossed, "amounts_in": [small, big]}
    for name, amount in (("quote_us", small), ("cross_quote_us", big)):
        if pool.swap(True, amount) != naive_swap(pool, True, amount):
            raise AssertionError(f"the fast and literal swaps of {amount} differ")
        figures[name] = round(_median_us(partial(pool.quote_out, True, amount), repeats, 500), 2)
        figures["naive_" + name] = round(_median_us(partial(naive_swap, pool, True, amount), repeats, 50), 2)
    figures.update(mixed_cycle_figures(repeats=min(repeats, 5)))
    return figures
