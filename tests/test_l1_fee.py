"""The OP-stack L1 data fee, Fjord formula, against the canonical contracts to the wei.

One anvil (`--optimism`) for the module, with `GasPriceOracle` and `L1Block` from
`@eth-optimism/contracts-bedrock` 0.17.3 installed at their predeploy addresses and switched to
Ecotone then Fjord by the depositor (`scanner.chain.opstack`). Over random signed executor calls of
2–4 hops, with random L1 base fee, blob base fee and scalars, `scanner.gas.l1fee` must equal
`getL1Fee` and `getL1GasUsed`; FastLZ lengths are pinned on data chosen to hit every branch of the
compressor; and what anvil's OP-stack EVM actually deducts from a sender is `charged_l1_fee`.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractPanicError

from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.chain.opstack import OpStackOracle, ecotone_calldata
from scanner.gas.l1fee import (
    FjordFeeParams,
    TxEnvelope,
    charged_l1_fee,
    estimated_size,
    flz_compress_len,
    l1_fee,
    oracle_l1_fee,
    oracle_l1_gas_used,
)
from scanner.submit.calibrate import ZERO_ADDRESS, execute_args

pytestmark = pytest.mark.chain

SIGNED_TXS = 240
PARAM_CHANGES = 24  # new random L1 values every SIGNED_TXS / PARAM_CHANGES transactions
UINT32_MAX = 2**32 - 1
ORACLE_BASE_FEE_SCALAR_LIMIT = 2**28
GWEI = 10**9
OP_MAINNET_LIKE = FjordFeeParams(l1_base_fee=12 * GWEI, blob_base_fee=3, base_fee_scalar=5_227,
                                 blob_base_fee_scalar=1_014_213)


@pytest.fixture(scope="module")
def op_node() -> Iterator[tuple[Anvil, Web3, OpStackOracle]]:
    node = Anvil.start(optimism=True)
    try:
        w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        yield node, w3, OpStackOracle.install(w3)
    finally:
        node.stop()


@pytest.fixture(scope="module")
def executor() -> Contract:
    return Web3().eth.contract(abi=artifacts.load_artifact("ArbExecutor").abi)


def random_params(rng: random.Random) -> FjordFeeParams:
    """L1 fees from 0 to 1000 gwei, scalars over all of uint32, with their edges now and then."""
    def fee() -> int:
        return rng.choice([0, 1, rng.randrange(GWEI), rng.randrange(1000 * GWEI)])

    def scalar(limit: int) -> int:
        return rng.choice([0, 1, limit - 1, rng.randrange(2_000_000), rng.randrange(limit)])

    # the oracle computes baseFeeScalar * 16 in uint32 (see test_oracle_overflow_is_mirrored)
    return FjordFeeParams(fee(), fee(), scalar(ORACLE_BASE_FEE_SCALAR_LIMIT), scalar(UINT32_MAX + 1))


def random_execute_call(executor: Contract, rng: random.Random) -> bytes:
    """Calldata of `ArbExecutor.execute` over 2–4 random hops: the V2 form as `execute_args` makes it
    from a route, or the mixed V2/V3 form (a V3 hop names its factory and fee tier in pips)."""
    hops = rng.randint(2, 4)
    pools = ["0x" + rng.randbytes(20).hex() for _ in range(hops)]
    zero_for_one = [rng.random() < 0.5 for _ in range(hops)]
    amount_in = rng.choice([10**18, rng.randrange(10**12, 10**24), rng.randrange(2**256)])
    if rng.random() < 0.5:
        route = {"pools": pools, "zero_for_one": zero_for_one, "amount_in": amount_in,
                 "fees_bps": [rng.choice([30, 25, 5, 100]) for _ in range(hops)]}
        args = execute_args(route, min_profit=rng.choice([0, 1, rng.randrange(10**18)]))
    else:
        factory = "0x" + rng.randbytes(20).hex()
        v3 = [rng.random() < 0.6 for _ in range(hops)]
        args = [[Web3.to_checksum_address(p) for p in pools], zero_for_one,
                [rng.choice([500, 3000, 10000]) if is_v3 else 30 for is_v3 in v3],
                [Web3.to_checksum_address(factory) if is_v3 else ZERO_ADDRESS for is_v3 in v3],
                amount_in, rng.randrange(10**18)]
    return bytes.fromhex(executor.encode_abi("execute", args)[2:])


def random_envelope(rng: random.Random, chain_id: int | None = None, nonce: int | None = None) -> TxEnvelope:
    base = rng.choice([10**6, rng.randrange(10**6, 50 * GWEI)])
    return TxEnvelope(
        chain_id=chain_id if chain_id is not None else rng.choice([10, 8453, 84532, rng.randrange(1, 2**32)]),
        to=rng.randbytes(20), gas=rng.randrange(150_000, 1_500_000),
        max_fee_per_gas=2 * base, max_priority_fee_per_gas=rng.choice([0, 1, rng.randrange(base)]),
        nonce=nonce if nonce is not None else rng.choice([0, rng.randrange(1000), rng.randrange(2**40)]),
    )


def sign(envelope: TxEnvelope, calldata: bytes, key: bytes) -> bytes:
    """The EIP-2718 bytes of the transaction, signed with a throwaway key by eth_account."""
    signed = Account.from_key(key).sign_transaction({
        "type": 2, "chainId": envelope.chain_id, "nonce": envelope.nonce, "to": Web3.to_checksum_address(envelope.to),
        "value": envelope.value, "gas": envelope.gas, "maxFeePerGas": envelope.max_fee_per_gas,
        "maxPriorityFeePerGas": envelope.max_priority_fee_per_gas, "data": calldata,
    })
    return bytes(signed.raw_transaction)


def rlp_list_body(encoded: bytes) -> bytes:
    """The items of an RLP list, its length prefix stripped."""
    return encoded[1:] if encoded[0] < 0xF8 else encoded[1 + encoded[0] - 0xF7:]


def test_our_fee_equals_get_l1_fee_over_random_signed_executor_calls(op_node, executor):
    _, _, oracle = op_node
    rng = random.Random(20240710)  # Fjord on OP Mainnet: 2024-07-10
    compared, worst_fee, worst_gas = 0, 0, 0
    params = OP_MAINNET_LIKE
    oracle.set_l1_values(params)
    for i in range(SIGNED_TXS):
        if i % (SIGNED_TXS // PARAM_CHANGES) == 0 and i:
            params = random_params(rng)
            oracle.set_l1_values(params)
            assert oracle.params() == params
        calldata = random_execute_call(executor, rng)
        envelope = random_envelope(rng)
        signed = sign(envelope, calldata, rng.randbytes(32))
        unsigned = envelope.unsigned(calldata)
        assert signed[0] == unsigned[0] == 2 and rlp_list_body(signed[1:]).startswith(rlp_list_body(unsigned[1:])), \
            "TxEnvelope.unsigned is not the payload eth_account signed"
        worst_fee = max(worst_fee, abs(oracle.l1_fee(signed) - oracle_l1_fee(signed, params)))
        worst_gas = max(worst_gas, abs(oracle.l1_gas_used(signed) - oracle_l1_gas_used(signed)))
        # the gas model's hook: the unsigned call, as the oracle estimates it
        worst_fee = max(worst_fee, abs(oracle.l1_fee(unsigned) - l1_fee(calldata, envelope, params)))
        compared += 1
    print(f"\nL1 fee (Fjord): {compared} signed executor calls (+ {compared} unsigned) against GasPriceOracle.getL1Fee "
          f"under {PARAM_CHANGES} random L1 fee settings; worst difference {worst_fee} wei, "
          f"getL1GasUsed worst difference {worst_gas}")
    assert compared >= 200
    assert worst_fee == 0 and worst_gas == 0


def _compressor_inputs(rng: random.Random) -> list[bytes]:
    """Literal runs, short and long matches (over 262 bytes: several codes), matches just inside and
    beyond the 8191-byte window, zero runs, and inputs too short to search."""
    block = rng.randbytes(9_000)
    return [
        b"", b"\x00", rng.randbytes(13), rng.randbytes(16), bytes(40), b"abc" * 100, bytes(5_000),
        rng.randbytes(31) * 3, rng.randbytes(32), rng.randbytes(33), rng.randbytes(64) * 40,
        block[:8_000] + block[:300], block + block[:300],  # a repeat 8000 bytes back, and 9000
        *(bytes(rng.choice(b"\x00\x00\x01\xff") for _ in range(rng.randrange(3_000))) for _ in range(10)),
        *(rng.randbytes(rng.randrange(1, 50)) * rng.randrange(1, 200) for _ in range(10)),
    ]


def test_fastlz_length_equals_the_contracts(op_node):
    """Behind 400 incompressible bytes every input is above the regression's floor, where
    `getL1GasUsed` grows with each compressed byte: equal gas means equal FastLZ length."""
    _, _, oracle = op_node
    rng = random.Random(8191)
    oracle.set_l1_values(OP_MAINNET_LIKE)
    prefix = rng.randbytes(400)
    assert estimated_size(flz_compress_len(prefix)) > estimated_size(0)
    for data in _compressor_inputs(rng):
        for probe in (data, prefix + data):
            assert oracle.l1_gas_used(probe) == oracle_l1_gas_used(probe), f"{len(probe)} bytes"
            assert oracle.l1_fee(probe) == oracle_l1_fee(probe, OP_MAINNET_LIKE), f"{len(probe)} bytes"


def test_anvil_charges_the_signed_transaction_without_padding(op_node, executor):
    """What the OP-stack EVM deducts besides gas × price is `charged_l1_fee` of the bytes sent,
    which the oracle's +68 bytes for a missing signature overstates."""
    node, w3, oracle = op_node
    rng = random.Random(68)
    for _ in range(12):
        params = random_params(rng)
        oracle.set_l1_values(params)
        key = rng.randbytes(32)
        sender = Account.from_key(key).address
        w3.provider.make_request("anvil_setBalance", [sender, hex(10**30)])  # type: ignore[arg-type]
        envelope = replace(random_envelope(rng, chain_id=w3.eth.chain_id, nonce=0), max_fee_per_gas=100 * GWEI)
        signed = sign(envelope, random_execute_call(executor, rng), key)
        before = w3.eth.get_balance(sender)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed), timeout=10)
        paid = before - w3.eth.get_balance(sender) - receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert paid == charged_l1_fee(signed, params)
        assert charged_l1_fee(signed, params) <= oracle_l1_fee(signed, params)


