"""An L2 transaction's L1 data fee, charged to ranked opportunities (OP-stack chains).

On an OP-stack chain every transaction pays, besides gas, a fee for publishing its bytes on L1
(`scanner.gas.l1fee`, Fjord): a fee per transaction that depends on its calldata, not on gas. The
ranking prices gas per route for every cycle; the L1 fee needs the route's exact calldata, so it is
charged to the ranked opportunities (the top N), which are then ordered again. A reverted attempt
pays it too, so it adds to the failure cost as well.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction

from scanner.gas.fees import gas_cost_in_token
from scanner.gas.l1fee import FjordFeeParams, TxEnvelope, l1_fee
from scanner.rank.ranking import Opportunity, expected_value


@dataclass
class L1Charger:
    """Charges each opportunity the L1 fee of its executor call at the L1Block values last seen.

    `calldata` encodes an opportunity's executor call; the envelope around it is the transaction the
    submitter would sign (this chain, the executor, the route's gas and gas price, the tip).
    """

    chain_id: int
    executor: bytes  # 20 bytes
    calldata: Callable[[Opportunity], bytes]
    token_per_eth: Mapping[str, Fraction]  # base token -> its wei per ETH wei
    params: FjordFeeParams | None = None  # None until the gas oracle has read L1Block

    def fee(self, opp: Opportunity, tip: int) -> int:
        """The L1 fee of `opp`'s executor call, in wei of ETH (0 before any L1Block values)."""
        if self.params is None:
            return 0
        envelope = TxEnvelope(self.chain_id, self.executor, opp.gas_units, opp.gas_price, min(tip, opp.gas_price))
        return l1_fee(self.calldata(opp), envelope, self.params)

    def charge(self, opportunities: list[Opportunity], tip: int) -> list[tuple[Opportunity, int]]:
        """Each opportunity with its L1 fee in its gas and failure cost, and the fee (wei of ETH); those
        that no longer pay are dropped, the rest ordered by expected value again."""
        out = []
        for opp in opportunities:
            fee = self.fee(opp, tip)
            extra = gas_cost_in_token(1, fee, self.token_per_eth[opp.base_token])  # in the base token, rounded up
            net, failure = opp.net_profit - extra, opp.failure_cost + extra
            ev = float(expected_value(opp.success_probability, net, opp.expected_slippage, failure))
            if net > 0 and ev > 0:
                out.append((replace(opp, gas_cost=opp.gas_cost + extra, net_profit=net, failure_cost=failure,
                                    expected_value=ev), fee))
        return sorted(out, key=lambda pair: pair[0].expected_value_eth, reverse=True)
