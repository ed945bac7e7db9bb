"""Ranking: incremental re-scoring equals a full rescan, expected value is what it says, and
degenerate pools never produce an opportunity the exact math would not pay."""
from __future__ import annotations

import copy
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.dex.v2 import MAX_RESERVE, V2Pool
from scanner.gas.fees import GasModel, gas_cost_in_token
from scanner.rank.ranking import (
    HeuristicRiskModel,
    Opportunity,
    Ranker,
    RiskInputs,
    _Descending,
    expected_value,
    opportunity_id,
)

GWEI = 10**9
E18 = 10**18
# base tokens with their token-per-ETH rates: WETH 1:1, a 6-decimal dollar at 2000 per ETH
BASES = {"WETH": Fraction(1), "USD": Fraction(2_000 * 10**6, E18)}
PRICE_ETH = {"WETH": 1.0, "USD": 1 / 2000}  # ETH per whole token
DECIMALS = {"WETH": 18, "USD": 6}


def random_market(rng: random.Random, n_pools: int = 90) -> list[V2Pool]:
    """A dense little market: 10 tokens with 6-, 8- and 18-decimal ones, five fee tiers, gaps."""
    for i in range(8):
        PRICE_ETH.setdefault(f"T{i}", 10 ** rng.uniform(-4, 1))
        DECIMALS.setdefault(f"T{i}", rng.choice([6, 8, 18]))
    tokens = list(PRICE_ETH)
    pools = []
    for i in range(n_pools):
        a, b = rng.sample(tokens, 2)
        depth = 10 ** rng.uniform(0, 4)
        r0 = int(depth / PRICE_ETH[a] * 10 ** DECIMALS[a])
        r1 = int(depth / PRICE_ETH[b] * 10 ** DECIMALS[b] * (1 + rng.uniform(-0.04, 0.04)))
        pools.append(V2Pool(f"0x{i:04x}", a, b, max(r0, 1), max(r1, 1), rng.choice([5, 25, 30, 100, 300])))
    return pools


def move(rng: random.Random, pool: V2Pool) -> tuple[int, int]:
    price, liquidity = 1 + rng.uniform(-0.03, 0.03), 10 ** rng.uniform(-0.2, 0.2)
    return max(int(pool.reserve0 * price * liquidity), 1), max(int(pool.reserve1 / price * liquidity), 1)


def summary(ranked: list[Opportunity]) -> list[tuple]:
    return [(o.id, o.amount_in, o.amounts, o.gross_profit, o.net_profit, o.expected_value) for o in ranked]


@pytest.mark.parametrize("seed, top_n", [(1, 10_000), (2, 10_000), (3, 5), (4, 1)])
def test_incremental_updates_rank_exactly_like_a_full_rescan(seed, top_n):
    rng = random.Random(seed)
    pools = random_market(rng)
    scanner = Ranker(copy.deepcopy(pools), BASES, gas_price=30 * GWEI, top_n=top_n)
    total = 0
    for block in range(1, 26):
        changed = rng.sample(pools, rng.randint(1, 12))
        updates = {p.address: move(rng, p) for p in changed}
        for p in changed:
            p.update(*updates[p.address])
        gas_price = rng.choice([None, 1 * GWEI, 30 * GWEI, 300 * GWEI])
        incremental = scanner.apply_updates(updates, block, gas_price)
        fresh = Ranker(copy.deepcopy(pools), BASES, gas_price=scanner.gas_price, top_n=top_n)
        assert summary(incremental) == summary(fresh.full_rescan(block))
        total += len(incremental)
    assert total > 0  # the comparison was not vacuous


def test_top_n_is_the_head_of_the_full_ranking():
    pools = random_market(random.Random(5), 120)
    everything = Ranker(copy.deepcopy(pools), BASES, gas_price=10 * GWEI, top_n=10_000).full_rescan(7)
    assert len(everything) > 5
    for n in (1, 3, 5):
        assert summary(Ranker(copy.deepcopy(pools), BASES, gas_price=10 * GWEI, top_n=n).full_rescan(7)) == summary(everything[:n])
    values = [o.expected_value_eth for o in everything]
    assert values == sorted(values, reverse=True)


