"""Next base fee per chain: EIP-1559 with each chain's elasticity and denominator. The block-by-block
proofs on anvil (Ethereum's rules, and OP-stack's with `--optimism`: elasticity 6, denominator 250,
as OP Mainnet and Base) are in `test_gas_chain.py`.

No recorded L2 headers exist in ../shared/data (its L2 set holds pool states and Sync events,
no base fees), so the OP-stack check runs on anvil, which expresses those parameters exactly.
"""
from __future__ import annotations

import pytest

from scanner.gas.fees import (
    ARBITRUM,
    BASE,
    ETHEREUM,
    OPTIMISM,
    Eip1559Rules,
    FlooredBaseFee,
    next_base_fee,
)

GWEI = 10**9
TRANSFER_GAS = 21_000


def test_presets_carry_the_documented_parameters():
    assert (ETHEREUM.elasticity, ETHEREUM.denominator) == (2, 8)
    assert (OPTIMISM.elasticity, OPTIMISM.denominator) == (6, 250)
    assert BASE == OPTIMISM
    assert ARBITRUM == FlooredBaseFee(floor=20_000_000)


@pytest.mark.parametrize("used", [0, 1, 5_000_000, 15_000_000, 20_000_000, 30_000_000])
def test_default_rules_are_ethereum(used):
    assert next_base_fee(7 * GWEI, used, 30_000_000) == next_base_fee(7 * GWEI, used, 30_000_000, ETHEREUM)


@pytest.mark.parametrize("base_fee, used, limit, expected", [
    (GWEI, 5_000_000, 30_000_000, GWEI),  # at the target (limit / 6)
    (GWEI, 30_000_000, 30_000_000, GWEI + GWEI * 5 // 250),  # full: 5× the target over, / 250
    (GWEI, 0, 30_000_000, GWEI - GWEI // 250),  # empty
    (100, 5_000_001, 30_000_000, 101),  # above the target moves the fee by at least 1 wei
])
def test_op_stack_rule(base_fee, used, limit, expected):
    assert next_base_fee(base_fee, used, limit, OPTIMISM) == expected


def test_arbitrum_holds_the_parent_fee_and_never_goes_below_the_floor():
    assert next_base_fee(10**7, 0, 32_000_000, ARBITRUM) == ARBITRUM.floor
    assert next_base_fee(3 * 10**8, 32_000_000, 32_000_000, ARBITRUM) == 3 * 10**8


@pytest.mark.parametrize("elasticity, denominator", [(0, 8), (2, 0)])
def test_bad_rules_are_refused(elasticity, denominator):
    with pytest.raises(ValueError, match="must be >= 1"):
        Eip1559Rules(elasticity, denominator)


def test_gas_limit_below_the_elasticity_leaves_no_target():
    with pytest.raises(ValueError, match="no gas target at elasticity 6"):
        next_base_fee(GWEI, 0, 5, OPTIMISM)
