"""The market's price oracle, `ReferencePrices` and the watcher's price-gap and fee features, on a real anvil.

The market's fair prices are its ground truth; the oracle publishes them every block, and the
watcher's `log_price_gap` must be exactly how far each pool's mid price is from them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from eth_utils import to_checksum_address

from scanner.chain import artifacts
from scanner.chain.discovery import discover
from scanner.chain.reference import ReferencePrices
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.config import DexConfig, load
from scanner.errors import ChainError
from scanner.model.features import FEATURE_NAMES
from scanner.sim.market import Market, MarketSpec
from scanner.wire.messages import BlockUpdate

pytestmark = pytest.mark.chain

GAP, FEE = FEATURE_NAMES.index("log_price_gap"), FEATURE_NAMES.index("fee")
F32_EPS = float(np.finfo(np.float32).eps)  # feature frames carry float32


def _market(w3, **spec) -> Market:
    m = Market(w3, MarketSpec(seed=spec.pop("seed", 23), **spec))
    m.deploy()
    return m


@pytest.fixture
def market(w3) -> Market:
    return _market(w3)


def _published(market: Market) -> list[int]:
    """What the oracle must hold after the market's latest block: each token's fair price in wad."""
    fair = market.fair_prices()
    return [int(fair[t.symbol] * 1e18) for t in market.spec.tokens]


def _oracle(market: Market):
    return artifacts.at(market.w3, "PriceOracle", market.deployment.price_oracle)


def _token_addresses(market: Market) -> list[str]:
    return [market.deployment.tokens[t.symbol] for t in market.spec.tokens]


def _watch(anvil, market: Market, **kwargs) -> tuple[PoolWatcherCore, dict]:
    client = ChainClient(anvil.url)
    dexes = [DexConfig(name, factory, fee) for name, (factory, fee) in market.deployment.factories.items()]
    registry = dict(enumerate(discover(client, dexes, progress=False)))
    core = PoolWatcherCore(client, registry, shard=0, **kwargs)
    return core, registry


def _expected_gaps(market: Market) -> dict[str, tuple[float, float]]:
    """pool address -> (log(pool mid / fair ratio), fee) from the market's own ground truth."""
    fair = market.fair_prices()
    out = {}
    for i, p in enumerate(market.deployment.pools):
        out[p.address.lower()] = (math.log(market.pool_price(i) / (fair[p.symbol0] / fair[p.symbol1])),
                                  p.fee_bps / 10_000)
    return out


def _check_frame(frame, registry, market: Market) -> float:
    """Every pool's gap and fee features against the market's truth; returns the largest |gap|."""
    expected = _expected_gaps(market)
    assert len(frame) == len(market.deployment.pools)
    for pool, row in zip(frame.pool.tolist(), frame.x):
        gap, fee = expected[registry[pool].address]
        # float32 storage: a relative rounding on top of the 1e-9 the float64 computation must meet
        assert abs(float(row[GAP]) - gap) <= 1e-9 + F32_EPS * abs(gap), (registry[pool], row[GAP], gap)
        assert row[FEE] == np.float32(fee)
    return float(np.abs(frame.x[:, GAP]).max())


def test_deploy_prices_every_token_with_a_dedicated_owner(market):
    oracle, dep = _oracle(market), market.deployment
    assert oracle.functions.BASE_CURRENCY_UNIT().call() == 10**18
    assert oracle.functions.getAssetsPrices(_token_addresses(market)).call() == _published(market)
    assert oracle.functions.getAssetPrice(dep.base).call() == 10**18  # the base token is worth one base token
    owner = oracle.functions.owner().call()
    assert owner == market.oracle_owner
    others = {market.deployer, market.searcher, *market.arbers, *market.spammers, *market.traders}
    assert owner not in others  # one transaction per sender per block: its update never collides