def check_exact(opportunity: Opportunity, pools: dict[str, V2Pool], gas_model: GasModel) -> None:
    """Every number of an opportunity is what the exact math and the gas model give."""
    amount = opportunity.amount_in
    assert amount > 0
    for address, z41, token_in, out in zip(opportunity.pools, opportunity.zero_for_one, opportunity.tokens,
                                            opportunity.amounts):
        pool = pools[address]
        assert token_in == (pool.token0 if z41 else pool.token1)
        assert amount <= pool.max_input(z41)
        assert out == pool.amount_out(token_in, amount) <= pool.reserves(z41)[1]
        amount = out
    assert opportunity.gross_profit == opportunity.amounts[-1] - opportunity.amount_in > 0
    assert opportunity.gas_units == gas_model.units(len(opportunity.pools))
    rate = BASES[opportunity.base_token]
    assert opportunity.gas_cost == gas_cost_in_token(opportunity.gas_units, opportunity.gas_price, rate)
    assert opportunity.net_profit == opportunity.gross_profit - opportunity.gas_cost > 0
    assert opportunity.failure_cost == opportunity.gas_cost
    assert 0 <= opportunity.success_probability <= 1 and opportunity.expected_slippage >= 0
    assert opportunity.expected_value == pytest.approx(expected_value(
        opportunity.success_probability, opportunity.net_profit, opportunity.expected_slippage,
        opportunity.failure_cost))
    assert opportunity.expected_value > 0
    assert opportunity.expected_value_eth == pytest.approx(opportunity.expected_value / float(rate))


def test_every_reported_number_is_exact():
    pools = random_market(random.Random(6), 120)
    scanner = Ranker(pools, BASES, gas_price=5 * GWEI, top_n=10_000)
    ranked = scanner.full_rescan(1)
    assert ranked
    by_address = {p.address: p for p in pools}
    for opportunity in ranked:
        check_exact(opportunity, by_address, scanner.gas_model)


def test_degenerate_reserves_never_make_absurd_opportunities():
    rng = random.Random(8)
    pools = random_market(rng, 60)
    extremes = [(0, 0), (0, 10**18), (10**18, 0), (1, 1), (1, MAX_RESERVE), (MAX_RESERVE, 1),
                (MAX_RESERVE, MAX_RESERVE), (MAX_RESERVE - 1, 10**30), (2**100, 2**111)]
    for i, (r0, r1) in enumerate(extremes * 3):
        a, b = rng.sample(["WETH", "USD", "T0", "T1"], 2)
        pools.append(V2Pool(f"0xdead{i:02d}", a, b, r0, r1, rng.choice([0, 30])))
    scanner = Ranker(pools, BASES, gas_price=GWEI, top_n=10_000)
    by_address = {p.address: p for p in pools}
    ranked = scanner.full_rescan(1)
    for block in range(2, 12):
        updates = {p.address: rng.choice(extremes) for p in rng.sample(pools, 10)}
        ranked = scanner.apply_updates(updates, block)
        for opportunity in ranked:
            check_exact(opportunity, by_address, scanner.gas_model)
    assert np.isfinite(scanner._bound).all()


def test_gas_decides_what_is_worth_doing():
    pools = random_market(random.Random(9), 120)
    cheap = Ranker(copy.deepcopy(pools), BASES, gas_price=1, top_n=10_000).full_rescan(1)
    dear = Ranker(copy.deepcopy(pools), BASES, gas_price=10**6 * GWEI, top_n=10_000).full_rescan(1)
    assert len(dear) < len(cheap)
    scanner = Ranker(copy.deepcopy(pools), BASES, gas_price=10**6 * GWEI, top_n=10_000)
    assert summary(scanner.apply_updates({}, 1, gas_price=1)) == summary(cheap)


