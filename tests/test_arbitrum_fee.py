"""Arbitrum's L1 component (Nitro's poster fee) on the documented formula and figures, and in profit.

The formula (`scanner.gas.arbitrum`, sources there): 16 units per byte of the brotli-compressed
signed transaction (`l1pricing.go` `getPosterUnitsWithoutCache`), times ArbOS's L1 price per unit
(`ArbGasInfo.getL1BaseFeeEstimate()`; the docs' "How to estimate gas": L1P = that × 16 per byte,
L1C = L1P × L1S), bought as whole L2 gas at the paid gas price (`GetPosterGas`; Nitro's
`TestSequencerFeePaid` expects the cost less its remainder modulo the gas price).
"""
from __future__ import annotations

import random
from dataclasses import astuple, replace
from fractions import Fraction

import brotli
import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import HTTPProvider, Web3

from scanner.chain.arbitrum import ARB_GAS_INFO, ARB_OWNER_PUBLIC, GET_PRICES_IN_WEI, read_arbitrum_l1
from scanner.chain.gas import L1_READERS, GasOracleCore
from scanner.chain.rpc import ChainClient
from scanner.config import L1_FEES
from scanner.errors import ChainError
from scanner.gas.arbitrum import (
    ASSUMED_SIMPLE_TX_SIZE,
    PLACEHOLDER_SIGNATURE,
    UNITS_PER_BYTE,
    ArbitrumL1Pricing,
    poster_units,
)
from scanner.gas.fees import ARBITRUM
from scanner.gas.l1fee import TxEnvelope
from scanner.rank.l1 import L1_PRICING, L1Charger
from scanner.rank.ranking import Opportunity, expected_value
from scanner.submit.calibrate import execute_calldata
from scanner.wire.messages import GasUpdate, decode

GWEI = 10**9
ARBITRUM_ONE = 42161
WETH, USDC = "0x82aF49447D8a07e3bd95BD0d56f35241523fBab1", "0xaf88d065e77c8cC2239327C5EDb3A432268e5831"
EXECUTOR = bytes.fromhex("5a" * 20)
MIN_GAS_PRICE = 10**7  # 0.01 gwei: the L2 gas price floor a docs.arbitrum.io "Gas and fees" version gives (the preset holds 0.02)
KEY = "0x" + "11" * 32


def signed_transfer(nonce: int = 0, data: bytes = b"", key: str = KEY) -> tuple[bytes, tuple[int, int, int]]:
    """A real signed EIP-1559 transaction on Arbitrum One, and its (yParity, r, s)."""
    tx = {"type": 2, "chainId": ARBITRUM_ONE, "nonce": nonce, "maxFeePerGas": MIN_GAS_PRICE, "maxPriorityFeePerGas": 0,
          "gas": 500_000, "to": to_checksum_address(EXECUTOR), "value": 0, "data": data}
    s = Account.from_key(key).sign_transaction(tx)
    return bytes(s.raw_transaction), (s.v, s.r, s.s)


def test_units_are_16_per_byte_of_the_brotli_compressed_signed_transaction():
    raw, signature = signed_transfer()
    # the envelope with the wallet's signature is the wallet's bytes: what Nitro's tx.MarshalBinary() compresses
    assert TxEnvelope(ARBITRUM_ONE, EXECUTOR, 500_000, MIN_GAS_PRICE, 0).signed(b"", signature) == raw
    compressed = brotli.compress(raw, quality=1, lgwin=22)
    assert brotli.decompress(compressed) == raw
    assert poster_units(raw, 1) == UNITS_PER_BYTE * len(compressed)
    # a 107-byte transfer is 2 addresses, a 64-byte signature and small integers: brotli cannot shrink
    # it, and its framing adds 4 bytes, at level 0 and 1 alike (111 bytes; well under the 140 bytes
    # ArbGasInfo assumes for a simple transaction)
    assert len(raw) == 107 and poster_units(raw, 0) == poster_units(raw, 1) == 16 * 111
    # a compressible one (an executor call's zero-padded words) pays for far fewer bytes than it has
    call, _ = signed_transfer(data=bytes(4) + bytes(31) + b"\x01" + bytes(32 * 10))
    assert poster_units(call, 1) < 16 * len(call) // 2


def test_the_docs_formula_on_documented_figures():
    """L1C = L1P × L1S with L1P = getL1BaseFeeEstimate() × 16: at 123 gwei per unit (the L1 price
    Nitro's TestL1PriceUpdate starts from) a transfer that compresses to 111 bytes costs
    123e9 × 16 × 111 = 218,448 gwei; bought as L2 gas at the 0.01 gwei floor that is 21,844,800
    gas, no remainder. At 0.03 gwei the gas is 218448e9 // 3e7 = 7,281,600 (remainder 0); at
    0.07 gwei 218448e9 // 7e7 = 3,120,685 gas and 5e7 wei left over, which the sender does not pay."""
    raw, _ = signed_transfer()
    pricing = ArbitrumL1Pricing(123 * GWEI, brotli_level=1)
    assert pricing.poster_cost(raw) == 218_448 * GWEI
    assert pricing.charged(raw, MIN_GAS_PRICE) == 21_844_800 * MIN_GAS_PRICE == 218_448 * GWEI
    assert pricing.charged(raw, 3 * MIN_GAS_PRICE) == 7_281_600 * 3 * MIN_GAS_PRICE
    assert pricing.charged(raw, 7 * MIN_GAS_PRICE) == 3_120_685 * 7 * MIN_GAS_PRICE == 218_448 * GWEI - 50_000_000
    assert pricing.charged(raw, 0) == 0  # ArbOS charges L1 only under a positive base fee


