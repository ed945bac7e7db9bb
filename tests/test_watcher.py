"""Discovery and the pool watcher against a real anvil running the simulated market."""
from __future__ import annotations

import pytest

from scanner.chain.discovery import PoolLens, discover
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.config import DexConfig
from scanner.sim.market import Market, MarketSpec
from scanner.wire.messages import BlockUpdate, Withdraw


@pytest.fixture
def market(w3) -> Market:
    m = Market(w3, MarketSpec(seed=11))
    m.deploy()
    return m


def _dexes(market: Market) -> list[DexConfig]:
    return [DexConfig(name, factory, fee) for name, (factory, fee) in market.deployment.factories.items()]


def _chain_reserves(market: Market, pools) -> dict[str, tuple[int, int]]:
    reserves = {p.address.lower(): r for p, r in zip(market.deployment.pools, market.reserves())}
    return {p.address: reserves[p.address] for p in pools}


def test_discovery_reads_every_pool_with_exact_reserves(anvil, market):
    client = ChainClient(anvil.url)
    pools = discover(client, _dexes(market), batch=5, progress=False)
    assert {p.address for p in pools} == {p.address.lower() for p in market.deployment.pools}
    fees = {p.address.lower(): p.fee_bps for p in market.deployment.pools}
    assert all(p.fee_bps == fees[p.address] for p in pools)
    assert {p.address: (p.reserve0, p.reserve1) for p in pools} == _chain_reserves(market, pools)
    number, reserves = PoolLens(client).reserves_of([p.address for p in pools])
    assert number == client.block_number()
    assert reserves == [(p.reserve0, p.reserve1) for p in pools]


def _watch(anvil, market, shard_pools=None):
    client = ChainClient(anvil.url)
    pools = discover(client, _dexes(market), progress=False)
    registry = {i: p for i, p in enumerate(pools) if shard_pools is None or i in shard_pools}
    core = PoolWatcherCore(client, registry, shard=0)
    core.bootstrap()
    return core, registry


def test_watcher_follows_blocks_backfills_gaps_and_matches_chain(anvil, market):
    core, registry = _watch(anvil, market)
    start = core.tracker.head.number
    seen: list[int] = []
    for i in range(8):
        for _ in range(1 + i % 3):  # polls miss blocks on purpose: the watcher must backfill
            market.step()
        out = core.poll()
        updates = [m for m in out.messages if isinstance(m, BlockUpdate)]
        seen += [u.number for u in updates]
        assert len(out.features) == len(updates)
        for frame, update in zip(out.features, updates):
            assert set(frame.block) == {update.number} and len(frame) == len(registry)
        expected = _chain_reserves(market, registry.values())
        assert {a: core.state.reserves[a] for a in expected} == expected
    assert seen == list(range(start + 1, start + 1 + len(seen)))
    assert seen[-1] == int(anvil.call("eth_blockNumber"), 16)


def test_watcher_rolls_back_a_reorg_and_replays_the_new_chain(anvil, market):
    core, registry = _watch(anvil, market)
    snapshot = anvil.call("evm_snapshot")
    fork = core.tracker.head.number
    for _ in range(3):
        market.step()
    core.poll()
    orphaned = core.tracker.head.hash
    assert anvil.call("evm_revert", snapshot)
    market.rng = __import__("numpy").random.default_rng(999)  # a different history on the new branch
    market._nonces.clear()
    for _ in range(4):
        market.step()
    market._refresh_reserves()
    out = core.poll()
    withdraws = [m for m in out.messages if isinstance(m, Withdraw)]
    updates = [m for m in out.messages if isinstance(m, BlockUpdate)]
    assert [(w.fork_number, w.depth) for w in withdraws] == [(fork, 3)]
    assert [u.number for u in updates] == [fork + 1, fork + 2, fork + 3, fork + 4]
    assert orphaned not in {u.hash for u in updates}
    expected = _chain_reserves(market, registry.values())
    assert {a: core.state.reserves[a] for a in expected} == expected


def test_gas_oracle_reports_next_base_fee_tips_and_feed(anvil, market):
    from scanner.chain.gas import GasOracleCore

    client = ChainClient(anvil.url)
    oracle = GasOracleCore(client, feeds=[market.deployment.gas_feed])
    for _ in range(oracle.history_blocks):  # fee history past the set-up blocks (they tip nothing)
        market.step()
    for _ in range(5):
        market.step()
        update = oracle.poll()
        assert oracle.poll() is None  # nothing new until the next block
        head = client.get_block("latest")
        assert update.number == head["number"] and update.base_fee == head["baseFeePerGas"]
        assert 0 < update.tips[0] <= update.tips[1] <= update.tips[2]
        assert update.feed_answer > update.base_fee  # the market posts base fee + a tip
        market.step()
        assert client.get_block("latest")["baseFeePerGas"] == update.next_base_fee
        oracle.poll()