def test_expected_value_formula():
    assert expected_value(0.8, 1_000, 100, 50) == pytest.approx(0.8 * 900 - 0.2 * 50)
    assert expected_value(1.0, 1_000, 0, 50) == 1_000
    assert expected_value(0.0, 1_000, 0, 50) == -50
    pools = random_market(random.Random(10), 120)
    best = Ranker(pools, BASES, gas_price=GWEI).full_rescan(3)[0]
    surer = best.with_risk(1.0, 0)
    assert surer.expected_value == surer.net_profit and surer.id == best.id


def test_heuristic_risk_prefers_fewer_hops_and_smaller_footprints():
    model = HeuristicRiskModel()
    inf = np.inf
    batch = RiskInputs(
        pools=np.zeros((3, 3), np.int32), zero_for_one=np.ones((3, 3), bool), hops=np.array([2, 3, 2]),
        amounts=np.array([[1.0, 1, 1, 1], [1.0, 1, 1, 1], [50.0, 50, 50, 50]]),
        reserve_in=np.array([[1000.0, 1000, inf], [1000.0, 1000, 1000], [1000.0, 1000, inf]]),
        profit=np.array([10.0, 10.0, 10.0]),
    )
    probability, slippage = model.assess(batch)
    assert probability[0] > probability[1] and probability[0] > probability[2]
    assert ((0 < probability) & (probability <= 1)).all()
    assert slippage[1] > slippage[0] >= 0


def test_ids_are_stable_per_cycle_and_block():
    assert opportunity_id(5, ["a", "b"], [True, False]) == opportunity_id(5, ("a", "b"), (True, False))
    assert opportunity_id(5, ["a", "b"], [True, False]) != opportunity_id(6, ["a", "b"], [True, False])
    assert opportunity_id(5, ["a", "b"], [True, False]) != opportunity_id(5, ["a", "b"], [True, True])


def test_unknown_pool_update_is_named():
    scanner = Ranker(random_market(random.Random(11), 20), BASES, gas_price=GWEI)
    with pytest.raises(KeyError, match="pool 0xnope is not watched"):
        scanner.apply_updates({"0xnope": (1, 1)}, 1)


def test_adding_and_removing_pools_rescore_their_cycles():
    pools = random_market(random.Random(12), 80)
    scanner = Ranker(copy.deepcopy(pools[:60]), BASES, gas_price=GWEI, top_n=10_000)
    for p in copy.deepcopy(pools[60:]):
        scanner.add_pool(p)
    full = Ranker(copy.deepcopy(pools), BASES, gas_price=GWEI, top_n=10_000)
    assert summary(scanner.full_rescan(2)) == summary(full.full_rescan(2))
    scanner.remove_pool(pools[0].address)
    rest = Ranker(copy.deepcopy(pools[1:]), BASES, gas_price=GWEI, top_n=10_000)
    assert summary(scanner.ranking(2)) == summary(rest.full_rescan(2))


def test_incremental_updates_with_v3_pools_rank_exactly_like_a_full_rescan():
    """The same with a third of the pools Uniswap V3 (the bench's synthetic market), moved by exact
    swaps: V3 states pushed in rank exactly as pools built from scratch in those states."""
    from scanner.bench.scan import block_updates, synthetic_market
    from scanner.dex.v3 import V3Pool

    pools, bases = synthetic_market(400, seed=5, v3_share=0.35)
    assert sum(isinstance(p, V3Pool) for p in pools) > 100
    scanner = Ranker(copy.deepcopy(pools), bases, gas_price=5 * GWEI, top_n=50)
    rng = np.random.default_rng(6)
    total = mixed = 0
    for block in range(1, 11):
        updates = block_updates(pools, 60, rng)
        for p in pools:
            if p.address in updates:
                p.update(*updates[p.address])
        incremental = scanner.apply_updates(updates, block)
        assert summary(incremental) == summary(Ranker(copy.deepcopy(pools), bases, gas_price=5 * GWEI,
                                                      top_n=50).full_rescan(block))
        total += len(incremental)
        mixed += sum("uniswap-v3" in o.kinds and "uniswap-v2" in o.kinds for o in incremental)
    assert total > 0 and mixed > 0  # mixed V2/V3 cycles were ranked, not only one kind