def test_oracle_overflow_is_mirrored(op_node):
    """A base fee scalar of 2**28 makes the contract's uint32 `baseFeeScalar() * 16` overflow."""
    _, _, oracle = op_node
    params = replace(OP_MAINNET_LIKE, base_fee_scalar=ORACLE_BASE_FEE_SCALAR_LIMIT)
    oracle.set_l1_values(params)
    with pytest.raises(ContractPanicError):
        oracle.l1_fee(bytes(300))
    with pytest.raises(ValueError, match="overflows uint32"):
        oracle_l1_fee(bytes(300), params)
    edge = replace(params, base_fee_scalar=ORACLE_BASE_FEE_SCALAR_LIMIT - 1)
    oracle.set_l1_values(edge)
    assert oracle.l1_fee(bytes(300)) == oracle_l1_fee(bytes(300), edge)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="base_fee_scalar = 4294967296 does not fit"):
        FjordFeeParams(1, 1, 2**32, 1)
    with pytest.raises(ValueError, match="20-byte address"):
        TxEnvelope(chain_id=10, to=b"\x01" * 19, gas=1, max_fee_per_gas=1, max_priority_fee_per_gas=1)
    assert charged_l1_fee(b"\x7e" + bytes(200), OP_MAINNET_LIKE) == 0  # deposits pay no L1 fee
    assert len(ecotone_calldata(OP_MAINNET_LIKE)) == 4 + 4 + 4 + 8 + 8 + 8 + 32 * 4
