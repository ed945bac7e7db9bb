"""Gas: EIP-1559 against hand-computed cases, fee-history tips, route gas and its conversion."""
from __future__ import annotations

from fractions import Fraction

import pytest
from eth_account import Account
from web3 import Web3

from scanner.config import LOCAL_CHAIN_ID
from scanner.gas.fees import (
    DEFAULT_BASE_GAS,
    DEFAULT_GAS_PER_HOP,
    GasModel,
    congestion,
    gas_cost_in_token,
    next_base_fee,
    tip_percentiles,
)
from scanner.submit.journal import Journal
from scanner.submit.submitter import SubmitterCore

GWEI = 10**9
LIMIT = 30_000_000  # target 15M


@pytest.mark.parametrize(
    "base_fee, gas_used, gas_limit, expected",
    [
        (GWEI, 15_000_000, LIMIT, GWEI),  # at target: unchanged
        (GWEI, 30_000_000, LIMIT, 1_125_000_000),  # full block: +1/8
        (GWEI, 0, LIMIT, 875_000_000),  # empty block: −1/8
        (GWEI, 15_000_001, LIMIT, 1_000_000_008),  # 1e9·1 // 15e6 = 66, // 8 = 8
        (GWEI, 10_000_000, LIMIT, 958_333_334),  # 1e9·5e6 // 15e6 = 333_333_333, // 8 = 41_666_666
        (GWEI, 20_000_000, LIMIT, 1_041_666_666),  # 333_333_333 // 8 = 41_666_666 up
        (7, 15_000_001, LIMIT, 8),  # rounds to 0 above target, but rises by at least 1
        (7, 14_999_999, LIMIT, 7),  # rounds to 0 below target: no change
        (0, LIMIT, LIMIT, 1),  # even from zero
        (0, 0, LIMIT, 0),
        (GWEI, 15_000_000, 30_000_001, GWEI),  # odd limit: target floors to 15M
        (100 * GWEI, 36_000_000, 36_000_000, 112_500_000_000),
    ],
)
def test_next_base_fee_follows_eip_1559(base_fee, gas_used, gas_limit, expected):
    assert next_base_fee(base_fee, gas_used, gas_limit) == expected


def test_a_gas_limit_without_target_is_refused():
    with pytest.raises(ValueError, match="gas limit 1 leaves no gas target"):
        next_base_fee(GWEI, 0, 1)


def test_congestion_is_the_share_of_the_limit_used():
    assert congestion(15_000_000, LIMIT) == 0.5
    assert congestion(0, LIMIT) == 0.0
    with pytest.raises(ValueError, match="gas limit 0"):
        congestion(1, 0)


FEE_HISTORY = {  # as JSON-RPC returns it: hex quantities; the third block was empty
    "oldestBlock": "0x10",
    "baseFeePerGas": ["0x3b9aca00", "0x3b9aca00", "0x3b9aca00", "0x34630b8a", "0x34630b8a"],
    "gasUsedRatio": [0.5, 0.9, 0.0, 0.2],
    "reward": [["0x1", "0x64", "0x3e8"], ["0x2", "0xc8", "0x7d0"], ["0x0", "0x0", "0x0"], ["0x3", "0x12c", "0xbb8"]],
}


def test_tips_are_per_percentile_medians_over_non_empty_blocks():
    assert tip_percentiles(FEE_HISTORY, [10, 50, 90]) == {10: 2, 50: 200, 90: 2000}
    as_web3 = {**FEE_HISTORY, "reward": [[int(v, 16) for v in row] for row in FEE_HISTORY["reward"]]}
    assert tip_percentiles(as_web3, [10, 50, 90]) == {10: 2, 50: 200, 90: 2000}


def test_tips_of_an_idle_chain_are_zero():
    idle = {"gasUsedRatio": [0.0, 0.0], "reward": [["0x0"], ["0x0"]]}
    assert tip_percentiles(idle, [50]) == {50: 0}
    assert tip_percentiles({"gasUsedRatio": [], "reward": []}, [25, 75]) == {25: 0, 75: 0}


def test_malformed_fee_history_is_named():
    with pytest.raises(ValueError, match="2 reward rows for 1 blocks"):
        tip_percentiles({"gasUsedRatio": [0.5], "reward": [["0x1"], ["0x1"]]}, [50])
    with pytest.raises(ValueError, match="row has 1 rewards for percentiles"):
        tip_percentiles({"gasUsedRatio": [0.5], "reward": [["0x1"]]}, [25, 75])


def test_default_route_gas_is_labelled_and_linear():
    model = GasModel()
    assert (model.base, model.per_hop) == (DEFAULT_BASE_GAS, DEFAULT_GAS_PER_HOP) == (60_000, 60_000)
    assert model.units(2) == 180_000 and model.units(3) == 240_000


def test_calibration_fits_the_slope_and_never_underprices_a_sample():
    samples = [(2, 181_000), (3, 240_000), (2, 179_000), (3, 242_000)]
    model = GasModel.calibrate(samples)
    assert model == GasModel(base=59_000, per_hop=61_000)
    assert all(model.units(h) >= g for h, g in samples)


def test_the_submitter_fits_gas_on_the_samples_that_allow_it_instead_of_failing(tmp_path):
    """One route's gas alone can mislead (a 2-hop route that paid a first storage write cost more than a
    3-hop one): the submitter then waits for more measured routes, it does not stop (it once did)."""
    class Node:  # all SubmitterCore asks of its node when built: no call reaches a node here
        w3 = Web3()

        def chain_id(self) -> int:
            return LOCAL_CHAIN_ID

    handed: list[GasModel] = []
    with Journal(tmp_path / "journal.sqlite") as journal:
        core = SubmitterCore(Node(), "0x" + "5e" * 20, Account.from_key("0x" + "11" * 32), journal,  # type: ignore[arg-type]
                             on_calibrated=handed.append)
        core._calibrate(2, 230_000)
        core._calibrate(3, 215_000)  # gas falling with hops: no fit yet
        assert core.gas_model is None and handed == []
        core._calibrate(2, 175_000)  # the 2-hop mean now lies below the 3-hop one
        assert core.gas_model == GasModel(base=205_000, per_hop=12_500) and handed == [core.gas_model]
        assert all(core.gas_model.units(h) >= g for h, g in core._gas_samples)


def test_calibration_needs_two_hop_counts_and_a_rising_cost():
    with pytest.raises(ValueError, match=r"at least two hop counts, got \[2\]"):
        GasModel.calibrate([(2, 150_000), (2, 151_000)])
    with pytest.raises(ValueError, match="falls with hop count"):
        GasModel.calibrate([(2, 200_000), (3, 150_000)])


def test_gas_cost_is_converted_into_the_base_token_explicitly():
    assert gas_cost_in_token(200_000, 20 * GWEI) == 4 * 10**15  # WETH: 1:1 with ETH
    usdc_per_eth = Fraction(3_000 * 10**6, 10**18)  # 3000 USDC per ETH, in wei of each
    assert gas_cost_in_token(200_000, 20 * GWEI, usdc_per_eth) == 12_000_000  # 12 USDC
    assert gas_cost_in_token(1, 1, Fraction(1, 3)) == 1  # rounded up: never under-counts gas
