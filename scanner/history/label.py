"""Realized arbitrages in recorded logs: the transactions whose swaps through known V2 and V3 pools, in
log order, form a closed token cycle (the labelling mev-inspect-py and EigenPhi do, reduced to what a
backtest matches against its own ranked cycles).

A chain of swaps is followed by token, not by amount: a real arbitrage often routes a leg through a
venue we do not track, so what one tracked swap puts out need not be what the next one takes in.
The cycle's revenue is what its last swap put out minus what its first took in, in the start token.

Each swap also carries its pool's reserves just before it, rebuilt from the Sync the pair emits
right before every Swap (the reserves after the trade): minus what came in, plus what went out. A V3
Swap carries its signed amounts (positive: paid into the pool) and the recipient; its state is the
pool's own, not rebuilt here.

`trades` also serves backtests that know the arbitrageurs by address (the simulated market's
competitors, who close a pool's gap to a fair price in one swap): each swap names its recipient.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import groupby

from eth_abi import decode as abi_decode

from scanner.chain.follow import SWAP_TOPIC, SYNC_TOPIC, V3_SWAP_TOPIC

_SYNC, _SWAP, _V3_SWAP = (bytes.fromhex(t[2:]) for t in (SYNC_TOPIC, SWAP_TOPIC, V3_SWAP_TOPIC))


@dataclass(frozen=True)
class Trade:
    """One swap of a known pool, as the pool recorded it."""

    pool: str
    log_index: int
    zero_for_one: bool
    token_in: str
    token_out: str
    amount_in: int
    amount_out: int
    reserves_before: tuple[int, int]  # V2: (reserve0, reserve1) just before the swap; V3: (0, 0)
    recipient: str = ""  # who received the output (lower case)


@dataclass(frozen=True)
class RealizedCycle:
    """Swaps of one transaction that leave from a token and come back to it."""

    block: int
    tx_index: int
    trades: tuple[Trade, ...]

    @property
    def token(self) -> str:
        return self.trades[0].token_in

    @property
    def revenue(self) -> int:
        """Last output minus first input, in the start token's smallest unit (negative: a loss)."""
        return self.trades[-1].amount_out - self.trades[0].amount_in


def trades(logs: list[dict], pools: Mapping[str, tuple[str, str]]) -> list[Trade]:
    """The swaps of `pools` (address -> (token0, token1), lower case) in one transaction's logs (store rows:
    bytes topics and data, int indexes), in log order; a swap that is not one token in for the other out
    (a flash swap that repays in both) is left out."""
    out = []
    synced: dict[str, tuple[int, int]] = {}
    for log in sorted(logs, key=lambda e: e["logIndex"]):
        pool, topic = log["address"], log["topics"][0]
        if pool not in pools:
            continue
        if topic == _V3_SWAP:
            a0, a1 = abi_decode(["int256", "int256"], log["data"][:64])
            if (a0 > 0) == (a1 > 0):
                continue
            token0, token1 = pools[pool]
            zero_for_one = a0 > 0
            out.append(Trade(pool, log["logIndex"], zero_for_one, *((token0, token1) if zero_for_one else (token1, token0)),
                             max(a0, a1), -min(a0, a1), (0, 0), _address(log["topics"][2])))
        elif topic == _SYNC:
            synced[pool] = abi_decode(["uint112", "uint112"], log["data"])
        elif topic == _SWAP and pool in synced:
            in0, in1, out0, out1 = abi_decode(["uint256"] * 4, log["data"])
            if (in0 > 0) == (in1 > 0) or (out0 > 0) == (out1 > 0) or (in0 > 0) == (out0 > 0):
                continue
            r0, r1 = synced.pop(pool)
            zero_for_one = in0 > 0
            token0, token1 = pools[pool]
            out.append(Trade(pool, log["logIndex"], zero_for_one, *((token0, token1) if zero_for_one else (token1, token0)),
                             in0 or in1, out1 or out0, (r0 - in0 + out0, r1 - in1 + out1), _address(log["topics"][2])))
    return out


def label(logs: list[dict], pools: Mapping[str, tuple[str, str]]) -> list[RealizedCycle]:
    """Every closed cycle of known-pool swaps in `logs` (one block's or one transaction's), per transaction."""
    found = []
    for (block, tx_index), tx_logs in groupby(sorted(logs, key=lambda e: (e["blockNumber"], e["transactionIndex"], e["logIndex"])),
                                              key=lambda e: (e["blockNumber"], e["transactionIndex"])):
        chain: list[Trade] = []
        for trade in trades(list(tx_logs), pools):
            chain = chain + [trade] if chain and chain[-1].token_out == trade.token_in else [trade]
            if len(chain) > 1 and chain[-1].token_out == chain[0].token_in:
                found.append(RealizedCycle(block, tx_index, tuple(chain)))
                chain = []
    return found


def _address(topic: bytes) -> str:
    return "0x" + bytes(topic)[12:].hex()
