"""The EIP-1559 prediction against a real chain: anvil's next base fee, block after block, under
Ethereum's rules and (anvil --optimism) OP-stack's."""
from __future__ import annotations

import random

import pytest
from web3 import HTTPProvider, Web3

from scanner.gas.fees import ETHEREUM, OPTIMISM, next_base_fee

pytestmark = pytest.mark.chain

TRANSFER_GAS = 21_000


@pytest.mark.parametrize(("rules", "options", "target_transfers", "senders", "blocks", "seed"), [
    # Ethereum: target = exactly four plain transfers; a block holds eight
    (ETHEREUM, {}, 4, lambda rng: rng.randint(0, 8), 50, 1559),
    # anvil --optimism applies OP-stack's elasticity 6 and denominator 250: a block holds 12 transfers
    (OPTIMISM, {"optimism": True}, 2, lambda rng: rng.choice([0, 1, 2, 2, 3, 6, 12]), 60, 250),
], ids=["ethereum", "op-stack"])
def test_predicted_next_base_fee_matches_anvil_block_after_block(anvil_factory, rules, options, target_transfers,
                                                                 senders, blocks, seed):
    """The chain's base fee, block after block, is the prediction under its rules (and, on the
    OP-stack chain, Ethereum's rules miss every block off the target)."""
    gas_limit = rules.elasticity * target_transfers * TRANSFER_GAS
    node = anvil_factory(gas_limit=gas_limit, automine=False, **options)
    w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    accounts = w3.eth.accounts
    rng = random.Random(seed)
    target = gas_limit // rules.elasticity
    seen = {"above": 0, "below": 0, "at": 0, "empty": 0}
    ethereum_misses = 0
    # anvil gives the first block after genesis the configured --base-fee as it is, the way the
    # London fork block took INITIAL_BASE_FEE; the rule holds from there on
    node.mine()
    parent = w3.eth.get_block("latest")
    for _ in range(blocks):
        for sender in accounts[: senders(rng)]:  # one transfer per sender: no nonce races
            w3.eth.send_transaction({
                "from": sender, "to": accounts[-1], "value": 1, "gas": TRANSFER_GAS,
                "maxFeePerGas": 10**12, "maxPriorityFeePerGas": 1,
            })
        node.mine()
        block = w3.eth.get_block("latest")
        assert block["number"] == parent["number"] + 1
        header = (parent["baseFeePerGas"], parent["gasUsed"], parent["gasLimit"])
        assert block["baseFeePerGas"] == next_base_fee(*header, rules), f"block {block['number']}: parent {header}"
        ethereum_misses += next_base_fee(*header, ETHEREUM) != block["baseFeePerGas"]
        used = parent["gasUsed"]
        seen["empty" if used == 0 else "at" if used == target else "above" if used > target else "below"] += 1
        parent = block
    assert all(seen.values()), f"the {blocks} blocks did not cover every case: {seen}"
    if rules != ETHEREUM:
        assert ethereum_misses >= blocks - seen["at"], "Ethereum's rules should miss every block off the target"
