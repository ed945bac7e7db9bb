"""Live V3 state on a real anvil: discovery from the factory's PoolCreated logs, a watcher shard
following Swap/Mint/Burn block by block (several events per block, reorgs), and the aggregator's
pools kept equal to the chain through the encoded messages.

The reference is the canonical pool contract itself: `slot0()`, `liquidity()` and `ticks()` read
at the block, never our own math.
"""
from __future__ import annotations

import math
import random

import pytest
from web3 import HTTPProvider, Web3

from scanner.chain import artifacts
from scanner.chain.discovery import discover
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.chain.v3 import create_pool, deploy_factory, read_pool, send
from scanner.config import DexConfig
from scanner.dex.kinds import make_pool
from scanner.dex.v3 import V3Pool, sqrt_ratio_at_tick
from scanner.model.features import FEATURE_NAMES
from scanner.wire.messages import BlockUpdate, Withdraw, decode

pytestmark = pytest.mark.chain

SEED = 7
SUPPLY = 10**40
TX_GAS = 5_000_000
E18 = 10**18


def _rpc(w3: Web3, method: str, *params):
    reply = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in reply, reply
    return reply["result"]


@pytest.fixture
def world(anvil):
    """Two tokens, the canonical factory with a 500 and a 3000 pool (positions around the price,
    one pool never initialized, so discovery must skip it) and a funded harness."""
    w3 = Web3(HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
    me = w3.eth.accounts[0]
    a, b, c = (artifacts.deploy(w3, "TestToken", s, s, 18) for s in ("TKA", "TKB", "TKC"))
    factory = deploy_factory(w3)
    harness = artifacts.deploy(w3, "V3Harness")
    for token in (a, b, c):
        send(w3, token.functions.mint(harness.address, SUPPLY), me)
    pools = []
    for fee, spacing in ((500, 10), (3000, 60)):
        pool = create_pool(w3, factory, a.address, b.address, fee, sqrt_ratio_at_tick(0))
        for lower, upper in ((-20, 20), (-5, 5), (-60, 3)):
            send(w3, harness.functions.mint(pool.address, lower * spacing, upper * spacing, 10**6 * E18), me, TX_GAS)
        pools.append(pool)
    send(w3, factory.functions.createPool(a.address, c.address, 500), me)  # created, never initialized
    return w3, me, factory, harness, pools


def _random_block(w3: Web3, me: str, harness, pools, rng: random.Random) -> None:
    """Several swaps, mints and burns in one block (automine off while they are sent)."""
    _rpc(w3, "evm_setAutomine", False)
    for _ in range(rng.randint(1, 5)):
        pool = rng.choice(pools)
        spacing = pool.functions.tickSpacing().call()
        kind = rng.random()
        if kind < 0.6:
            size = rng.choice([10**15, 10**20, 10**23, 4 * 10**24])
            fn = harness.functions.swap(pool.address, rng.random() < 0.5, size if rng.random() < 0.7 else -size, 0)
        elif kind < 0.8:
            lower = rng.randint(-40, 30)
            fn = harness.functions.mint(pool.address, lower * spacing, (lower + rng.randint(1, 15)) * spacing,
                                        rng.randint(1, 10**6) * E18)
        else:
            fn = harness.functions.burn(pool.address, -5 * spacing, 5 * spacing, rng.randint(0, 10**4) * E18)
        fn.transact({"from": me, "gas": TX_GAS})
    _rpc(w3, "evm_mine")
    _rpc(w3, "evm_setAutomine", True)


def _chain_state(w3: Web3, address: str, block: int) -> tuple:
    pool = read_pool(w3, address, block)
    return pool.sqrt_price_x96, pool.tick, pool.liquidity, pool.ticks


def _state(pool: V3Pool) -> tuple:
    return pool.sqrt_price_x96, pool.tick, pool.liquidity, pool.ticks


def _receive(receiver: dict[int, V3Pool], message: BlockUpdate | Withdraw) -> None:
    """What the aggregator does with a message: decode it and push each V3 state into its pool."""
    decoded = decode(message.encode())
    for pool_id, state in decoded.v3.items():
        receiver[pool_id].update(*state)


def test_discovery_finds_initialized_pools_and_skips_the_rest(world, caplog):
    w3, _me, factory, _harness, pools = world
    client = ChainClient(w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    with caplog.at_level("WARNING", logger="scanner.chain.discovery"):
        found = discover(client, [DexConfig("v3", factory.address, kind="uniswap-v3", fees=[500, 3000])],
                         progress=False)
    assert sorted(p.address for p in found) == sorted(p.address.lower() for p in pools)
    assert [r.getMessage() for r in caplog.records if "is not initialized" in r.getMessage()], caplog.text
    for info in found:
        assert _state(make_pool(info)) == _chain_state(w3, info.address, w3.eth.block_number)
    only_500 = discover(client, [DexConfig("v3", factory.address, kind="uniswap-v3", fees=[500])], progress=False)
    assert [p.fee_bps for p in only_500] == [5]


def test_watcher_follows_v3_state_block_by_block_and_through_reorgs(world):
    w3, me, factory, harness, pools = world
    client = ChainClient(w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    found = discover(client, [DexConfig("v3", factory.address, kind="uniswap-v3", fees=[500, 3000])], progress=False)
    registry = dict(enumerate(found))
    core = PoolWatcherCore(client, registry, shard=0)
    receiver = {i: make_pool(info) for i, info in registry.items()}  # the aggregator's pools
    _receive(receiver, core.bootstrap())
    rng = random.Random(SEED)
    checked = events = reorgs = 0
    ticks_seen: set[int] = set()
    for round_ in range(24):
        snapshot = _rpc(w3, "evm_snapshot") if round_ % 6 == 5 else None
        for _ in range(rng.randint(1, 3)):
            _random_block(w3, me, harness, pools, rng)
        out = core.poll()
        for message in out.messages:
            _receive(receiver, message)
            events += isinstance(message, BlockUpdate) and bool(message.v3)
        if snapshot is not None:  # orphan what was just mined and mine another branch in its place
            _rpc(w3, "evm_revert", snapshot)
            for _ in range(2):
                _random_block(w3, me, harness, pools, rng)
            out = core.poll()
            assert isinstance(out.messages[0], Withdraw)
            reorgs += 1
            for message in out.messages:
                _receive(receiver, message)
        head = w3.eth.block_number
        for i, info in registry.items():
            chain = _chain_state(w3, info.address, head)
            assert _state(core.state.v3[info.address]) == chain, (round_, info.address)
            assert _state(receiver[i]) == chain, (round_, info.address)
            checked += 1
            ticks_seen.add(chain[1])
    assert core.state.v3_skipped == 0
    assert reorgs == 4 and events >= 20 and checked == 48 and len(ticks_seen) > 10



def test_watcher_counts_the_initialized_ticks_each_block_crossed(world):
    """The LSTM's ticks-crossed feature, against the positions the fixture placed: the 500 pool has
    initialized ticks -600, -200, -50, 30, 50, 200 and the 3000 pool -3600, -1200, -300, 180, 300, 1200.
    Swaps run to price limits, so where each stops (and what it crosses) is known without our math."""
    w3, me, factory, harness, pools = world
    client = ChainClient(w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    found = discover(client, [DexConfig("v3", factory.address, kind="uniswap-v3", fees=[500, 3000])], progress=False)
    core = PoolWatcherCore(client, dict(enumerate(found)), shard=0)
    ids = {info.address: i for i, info in enumerate(found)}
    p500, p3000 = (p.address.lower() for p in pools)
    core.bootstrap()

    def block(*swaps: tuple[str, bool, int]) -> dict[int, float]:
        _rpc(w3, "evm_setAutomine", False)
        for pool, zero_for_one, tick in swaps:
            harness.functions.swap(Web3.to_checksum_address(pool), zero_for_one, 10**30,
                                   sqrt_ratio_at_tick(tick)).transact({"from": me, "gas": TX_GAS})
        _rpc(w3, "evm_mine")
        _rpc(w3, "evm_setAutomine", True)
        (frame,) = core.poll().features
        return dict(zip(frame.pool.tolist(), frame.x[:, FEATURE_NAMES.index("log_ticks_crossed")].tolist()))

    crossed = block((p3000, True, -400))  # 0 -> -400 crosses -300
    assert crossed == pytest.approx({ids[p3000]: math.log1p(1), ids[p500]: 0.0})
    crossed = block((p3000, False, 250))  # -400 -> 250 crosses -300 and 180
    assert crossed == pytest.approx({ids[p3000]: math.log1p(2), ids[p500]: 0.0})
    crossed = block((p500, True, -100), (p500, False, 100))  # -50, then -50, 30 and 50: four in one block
    assert crossed == pytest.approx({ids[p3000]: 0.0, ids[p500]: math.log1p(4)})
    assert (core.state.v3[p500].tick, core.state.v3[p3000].tick) == (100, 250)
