"""The L1 component of an Arbitrum transaction's cost (Nitro's poster fee), to the wei of its bytes.

An Arbitrum transaction pays, besides its L2 gas, for the batch poster's L1 data. ArbOS prices it
as the transaction's brotli-compressed size in L1 calldata units (16 per byte, as L1 charges a
non-zero calldata byte) times its own estimate of the L1 price per unit:

    units      = 16 · len(brotli(signedTx, quality = level, window = 22))
    posterCost = pricePerUnit · units                                  (wei)
    posterGas  = posterCost // paidGasPrice                            (bought as L2 gas)
    charged    = posterGas · paidGasPrice                              (wei, what the sender pays)

Source: OffchainLabs/nitro `arbos/l1pricing/l1pricing.go` (`getPosterUnitsWithoutCache`,
`GetPosterInfo`: `params.TxDataNonZeroGasEIP2028` = 16 units per compressed byte of
`tx.MarshalBinary()`), `arbcompress/compress_common.go` (`WINDOW_SIZE = 22`), `arbos/tx_processor.go`
(`GasChargingHook`, `GetPosterGas`: the cost is bought as whole L2 gas at the paid gas price, which
is the base fee while tips are not collected, `GetPaidGasPrice`), `arbos/arbosState/arbosstate.go`
(the brotli level is 0 at genesis and 1 since ArbOS 20; `ArbOwnerPublic.getBrotliCompressionLevel`
reads it), and `system_tests/fees_test.go` (`TestSequencerFeePaid` expects exactly `charged`). The
docs say the same in words: docs.arbitrum.io "L1 gas pricing" (compress with brotli, multiply the
size by 16, times the L1 price estimate) and "How to estimate gas" (L1P = getL1BaseFeeEstimate() · 16
wei per byte, L1C = L1P · L1S).

`pricePerUnit` is `ArbGasInfo.getL1BaseFeeEstimate()` at 0x…6C; `getPricesInWei()` returns it × 16
(wei per L1 calldata byte) second and × 16 × 140 (a 140-byte "simple transaction",
`AssumedSimpleTxSize` in `precompiles/ArbGasInfo.go`) first: `from_prices_in_wei` checks those.

A route's transaction is priced before it is signed: `TxEnvelope.signed` puts a placeholder
signature in it (y-parity 1 and Nitro's own fake r, s of `makeFakeTxForMessage`: 64 incompressible
bytes, as a real signature is). Brotli's entropy codes span the whole transaction, so the real
signature's bytes move the compressed size a little: measured over 400 signed executor-like calls,
within 15 bytes (7 %) of the placeholder's, +1 byte on average (Nitro pads its own estimates of
unsigned transactions by 16 bytes and 1 %, `estimationPaddingUnits`). The nonce too is the
envelope's. Nitro compresses with google/brotli's C encoder; the `brotli` package binds the same
encoder, so sizes agree while the two are of versions whose level-0/1 output is the same (not
checked against a Nitro node here). Pure arithmetic and brotli; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

import brotli
from eth_utils import keccak

from scanner.gas.l1fee import TxEnvelope

UNITS_PER_BYTE = 16  # params.TxDataNonZeroGasEIP2028
BROTLI_WINDOW = 22  # arbcompress.WINDOW_SIZE (BROTLI_DEFAULT_WINDOW)
ASSUMED_SIMPLE_TX_SIZE = 140  # precompiles/ArbGasInfo.go: the bytes getPricesInWei's "per L2 tx" price is for
MAX_BROTLI_LEVEL = 11
# l1pricing.go makeFakeTxForMessage: randR = keccak("R"), randS = keccak("S") (the V there is not a typed tx's y-parity)
PLACEHOLDER_SIGNATURE = (1, int.from_bytes(keccak(b"R"), "big"), int.from_bytes(keccak(b"S"), "big"))


def poster_units(signed_tx: bytes, brotli_level: int) -> int:
    """`getPosterUnitsWithoutCache`: 16 units per byte of the brotli-compressed signed transaction."""
    return UNITS_PER_BYTE * len(brotli.compress(signed_tx, quality=brotli_level, lgwin=BROTLI_WINDOW))


@dataclass(frozen=True)
class ArbitrumL1Pricing:
    """What ArbOS prices a transaction's L1 data with: its L1 price per unit (wei) and brotli level."""

    price_per_unit: int
    brotli_level: int = 1  # since ArbOS 20

    def __post_init__(self) -> None:
        if self.price_per_unit < 0:
            raise ValueError(f"price_per_unit = {self.price_per_unit} is negative")
        if not 0 <= self.brotli_level <= MAX_BROTLI_LEVEL:
            raise ValueError(f"brotli_level = {self.brotli_level}: brotli levels are 0 to {MAX_BROTLI_LEVEL}")

    @classmethod
    def from_prices_in_wei(cls, prices: tuple[int, ...], brotli_level: int = 1) -> ArbitrumL1Pricing:
        """From `ArbGasInfo.getPricesInWei()` (ArbOS ≥ 4): its second value is 16 × the price per unit,
        its first 140 × the second; anything else is not that precompile's answer."""
        per_l2_tx, per_byte = prices[0], prices[1]
        if per_byte % UNITS_PER_BYTE or per_l2_tx != ASSUMED_SIMPLE_TX_SIZE * per_byte:
            raise ValueError(f"getPricesInWei() = {prices} is not ArbOS's: its first value must be "
                             f"{ASSUMED_SIMPLE_TX_SIZE} × its second, and the second a multiple of {UNITS_PER_BYTE}")
        return cls(per_byte // UNITS_PER_BYTE, brotli_level)

    def poster_cost(self, signed_tx: bytes) -> int:
        """`GetPosterInfo`: the L1 cost ArbOS estimates for `signed_tx`, in wei."""
        return self.price_per_unit * poster_units(signed_tx, self.brotli_level)

    def charged(self, signed_tx: bytes, paid_gas_price: int) -> int:
        """What the sender pays for it: the poster cost bought as whole L2 gas at `paid_gas_price`
        (nothing at a zero price: `GasChargingHook` charges L1 only under a positive base fee)."""
        if paid_gas_price <= 0:
            return 0
        cost = self.poster_cost(signed_tx)
        return cost - cost % paid_gas_price

    def fee(self, calldata: bytes, envelope: TxEnvelope) -> int:
        """The L1 component of an executor call with `calldata` in `envelope`, signed with the placeholder.
        It pays the base fee (`max_fee_per_gas` less the tip: Arbitrum drops tips)."""
        signed = envelope.signed(calldata, PLACEHOLDER_SIGNATURE)
        return self.charged(signed, envelope.max_fee_per_gas - envelope.max_priority_fee_per_gas)
