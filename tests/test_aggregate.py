"""The aggregator's block assembly, in-process: completeness, timeouts, late shards, reorgs."""
from __future__ import annotations

from scanner.dex.pool import PoolInfo
from scanner.rank.aggregate import AggregatorCore
from scanner.wire.messages import BlockUpdate, Withdraw

WETH, USDC = "0x" + "aa" * 20, "0x" + "bb" * 20
E18 = 10**18


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _pools() -> dict[int, PoolInfo]:
    # The same pair on two DEXes at the same price: no opportunity until one moves.
    return {0: PoolInfo("0x" + "01" * 20, WETH, USDC, 1000 * E18, 3_000_000 * 10**6, "a", 30),
            1: PoolInfo("0x" + "02" * 20, WETH, USDC, 100 * E18, 300_000 * 10**6, "b", 25)}


def _core(clock) -> AggregatorCore:
    return AggregatorCore(_pools(), [WETH], shards=2, shard_timeout_s=2.0, clock=clock)


def _update(shard, number, reserves=None) -> BlockUpdate:
    return BlockUpdate(shard, number, f"0x{number:064x}", f"0x{number - 1:064x}", 10**9, 15_000_000, 30_000_000, 0,
                       reserves or {})


def test_blocks_rank_in_order_once_every_shard_reported():
    clock = Clock()
    core = _core(clock)
    assert core.on_block(_update(0, 10)) == []  # shard 1 has not started
    assert [b.number for b in core.on_block(_update(1, 10))] == [10]
    assert core.on_block(_update(0, 11)) == [] and core.on_block(_update(0, 12)) == []
    ranked = core.on_block(_update(1, 12, {1: (90 * E18, 300_000 * 10**6)}))
    assert [b.number for b in ranked] == [11, 12] and all(b.complete for b in ranked)
    assert ranked[-1].opportunities, "the moved pool opens a gap"
    assert core.shard_timeouts == 0


def test_a_silent_shard_costs_a_counted_timeout_and_its_late_update_still_counts():
    clock = Clock()
    core = _core(clock)
    core.on_block(_update(0, 10))
    core.on_block(_update(1, 10))
    clock.t = 1.0
    assert core.on_block(_update(0, 11)) == []
    clock.t = 3.5
    ranked = core.tick()
    assert [(b.number, b.complete) for b in ranked] == [(11, False)] and core.shard_timeouts == 1
    # Shard 1's block 11 arrives after 11 was ranked: its reserves still reach the scanner.
    core.on_block(_update(1, 11, {1: (90 * E18, 300_000 * 10**6)}))
    assert core.ranker.graph.pools[core.ranker.graph.slots[_pools()[1].address]].reserve0 == 90 * E18
    assert core.on_block(_update(0, 12)) == []
    assert core.on_block(_update(1, 12))[0].opportunities


def test_blocks_before_every_shard_bootstrapped_are_not_served():
    core = _core(Clock())
    assert core.on_block(_update(0, 10)) == []
    assert core.on_block(_update(1, 12)) == []  # shard 1 started two blocks later
    assert core.on_block(_update(0, 11)) == []  # 10 and 11 had stale shard-1 pools: not served
    assert [b.number for b in core.on_block(_update(0, 12))] == [12]


def test_withdraw_rolls_back_reserves_and_forgets_orphaned_blocks():
    core = _core(Clock())
    core.on_block(_update(0, 10))
    core.on_block(_update(1, 10))
    moved = {1: (90 * E18, 300_000 * 10**6)}
    core.on_block(_update(0, 11))
    assert core.on_block(_update(1, 11, moved))[0].opportunities
    core.on_block(_update(0, 12))  # pending, then orphaned
    core.on_withdraw(Withdraw(1, 10, 1, {1: (100 * E18, 300_000 * 10**6)}))
    assert 12 not in core.pending and core.last_ranked == 10 and core.withdrawn_blocks == 1
    core.on_withdraw(Withdraw(0, 10, 1, {}))
    ranked = core.on_block(_update(0, 11)) + core.on_block(_update(1, 11))
    assert [b.number for b in ranked] == [11] and ranked[0].opportunities == []  # prices equal again
