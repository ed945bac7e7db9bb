"""Benchmark: the exact integer optimum of random Uniswap-V2 cycles (`integer_optimum.optimize_cycles`),
against a certified reference and a naive bounded search, in the same run.

The cycles are 2- and 3-hop, base token of 18 decimals, middle tokens of 6, 8 or 18 decimals worth
1e-4 to 10 base tokens, pools of 1 to 1000 base tokens deep, fees of 5, 25, 30 or 100 bps, mispriced
around the cycle by 0.2% to 5% before fees (so most, not all, are profitable). Each is plain numbers:
per hop (reserve in, reserve out, fee in bps), what a caller has before any pool object exists.

- `us_per_cycle`: median of `repeats` batched calls over all cycles, each building the curves from
  the plain numbers (`integer_optimum.optimize_cycles`); `us_per_cycle_best` the fastest of them,
  `cpu_us_per_cycle` the median of this process's CPU time (what a shared machine's load adds to the
  wall clock is left out).
- `exact`: profitable cycles whose result equals the certified reference (`certified_best`): every
  plateau start of a token inside the window where the continuous bound can still beat the result,
  evaluated with `scanner.dex.v2`'s own quote functions. `uncertified`: cycles whose window was too
  wide for the reference (not counted as exact or not).
- `naive_us_per_cycle`: integer ternary search on the exact profit over the inputs where the
  continuous profit is positive (the bounded scalar search of other tools), then its neighbours;
  `naive_exact` and `naive_worst_rel_shortfall` are its figures against the same reference.
- `load_1m`: the machine's load average when the run ended (timings on a shared machine vary with it).
"""
from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from scanner.dex.v2 import FEE_DENOMINATOR, MAX_RESERVE, amount_in, amount_out
from scanner.route.integer_optimum import V2Optimum, compose_all, optimize_cycles, v2_curve

PlainHop = tuple[int, int, int]  # (reserve in, reserve out, fee bps)
REFERENCE_LIMIT = 2_000_000  # plateau starts the reference is willing to evaluate per cycle


def random_cycles(count: int, seed: int) -> list[list[PlainHop]]:
    """`count` random 2- and 3-hop cycles (see the module)."""
    rng = random.Random(seed)
    cycles = []
    for _ in range(count):
        n = rng.choice([2, 3])
        decimals = [18] + [rng.choice([6, 8, 18]) for _ in range(n - 1)] + [18]
        value = [1.0] + [10 ** rng.uniform(-4, 1) for _ in range(n - 1)] + [1.0]
        per_hop = (1 + rng.uniform(0.002, 0.05)) ** (1 / n)
        hops = []
        for h in range(n):
            fee = rng.choice([5, 25, 30, 100])
            depth = 10 ** rng.uniform(0, 3)  # base tokens
            r_in = depth / value[h] * 10 ** decimals[h]
            fair = (value[h] / 10 ** decimals[h]) / (value[h + 1] / 10 ** decimals[h + 1])
            r_out = r_in * fair * per_hop * (1 + rng.uniform(-0.002, 0.002))
            hops.append((min(max(int(r_in), 1), MAX_RESERVE), min(max(int(r_out), 1), MAX_RESERVE), fee))
        cycles.append(hops)
    return cycles


def exact_profit(hops: Sequence[PlainHop], x: int) -> int:
    amount = x
    for r_in, r_out, fee in hops:
        amount = amount_out(amount, r_in, r_out, fee)
    return amount - x


def _smallest_input(hops: Sequence[PlainHop], amount: int) -> int | None:
    for r_in, r_out, fee in reversed(hops):
        needed = amount_in(amount, r_in, r_out, fee)
        if needed is None:
            return None
        amount = needed
    return amount


def _continuous(hops: Sequence[PlainHop], k: int, y: int) -> Fraction | None:
    """Φ(y): the continuous profit of reaching y of token k (None: out of reach)."""
    out = Fraction(y)
    for r_in, r_out, fee in hops[k:]:
        g = Fraction(FEE_DENOMINATOR - fee, FEE_DENOMINATOR)
        out = g * out * r_out / (r_in + g * out)
    need = Fraction(y)
    for r_in, r_out, fee in reversed(hops[:k]):
        if need >= r_out:
            return None
        g = Fraction(FEE_DENOMINATOR - fee, FEE_DENOMINATOR)
        need = r_in * need / (g * (r_out - need))
    return out - need


