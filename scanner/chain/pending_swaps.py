"""Pending swaps: what a transaction waiting in the node's pool will do to a watched pool, before it is mined.

Only calls whose effect is known exactly are decoded: the simulated market's router
(`SimRouter.swap`: one V2 pair, exact input, a minimum output) and the V3 harness (`V3Harness.swap`:
one V3 pool, exact input or output, a price limit). Each is applied to the mined state with the
exact pool math. Everything else is skipped and counted, never guessed: a direct pair `swap` is paid
by a transfer in an earlier call, a direct V3 pool swap by a callback, and an unknown router's
calldata says nothing reliable about amounts. Decoding goes by selector and by the pool argument
being watched, so a clone of the router at another address is followed too; a selector clash with
a contract of other semantics would be caught by the submitter, which proves every backrun by
simulating the trigger itself first.

`PendingBook` keeps what is pending by (sender, nonce): a replacement (same nonce, new hash)
withdraws the transaction it replaces.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from scanner.dex.pool import V3State
from scanner.dex.v2 import FEE_DENOMINATOR, amount_out
from scanner.dex.v3 import V3Pool, V3Revert

ROUTER_SWAP = keccak(text="swap(address,bool,uint16,uint256,uint256,address)")[:4]
ROUTER_SWAP_ARGS = ["address", "bool", "uint16", "uint256", "uint256", "address"]
HARNESS_SWAP = keccak(text="swap(address,bool,int256,uint160)")[:4]
HARNESS_SWAP_ARGS = ["address", "bool", "int256", "uint160"]


class Undecodable(ValueError):
    """Calldata with a known swap selector whose arguments do not decode (garbage, truncated)."""


class SwapReverts(ValueError):
    """The exact math says this pending swap reverts on the mined state: it has no post-state."""


@dataclass(frozen=True)
class PendingTx:
    """A transaction in the node's pool, as `eth_getTransactionByHash` reports it."""

    hash: str
    sender: str  # lower case
    nonce: int
    to: str  # lower case; "" for a contract creation
    input: bytes
    tip: int  # maxPriorityFeePerGas (gasPrice for a legacy transaction)
    max_fee: int  # maxFeePerGas (gasPrice for a legacy transaction)

    @classmethod
    def from_rpc(cls, tx: Mapping[str, Any]) -> PendingTx:
        """From a raw JSON-RPC transaction object (hex strings)."""
        price = tx.get("gasPrice")
        raw = str(tx.get("input") or tx.get("data") or "0x")
        try:
            data = bytes.fromhex(raw[2:] if raw.startswith("0x") else raw)
        except ValueError:
            data = b""  # not even hex: decodes as nothing known
        return cls(
            hash=str(tx["hash"]), sender=str(tx["from"]).lower(), nonce=int(tx["nonce"], 16),
            to=str(tx.get("to") or "").lower(), input=data,
            tip=int(tx.get("maxPriorityFeePerGas") or price or "0x0", 16),
            max_fee=int(tx.get("maxFeePerGas") or price or "0x0", 16),
        )


@dataclass(frozen=True)
class DecodedSwap:
    """One swap on one pool: V2 exact input `amount` with `min_out` and the fee the router charges, or a V3
    swap of `amount` (> 0 exact input, < 0 exact output) down to `limit` (0: none)."""

    pool: str  # lower case
    v3: bool
    zero_for_one: bool
    amount: int
    min_out: int = 0
    fee_bps: int = 0
    limit: int = 0


