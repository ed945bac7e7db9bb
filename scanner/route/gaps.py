"""Price gaps between pools of the same pair on three L2s at one instant (2024-11-01T00:00 UTC).

`arbscan gaps [DATA_DIR]` (default ../shared/data/l2-2024-11-01) loads every Uniswap V3 and V2 pool of the recorded states (github.com/tivas-g/Torres_Shared_
Sequencing_Arbitrage, data/), quotes each both ways at 5 sizes (0.001 to 10 units of the input
token) with the exact pool math, and prints per chain the largest gaps between a V2 and a V3
pool of one pair and between two V3 fee tiers of one pair: the mid-price gap in basis points,
and the best round trip at the 5 sizes (buy where the input token is cheap, sell where it is
dear, exact integer amounts, fees included).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from pathlib import Path

from scanner.dex.pool import InvalidPool, Pool
from scanner.dex.v2 import V2Pool
from scanner.dex.v3 import V3Pool, V3Revert

SIZES = range(-3, 2)  # input sizes 10**(decimals + e)
TOP = 5


@dataclass
class Loaded:
    chain: str
    version: str
    fee: int  # hundredths of a bip
    symbols: tuple[str, str]
    decimals: tuple[int, int]
    pool: Pool

    @property
    def label(self) -> str:
        return f"{self.version} {self.fee / 10_000:g}%"

    def mid_price(self) -> Fraction:
        """token1 per token0 in whole units, before fees."""
        pool = self.pool
        if isinstance(pool, V3Pool):
            raw = pool.spot_price()
        else:
            assert isinstance(pool, V2Pool)
            raw = Fraction(pool.reserve1, pool.reserve0)
        return raw * Fraction(10) ** (self.decimals[0] - self.decimals[1])


def load(data: Path) -> tuple[list[Loaded], list[str]]:
    """Every pool with a usable state, and why each other pool has none."""
    metas = json.loads((data / "pools.json").read_text())
    states = json.loads((data / "initial_pool_states.json").read_text())
    pools, skipped = [], []
    for meta in metas:
        address = meta["address"].lower()
        state = states.get(address)
        t0, t1 = meta["token0"], meta["token1"]
        symbols = (t0["symbol"] or t0["address"][:8], t1["symbol"] or t1["address"][:8])
        fee = int(meta["feeTier"])
        try:
            if state is None:
                raise InvalidPool(address, "no recorded state")
            if meta["version"] == "v3":
                pool: Pool = V3Pool.from_l2_state(address, state, t0["address"], t1["address"], fee)
            elif state.get("reserve0") is None or state.get("reserve1") is None:
                raise InvalidPool(address, "the recorded state has no reserves")
            else:
                pool = V2Pool(address, t0["address"], t1["address"], int(state["reserve0"]), int(state["reserve1"]),
                              fee // 100)
                if pool.reserve0 == 0 or pool.reserve1 == 0:
                    raise InvalidPool(address, "a reserve is empty")
        except InvalidPool as exc:
            skipped.append(f"{meta['version']} pools: {exc.reason}")
            continue
        pools.append(Loaded(meta["chain"], meta["version"], fee, symbols, (int(t0["decimals"]), int(t1["decimals"])),
                            pool))
    return pools, skipped


def quote_all(pools: list[Loaded]) -> tuple[int, list[str]]:
    """Quote every pool both ways at every size: (quotes made, one line per failure)."""
    made, failures = 0, []
    for p in pools:
        for zero_for_one in (True, False):
            for e in SIZES:
                size = 10 ** (p.decimals[0 if zero_for_one else 1] + e)
                try:
                    p.pool.quote_out(zero_for_one, size)
                    made += 1
                except V3Revert as exc:
                    failures.append(f"{p.chain} {p.label} {'/'.join(p.symbols)} size {size}: {exc}")
    return made, failures


def inconsistent(pools: list[Loaded]) -> list[Loaded]:
    """V3 pools whose in-range liquidity is not the sum of the liquidityNet at or below the tick."""
    out = []
    for p in pools:
        pool = p.pool
        if isinstance(pool, V3Pool) and sum(net for t, (_, net) in pool.ticks.items() if t <= pool.tick) != pool.liquidity:
            out.append(p)
    return out


def round_trip(cheap: Loaded, dear: Loaded) -> tuple[int, int]:
    """(best profit, its input) over the 5 sizes of selling token1 for token0 in `cheap` and the
    token0 back in `dear`, in raw token1 units."""
    sizes = [10 ** (cheap.decimals[1] + e) for e in SIZES]
    return max((dear.pool.quote_out(True, cheap.pool.quote_out(False, size)) - size, size) for size in sizes)


def gaps(pools: list[Loaded]) -> dict[str, dict[str, list[str]]]:
    """Per chain and kind ('V2/V3', 'fee tiers'): the largest mid-price gaps, one line each."""
    by_pair: dict[tuple[str, str, str], list[Loaded]] = defaultdict(list)
    for p in pools:
        by_pair[(p.chain, p.pool.token0.lower(), p.pool.token1.lower())].append(p)
    found: dict[str, dict[str, list[tuple[Fraction, str]]]] = defaultdict(lambda: defaultdict(list))
    for (chain, _, _), group in by_pair.items():
        for a, b in combinations(group, 2):
            if a.version == b.version == "v2":
                continue
            kind = "fee tiers" if a.version == b.version else "V2/V3"
            cheap, dear = sorted((a, b), key=Loaded.mid_price)
            gap = dear.mid_price() / cheap.mid_price() - 1
            profit, size = round_trip(cheap, dear)
            unit, symbol = Fraction(10) ** cheap.decimals[1], a.symbols[1]
            line = (f"{'/'.join(a.symbols)} {cheap.label} -> {dear.label}: mid gap {float(gap) * 1e4:.1f} bps, "
                    f"fees {(cheap.fee + dear.fee) / 100:g} bps; best round trip {float(profit / unit):+.6g} "
                    f"{symbol} on {float(size / unit):g} {symbol} ({profit / size * 1e4:+.1f} bps)")
            found[chain][kind].append((gap, line))
    return {chain: {kind: [line for _, line in sorted(rows, reverse=True)[:TOP]] for kind, rows in kinds.items()}
            for chain, kinds in found.items()}