def certified_best(hops: Sequence[PlainHop], claimed: int, limit: int = REFERENCE_LIMIT) -> int | None:
    """The best exact profit (0: none positive), given one already found (`claimed`): every plateau
    start of some token k (A(y), the smallest input buying y of it) inside the window of y where the
    continuous profit Φ(y) ≥ claimed + 1 is evaluated; outside it, Φ < claimed + 1 bounds every input.
    The token whose window holds the fewest integers is used; None when that is over `limit` (cycles
    whose every token is finer than the base token, where the continuous bound alone leaves a wide
    window: the optimizer's own proof counts their roundings, this reference does not)."""
    c = claimed + 1
    windows = []
    for k in range(len(hops)):
        reach = 1
        while _continuous(hops, k, 2 * reach) is not None and 2 * reach <= MAX_RESERVE:
            reach *= 2
        lo, hi = reach, 2 * reach  # the last y in reach: a bisection
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _continuous(hops, k, mid) is not None else (lo, mid)
        reach = lo

        def rises(y: int, k: int = k) -> bool:
            a, b = _continuous(hops, k, y), _continuous(hops, k, y + 1)
            return a is not None and b is not None and b > a

        lo, hi = 1, reach  # Φ is concave: its integer peak is the first y where it stops rising
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if rises(mid) else (lo, mid)
        peak = lo
        top = _continuous(hops, k, peak)
        if top is None or top < c:
            return claimed
        ends = []
        for inside, outside in ((peak, 0), (peak, reach + 1)):  # the last y on each side with Φ ≥ c
            while abs(outside - inside) > 1:
                mid = (inside + outside) // 2
                value = _continuous(hops, k, mid)
                inside, outside = (mid, outside) if value is not None and value >= c else (inside, mid)
            ends.append(inside)
        windows.append((ends[1] - ends[0], k, ends[0], ends[1]))
    width, k, lo, hi = min(windows)
    if width > limit:
        return None
    best = claimed
    for y in range(lo, hi + 1):
        x = _smallest_input(hops[:k], y) if k else y
        if x is not None and x <= MAX_RESERVE - hops[0][0]:
            best = max(best, exact_profit(hops, x))
    return best


def ternary(hops: Sequence[PlainHop]) -> tuple[int, int]:
    """(input, profit) of an integer ternary search on the exact profit, then its neighbours (0, 0:
    nothing profitable found)."""
    big_k, big_m, big_n = compose_all([v2_curve(*hop) for hop in hops])
    if big_k <= big_m:
        return 0, 0
    lo, hi = 1, min((big_k - big_m) // big_n + 1, MAX_RESERVE - hops[0][0])  # beyond it even Φ < 0
    while hi - lo > 2:
        third = (hi - lo) // 3
        a, b = lo + third, hi - third
        if exact_profit(hops, a) < exact_profit(hops, b):
            lo = a + 1
        else:
            hi = b - 1
    best = max(range(max(lo - 2, 1), hi + 3), key=lambda x: exact_profit(hops, x))
    profit = exact_profit(hops, best)
    return (best, profit) if profit > 0 else (0, 0)


def _us(call: Any, repeats: int, count: int) -> tuple[float, float, float]:
    """(median, best, median of the process's CPU time) µs per item of `repeats` calls that each do
    `count` items. The CPU time leaves out the time other processes held the cores."""
    times, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - started) * 1e6 / count)
        cpu.append((time.process_time() - started_cpu) * 1e6 / count)
    return statistics.median(times), min(times), statistics.median(cpu)


def run(cycles: int = 200, seed: int = 1, repeats: int = 5) -> dict[str, Any]:
    """The figures of the module's docstring for `cycles` random cycles of `seed`."""
    plain = random_cycles(cycles, seed)
    results: list[V2Optimum | None] = optimize_cycles(plain)
    us, us_best, us_cpu = _us(lambda: optimize_cycles(plain), repeats, cycles)
    naive = [ternary(hops) for hops in plain]
    naive_us, naive_us_best, naive_us_cpu = _us(lambda: [ternary(hops) for hops in plain], max(repeats // 2, 1), cycles)
    exact = profitable = naive_exact = uncertified = proven = 0
    worst = naive_worst = 0.0
    evaluations = 0
    for hops, result, (_, naive_profit) in zip(plain, results, naive):
        found = result.profit if result is not None else 0
        evaluations += result.evaluations if result is not None else 0
        proven += result is None or result.gap == 0
        if result is not None and exact_profit(hops, result.amount_in) != found:
            raise AssertionError(f"cycle {hops}: the optimum's profit is not the exact profit of its input")
        reference = certified_best(hops, max(found, naive_profit))
        if reference is None:
            uncertified += 1
            continue
        profitable += reference > 0
        if reference > 0:
            exact += found == reference
            naive_exact += naive_profit == reference
            worst = max(worst, (reference - found) / reference)
            naive_worst = max(naive_worst, (reference - naive_profit) / reference)
    return {
        "cycles": cycles,
        "seed": seed,
        "profitable": profitable,
        "exact": exact,
        "proven_optimal": proven,
        "uncertified": uncertified,
        "worst_rel_shortfall": worst,
        "us_per_cycle": round(us, 2),
        "us_per_cycle_best": round(us_best, 2),
        "cpu_us_per_cycle": round(us_cpu, 2),
        "exact_evals_per_cycle": round(evaluations / cycles, 2),
        "naive_us_per_cycle": round(naive_us, 1),
        "naive_us_per_cycle_best": round(naive_us_best, 1),
        "naive_cpu_us_per_cycle": round(naive_us_cpu, 1),
        "naive_exact": naive_exact,
        "naive_worst_rel_shortfall": naive_worst,
        "speedup": round(naive_us / us, 1),
        "load_1m": round(os.getloadavg()[0], 2),
    }
