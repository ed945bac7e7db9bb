"""The simulated market's Uniswap V3 pools on a real anvil: canonical pools at their create2
addresses, noise swaps (some crossing ticks) and LP positions that move, pool states that the
blocks' Swap/Mint/Burn events reproduce exactly, and the same events again for the same seed."""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from actors.demo import local_config
from scanner.chain import artifacts
from scanner.chain.artifacts import v3_pool_address
from scanner.chain.v3 import read_pool
from scanner.config import validate
from scanner.sim.market import Market
from scanner.sim.spec import MarketSpec
from scanner.sim.v3_market import apply_event, pool_events

pytestmark = pytest.mark.chain

SEED = 7
BLOCKS = 30
REPLAYED = BLOCKS  # blocks stepped again on a second chain for the determinism check


def _market(url: str) -> tuple[Market, int]:
    """A deployed V3 market and its last set-up block. Blocks are 12 s apart: the clock decides whether a
    V2 pair writes its price accumulators (gas, hence the base fee the competitors weigh), and anvil's
    wall clock would differ between two runs of the same seed."""
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))
    w3.provider.make_request(RPCEndpoint("anvil_setBlockTimestampInterval"), [12])
    market = Market(w3, MarketSpec.with_v3(seed=SEED))
    market.deploy()
    return market, market.w3.eth.block_number


def _state(pool) -> tuple:
    return pool.sqrt_price_x96, pool.tick, pool.liquidity, pool.ticks


def test_v3_market_pools_events_and_determinism(anvil_factory, tmp_path: Path) -> None:
    started = time.monotonic()
    node = anvil_factory()
    market, deployed_at = _market(node.url)
    w3, dep = market.w3, market.deployment
    assert dep is not None

    # canonical pools at mainnet's create2 addresses for the factory, on pairs that V2 trades too
    factory = artifacts.at(w3, "UniswapV3Factory", dep.v3_factory)
    v2_pairs = {(p.token0, p.token1) for p in dep.pools}
    for p in dep.v3_pools:
        assert p.address == v3_pool_address(dep.v3_factory, p.token0, p.token1, p.fee)
        assert factory.functions.getPool(p.token0, p.token1, p.fee).call() == p.address
        assert (p.token0, p.token1) in v2_pairs
    assert dep.v3_fees == [500, 3000, 10000]
    config = local_config(node, dep, tmp_path / "journal.sqlite", tmp_path / "searcher.key")
    validate(config)
    assert [(d.kind, d.factory, d.fees) for d in config.dexes if d.kind == "uniswap-v3"] == [
        ("uniswap-v3", dep.v3_factory, [500, 3000, 10000])]

    # N blocks; then replay their events on the states read at the end of the set-up
    states = {p.address: read_pool(w3, p.address, deployed_at) for p in dep.v3_pools}
    summaries = [market.step() for _ in range(BLOCKS)]
    events = pool_events(w3, list(states), deployed_at + 1, deployed_at + BLOCKS)
    counts = Counter(name for _, name, _ in events)
    crossed = 0
    for address, name, args in events:
        before = states[address].liquidity
        apply_event(states[address], name, args)
        crossed += name == "Swap" and states[address].liquidity != before  # in-range liquidity changed: ticks crossed
    for i, p in enumerate(dep.v3_pools):
        chain = read_pool(w3, p.address)
        assert _state(states[p.address]) == _state(chain), f"replayed {p.symbol0}/{p.symbol1} {p.fee} differs from the chain"
        assert _state(market.v3.states[i]) == _state(chain), f"the market's {p.symbol0}/{p.symbol1} {p.fee} state differs"

    # every V3 transaction of the noise traders and LPs succeeded; report the most gas one used
    harnesses = {h.address for h in market.v3.harnesses.values()}
    calm = set(market.traders) | set(market.v3_lps)
    gas = []
    for number in range(deployed_at + 1, deployed_at + BLOCKS + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["to"] in harnesses and tx["from"] in calm:
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                assert receipt["status"] == 1, f"V3 transaction {tx['hash'].to_0x_hex()} of {tx['from']} reverted"
                gas.append(receipt["gasUsed"])
    assert max(gas) < market.v3.SWAP_GAS
    v3_trades = sum(s.v3_trades for s in summaries)
    lp_moves = sum(s.lp_moves for s in summaries)
    assert counts["Swap"] >= BLOCKS and crossed >= 3
    assert counts["Burn"] >= 3 and counts["Mint"] >= 3  # moved positions: burned, then minted around the price

    # the same seed on a fresh chain: the same V3 events, block for block
    again, again_at = _market(anvil_factory().url)
    assert again_at == deployed_at and again.deployment == dep
    for _ in range(REPLAYED):
        again.step()
    first = pool_events(w3, list(states), deployed_at + 1, deployed_at + REPLAYED)
    assert pool_events(again.w3, list(states), deployed_at + 1, deployed_at + REPLAYED) == first

    print(f"\n{len(dep.v3_pools)} V3 pools, {BLOCKS} blocks: {counts['Swap']} swaps ({v3_trades} noise, {crossed} crossing "
          f"ticks), {counts['Mint']} mints, {counts['Burn']} burns ({lp_moves} LP moves), most gas {max(gas)}; "
          f"determinism over {REPLAYED} blocks ({len(first)} events); {time.monotonic() - started:.1f} s")
