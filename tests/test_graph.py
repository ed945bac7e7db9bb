"""The token graph finds exactly the 2- and 3-hop cycles through base tokens, and indexes them by pool."""
from __future__ import annotations

import itertools
import random
import time

import numpy as np
import pytest

from scanner.bench.scan import synthetic_market
from scanner.dex.pool import InvalidPool
from scanner.dex.v2 import V2Pool
from scanner.route.graph import PAD, TokenGraph


def pool(address: str, token0: str, token1: str) -> V2Pool:
    return V2Pool(address, token0, token1, 10**18, 10**18, 30)


def cycles(graph: TokenGraph) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each cycle as (tokens along it, pools along it)."""
    return {
        (graph.tokens_of(row), tuple(p.address for p, _ in graph.hops_of(row))) for row in range(len(graph))
    }


def brute_force_cycles(pools: list[V2Pool], bases: set[str],
                       max_hops: int = 3) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Every sequence of 2 to `max_hops` distinct pools that walks from a base token back to it
    through distinct tokens."""
    found = set()
    for n in range(2, max_hops + 1):
        for seq in itertools.permutations(pools, n):
            for start in bases:
                tokens, ok = [start], True
                for p in seq:
                    if tokens[-1] not in (p.token0, p.token1):
                        ok = False
                        break
                    tokens.append(p.token1 if tokens[-1] == p.token0 else p.token0)
                if ok and tokens[-1] == start and len(set(tokens[:-1])) == n:
                    found.add((tuple(tokens), tuple(p.address for p in seq)))
    return found


HAND_BUILT = [
    pool("p1", "WETH", "USDC"),
    pool("p2", "USDC", "WETH"),  # same pair on another DEX, tokens the other way round
    pool("p3", "A", "WETH"),
    pool("p4", "A", "USDC"),
    pool("p5", "A", "B"),
    pool("p6", "B", "WETH"),
    pool("p7", "Y", "Z"),  # no path to any base token
]
EXPECTED = {
    # 2-hop: the same pair on two pools, from either base
    (("WETH", "USDC", "WETH"), ("p1", "p2")), (("WETH", "USDC", "WETH"), ("p2", "p1")),
    (("USDC", "WETH", "USDC"), ("p1", "p2")), (("USDC", "WETH", "USDC"), ("p2", "p1")),
    # triangle WETH-USDC-A, both ways round, from both bases, on either WETH/USDC pool
    (("WETH", "USDC", "A", "WETH"), ("p1", "p4", "p3")), (("WETH", "USDC", "A", "WETH"), ("p2", "p4", "p3")),
    (("WETH", "A", "USDC", "WETH"), ("p3", "p4", "p1")), (("WETH", "A", "USDC", "WETH"), ("p3", "p4", "p2")),
    (("USDC", "A", "WETH", "USDC"), ("p4", "p3", "p1")), (("USDC", "A", "WETH", "USDC"), ("p4", "p3", "p2")),
    (("USDC", "WETH", "A", "USDC"), ("p1", "p3", "p4")), (("USDC", "WETH", "A", "USDC"), ("p2", "p3", "p4")),
    # triangle WETH-A-B from WETH only
    (("WETH", "A", "B", "WETH"), ("p3", "p5", "p6")), (("WETH", "B", "A", "WETH"), ("p6", "p5", "p3")),
}


def test_hand_built_graph_has_exactly_the_expected_cycles():
    graph = TokenGraph(["WETH", "USDC"], HAND_BUILT)
    assert cycles(graph) == EXPECTED
    assert len(graph) == len(EXPECTED)
    assert graph.rejected == []


def test_directions_follow_the_tokens():
    graph = TokenGraph(["WETH", "USDC"], HAND_BUILT)
    for row in range(len(graph)):
        tokens = graph.tokens_of(row)
        for (p, z41), token_in in zip(graph.hops_of(row), tokens):
            assert (p.token0 if z41 else p.token1) == token_in
        hops = graph.cycle_hops[row]
        edges = graph.cycle_edges[row]
        assert all(edges[hops:] == PAD) and all(edges[:hops] >= 0)


