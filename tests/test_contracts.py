"""The contracts on a real anvil: canonical Uniswap V2 as shipped, the fee fork, and our helpers.

Every amount a swap pays is checked against `scanner.dex.v2.amount_out` to the wei, because the
scanner's profit numbers are only as good as that equality.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from scanner.chain import artifacts
from scanner.chain.artifacts import CANONICAL_INIT_CODE_HASH
from scanner.dex.v2 import amount_out
from scanner.errors import SetupError

pytestmark = pytest.mark.chain

REPO = Path(__file__).resolve().parents[1]
E18 = 10**18


def send(w3: Web3, fn: ContractFunction, sender: str) -> TxReceipt:
    """Send `fn` as a transaction and insist that it succeeded."""
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}), timeout=10)
    assert receipt["status"] == 1
    return receipt


def token(w3: Web3, symbol: str) -> Contract:
    return artifacts.deploy(w3, "TestToken", symbol, symbol, 18)


def make_pool(w3: Web3, factory: Contract, a: Contract, b: Contract, amount_a: int, amount_b: int) -> Contract:
    """Create the pair and seed it through the pair's own `mint`, as a liquidity provider would."""
    me = w3.eth.accounts[0]
    send(w3, factory.functions.createPair(a.address, b.address), me)
    pair = artifacts.at(w3, "UniswapV2Pair", factory.functions.getPair(a.address, b.address).call())
    send(w3, a.functions.mint(pair.address, amount_a), me)
    send(w3, b.functions.mint(pair.address, amount_b), me)
    send(w3, pair.functions.mint(me), me)
    return pair


@dataclass(frozen=True)
class Hop:
    pair: Contract
    token_in: str
    fee_bps: int

    @property
    def zero_for_one(self) -> bool:
        return self.pair.functions.token0().call() == self.token_in

    def quote(self, amount_in: int) -> int:
        r0, r1, _ = self.pair.functions.getReserves().call()
        return amount_out(amount_in, r0, r1, self.fee_bps) if self.zero_for_one else amount_out(amount_in, r1, r0, self.fee_bps)


def predicted_profit(hops: list[Hop], amount_in: int) -> int:
    """The cycle's profit by the Python math alone, from the reserves on chain now."""
    amount = amount_in
    for hop in hops:
        amount = hop.quote(amount)
    return amount - amount_in


def execute_call(executor: Contract, hops: list[Hop], amount_in: int, min_profit: int) -> ContractFunction:
    return executor.functions.execute(
        [h.pair.address for h in hops], [h.zero_for_one for h in hops], [h.fee_bps for h in hops], amount_in, min_profit
    )