@pytest.mark.parametrize("congested", [False, True])
def test_market_publishes_its_fair_prices_every_block(w3, congested):
    # Congested: spam takes most of each block, and the oracle's update must still land in each.
    market = _market(w3, congestion_on_prob=1.0, congestion_off_prob=0.0) if congested else _market(w3)
    oracle, assets = _oracle(market), _token_addresses(market)
    history = []
    for _ in range(6):
        summary = market.step()
        assert oracle.functions.getAssetsPrices(assets).call(block_identifier="latest") == _published(market)
        updates = oracle.events.AssetPricesUpdated().get_logs(from_block=summary.number, to_block=summary.number)
        assert [(e["args"]["count"], e["args"]["blockNumber"]) for e in updates] == [(len(assets), summary.number)]
        history.append((summary.number, _published(market)))
        if congested:
            assert summary.spam_txs > 0  # spam blocks out room; the oracle's update is reserved a place
    # Each block holds its own prices (the fair prices walk, so they differ between blocks).
    for number, prices in history:
        assert oracle.functions.getAssetsPrices(assets).call(block_identifier=number) == prices
    assert len({tuple(p) for _, p in history}) == len(history)


def test_reference_prices_are_the_fair_prices_per_raw_unit(anvil, market):
    dep = market.deployment
    client = ChainClient(anvil.url)
    # Mixed case and a duplicate: tokens are a set of addresses, whatever their spelling.
    tokens = [a.lower() for a in dep.tokens.values()] + [to_checksum_address(dep.tokens["USDC"])]
    ref = ReferencePrices(client, dep.price_oracle.lower(), tokens)
    assert ref.decimals() == {dep.tokens[s].lower(): d for s, d in dep.decimals.items()}

    before = []
    for _ in range(3):
        market.step()
        head = client.get_block("latest")
        before.append((head["hash"].to_0x_hex(), market.fair_prices()))
    for _ in range(2):
        market.step()
    for block_hash, fair in before:  # read at an older block's hash: that block's prices, not the newest
        logs = ref.log_prices(block_hash)
        assert set(logs) == {a.lower() for a in dep.tokens.values()}
        for symbol, address in dep.tokens.items():
            # base-currency wei (1e-18 WETH) per raw unit: the wad price over 10^decimals
            want = math.log(fair[symbol] * 1e18) - dep.decimals[symbol] * math.log(10)
            assert logs[address.lower()] == pytest.approx(want, abs=1e-9)

    logs = ref.log_prices(client.get_block("latest")["hash"].to_0x_hex())
    fair = market.fair_prices()
    usdc, weth = dep.tokens["USDC"], dep.tokens["WETH"]
    # raw USDC per raw WETH: (WETH price / USDC price) * 10^6 / 10^18
    want = math.log(fair["WETH"] / fair["USDC"] * 10 ** dep.decimals["USDC"] / 10 ** dep.decimals["WETH"])
    assert ReferencePrices.pool_log_price(logs, "0x" + weth[2:].upper(), usdc) == pytest.approx(want, abs=1e-9)
    assert ReferencePrices.pool_log_price(logs, usdc, weth) == pytest.approx(-want, abs=1e-9)
    assert ReferencePrices.pool_log_price(logs, weth, dep.price_oracle) is None  # not a priced token
    assert ReferencePrices.pool_log_price({}, weth, usdc) is None


def test_watcher_gap_and_fee_features_match_the_market(anvil, market):
    core, registry = _watch(anvil, market, price_oracle=market.deployment.price_oracle)
    plain, _ = _watch(anvil, market)  # no oracle: the gap reads 0, the fee is still there
    plain.bootstrap()
    core.bootstrap()
    largest = 0.0
    for _ in range(6):
        summary = market.step()
        out = core.poll()
        assert [m.number for m in out.messages if isinstance(m, BlockUpdate)] == [summary.number]
        (frame,) = out.features
        largest = max(largest, _check_frame(frame, registry, market))
        (bare,) = plain.poll().features
        assert (bare.x[:, GAP] == 0).all()
        np.testing.assert_array_equal(bare.x[:, FEE], frame.x[:, FEE])
        others = [i for i in range(len(FEATURE_NAMES)) if i != GAP]
        np.testing.assert_array_equal(bare.x[:, others], frame.x[:, others])
    assert largest > 1e-4  # noise traders push pools off fair value: the feature is not trivially 0
    assert set(frame.x[:, FEE].tolist()) == {np.float32(f / 1e4) for f in {p.fee_bps for p in market.deployment.pools}}


