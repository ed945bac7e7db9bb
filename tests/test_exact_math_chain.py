"""`scanner.dex.v2.amount_out` is the exact maximum every pool pays, checked on chain.

For the canonical pair (30 bps) and fork pairs (25 and 5 bps) over reserves from 1 wei to the
uint112 limit: a swap asking exactly `amount_out` succeeds and one wei more reverts. So the
scanner's predicted outputs are neither optimistic (a failed transaction) nor conservative
(profit left in the pool).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError

from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.dex.v2 import MAX_RESERVE, amount_out

pytestmark = pytest.mark.chain

FEES_BPS = (30, 25, 5)
TX_GAS = 300_000  # explicit, so no estimateGas round trip per transaction


@dataclass
class Chain:
    """One anvil for the whole module; every example starts from the same snapshot."""

    w3: Web3
    owner: str
    trader: str
    recipient: str
    token0: Contract
    token1: Contract
    pairs: dict[int, Contract]
    snapshot: str = ""

    def send(self, fn: ContractFunction, sender: str) -> None:
        receipt = self.w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": TX_GAS}))
        assert receipt["status"] == 1, f"{fn.fn_name} reverted"

    def reset(self) -> None:
        """Back to the freshly deployed state (anvil consumes a snapshot on revert: take a new one)."""
        if self.snapshot:
            assert self.w3.provider.make_request("evm_revert", [self.snapshot])["result"] is True
        self.snapshot = self.w3.provider.make_request("evm_snapshot", [])["result"]


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    with Anvil.start() as node:
        w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        owner, trader, recipient = w3.eth.accounts[:3]
        a = artifacts.deploy(w3, "TestToken", "A", "A", 18)
        b = artifacts.deploy(w3, "TestToken", "B", "B", 18)
        factories = {30: artifacts.deploy(w3, "UniswapV2Factory", owner)}
        factories |= {fee: artifacts.deploy(w3, "FeeFactory", owner, fee) for fee in FEES_BPS if fee != 30}
        pairs = {}
        for fee, factory in factories.items():
            factory.functions.createPair(a.address, b.address).transact({"from": owner})
            pairs[fee] = artifacts.at(w3, "UniswapV2Pair", factory.functions.getPair(a.address, b.address).call())
        token0_address = pairs[30].functions.token0().call()
        token0, token1 = (a, b) if a.address == token0_address else (b, a)
        chain = Chain(w3, owner, trader, recipient, token0, token1, pairs)
        for tok in (token0, token1):
            chain.send(tok.functions.mint(trader, 2 * MAX_RESERVE), owner)
        chain.reset()
        yield chain


def reserves() -> st.SearchStrategy[int]:
    """Dust pools, ordinary ones, and ones at the uint112 ceiling, each often enough to matter."""
    return st.one_of(
        st.integers(1, 1_000),
        st.integers(1, 112).flatmap(lambda bits: st.integers(2 ** (bits - 1), 2**bits - 1)),
        st.integers(MAX_RESERVE - 10**6, MAX_RESERVE),
    )


@st.composite
def trades(draw: st.DrawFn) -> tuple[int, int, int, bool]:
    """(reserve_in, reserve_out, amount_in, zero_for_one) that the pool can hold after the swap."""
    reserve_in, reserve_out = draw(reserves()), draw(reserves())
    headroom = MAX_RESERVE - reserve_in  # the pair rejects balances above uint112
    assume(headroom >= 1)
    amount_in = draw(
        st.one_of(
            st.integers(1, min(1_000, headroom)),
            st.integers(1, headroom.bit_length()).flatmap(lambda bits: st.integers(1, min(2**bits, headroom))),
            st.just(headroom),
        )
    )
    return reserve_in, reserve_out, amount_in, draw(st.booleans())


@pytest.mark.parametrize("fee_bps", FEES_BPS)
@settings(max_examples=100, deadline=None)  # 300 real swaps over the three fee tiers
@given(trade=trades())
def test_amount_out_is_the_exact_maximum(chain: Chain, fee_bps: int, trade: tuple[int, int, int, bool]) -> None:
    reserve_in, reserve_out, amount_in, zero_for_one = trade
    out = amount_out(amount_in, reserve_in, reserve_out, fee_bps)
    assume(out > 0)  # the pair refuses a swap with no output: nothing to check

    chain.reset()
    pair = chain.pairs[fee_bps]
    token_in, token_out = (chain.token0, chain.token1) if zero_for_one else (chain.token1, chain.token0)
    chain.send(token_in.functions.mint(pair.address, reserve_in), chain.owner)
    chain.send(token_out.functions.mint(pair.address, reserve_out), chain.owner)
    chain.send(pair.functions.sync(), chain.owner)
    chain.send(token_in.functions.transfer(pair.address, amount_in), chain.trader)

    def swap(amount: int) -> ContractFunction:
        outs = (0, amount) if zero_for_one else (amount, 0)
        return pair.functions.swap(*outs, chain.recipient, b"")

    with pytest.raises(ContractLogicError):
        swap(out + 1).call({"from": chain.trader})
    chain.send(swap(out), chain.trader)

    assert token_out.functions.balanceOf(chain.recipient).call() == out
    r0, r1, _ = pair.functions.getReserves().call()
    assert ((r0, r1) if zero_for_one else (r1, r0)) == (reserve_in + amount_in, reserve_out - out)