def test_artifacts_match_sources() -> None:
    check = subprocess.run(["node", "contracts/compile.js", "--check"], cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_canonical_factory_has_mainnet_init_code_hash(w3: Web3) -> None:
    assert keccak(hexstr=artifacts.load_artifact("UniswapV2Pair").bytecode) == CANONICAL_INIT_CODE_HASH
    me = w3.eth.accounts[0]
    factory = artifacts.deploy(w3, "UniswapV2Factory", me)
    a, b = token(w3, "A"), token(w3, "B")
    send(w3, factory.functions.createPair(a.address, b.address), me)
    assert factory.functions.getPair(b.address, a.address).call() == artifacts.pair_address(
        factory.address, a.address, b.address
    )


def test_fork_pairs_sit_at_their_create2_address(w3: Web3) -> None:
    me = w3.eth.accounts[0]
    factory = artifacts.deploy(w3, "FeeFactory", me, 25)
    a, b = token(w3, "A"), token(w3, "B")
    send(w3, factory.functions.createPair(a.address, b.address), me)
    assert factory.functions.getPair(a.address, b.address).call() == artifacts.pair_address(
        factory.address, a.address, b.address, artifacts.load_artifact("FeePair").init_code_hash
    )
    assert factory.functions.feeBps().call() == 25
    assert factory.functions.allPairsLength().call() == 1


def test_missing_artifact_names_the_fix() -> None:
    with pytest.raises(SetupError, match=r"NoSuchContract\.json is missing: run `node contracts/compile.js`"):
        artifacts.load_artifact("NoSuchContract")


def test_fork_liquidity_matches_canonical(w3: Web3) -> None:
    """mint, burn and skim are the canonical pair's to the wei (the fee only enters swaps)."""
    me, lp = w3.eth.accounts[:2]

    def round_trip(factory: Contract) -> tuple[int, ...]:
        a, b = token(w3, "A"), token(w3, "B")
        pair = make_pool(w3, factory, a, b, 3 * E18 + 7, 5_000 * E18 + 11)
        send(w3, a.functions.mint(pair.address, 999), me)  # a donation that skim returns
        send(w3, pair.functions.skim(lp), me)
        minted = pair.functions.balanceOf(me).call()
        send(w3, pair.functions.transfer(pair.address, minted // 3), me)
        send(w3, pair.functions.burn(lp), me)
        r0, r1, _ = pair.functions.getReserves().call()
        reserves = (r0, r1) if pair.functions.token0().call() == a.address else (r1, r0)
        return minted, a.functions.balanceOf(lp).call(), b.functions.balanceOf(lp).call(), *reserves

    canonical = round_trip(artifacts.deploy(w3, "UniswapV2Factory", me))
    assert round_trip(artifacts.deploy(w3, "FeeFactory", me, 30)) == canonical


@pytest.mark.parametrize("a_to_b", [True, False])
def test_fork_swap_pays_exact_amount_out(w3: Web3, a_to_b: bool) -> None:
    me, trader = w3.eth.accounts[:2]
    factory = artifacts.deploy(w3, "FeeFactory", me, 25)
    a, b = token(w3, "A"), token(w3, "B")
    pair = make_pool(w3, factory, a, b, 1_000 * E18, 3_000_000 * E18)
    src, dst = (a, b) if a_to_b else (b, a)
    hop = Hop(pair, src.address, 25)
    amount_in = 7 * E18 if a_to_b else 21_000 * E18
    out = hop.quote(amount_in)
    r0, r1, _ = pair.functions.getReserves().call()
    r_in, r_out = (r0, r1) if hop.zero_for_one else (r1, r0)
    assert out == amount_out(amount_in, r_in, r_out, 25) > amount_out(amount_in, r_in, r_out, 30)

    send(w3, src.functions.mint(pair.address, amount_in), me)
    outs = (0, out) if hop.zero_for_one else (out, 0)
    too_much = (0, out + 1) if hop.zero_for_one else (out + 1, 0)
    with pytest.raises(ContractLogicError, match="UniswapV2: K"):
        pair.functions.swap(*too_much, trader, b"").call({"from": trader})
    receipt = send(w3, pair.functions.swap(*outs, trader, b""), trader)
    assert dst.functions.balanceOf(trader).call() == out
    (swap,) = pair.events.Swap().process_receipt(receipt, errors=DISCARD)
    assert swap["args"]["to"] == trader
    assert (swap["args"]["amount0In"] + swap["args"]["amount1In"], swap["args"]["amount0Out"] + swap["args"]["amount1Out"]) == (amount_in, out)


@pytest.fixture
def two_dex_market(w3: Web3) -> dict[str, Contract]:
    """BASE/USD on canonical V2 at 2000 and on the 25 bps fork at 2100, USD/X at 25 bps, X/BASE
    on canonical: a 2-hop gap (sell BASE on the fork, buy it back on V2) and a triangular one."""
    me = w3.eth.accounts[0]
    base, usd, x = token(w3, "BASE"), token(w3, "USD"), token(w3, "X")
    canonical = artifacts.deploy(w3, "UniswapV2Factory", me)
    fork = artifacts.deploy(w3, "FeeFactory", me, 25)
    executor = artifacts.deploy(w3, "ArbExecutor")
    send(w3, base.functions.mint(executor.address, 100 * E18), me)
    pools = {
        "v2_base_usd": make_pool(w3, canonical, base, usd, 1_000 * E18, 2_000_000 * E18),
        "fork_base_usd": make_pool(w3, fork, base, usd, 1_000 * E18, 2_100_000 * E18),
        "fork_usd_x": make_pool(w3, fork, usd, x, 2_000_000 * E18, 1_000_000 * E18),
        "v2_x_base": make_pool(w3, canonical, x, base, 1_000_000 * E18, 1_050 * E18),
    }
    # Age the pools like live ones (price accumulators already non-zero, a later block), so the
    # measured gas does not include first-time storage writes that depend on the test's timing.
    for _ in range(2):
        w3.provider.make_request("evm_increaseTime", [12])
        for pair in pools.values():
            send(w3, pair.functions.sync(), me)
    w3.provider.make_request("evm_increaseTime", [12])
    return {"base": base, "usd": usd, "x": x, "executor": executor, **pools}


def cycles(m: dict[str, Contract]) -> dict[int, list[Hop]]:
    base, usd, x = (m[k].address for k in ("base", "usd", "x"))
    return {
        2: [Hop(m["fork_base_usd"], base, 25), Hop(m["v2_base_usd"], usd, 30)],
        3: [Hop(m["v2_base_usd"], base, 30), Hop(m["fork_usd_x"], usd, 25), Hop(m["v2_x_base"], x, 30)],
    }


@pytest.mark.parametrize("n_hops", [2, 3])
def test_executor_call_is_the_exact_simulation(w3: Web3, two_dex_market: dict[str, Contract], n_hops: int) -> None:
    me, stranger = w3.eth.accounts[:2]
    executor, base = two_dex_market["executor"], two_dex_market["base"]
    hops = cycles(two_dex_market)[n_hops]
    amount_in = 5 * E18
    profit = predicted_profit(hops, amount_in)
    assert profit > 0

    assert execute_call(executor, hops, amount_in, profit).call({"from": me}) == profit
    with pytest.raises(ContractCustomError) as short:
        execute_call(executor, hops, amount_in, profit + 1).call({"from": me})
    assert artifacts.describe_revert("ArbExecutor", short.value).startswith("InsufficientProfit(")
    with pytest.raises(ContractCustomError) as outsider:
        execute_call(executor, hops, amount_in, 0).call({"from": stranger})
    assert artifacts.describe_revert("ArbExecutor", outsider.value) == "NotOwner()"

    before = base.functions.balanceOf(executor.address).call()
    receipt = send(w3, execute_call(executor, hops, amount_in, profit), me)
    assert base.functions.balanceOf(executor.address).call() - before == profit
    (arb,) = executor.events.Arb().process_receipt(receipt, errors=DISCARD)
    assert (arb["args"]["amountIn"], arb["args"]["profit"]) == (amount_in, profit)
    # One transfer and one swap per hop and no storage of its own: a regression guard, not a spec.
    assert receipt["gasUsed"] < 60_000 + 75_000 * n_hops


def test_executor_rejects_paths_that_do_not_close(w3: Web3, two_dex_market: dict[str, Contract]) -> None:
    executor = two_dex_market["executor"]
    open_path = cycles(two_dex_market)[3][:2]
    with pytest.raises(ContractCustomError) as err:
        execute_call(executor, open_path, E18, 0).call({"from": w3.eth.accounts[0]})
    assert artifacts.describe_revert("ArbExecutor", err.value).startswith("NotACycle(")


def test_executor_withdraw_is_owner_only(w3: Web3, two_dex_market: dict[str, Contract]) -> None:
    me, stranger = w3.eth.accounts[:2]
    executor, base = two_dex_market["executor"], two_dex_market["base"]
    with pytest.raises(ContractCustomError):
        executor.functions.withdraw(base.address, E18, stranger).call({"from": stranger})
    send(w3, executor.functions.withdraw(base.address, E18, stranger), me)
    assert base.functions.balanceOf(stranger).call() == E18


@pytest.mark.parametrize("fee_bps", [30, 25])
def test_sim_router_swap_pays_amount_out(w3: Web3, fee_bps: int) -> None:
    me, trader, recipient = w3.eth.accounts[:3]
    factory = (
        artifacts.deploy(w3, "UniswapV2Factory", me) if fee_bps == 30 else artifacts.deploy(w3, "FeeFactory", me, fee_bps)
    )
    a, b = token(w3, "A"), token(w3, "B")
    pair = make_pool(w3, factory, a, b, 500 * E18, 1_000_000 * E18)
    router = artifacts.deploy(w3, "SimRouter")
    send(w3, b.functions.mint(trader, 10_000 * E18), me)
    send(w3, b.functions.approve(router.address, 2**256 - 1), trader)

    hop = Hop(pair, b.address, fee_bps)
    amount_in = 4_321 * E18
    out = hop.quote(amount_in)
    swap = router.functions.swap(pair.address, hop.zero_for_one, fee_bps, amount_in, out, recipient)
    assert swap.call({"from": trader}) == out
    with pytest.raises(ContractCustomError):
        router.functions.swap(pair.address, hop.zero_for_one, fee_bps, amount_in, out + 1, recipient).call({"from": trader})
    send(w3, swap, trader)
    assert a.functions.balanceOf(recipient).call() == out
    assert b.functions.balanceOf(trader).call() == 10_000 * E18 - amount_in


def test_gas_feed_rounds(w3: Web3) -> None:
    me, stranger = w3.eth.accounts[:2]
    feed = artifacts.deploy(w3, "GasFeed", 9, "Fast Gas / Gwei")
    assert (feed.functions.decimals().call(), feed.functions.description().call()) == (9, "Fast Gas / Gwei")
    with pytest.raises(ContractCustomError):
        feed.functions.latestRoundData().call()

    first = send(w3, feed.functions.update(25 * 10**9), me)
    send(w3, feed.functions.update(31 * 10**9), me)
    round_id, answer, started_at, updated_at, answered_in = feed.functions.latestRoundData().call()
    assert (round_id, answer, answered_in) == (2, 31 * 10**9, 2)
    assert started_at == updated_at == w3.eth.get_block("latest")["timestamp"]
    assert feed.functions.getRoundData(1).call()[:2] == [1, 25 * 10**9]
    (event,) = feed.events.AnswerUpdated().process_receipt(first, errors=DISCARD)
    assert (event["args"]["current"], event["args"]["roundId"]) == (25 * 10**9, 1)
    with pytest.raises(ContractCustomError):
        feed.functions.update(1).call({"from": stranger})
    with pytest.raises(ContractCustomError):
        feed.functions.getRoundData(3).call()


@pytest.mark.parametrize("gas", [1_000_000, 4_000_000])
def test_gas_burner_burns_what_it_is_asked(w3: Web3, gas: int) -> None:
    burner = artifacts.deploy(w3, "GasBurner")
    receipt = send(w3, burner.functions.burn(gas), w3.eth.accounts[0])
    assert abs(receipt["gasUsed"] - gas) <= gas // 10


def test_price_oracle_reads_like_aave_and_only_its_owner_writes(w3: Web3) -> None:
    owner, stranger = w3.eth.accounts[2], w3.eth.accounts[3]
    oracle = artifacts.deploy(w3, "PriceOracle", owner, sender=stranger)  # the owner is the argument, not the deployer
    a, b, c = token(w3, "A"), token(w3, "B"), token(w3, "C")
    assert oracle.functions.BASE_CURRENCY_UNIT().call() == E18
    assert oracle.functions.owner().call() == owner

    # Unpriced: a zero price would read as a free token, so the oracle reverts naming the asset.
    with pytest.raises(ContractCustomError) as unpriced:
        oracle.functions.getAssetPrice(a.address).call()
    assert artifacts.describe_revert("PriceOracle", unpriced.value).lower() == f"noprice(asset={a.address.lower()})"

    prices = [3 * E18, 1, 2**255]
    receipt = send(w3, oracle.functions.setAssetPrices([a.address, b.address, c.address], prices), owner)
    (event,) = oracle.events.AssetPricesUpdated().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["count"], event["args"]["blockNumber"]) == (3, receipt["blockNumber"])
    assert oracle.functions.getAssetsPrices([a.address, b.address, c.address]).call() == prices
    assert oracle.functions.getAssetsPrices([c.address, a.address, c.address]).call() == [2**255, 3 * E18, 2**255]
    assert oracle.functions.getAssetsPrices([]).call() == []
    assert [oracle.functions.getAssetPrice(t.address).call() for t in (a, b, c)] == prices

    # Anyone but the owner is refused, and nothing changes.
    with pytest.raises(ContractCustomError) as outsider:
        oracle.functions.setAssetPrices([a.address], [5]).call({"from": stranger})
    assert artifacts.describe_revert("PriceOracle", outsider.value) == "NotOwner()"
    failed = w3.eth.wait_for_transaction_receipt(
        oracle.functions.setAssetPrices([a.address], [5]).transact({"from": stranger, "gas": 200_000}), timeout=10)
    assert failed["status"] == 0
    assert oracle.functions.getAssetPrice(a.address).call() == 3 * E18

    with pytest.raises(ContractCustomError) as mismatch:
        oracle.functions.setAssetPrices([a.address, b.address], [5]).call({"from": owner})
    assert artifacts.describe_revert("PriceOracle", mismatch.value) == "LengthMismatch()"

    # An update overwrites; one unpriced asset in a batch read reverts the whole read, naming it.
    send(w3, oracle.functions.setAssetPrices([b.address], [7 * E18]), owner)
    assert oracle.functions.getAssetsPrices([a.address, b.address]).call() == [3 * E18, 7 * E18]
    stranger_token = token(w3, "D")
    with pytest.raises(ContractCustomError) as partial:
        oracle.functions.getAssetsPrices([a.address, stranger_token.address]).call()
    assert artifacts.describe_revert("PriceOracle", partial.value).lower() == \
        f"noprice(asset={stranger_token.address.lower()})"
    # Setting a zero price unprices the asset again (it reads as missing, never as free).
    send(w3, oracle.functions.setAssetPrices([c.address], [0]), owner)
    with pytest.raises(ContractCustomError):
        oracle.functions.getAssetPrice(c.address).call()