def decode_swap(data: bytes, watched: Mapping[str, object]) -> DecodedSwap | None:
    """The swap `data` makes on a watched pool, None when it is no known swap of a watched pool;
    `Undecodable` when it has a swap selector but its arguments are garbage."""
    selector, body = data[:4], data[4:]
    if selector not in (ROUTER_SWAP, HARNESS_SWAP):
        return None
    try:
        args = abi_decode(ROUTER_SWAP_ARGS if selector == ROUTER_SWAP else HARNESS_SWAP_ARGS, body)
    except Exception as e:  # eth_abi raises several types for short or malformed data
        raise Undecodable(f"swap calldata does not decode ({type(e).__name__}: {e})") from None
    pool = str(args[0]).lower()
    if pool not in watched:
        return None
    if selector == ROUTER_SWAP:
        _, zero_for_one, fee_bps, amount, min_out, _ = args
        return DecodedSwap(pool, False, bool(zero_for_one), int(amount), int(min_out), int(fee_bps))
    _, zero_for_one, amount, limit = args
    return DecodedSwap(pool, True, bool(zero_for_one), int(amount), limit=int(limit))


def v2_after(swap: DecodedSwap, reserves: tuple[int, int], pool_fee_bps: int) -> tuple[int, int]:
    """The pair's reserves after a router swap, as SimRouter and the pair compute them (`SwapReverts`
    when the router's output check or the pair's K check under its own fee fails)."""
    r0, r1 = reserves
    r_in, r_out = (r0, r1) if swap.zero_for_one else (r1, r0)
    if not 0 <= swap.fee_bps < FEE_DENOMINATOR:
        raise SwapReverts(f"router fee {swap.fee_bps} bps is outside [0, {FEE_DENOMINATOR})")
    out = amount_out(swap.amount, r_in, r_out, swap.fee_bps)
    if out <= 0 or out < swap.min_out:
        raise SwapReverts(f"output {out} is below the minimum {swap.min_out}")
    new_in, new_out = r_in + swap.amount, r_out - out
    if (new_in * FEE_DENOMINATOR - swap.amount * pool_fee_bps) * new_out * FEE_DENOMINATOR < r_in * r_out * FEE_DENOMINATOR**2:
        raise SwapReverts(f"the pair's K check under its {pool_fee_bps} bps fails (router fee {swap.fee_bps} bps)")
    return (new_in, new_out) if swap.zero_for_one else (new_out, new_in)


def v3_after(swap: DecodedSwap, pool: V3Pool) -> V3State:
    """The V3 pool's state after a harness swap (its ticks are unchanged), or `SwapReverts`."""
    limit = swap.limit or pool.default_limit(swap.zero_for_one)
    try:
        result = pool.swap(swap.zero_for_one, swap.amount, limit)
    except V3Revert as e:
        raise SwapReverts(str(e)) from None
    return V3State(result.sqrt_price_x96, result.tick, result.liquidity, {})


class PendingBook:
    """The pending transactions that have a post-state, by hash and by (sender, nonce); bounded."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self.by_hash: OrderedDict[str, PendingTx] = OrderedDict()
        self.by_slot: dict[tuple[str, int], str] = {}

    def __len__(self) -> int:
        return len(self.by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self.by_hash

    def add(self, tx: PendingTx) -> list[str]:
        """Track `tx`; returns the hashes it pushes out: the one it replaces, and the oldest beyond capacity."""
        out = []
        old = self.by_slot.get((tx.sender, tx.nonce))
        if old is not None and old != tx.hash:
            out.append(old)
            self.remove(old)
        self.by_hash[tx.hash] = tx
        self.by_slot[(tx.sender, tx.nonce)] = tx.hash
        while len(self.by_hash) > self.capacity:
            oldest = next(iter(self.by_hash))
            out.append(oldest)
            self.remove(oldest)
        return out

    def remove(self, tx_hash: str) -> PendingTx | None:
        tx = self.by_hash.pop(tx_hash, None)
        if tx is not None and self.by_slot.get((tx.sender, tx.nonce)) == tx_hash:
            del self.by_slot[(tx.sender, tx.nonce)]
        return tx

    def replaced_by(self, tx: PendingTx) -> str | None:
        """The tracked transaction `tx` would replace (same sender and nonce, another hash)."""
        old = self.by_slot.get((tx.sender, tx.nonce))
        return old if old is not None and old != tx.hash else None
