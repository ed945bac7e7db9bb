"""The realized-arbitrage labeller on 8 real mainnet arbitrages (mid 2020, Uniswap V2), and what our
sizing says on the state each one met.

Fixture: tests/fixtures/v2_cyclic_arbs_2020.json, converted by convert_v2_cyclic_arbs.py from
github.com/ccyanxyz/cycle-arb-analysis (commit 833bc456): the pairs' Sync/Swap logs of each receipt,
the source's path, amounts and revenue. The bots lost on all eight.

What comes out: the labeller finds each one as exactly one cycle with the source's path, amounts and
revenue; every hop is the V2 formula to the unit on the reserves rebuilt from the receipt. Seven of the
eight cycles visit a pool twice, once each way (USDC→WETH→X→WETH→USDC): two round trips, each paying
the fee twice, so no input at all is profitable (a round trip through one constant-product pool returns
less than it took). The eighth (USDC→WETH→MKR→USDC through three pools) was profitable at its state:
our sizing trades 210.86 USDC for a gross 1.015 USDC, proven optimal, where the bot's 1,408 USDC through
the same three pools would have lost 30.68 USDC (it routed a leg elsewhere and lost 1,266.6 USDC). Net of
gas (our 3-hop route at the bot's 26 gwei, 1.55 USDC) even the best input loses: the right size was none.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.dex.v2 import V2Pool, amount_out
from scanner.gas.fees import GasModel
from scanner.history.label import RealizedCycle, label
from scanner.route.sizing import forward, refine

FIXTURE = json.loads((Path(__file__).parent / "fixtures/v2_cyclic_arbs_2020.json").read_text())
PAIRS = {pair: (token0, token1) for pair, (token0, token1) in FIXTURE["pairs"].items()}
ARBS = FIXTURE["arbs"]
FEE_BPS = 30  # every pair here is a canonical Uniswap V2 pair


def rows(logs: list[dict]) -> list[dict]:
    """JSON-RPC logs as the capture store's `blocks()` hands them out (bytes, ints)."""
    return [{"address": log["address"].lower(), "topics": [bytes.fromhex(t[2:]) for t in log["topics"]],
             "data": bytes.fromhex(log["data"][2:]), "blockNumber": int(log["blockNumber"], 16),
             "transactionIndex": int(log["transactionIndex"], 16), "logIndex": int(log["logIndex"], 16)} for log in logs]


def cycle_of(arb: dict) -> RealizedCycle:
    (cycle,) = label(rows(arb["logs"]), PAIRS)
    return cycle


def chained_profit(cycle: RealizedCycle, amount_in: int) -> int:
    """Exact profit of `amount_in` sent through the cycle's swaps in order, from the state before the
    transaction, each pool's reserves carried from one of its swaps to the next."""
    reserves = {}
    for trade in cycle.trades:
        reserves.setdefault(trade.pool, list(trade.reserves_before))
    amount = amount_in
    for trade in cycle.trades:
        r = reserves[trade.pool]
        i, o = (0, 1) if trade.zero_for_one else (1, 0)
        out = amount_out(amount, r[i], r[o], FEE_BPS)
        r[i], r[o], amount = r[i] + amount, r[o] - out, out
    return amount - amount_in


@pytest.mark.parametrize("arb", ARBS, ids=[a["tx_hash"][:10] for a in ARBS])
def test_the_labeller_finds_the_real_arbitrage_with_its_path_amounts_and_revenue(arb):
    cycle = cycle_of(arb)
    assert (cycle.block, cycle.tx_index) == (arb["block"], arb["tx_index"])
    path, amounts = arb["path"], arb["amounts"]
    assert [(t.token_in, t.token_out, t.amount_in, t.amount_out) for t in cycle.trades] == [
        (path[i], path[i + 1], amounts[i], amounts[i + 1]) for i in range(0, len(path), 2)]
    assert cycle.token == path[0] and cycle.revenue == arb["revenue"] < 0


@pytest.mark.parametrize("arb", ARBS, ids=[a["tx_hash"][:10] for a in ARBS])
def test_every_hop_is_the_v2_formula_to_the_unit_on_the_rebuilt_state(arb):
    cycle = cycle_of(arb)
    after: dict[str, tuple[int, int]] = {}
    for t in cycle.trades:
        r_in, r_out = t.reserves_before if t.zero_for_one else t.reserves_before[::-1]
        assert amount_out(t.amount_in, r_in, r_out, FEE_BPS) == t.amount_out
        if t.pool in after:  # a pool's second swap starts where its first left it (nothing else traded it in between)
            assert t.reserves_before == after[t.pool]
        d_in, d_out = (t.amount_in, -t.amount_out) if t.zero_for_one else (-t.amount_out, t.amount_in)
        after[t.pool] = (t.reserves_before[0] + d_in, t.reserves_before[1] + d_out)


def test_what_our_sizing_says_on_the_state_each_bot_met():
    for arb in ARBS:
        cycle = cycle_of(arb)
        theirs = chained_profit(cycle, cycle.trades[0].amount_in)
        assert theirs < 0  # their size through these pools alone lost too
        if len({t.pool for t in cycle.trades}) < len(cycle.trades):
            # Round trips through the same pools: no input returns more than it put in.
            sizes = [max(1, int(cycle.trades[0].amount_in * 2 ** (e / 4))) for e in range(-120, 24)]
            assert max(chained_profit(cycle, x) for x in sizes) < 0
            continue
        pools = {t.pool: V2Pool(t.pool, *PAIRS[t.pool], *t.reserves_before, FEE_BPS) for t in cycle.trades}
        hops = [(pools[t.pool], t.zero_for_one) for t in cycle.trades]
        best = refine(hops, 0.0)
        assert best is not None and best.gap == 0  # proven optimal
        assert forward(hops, best.amount_in)[-1] - best.amount_in == best.gross_profit == chained_profit(cycle, best.amount_in)
        assert (arb["tx_hash"][:10], best.gross_profit, theirs) == ("0x0ba97c13", 1_015_052, -30_683_028)
        # the optimum is a plateau: 210.863562 and 210.863563 USDC both make it; the optimizer may return either
        assert best.amount_in in (210_863_562, 210_863_563) and chained_profit(cycle, 210_863_562) == best.gross_profit
        # Net of gas it was not worth sending: our executor's 3-hop route at the bot's own gas price, in
        # USDC at the USDC/WETH pair's price, costs more than the 1.015 USDC it makes.
        usdc, weth = cycle.trades[0].reserves_before
        gas_usdc = GasModel().units(len(hops)) * (arb["cost"] // arb["gas_used"]) * usdc // weth
        assert gas_usdc == 1_547_356 > best.gross_profit


def test_only_known_pools_count():
    arb = ARBS[2]
    unknown = next(iter({t.pool for t in cycle_of(arb).trades}))
    assert label(rows(arb["logs"]), {p: t for p, t in PAIRS.items() if p != unknown}) == []
    two = rows(ARBS[0]["logs"]) + [dict(r, logIndex=r["logIndex"] + 1000) for r in rows(ARBS[0]["logs"])]
    assert [c.revenue for c in label(two, PAIRS)] == [ARBS[0]["revenue"]] * 2  # two cycles in one transaction