def test_index_maps_each_pool_to_exactly_its_cycles():
    graph = TokenGraph(["WETH", "USDC"], HAND_BUILT)
    for address, slot in graph.slots.items():
        expected = [row for row in range(len(graph)) if slot in graph.cycle_pools[row]]
        assert graph.cycles_of([slot]).tolist() == expected, address
    assert graph.cycles_of([graph.slots["p7"]]).tolist() == []
    both = graph.cycles_of([graph.slots["p5"], graph.slots["p6"]])
    assert {graph.hops_of(r)[1][0].address for r in both} == {"p5"}
    assert graph.cycles_of([]).tolist() == []


def test_random_graph_matches_brute_force():
    rng = random.Random(7)
    tokens = [f"T{i}" for i in range(9)]
    pools, seen = [], 0
    while len(pools) < 40:
        a, b = rng.sample(tokens, 2)
        pools.append(pool(f"q{seen}", a, b))
        seen += 1
    bases = {"T0", "T1", "T2"}
    graph = TokenGraph(sorted(bases), pools)
    assert cycles(graph) == brute_force_cycles(pools, bases)


@pytest.mark.parametrize("max_hops", [2, 4, 5])
def test_cycles_up_to_max_hops_match_brute_force(max_hops):
    rng = random.Random(max_hops)
    tokens = [f"T{i}" for i in range(7)]
    pools = [pool(f"q{i}", *rng.sample(tokens, 2)) for i in range(16)]
    bases = {"T0", "T1"}
    graph = TokenGraph(sorted(bases), pools, max_hops=max_hops)
    found = cycles(graph)
    assert found == brute_force_cycles(pools, bases, max_hops)
    assert max(len(path) - 1 for path, _ in found) == max_hops  # the longest cycles exist here
    for slot in graph.slots.values():
        assert graph.cycles_of([slot]).tolist() == [r for r in range(len(graph)) if slot in graph.cycle_pools[r]]
    with pytest.raises(ValueError, match="max_hops"):
        TokenGraph(["T0"], pools, max_hops=1)


def test_adding_and_removing_pools_keeps_cycles_and_index_exact():
    graph = TokenGraph(["WETH", "USDC"], HAND_BUILT[:3])
    for p in HAND_BUILT[3:]:
        graph.add_pool(p)
    assert cycles(graph) == EXPECTED
    graph.remove_pool("p1")
    rest = [p for p in HAND_BUILT if p.address != "p1"]
    assert cycles(graph) == cycles(TokenGraph(["WETH", "USDC"], rest))
    assert all(graph.slots["p4"] in graph.cycle_pools[r] for r in graph.cycles_of([graph.slots["p4"]]))
    graph.add_pool(pool("p1", "WETH", "USDC"))  # the address may come back as a new pool
    assert cycles(graph) == EXPECTED
    for slot in graph.slots.values():
        assert graph.cycles_of([slot]).tolist() == [r for r in range(len(graph)) if slot in graph.cycle_pools[r]]
    with pytest.raises(KeyError, match="p9"):
        graph.remove_pool("p9")


def test_bad_pools_are_rejected_with_a_reason():
    same = pool("same", "A", "B")
    same.token1 = "A"  # a Pool implementation that let it through
    graph = TokenGraph(["WETH"], [*HAND_BUILT, pool("p3", "A", "WETH"), same])
    assert [(r.address, r.reason) for r in graph.rejected] == [("p3", "duplicate address"), ("same", "both tokens are A")]
    assert cycles(graph) == {c for c in EXPECTED if c[0][0] == "WETH"}
    with pytest.raises(InvalidPool, match="pool p3: duplicate address"):
        graph.add_pool(pool("p3", "A", "WETH"))
    with pytest.raises(InvalidPool, match="pool bad: both tokens are A"):
        V2Pool("bad", "A", "A", 1, 1, 30)
    with pytest.raises(InvalidPool, match="pool fee: fee 10000 bps"):
        V2Pool("fee", "A", "B", 1, 1, 10_000)
    with pytest.raises(InvalidPool, match=r"pool big: reserve0 .* outside \[0, 2\*\*112\)"):
        V2Pool("big", "A", "B", 2**112, 1, 30)