def test_get_prices_in_wei_gives_the_price_per_unit_and_prices_a_140_byte_transaction():
    """`getPricesInWei()` (ArbOS ≥ 4) answers (per L2 tx, per L1 calldata byte, ...): per byte is
    16 × getL1BaseFeeEstimate(), per L2 tx 140 × per byte (`AssumedSimpleTxSize`)."""
    per_unit = 1_234_567_891
    prices = (140 * 16 * per_unit, 16 * per_unit, 0, MIN_GAS_PRICE, 0, MIN_GAS_PRICE)
    pricing = ArbitrumL1Pricing.from_prices_in_wei(prices)
    assert pricing == ArbitrumL1Pricing(per_unit, 1)
    # a transaction that compresses to exactly 140 bytes costs exactly the "per L2 tx" price
    rng = random.Random(140)
    for n in range(0, 80):
        raw, _ = signed_transfer(data=rng.randbytes(n))
        if poster_units(raw, 1) == 16 * ASSUMED_SIMPLE_TX_SIZE:
            break
    else:
        pytest.fail("no calldata length gives a 140-byte compressed transaction")
    assert pricing.poster_cost(raw) == prices[0]
    for bad in ((16 * per_unit * 139, 16 * per_unit), (140 * (16 * per_unit + 1), 16 * per_unit + 1)):
        with pytest.raises(ValueError, match="is not ArbOS's"):
            ArbitrumL1Pricing.from_prices_in_wei(bad)
    with pytest.raises(ValueError, match="brotli levels are 0 to 11"):
        ArbitrumL1Pricing(per_unit, 12)