def test_rankings_of_a_20k_pool_market_are_the_recorded_ones():
    """A seeded 20,000-pool market (a fifth of it V3), 8 blocks of 800 changed pools and a moving gas
    price: every block's top 20 (ids, gross and net profit, gas) equals the one recorded before the
    scan path was optimised for 100k pools (tests/fixtures/make_ranking_golden.py wrote it; its
    header names the commit). Inputs are not compared: where several inputs make the same exact
    profit, the optimizer may return another of them."""
    import json
    from pathlib import Path

    golden = Path(__file__).with_name("fixtures") / "ranking_20k.json"
    import sys
    sys.path.insert(0, str(golden.parent))
    try:
        from make_ranking_golden import rankings
    finally:
        sys.path.remove(str(golden.parent))
    recorded = json.loads(golden.read_text())["blocks"]

    def without_inputs(blocks: list) -> list:  # an input of the same exact profit may replace another
        return [[[oid, *money] for oid, _amount_in, *money in block] for block in blocks]

    assert without_inputs(rankings()) == without_inputs(recorded)
    assert sum(map(len, recorded)) >= 100


def test_pricing_candidates_in_chunks_ranks_what_pricing_them_all_ranks(monkeypatch):
    """`ranking` asks the risk model about the best optimistic candidates only, a chunk at a time, while
    an unpriced one could still be visited: the top N must be the one of pricing every candidate. With
    the heuristic most candidates stay unpriced; a model whose P is scattered over [0, 1) independently of
    the profit (a hash of it) puts good values anywhere in the optimistic order and makes it price on."""
    import scanner.rank.ranking as ranking_module
    from scanner.bench.scan import GAS_PRICE, synthetic_market

    market, bases = synthetic_market(3000, seed=3)
    priced: list[int] = []

    class Counting(HeuristicRiskModel):
        def assess(self, batch: RiskInputs) -> tuple[np.ndarray, np.ndarray]:
            priced.append(len(batch.hops))
            return super().assess(batch)

    class Scattering(HeuristicRiskModel):
        def assess(self, batch: RiskInputs) -> tuple[np.ndarray, np.ndarray]:
            priced.append(len(batch.hops))
            return (batch.profit * 0.6180339887 / 1e9) % 1.0, np.zeros(len(batch.hops))

    ranker = Ranker(market, bases, GAS_PRICE // 1000, top_n=20)
    rows, _ = ranker._candidates(None)
    for model, share in ((Counting(), 0.1), (Scattering(), 1.0)):
        ranker.risk = model
        tops = {}
        for chunk in (10**9, 7):
            monkeypatch.setattr(ranking_module, "RISK_CHUNK", chunk)
            priced.clear()
            tops[chunk] = [(o.id, o.expected_value_eth, o.amount_in, o.success_probability) for o in ranker.full_rescan(1)]
        assert len(tops[7]) == 20 and tops[7] == tops[10**9]
        assert len(rows) > 1000 and sum(priced) <= share * len(rows), (type(model).__name__, len(rows), sum(priced))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([-np.inf, -1.0, 0.0, 0.5, 1.0, 2.0, np.inf, np.nan]) | st.floats(-1e3, 1e3), max_size=60),
       st.integers(1, 70))
def test_candidates_come_in_chunks_in_the_order_of_a_stable_sort(values, size):
    """`_Descending` hands out, chunk by chunk, exactly the indices of a stable argsort of −values (ties by
    index, NaN last), while selecting only what each chunk needs."""
    array = np.array(values, dtype=np.float64)
    order = _Descending(array, size)
    chunks = []
    while len(order):
        top = order.top()
        chunk = order.take()
        assert 0 < len(chunk) <= size
        assert top == array[chunk[0]] or np.isnan(top) and np.isnan(array[chunk[0]])
        chunks.append(chunk)
    assert order.top() == -np.inf
    taken = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    assert taken.tolist() == np.argsort(-array, kind="stable").tolist()
