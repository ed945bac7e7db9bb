"""The gas market after each block: base fee now and next (the chain's rules), tips, congestion,
feeds, and on an OP-stack chain the L1Block values its L1 data fee is computed from."""
from __future__ import annotations

from typing import cast

from eth_utils import to_checksum_address

from scanner.chain import artifacts
from scanner.chain.opstack import read_l1_block
from scanner.chain.rpc import ChainClient
from scanner.gas.fees import ETHEREUM, BaseFeeRules, congestion, next_base_fee, tip_percentiles
from scanner.wire.messages import GasUpdate


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
        l1_block: bool = False,
    ) -> None:
        self.client = client
        self.rules = rules
        self.l1_block = l1_block  # read the L1Block predeploy each block (OP-stack chains)
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
        if not self.l1_block:
            return ()
        p = self.client.call(read_l1_block, self.client.w3, number)
        return (p.l1_base_fee, p.blob_base_fee, p.base_fee_scalar, p.blob_base_fee_scalar)

    def _feed_answer(self, number: int) -> int:
        """The highest answer among the configured feeds (0 when none): the cautious reading."""
        answers = [int(self.client.call(f.functions.latestRoundData().call, block_identifier=number)[1]) for f in self._feeds]
        return max(answers, default=0)
