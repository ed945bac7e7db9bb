"""How fast `V3Pool` quotes, against a literal port of the contract's swap loop.

The literal port (`naive_swap`) walks the ticks one tick spacing at a time, as a contract without
a tick bitmap would, allocates a step record per step, recomputes every sqrt ratio and the tick
after every partial step. It stops where the contract stops (initialized ticks and bitmap-word
ends), so its amounts are the contract's: `run` asserts the fast path gives the same.
"""
from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from scanner.dex.v3 import (
    MAX_TICK,
    MIN_TICK,
    SwapResult,
    V3Pool,
    add_delta,
    compute_swap_step,
    sqrt_ratio_at_tick,
    tick_at_sqrt_ratio,
)

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


def run(repeats: int = 7, state_path: str | Path | None = None) -> dict[str, Any]:
    """Median µs of one exact-input quote within a tick range (`quote_us`), of one crossing about
    10 initialized ticks (`cross_quote_us`), and of the literal port on the same quotes.

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
    return figures
