"""Arbitrum's L1 pricing inputs as the chain's precompiles hold them at a block.

`ArbGasInfo.getPricesInWei()` (0x…6C) carries ArbOS's L1 price per calldata unit (its second value
is that price × 16, its first × 16 × 140: `ArbitrumL1Pricing.from_prices_in_wei` checks both, so an
answer from anything but ArbOS is refused), and `ArbOwnerPublic.getBrotliCompressionLevel()`
(0x…6B, ArbOS ≥ 20) the brotli level it compresses a transaction at to count its units
(`scanner.gas.arbitrum` has the formula and its source). The gas oracle reads both every block. A
node without them (a plain anvil, any non-Arbitrum chain) answers with no data: that is an error
naming the chain's `l1_fee` setting, never a fee of 0.
"""
from __future__ import annotations

from eth_utils import keccak, to_checksum_address
from web3 import Web3

from scanner.errors import ChainError
from scanner.gas.arbitrum import ArbitrumL1Pricing

ARB_GAS_INFO = to_checksum_address("0x000000000000000000000000000000000000006c")
ARB_OWNER_PUBLIC = to_checksum_address("0x000000000000000000000000000000000000006b")
GET_PRICES_IN_WEI = keccak(text="getPricesInWei()")[:4]
GET_BROTLI_COMPRESSION_LEVEL = keccak(text="getBrotliCompressionLevel()")[:4]
_NOT_ARBITRUM = ("this node is not an Arbitrum chain (no ArbOS precompiles); set its l1_fee to the chain's rule, "
                 "or point its rpc_url at an Arbitrum node")


def _words(w3: Web3, to: str, selector: bytes, name: str, count: int, block: int) -> tuple[int, ...]:
    data = bytes(w3.eth.call({"to": to, "data": selector}, block))
    if len(data) != 32 * count:
        raise ChainError(f"{name} at {to} answered {data.hex() or 'nothing'} at block {block}: {_NOT_ARBITRUM}")
    return tuple(int.from_bytes(data[i:i + 32], "big") for i in range(0, len(data), 32))


def read_arbitrum_l1(w3: Web3, block: int) -> ArbitrumL1Pricing:
    """The L1 price per unit and brotli level at `block`."""
    prices = _words(w3, ARB_GAS_INFO, GET_PRICES_IN_WEI, "ArbGasInfo.getPricesInWei()", 6, block)
    (level,) = _words(w3, ARB_OWNER_PUBLIC, GET_BROTLI_COMPRESSION_LEVEL, "ArbOwnerPublic.getBrotliCompressionLevel()",
                      1, block)
    try:
        return ArbitrumL1Pricing.from_prices_in_wei(prices, level)
    except ValueError as e:
        raise ChainError(f"at block {block}: {e}: {_NOT_ARBITRUM}") from None
