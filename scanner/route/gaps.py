"""Price gaps between pools of the same pair on three L2s at one instant (2024-11-01T00:00 UTC).

`arbscan gaps [DATA_DIR]` (default ../shared/data/l2-2024-11-01) loads every Uniswap V3 and V2 pool of the recorded states (github.com/tivas-g/Torres_Shared_
Sequencing_Arbitrage, data/), quotes each both ways at 5 sizes (0.001 to 10 units of the input
token) with the exact pool math, and prints per chain the largest gaps between a V2 and a V3
pool of one pair and between two V3 fee tiers of one pair: the mid-price gap in basis points,
and the best round trip at the 5 sizes (buy where the input token is cheap, sell where it is
dear, exact integer amounts, fees included).

Across chains (`cross_chain_gaps`): the same asset pair on two chains at that instant, with assets
matched by their canonical address on each chain (`ASSETS`: native USDC, not the bridged USDC.e).
Such a gap is an inventory trade, not an atomic one: buy the base asset with the quote asset on the
cheap chain and sell it for the quote asset on the dear one, each leg in its own transaction, with
inventory held on both chains (bridging it back is a cost these figures leave out, as is gas).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import cast

from scanner.dex.pool import InvalidPool, Pool
from scanner.dex.v2 import V2Pool
from scanner.dex.v3 import V3Pool, V3Revert

SIZES = range(-3, 2)  # input sizes 10**(decimals + e)
CROSS_SIZES = range(0, 7)  # an inventory trade's quote input: 1 to 10**6 units (its depth decides)
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


# One asset on several chains, by its canonical address on each (lowercase), as the data's pools.json
# lists them: the chains' native USDC (Circle), Tether's USDT, the bridged DAI, WETH, Lido's wstETH.
ASSETS: dict[str, dict[str, str]] = {
    "WETH": {"arbitrum": "0x82af49447d8a07e3bd95bd0d56f35241523fbab1",
             "base": "0x4200000000000000000000000000000000000006",
             "optimism": "0x4200000000000000000000000000000000000006"},
    "USDC": {"arbitrum": "0xaf88d065e77c8cc2239327c5edb3a432268e5831",
             "base": "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
             "optimism": "0x0b2c639c533813f4aa9d7837caf62653d097ff85"},
    "USDT": {"arbitrum": "0xfd086bc7cd5c481dcc9c85ebe478a1c0b69fcbb9",
             "base": "0xfde4c96c8593536e31f229ea8f37b2ada2699bb2",
             "optimism": "0x94b008aa00579c1307b0ef2c499ad98a8ce58e58"},
    "DAI": {"arbitrum": "0xda10009cbd5d07dd0cecc66161fc93d7c9000da1",
            "optimism": "0xda10009cbd5d07dd0cecc66161fc93d7c9000da1"},
    "wstETH": {"arbitrum": "0x5979d7b546e38e414f7e9822514be443a4800529",
               "base": "0xc1cba3fcea344f92d9239c08c0568f6f2f0ee452",
               "optimism": "0x1f32b1c2345538c0c6f582fcb022739c4a194ebb"},
}
QUOTE_ORDER = ("USDC", "USDT", "DAI", "WETH", "wstETH")  # of a pair's two assets, the earlier one is the quote
_ASSET_OF = {(chain, address): asset for asset, chains in ASSETS.items() for chain, address in chains.items()}


def load(data: Path) -> tuple[list[Loaded], list[str]]:
    """Every pool of the data folder with a usable state, and why each other pool has none."""
    return load_pools(json.loads((data / "pools.json").read_text()),
                      json.loads((data / "initial_pool_states.json").read_text()))


def load_pools(metas: list[dict], states: dict[str, dict]) -> tuple[list[Loaded], list[str]]:
    """`load` of pools.json entries and their states (a fixture holds a few of each)."""
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


@dataclass(frozen=True)
class CrossGap:
    """One pool pair of the same asset pair on two chains: buy `base` with `quote` on `cheap`, sell it on `dear`."""

    base: str
    quote: str
    cheap: Loaded
    dear: Loaded
    gap: Fraction  # dear's mid price / cheap's - 1 (quote per base)
    profit: int  # best round trip over the sizes, raw quote units (fees in, gas and bridging out)
    size: int  # its quote input

    def line(self) -> str:
        unit = Fraction(10) ** self.cheap.decimals[self._quote_index(self.cheap)]
        return (f"{self.base}/{self.quote} {self.cheap.chain} {self.cheap.label} -> {self.dear.chain} "
                f"{self.dear.label}: mid gap {float(self.gap) * 1e4:.1f} bps, fees "
                f"{(self.cheap.fee + self.dear.fee) / 100:g} bps; best round trip {float(self.profit / unit):+.6g} "
                f"{self.quote} on {float(self.size / unit):g} {self.quote} ({self.profit / self.size * 1e4:+.1f} bps)")

    def _quote_index(self, p: Loaded) -> int:
        return 0 if _asset(p, 0) == self.quote else 1


def _asset(p: Loaded, index: int) -> str | None:
    token = (p.pool.token0, p.pool.token1)[index].lower()
    return _ASSET_OF.get((p.chain, token))


def _quote_price(p: Loaded, quote_index: int) -> Fraction:
    """Quote per base in whole units, before fees."""
    mid = p.mid_price()  # token1 per token0
    return mid if quote_index == 1 else 1 / mid


def _cross_round_trip(cheap: Loaded, dear: Loaded, quote_cheap: int, quote_dear: int) -> tuple[int, int]:
    """(best profit, its input) over the sizes of buying base with quote in `cheap` and selling it in `dear`."""
    best = (-(1 << 255), 0)
    for e in CROSS_SIZES:
        size = 10 ** (cheap.decimals[quote_cheap] + e)
        try:
            bought = cheap.pool.quote_out(quote_cheap == 0, size)  # paying in the quote token
            back = dear.pool.quote_out(quote_dear == 1, bought)  # paying in the base token
        except V3Revert:  # the size runs out of the pool's liquidity
            continue
        best = max(best, (back - size, size))
    return best


def cross_chain_gaps(pools: list[Loaded], top: int = TOP) -> list[CrossGap]:
    """The largest mid-price gaps between two pools of one asset pair on two chains (`ASSETS`)."""
    by_pair: dict[tuple[str, str], list[tuple[Loaded, int]]] = defaultdict(list)
    for p in pools:
        assets = (_asset(p, 0), _asset(p, 1))
        if None in assets or assets[0] == assets[1]:
            continue
        quote_index = min((0, 1), key=lambda i: QUOTE_ORDER.index(cast(str, assets[i])))
        by_pair[(cast(str, assets[1 - quote_index]), cast(str, assets[quote_index]))].append((p, quote_index))
    found = []
    for (base, quote), group in by_pair.items():
        for (a, qa), (b, qb) in combinations(group, 2):
            if a.chain == b.chain or a.decimals[qa] != b.decimals[qb] or a.decimals[1 - qa] != b.decimals[1 - qb]:
                continue  # one chain's pairs are `gaps`'; an asset with other decimals elsewhere is not moved 1:1
            (cheap, qc), (dear, qd) = sorted(((a, qa), (b, qb)), key=lambda pq: _quote_price(*pq))
            profit, size = _cross_round_trip(cheap, dear, qc, qd)
            if size:
                gap = _quote_price(dear, qd) / _quote_price(cheap, qc) - 1
                found.append(CrossGap(base, quote, cheap, dear, gap, profit, size))
    return sorted(found, key=lambda g: g.gap, reverse=True)[:top]
