"""The EIP-1559 prediction against a real chain: anvil's next base fee, block after block."""
from __future__ import annotations

import random

import pytest
from web3 import HTTPProvider, Web3

from scanner.gas.fees import ELASTICITY_MULTIPLIER, next_base_fee

pytestmark = pytest.mark.chain

TRANSFER_GAS = 21_000
GAS_LIMIT = 2 * 4 * TRANSFER_GAS  # target = exactly four plain transfers; a block holds eight


def test_predicted_next_base_fee_matches_anvil_over_50_blocks(anvil_factory):
    node = anvil_factory(gas_limit=GAS_LIMIT, automine=False)
    w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    accounts = w3.eth.accounts
    rng = random.Random(1559)
    target = GAS_LIMIT // ELASTICITY_MULTIPLIER
    seen = {"above": 0, "below": 0, "at": 0, "empty": 0}
    # anvil gives the first block after genesis the configured --base-fee as it is, the way the
    # London fork block took INITIAL_BASE_FEE; the rule holds from there on
    node.mine()
    parent = w3.eth.get_block("latest")
    for _ in range(50):
        for sender in accounts[: rng.randint(0, 8)]:  # one transfer per sender: no nonce races
            w3.eth.send_transaction({
                "from": sender, "to": accounts[-1], "value": 1, "gas": TRANSFER_GAS,
                "maxFeePerGas": 10**12, "maxPriorityFeePerGas": 1,
            })
        node.mine()
        block = w3.eth.get_block("latest")
        assert block["number"] == parent["number"] + 1
        predicted = next_base_fee(parent["baseFeePerGas"], parent["gasUsed"], parent["gasLimit"])
        assert block["baseFeePerGas"] == predicted, (
            f"block {block['number']}: parent used {parent['gasUsed']} of {parent['gasLimit']} "
            f"at base fee {parent['baseFeePerGas']}"
        )
        used = parent["gasUsed"]
        seen["empty" if used == 0 else "at" if used == target else "above" if used > target else "below"] += 1
        parent = block
    assert all(seen.values()), f"the 50 blocks did not cover every case: {seen}"
