"""An L2 transaction's L1 cost, charged to ranked opportunities (OP-stack and Arbitrum chains).

On an L2 every transaction pays, besides gas, for publishing its bytes on L1: on an OP-stack chain
the Fjord data fee (`scanner.gas.l1fee`), on Arbitrum the poster fee of its brotli-compressed bytes
(`scanner.gas.arbitrum`). Either is a fee per transaction that depends on its calldata, not on gas.
The ranking prices gas per route for every cycle; the L1 fee needs the route's exact calldata, so it
is charged to the ranked opportunities (the top N), which are then ordered again. A reverted attempt
pays it too, so it adds to the failure cost as well.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Protocol

from scanner.gas.arbitrum import ArbitrumL1Pricing
from scanner.gas.fees import gas_cost_in_token
from scanner.gas.l1fee import FjordFeeParams, TxEnvelope
from scanner.rank.ranking import Opportunity, expected_value


class L1Pricing(Protocol):
    """A chain's L1 fee rule at the values its gas oracle last read."""

    def fee(self, calldata: bytes, envelope: TxEnvelope) -> int:
        """The L1 fee, in wei, of a transaction with `calldata` in `envelope`."""
        ...


L1_PRICING: dict[str, Callable[..., L1Pricing]] = {"op-stack": FjordFeeParams, "arbitrum": ArbitrumL1Pricing}
"""Each `l1_fee` rule of a config (`scanner.config.L1_FEES` but "none"), built from the values a
`GasUpdate.l1` carries (the fields of that class, in order)."""


@dataclass
class L1Charger:
    """Charges each opportunity the L1 fee of its executor call at the L1 values last seen.

    `calldata` encodes an opportunity's executor call; the envelope around it is the transaction the
    submitter would sign (this chain, the executor, the route's gas and gas price, the tip).
    """

    chain_id: int
    executor: bytes  # 20 bytes
    calldata: Callable[[Opportunity], bytes]
    token_per_eth: Mapping[str, Fraction]  # base token -> its wei per ETH wei
    params: L1Pricing | None = None  # None until the gas oracle has read the chain's L1 values

    def fee(self, opp: Opportunity, tip: int) -> int:
        """The L1 fee of `opp`'s executor call, in wei of ETH (0 before any L1 values)."""
        if self.params is None:
            return 0
        envelope = TxEnvelope(self.chain_id, self.executor, opp.gas_units, opp.gas_price, min(tip, opp.gas_price))
        return self.params.fee(self.calldata(opp), envelope)

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