def test_watcher_backfills_missed_blocks_with_each_blocks_own_prices(anvil, market):
    core, registry = _watch(anvil, market, price_oracle=market.deployment.price_oracle)
    core.bootstrap()
    truth = {}
    for _ in range(4):  # one poll for four blocks: each frame must use its own block's oracle answer
        summary = market.step()
        truth[summary.number] = _expected_gaps(market)
    out = core.poll()
    assert [int(f.block[0]) for f in out.features] == sorted(truth)
    for frame in out.features:
        expected = truth[int(frame.block[0])]
        for pool, row in zip(frame.pool.tolist(), frame.x):
            gap, _ = expected[registry[pool].address]
            assert abs(float(row[GAP]) - gap) <= 1e-9 + F32_EPS * abs(gap)


def test_a_failing_oracle_read_leaves_the_watcher_where_it_was(anvil, market):
    """The oracle read is part of poll()'s all-or-nothing read: a failure consumes no block."""
    core, registry = _watch(anvil, market, price_oracle=market.deployment.price_oracle)
    core.bootstrap()
    head = core.tracker.head
    good = core.reference.oracle
    for _ in range(2):
        market.step()
    core.reference.oracle = to_checksum_address(market.deployment.tokens["DAI"])  # answers nothing useful
    with pytest.raises(ChainError, match="price oracle"):
        core.poll()
    assert core.tracker.head == head and core.blocks_seen == 0
    core.reference.oracle = good
    out = core.poll()
    assert [int(f.block[0]) for f in out.features] == [head.number + 1, head.number + 2]
    _check_frame(out.features[-1], registry, market)


def test_a_token_as_oracle_fails_at_bootstrap_naming_it(anvil, market):
    token = market.deployment.tokens["USDC"]
    core, _ = _watch(anvil, market, price_oracle=token)
    with pytest.raises(ChainError) as err:
        core.bootstrap()
    assert token.lower() in str(err.value).lower() and "tokens.price_oracle" in str(err.value)


def test_an_oracle_missing_a_pool_token_fails_at_bootstrap_naming_it(anvil, market, w3):
    owner = w3.eth.accounts[0]
    market._rpc("evm_setAutomine", True)  # deploy() leaves automine off; this test mines no market block
    partial = artifacts.deploy(w3, "PriceOracle", owner)
    weth = market.deployment.tokens["WETH"]
    partial.functions.setAssetPrices([weth], [10**18]).transact({"from": owner})
    assert partial.functions.getAssetPrice(weth).call() == 10**18
    core, _ = _watch(anvil, market, price_oracle=partial.address)
    with pytest.raises(ChainError) as err:
        core.bootstrap()
    assert partial.address.lower() in str(err.value).lower()
    # The same oracle pricing every token is accepted.
    partial.functions.setAssetPrices(_token_addresses(market), _published(market)).transact({"from": owner})
    core, _ = _watch(anvil, market, price_oracle=partial.address)
    assert core.bootstrap().number == w3.eth.block_number


def test_an_address_without_code_as_oracle_fails_at_bootstrap_naming_it(anvil, market):
    """A typo'd address, or the oracle of another network: no code there at all."""
    nobody = "0x" + "42" * 20
    core, _ = _watch(anvil, market, price_oracle=nobody)
    with pytest.raises(ChainError) as err:
        core.bootstrap()
    assert nobody in str(err.value).lower()


def test_local_toml_names_the_addresses_of_a_fresh_seed_0_market(w3):
    """deploy/local.toml hard-codes the seed-0 market's addresses; the oracle's follows its owner's
    account index (3 + arbitrageurs + spammers - 1), so a change of those defaults must update it."""
    cfg = load(Path(__file__).resolve().parents[1] / "deploy" / "local.toml")
    dep = Market(w3, MarketSpec(seed=0)).deploy()
    assert cfg.tokens.price_oracle == dep.price_oracle
    assert cfg.tokens.base == [dep.base]
    assert {d.name: (d.factory, d.fee_bps) for d in cfg.dexes} == dep.factories
    assert cfg.submitter.executor == dep.executor
