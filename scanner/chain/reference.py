"""Reference prices from an Aave-style price oracle, read per block for the price-gap feature.

The oracle answers `getAssetsPrices(address[])`: each token's price per whole token in one
base currency. Pools quote raw units, so each answer becomes a log price per raw unit with the
token's ERC-20 decimals (read once); a pool's reference log price is then a difference.
"""
from __future__ import annotations

import math

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address

from scanner.chain.rpc import ChainClient
from scanner.errors import ChainError

_DECIMALS = "0x313ce567"  # decimals()
_GET_PRICES = "0x" + keccak(text="getAssetsPrices(address[])")[:4].hex()
_LN10 = math.log(10)


class ReferencePrices:
    """Log reference prices per raw token unit for `tokens`, at a given block."""

    def __init__(self, client: ChainClient, oracle: str, tokens: list[str]) -> None:
        self.client = client
        self.oracle = to_checksum_address(oracle)
        self.tokens = sorted({t.lower() for t in tokens})
        self._decimals: dict[str, int] | None = None
        self._calldata = _GET_PRICES + abi_encode(["address[]"], [[to_checksum_address(t) for t in self.tokens]]).hex()

    def decimals(self) -> dict[str, int]:
        """Each token's ERC-20 decimals, read once (they never change)."""
        if self._decimals is None:
            out = {}
            for token in self.tokens:
                raw = self.client.rpc("eth_call", {"to": to_checksum_address(token), "data": _DECIMALS}, "latest")
                if len(bytes.fromhex(raw[2:])) != 32:
                    raise ChainError(f"token {token} did not answer decimals(): the price oracle needs ERC-20 tokens")
                out[token] = int(raw, 16)
            self._decimals = out
        return self._decimals

    def log_prices(self, block_hash: str) -> dict[str, float]:
        """log(price per raw unit) of every token at `block_hash` (EIP-1898, so a reorg cannot mix states)."""
        decimals = self.decimals()
        reply = self.client.call(self.client.w3.provider.make_request, "eth_call",
                                 [{"to": self.oracle, "data": self._calldata}, {"blockHash": block_hash}])
        if "error" in reply:
            raise ChainError(f"price oracle {self.oracle} failed at block {block_hash}: {reply['error']} "
                             "(is tokens.price_oracle an Aave-style oracle that prices every token of the pools?)")
        try:
            (prices,) = abi_decode(["uint256[]"], bytes.fromhex(reply["result"][2:]))
        except (DecodingError, ValueError):
            prices = None
        if prices is None or len(prices) != len(self.tokens):
            raise ChainError(f"price oracle {self.oracle} answered {reply['result'][:66]!r} at block {block_hash}, "
                             f"not {len(self.tokens)} prices: is tokens.price_oracle an Aave-style oracle on this chain?")
        return {t: math.log(p) - decimals[t] * _LN10 for t, p in zip(self.tokens, prices) if p > 0}

    @staticmethod
    def pool_log_price(log_prices: dict[str, float], token0: str, token1: str) -> float | None:
        """log(raw token1 per raw token0) at the reference prices; None when either is unpriced."""
        l0, l1 = log_prices.get(token0.lower()), log_prices.get(token1.lower())
        return None if l0 is None or l1 is None else l0 - l1
