"""Cross-chain price gaps on real pool states: the same asset pair on Arbitrum, Base and Optimism at
2024-11-01T00:00 UTC (tests/fixtures/l2_cross_chain_subset.json, converted from ../shared/data by
tests/fixtures/convert_v3_data.py), with the exact round trips that buy on one chain and sell on another."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.route import gaps
from scanner.route.gaps import ASSETS, CROSS_SIZES, cross_chain_gaps, load, load_pools

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "l2_cross_chain_subset.json").read_text())
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "l2-2024-11-01"


@pytest.fixture(scope="module")
def found() -> list[gaps.CrossGap]:
    pools, skipped = load_pools(FIXTURE["pools"], FIXTURE["states"])
    assert len(pools) == 10 and not skipped
    return cross_chain_gaps(pools, top=20)


def test_the_largest_cross_chain_gaps_of_that_instant(found):
    assert [g.line() for g in found[:3]] == [
        "WETH/USDC optimism v3 0.05% -> base v2 0.3%: mid gap 23.3 bps, fees 35 bps; "
        "best round trip -0.00118 USDC on 1 USDC (-11.8 bps)",
        "WETH/USDC arbitrum v3 0.3% -> base v2 0.3%: mid gap 17.4 bps, fees 60 bps; "
        "best round trip -0.004259 USDC on 1 USDC (-42.6 bps)",
        "USDT/USDC base v3 0.01% -> optimism v3 0.01%: mid gap 14.3 bps, fees 2 bps; "
        "best round trip +12.0012 USDC on 10000 USDC (+12.0 bps)",
    ]
    for g in found:  # two chains, the cheap side cheaper, ordered by gap
        assert g.cheap.chain != g.dear.chain and g.gap > 0
    assert [g.gap for g in found] == sorted((g.gap for g in found), reverse=True)
    # Gaps wider than both pools' fees pay on the stablecoin pairs; the WETH ones do not.
    paying = {(g.base, g.quote, g.cheap.chain, g.dear.chain) for g in found if g.profit > 0}
    assert paying == {("USDT", "USDC", "base", "optimism"), ("DAI", "USDC", "optimism", "arbitrum")}


def test_a_round_trip_is_the_pools_exact_math_leg_by_leg(found):
    """USDT/USDC: pay USDC into Base's 0.01 % pool for USDT, pay that USDT into Optimism's for USDC."""
    g = next(g for g in found if (g.base, g.quote) == ("USDT", "USDC"))
    assert (g.cheap.pool.address, g.dear.pool.address) == ("0xd56da2b74ba826f19015e6b7dd9dae1903e85da1",
                                                           "0xa73c628eaf6e283e26a7b1f8001cf186aa4c0e8e")
    # both pools hold USDC as token0 (its address sorts first on both chains)
    assert g.cheap.pool.token0.lower() == ASSETS["USDC"]["base"] and g.dear.pool.token0.lower() == ASSETS["USDC"]["optimism"]
    profits = {}
    for e in CROSS_SIZES:
        size = 10 ** (6 + e)
        usdt = g.cheap.pool.quote_out(True, size)
        profits[size] = g.dear.pool.quote_out(False, usdt) - size
    assert (g.profit, g.size) == max((p, s) for s, p in profits.items()) == (12_001_222, 10_000 * 10**6)


def test_assets_are_matched_by_canonical_address_not_symbol():
    usdc_e = "0xff970a61a04b1ca14834a43f5de4533ebddb5cc8"  # bridged USDC.e on Arbitrum, symbol "USDC" too
    assert usdc_e not in ASSETS["USDC"].values()
    assert {chain for asset in ASSETS.values() for chain in asset} == {"arbitrum", "base", "optimism"}


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/l2-2024-11-01 is not here")
def test_the_fixture_pools_give_what_the_whole_data_gives(found):
    pools, _ = load(DATA)
    whole = {(g.cheap.pool.address, g.dear.pool.address): g.line() for g in cross_chain_gaps(pools, top=10_000)}
    for g in found:
        assert whole[(g.cheap.pool.address, g.dear.pool.address)] == g.line()