def test_a_token_without_a_path_to_a_base_has_no_cycles():
    graph = TokenGraph(["WETH"], [pool("x", "Y", "Z"), pool("y", "Z", "Y"), pool("z", "Y", "Q"), pool("w", "Q", "Z")])
    assert len(graph) == 0
    assert graph.rejected == []
    assert graph.cycles_of(list(graph.slots.values())).tolist() == []


def test_ten_thousand_pools_build_quickly_and_consistently():
    market, bases = synthetic_market(10_000, seed=3)
    started = time.perf_counter()
    graph = TokenGraph(bases, market)
    build_s = time.perf_counter() - started
    assert build_s < 10, f"building the graph took {build_s:.1f} s"
    assert len(graph) > 10_000 and graph.rejected == []
    # every sampled cycle walks base → … → base through distinct tokens on distinct pools
    rows = np.random.default_rng(0).choice(len(graph), size=2_000, replace=False)
    for row in rows.tolist():
        tokens = graph.tokens_of(row)
        hops = graph.hops_of(row)
        assert tokens[0] == tokens[-1] in bases and len(set(tokens[:-1])) == len(hops)
        assert len({p.address for p, _ in hops}) == len(hops)
    # the index is the exact inverse of the cycle table
    pools_of = graph.cycle_pools
    for slot in np.random.default_rng(1).choice(len(market), size=50, replace=False).tolist():
        assert graph.cycles_of([slot]).tolist() == np.flatnonzero((pools_of == slot).any(axis=1)).tolist()


def test_v3_pools_are_edges_like_any_other():
    """The graph takes any `Pool`: V3 pools beside V2 ones give the 2-hop cycles V2 vs V3 and fee
    tier vs fee tier, and triangles that mix them, exactly as brute force finds them."""
    from scanner.dex.v3 import V3Pool, sqrt_ratio_at_tick

    def v3(address: str, token0: str, token1: str, fee: int) -> V3Pool:
        return V3Pool(address, token0, token1, fee, {500: 10, 3000: 60}[fee], sqrt_ratio_at_tick(0), 0, 10**18)

    pools = [
        pool("v2-weth-usdc", "USDC", "WETH"),
        v3("v3-weth-usdc-500", "USDC", "WETH", 500),
        v3("v3-weth-usdc-3000", "USDC", "WETH", 3000),
        v3("v3-usdc-dai", "DAI", "USDC", 500),
        pool("v2-dai-weth", "DAI", "WETH"),
        v3("v3-wbtc-weth", "WBTC", "WETH", 3000),
    ]
    graph = TokenGraph(["WETH", "USDC"], pools)
    assert graph.rejected == []
    found = cycles(graph)
    assert found == brute_force_cycles(pools, {"WETH", "USDC"})
    pairs = {c[1] for c in found if len(c[1]) == 2}
    assert ("v2-weth-usdc", "v3-weth-usdc-500") in pairs and ("v3-weth-usdc-500", "v3-weth-usdc-3000") in pairs
    kinds = {tuple(type(p).__name__ for p, _ in graph.hops_of(row)) for row in range(len(graph)) if graph.cycle_hops[row] == 3}
    assert ("V3Pool", "V3Pool", "V2Pool") in kinds or ("V2Pool", "V3Pool", "V3Pool") in kinds
    assert all(len(c[1]) != 3 or "v3-wbtc-weth" not in c[1] for c in found)  # WBTC has one pool: no cycle
    for row in range(len(graph)):
        for (p, z41), token_in in zip(graph.hops_of(row), graph.tokens_of(row)):
            assert (p.token0 if z41 else p.token1) == token_in
