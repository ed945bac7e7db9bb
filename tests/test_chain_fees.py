"""Per-chain fee rules by name, and the L1 data fee charged to ranked opportunities (no chain needed:
`tests/test_chains.py` checks the same fees against the canonical oracle on an OP-stack anvil)."""
from __future__ import annotations

from fractions import Fraction

from scanner.config import FEE_RULES
from scanner.gas.fees import ARBITRUM, BASE, ETHEREUM, OPTIMISM, PRESETS, Eip1559Rules, chain_rules
from scanner.gas.l1fee import FjordFeeParams, TxEnvelope, l1_fee
from scanner.rank.l1 import L1Charger
from scanner.rank.ranking import Opportunity, expected_value

WETH, USDC, POOL = "0x" + "ee" * 20, "0x" + "cc" * 20, "0x" + "11" * 20
PARAMS = FjordFeeParams(l1_base_fee=30_000_000_000, blob_base_fee=2, base_fee_scalar=1368, blob_base_fee_scalar=810_949)


def test_every_fee_rule_a_config_names_exists_and_numbers_replace_it():
    assert set(FEE_RULES) == set(PRESETS)
    assert [chain_rules(n) for n in ("ethereum", "optimism", "base", "arbitrum")] == [ETHEREUM, OPTIMISM, BASE, ARBITRUM]
    assert chain_rules("ethereum", 6, 50) == Eip1559Rules(6, 50)


def opportunity(oid: str, base: str, net: int, gas_cost: int, eth_per_token: float = 1.0) -> Opportunity:
    probability = 0.99
    ev = float(expected_value(probability, net, 0, gas_cost))
    return Opportunity(oid, 7, base, (base, WETH if base != WETH else USDC, base), (POOL, POOL), (True, False),
                       (30, 30), 10**18, (1, 2), net + gas_cost, 0, 150_000, 10**8, gas_cost, net, gas_cost,
                       probability, 0, ev, eth_per_token)


def test_the_l1_fee_goes_into_gas_and_failure_cost_in_the_base_token_and_the_order_is_redone():
    usdc_per_eth = Fraction(3000 * 10**6, 10**18)  # USDC wei per ETH wei
    charger = L1Charger(10, bytes(20), lambda o: bytes.fromhex(o.id * 50), {WETH: Fraction(1), USDC: usdc_per_eth})
    opps = [opportunity("aa", WETH, 10**15, 10**12), opportunity("bb", USDC, 10**6, 10, eth_per_token=1e18 / 3000e6),
            opportunity("cc", WETH, 2 * 10**10, 10**6)]  # the last one cannot pay its L1 fee
    assert charger.charge(opps, tip=10**7) == [(o, 0) for o in opps] and charger.fee(opps[0], 10**7) == 0  # no values yet
    charger.params = PARAMS
    charged = charger.charge(opps, tip=10**7)
    fees = {o.id: l1_fee(bytes.fromhex(o.id * 50), TxEnvelope(10, bytes(20), 150_000, 10**8, 10**7), PARAMS) for o in opps}
    assert [o.id for o, _ in charged] == ["aa", "bb"] and fees["cc"] > 10**9
    for o, fee in charged:
        before = next(x for x in opps if x.id == o.id)
        rate = usdc_per_eth if o.base_token == USDC else Fraction(1)
        extra = -(-(fee * rate.numerator) // rate.denominator)  # rounded up
        assert fee == fees[o.id] > 0
        assert (o.gas_cost, o.net_profit, o.failure_cost) == (before.gas_cost + extra, before.net_profit - extra,
                                                              before.failure_cost + extra)
        assert o.expected_value == float(expected_value(o.success_probability, o.net_profit, 0, o.failure_cost))
    assert charged[0][0].expected_value_eth >= charged[1][0].expected_value_eth
