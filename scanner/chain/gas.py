"""The gas market after each block: base fee now and next (the chain's rules), tips, congestion,
feeds, and on an L2 the values its L1 fee is computed from (OP-stack: the L1Block predeploy;
Arbitrum: the ArbOS precompiles)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple
from typing import Any, cast

from eth_utils import to_checksum_address
from web3 import Web3

from scanner.chain import artifacts
from scanner.chain.arbitrum import read_arbitrum_l1
from scanner.chain.opstack import read_l1_block
from scanner.chain.rpc import ChainClient
from scanner.gas.fees import ETHEREUM, BaseFeeRules, congestion, next_base_fee, tip_percentiles
from scanner.wire.messages import GasUpdate

L1_READERS: dict[str, Callable[[Web3, int], Any]] = {"op-stack": read_l1_block, "arbitrum": read_arbitrum_l1}
"""How each `l1_fee` rule's values are read at a block: a dataclass of ints, published as `GasUpdate.l1`
(`scanner.rank.l1.L1_PRICING` builds the same class back from them)."""


class GasOracleCore:
    """`poll()` returns a `GasUpdate` when the head moved, else None."""

    def __init__(
        self,
        client: ChainClient,
        *,
        history_blocks: int = 5,
        percentiles: tuple[float, float, float] = (25.0, 50.0, 75.0),
        feeds: list[str] | tuple[str, ...] = (),
        rules: BaseFeeRules = ETHEREUM,
        l1_fee: str = "none",
    ) -> None:
        self.client = client
        self.rules = rules
        self.l1_reader = L1_READERS.get(l1_fee)  # None: the chain has no L1 fee
        self.history_blocks = history_blocks
        self.percentiles = tuple(percentiles)
        self._feeds = [artifacts.at(client.w3, "GasFeed", to_checksum_address(f)) for f in feeds]
        self._last: int | None = None

    def poll(self) -> GasUpdate | None:
        block = self.client.get_block("latest")
        number = int(block["number"])
        if number == self._last:
            return None
        self._last = number
        base_fee, used, limit = int(block["baseFeePerGas"]), int(block["gasUsed"]), int(block["gasLimit"])
        history = self.client.fee_history(self.history_blocks, number, list(self.percentiles))
        tips = tip_percentiles(history, self.percentiles)
        return GasUpdate(
            number=number,
            base_fee=base_fee,
            next_base_fee=next_base_fee(base_fee, used, limit, self.rules),
            tips=cast(tuple[int, int, int], tuple(tips[p] for p in self.percentiles)),  # three percentiles
            gas_used_ratio=congestion(used, limit),
            feed_answer=self._feed_answer(number),
            l1=self._l1_values(number),
        )

    def _l1_values(self, number: int) -> tuple[int, ...]:
        if self.l1_reader is None:
            return ()
        return astuple(self.client.call(self.l1_reader, self.client.w3, number))

    def _feed_answer(self, number: int) -> int:
        """The highest answer among the configured feeds (0 when none): the cautious reading."""
        answers = [int(self.client.call(f.functions.latestRoundData().call, block_identifier=number)[1]) for f in self._feeds]
        return max(answers, default=0)