def test_the_placeholder_signature_compresses_like_a_real_one():
    """A route is priced before it is signed. Brotli's entropy codes span the whole transaction, so
    the 64 random bytes of a real signature move its compressed size by a few bytes either way: over
    real signatures of random executor-like calls the placeholder is within 16 bytes (Nitro's own
    estimation pads by the same 16 bytes, `estimationPaddingUnits`) and within 2 bytes on average."""
    rng = random.Random(42161)
    diffs = []
    for i in range(60):
        data = bytes(4) + b"".join(rng.choice([bytes(32), bytes(12) + rng.randbytes(20), bytes(28) + rng.randbytes(4)])
                                   for _ in range(rng.randint(4, 20)))
        raw, _ = signed_transfer(nonce=0, data=data, key="0x" + keccak(i.to_bytes(4, "big")).hex())
        placeholder = TxEnvelope(ARBITRUM_ONE, EXECUTOR, 500_000, MIN_GAS_PRICE, 0).signed(data, PLACEHOLDER_SIGNATURE)
        assert len(placeholder) - len(raw) in (-1, 0, 1)  # r or s of a real signature may lose a leading zero byte
        diffs.append((poster_units(placeholder, 1) - poster_units(raw, 1)) // UNITS_PER_BYTE)
    assert max(map(abs, diffs)) <= 16 and abs(sum(diffs) / len(diffs)) <= 2, diffs


def opportunity(oid: str, base: str, net: int, gas_cost: int, eth_per_token: float = 1.0) -> Opportunity:
    """A 2-hop V2 cycle with real pool addresses, priced at the 0.01 gwei floor plus a 0.001 gwei tip."""
    probability = 0.99
    other = USDC if base == WETH else WETH
    pools = ("0x" + oid * 20, "0x" + oid[::-1] * 20)
    return Opportunity(id=oid, block=7, base_token=base, tokens=(base, other, base), pools=pools,
                       zero_for_one=(True, False), fees_bps=(30, 30), amount_in=10**18, amounts=(1, 2),
                       gross_profit=net + gas_cost, optimality_gap=0, gas_units=250_000,
                       gas_price=MIN_GAS_PRICE + 10**6, gas_cost=gas_cost, net_profit=net, failure_cost=gas_cost,
                       success_probability=probability, expected_slippage=0,
                       expected_value=float(expected_value(probability, net, 0, gas_cost)), eth_per_token=eth_per_token)


def test_profit_after_gas_on_an_arbitrum_chain_includes_the_l1_component():
    """The same ranked block with and without the L1 component: each route's gas cost, net profit and
    failure cost grow by exactly its poster fee (in its base token, rounded up), one that cannot pay
    it is dropped, and the order is redone."""
    usdc_per_eth = Fraction(3000 * 10**6, 10**18)
    charger = L1Charger(ARBITRUM_ONE, EXECUTOR, execute_calldata, {WETH: Fraction(1), USDC: usdc_per_eth})
    tip = 10**6
    opps = [opportunity("a1", WETH, 10**15, 10**12), opportunity("b2", USDC, 5 * 10**6, 10**3, eth_per_token=1e18 / 3000e6),
            opportunity("c3", WETH, 10**13, 10**12)]  # c3's profit is below its L1 cost
    assert sorted(charger.charge(opps, tip), key=lambda pair: pair[0].id) == [(o, 0) for o in opps]  # no L1 values yet
    # the values arrive as the gas oracle publishes them, through the wire
    update = decode(GasUpdate(1, MIN_GAS_PRICE, MIN_GAS_PRICE, (0, 0, 0), 0.1, 0,
                              astuple(ArbitrumL1Pricing(30 * GWEI, 1))).encode())
    assert isinstance(update, GasUpdate)
    charger.params = L1_PRICING["arbitrum"](*update.l1)
    assert charger.params == ArbitrumL1Pricing(30 * GWEI, 1)
    charged = charger.charge(opps, tip)
    assert [o.id for o, _ in charged] == ["b2", "a1"]  # 5 USDC (~0.0017 ETH) before 0.001 ETH
    for o, fee in charged:
        before = next(x for x in opps if x.id == o.id)
        signed = TxEnvelope(ARBITRUM_ONE, EXECUTOR, before.gas_units, before.gas_price, tip).signed(
            execute_calldata(before), PLACEHOLDER_SIGNATURE)
        units = 16 * len(brotli.compress(signed, quality=1, lgwin=22))
        cost = 30 * GWEI * units
        assert fee == cost - cost % MIN_GAS_PRICE > 0  # bought at the base fee: Arbitrum drops the tip
        rate = usdc_per_eth if o.base_token == USDC else Fraction(1)
        extra = -(-(fee * rate.numerator) // rate.denominator)
        assert (o.gas_cost, o.net_profit, o.failure_cost) == (before.gas_cost + extra, before.net_profit - extra,
                                                              before.failure_cost + extra)
        assert o.expected_value == float(expected_value(o.success_probability, o.net_profit, 0, o.failure_cost))
        assert o.expected_value < before.expected_value
    c3 = opps[2]
    assert charger.fee(c3, tip) > c3.net_profit  # dropped because the L1 component exceeds its profit
    assert charged[0][0].expected_value_eth >= charged[1][0].expected_value_eth


def test_every_l1_fee_rule_has_a_reader_and_a_pricing_and_the_selector_is_the_documented_one():
    assert set(L1_READERS) == set(L1_PRICING) == set(L1_FEES) - {"none"}
    assert GET_PRICES_IN_WEI == bytes.fromhex("41b247a8")  # ArbGasInfo.getPricesInWei()


@pytest.mark.chain
def test_the_gas_oracle_reads_arbos_values_and_a_node_without_them_is_an_error(anvil):
    """On a plain anvil there is no ArbOS: the read fails naming the setting, and so does an answer
    that is not ArbOS's. With stand-ins at 0x…6C and 0x…6B that answer what getPricesInWei() and
    getBrotliCompressionLevel() return, the gas oracle publishes the price per unit and level."""
    w3 = Web3(HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
    block = w3.eth.block_number
    with pytest.raises(ChainError, match=r"getPricesInWei\(\).*not an Arbitrum chain.*l1_fee"):
        read_arbitrum_l1(w3, block)

    def answer(*words: int) -> str:
        """Runtime code that returns `words` to any call: PUSH32 word, PUSH1 offset, MSTORE each, then RETURN."""
        stores = "".join("7f" + w.to_bytes(32, "big").hex() + "60" + bytes([32 * i]).hex() + "52" for i, w in enumerate(words))
        return "0x" + stores + "60" + bytes([32 * len(words)]).hex() + "6000f3"

    per_unit = 31 * GWEI
    w3.provider.make_request("anvil_setCode", [ARB_OWNER_PUBLIC, answer(1)])
    w3.provider.make_request("anvil_setCode", [ARB_GAS_INFO, answer(139 * 16 * per_unit, 16 * per_unit, 0, 1, 0, 1)])
    with pytest.raises(ChainError, match=r"is not ArbOS's.*not an Arbitrum chain"):
        read_arbitrum_l1(w3, block)
    w3.provider.make_request("anvil_setCode", [ARB_GAS_INFO, answer(140 * 16 * per_unit, 16 * per_unit, 0, 1, 0, 1)])
    w3.provider.make_request("evm_mine", [])
    oracle = GasOracleCore(ChainClient(anvil.url), rules=ARBITRUM, l1_fee="arbitrum")
    update = oracle.poll()
    assert update is not None and L1_PRICING["arbitrum"](*update.l1) == ArbitrumL1Pricing(per_unit, 1)
    plain = GasOracleCore(ChainClient(anvil.url), rules=ARBITRUM).poll()  # l1_fee "none": the rest, and no L1 values
    assert plain is not None and plain.l1 == () and replace(update, l1=()) == plain
