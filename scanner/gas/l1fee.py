"""The L1 data fee of an OP-stack transaction (Optimism, Base), Fjord formula, exact to the wei.

On an OP-stack chain a transaction pays, besides gas × gas price, for publishing its bytes on L1.
Since Fjord (OP Mainnet, July 2024) that fee estimates the transaction's compressed size with a
linear regression on its FastLZ-compressed length:

    estimatedSize = max(minTransactionSize·1e6, intercept + fastlzCoef · fastlzLength)
    l1Fee = estimatedSize · (baseFeeScalar · 16 · l1BaseFee + blobBaseFeeScalar · blobBaseFee) / 1e12

Source: `GasPriceOracle` 1.3.0 in `@eth-optimism/contracts-bedrock` 0.17.3 (`_getL1FeeFjord`,
`_fjordL1Cost`, `_fjordLinearRegression`, `getL1GasUsed`) and `LibZip.flzCompress` of Solady, which
it calls; the scalars and L1 fees are what `L1Block.setL1BlockValuesEcotone` stores each L2 block.
`tests/test_l1_fee.py` checks every function here against that bytecode on anvil.

Two lengths are in use. The oracle's `getL1Fee(tx)` takes an *unsigned* transaction and adds 68
bytes for the signature it lacks; the node (op-geth, op-revm `calculate_tx_l1_cost_fjord`) charges
the signed transaction as sent, with no padding. `oracle_l1_fee` is the first, `charged_l1_fee` the
second.

Pure integer arithmetic; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

# GasPriceOracle 1.3.0 constants (COST_INTERCEPT, COST_FASTLZ_COEF, MIN_TRANSACTION_SIZE, DECIMALS).
COST_INTERCEPT = -42_585_600
COST_FASTLZ_COEF = 836_500
MIN_TRANSACTION_SIZE = 100
DECIMALS = 6
# What `getL1Fee` / `getL1GasUsed` add to an unsigned transaction's compressed length for its signature.
UNSIGNED_TX_PADDING = 68
CALLDATA_GAS_PER_BYTE = 16

_UINT32 = 2**32


@dataclass(frozen=True)
class FjordFeeParams:
    """The L1Block values the Fjord formula reads: the L1 origin's base and blob base fee (wei) and
    the chain's two scalars (uint32, 6 decimals)."""

    l1_base_fee: int
    blob_base_fee: int
    base_fee_scalar: int
    blob_base_fee_scalar: int

    def __post_init__(self) -> None:
        for name in ("base_fee_scalar", "blob_base_fee_scalar"):
            if not 0 <= getattr(self, name) < _UINT32:
                raise ValueError(f"{name} = {getattr(self, name)} does not fit the uint32 L1Block stores it in")
        for name in ("l1_base_fee", "blob_base_fee"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} = {getattr(self, name)} is negative")

    @property
    def fee_scaled(self) -> int:
        """`baseFeeScalar · 16 · l1BaseFee + blobBaseFeeScalar · blobBaseFee`: wei per compressed byte, × 1e6."""
        return self.base_fee_scalar * CALLDATA_GAS_PER_BYTE * self.l1_base_fee + self.blob_base_fee_scalar * self.blob_base_fee

    def fee(self, calldata: bytes, envelope: TxEnvelope) -> int:
        """`l1_fee` of an executor call with `calldata` in `envelope` at these values (`scanner.rank.l1`)."""
        return l1_fee(calldata, envelope, self)


_HASH_MASK = 0x1FFF  # 13-bit hash: 8192 table entries
_MAX_DISTANCE = 0x1FFF  # FastLZ level 1: a match may reach back 8191 bytes
_MAX_MATCH = 262  # longest match one 3-byte code carries (beyond the first 2 bytes)


def flz_compress_len(data: bytes) -> int:
    """Length of `LibZip.flzCompress(data)` (Solady's FastLZ level 1), computed without the output.

    A port of the contract's assembly, step for step: the 8192-entry hash table of 24-bit
    little-endian words, the match search that stops 13 bytes before the end, its quirk of counting
    the first mismatching byte into the match length, and the literal runs of at most 32 bytes.
    """
    n = len(data)

    def u24(i: int) -> int:
        return data[i] | data[i + 1] << 8 | data[i + 2] << 16

    def hash_of(v: int) -> int:
        return ((2654435769 * v) >> 19) & _HASH_MASK

    def literals_len(runs: int) -> int:
        full, rest = divmod(runs, 32)
        return 33 * full + (rest + 1 if rest else 0)

    table = [0] * (_HASH_MASK + 1)
    out = 0
    anchor = 0
    ip = 2
    limit = n - 13
    while ip < limit:
        while True:
            s = u24(ip)
            h = hash_of(s)
            ref = table[h]
            table[h] = ip
            distance = ip - ref
            if ip >= limit:
                break
            ip += 1
            if distance <= _MAX_DISTANCE and s == u24(ref):
                break
        if ip >= limit:
            break
        ip -= 1
        if ip > anchor:
            out += literals_len(ip - anchor)
        # `cmp`: bytes after the first three, up to 4 before the end; a mismatch ends it but is counted
        p, q, end = ref + 3, ip + 3, limit + 9
        length = 0
        while q < end:
            length += 1
            if data[p] != data[q]:
                break
            p += 1
            q += 1
        out += _match_len(length)
        ip += length
        table[hash_of(u24(ip))] = ip
        ip += 1
        table[hash_of(u24(ip))] = ip
        ip += 1
        anchor = ip
    return out + literals_len(n - anchor)


def _match_len(length: int) -> int:
    """Bytes of the codes `match` writes for one match: 3 per full 262-byte chunk, then 3 (long) or 2."""
    out = 0
    while length >= _MAX_MATCH + 1:
        out += 3
        length -= _MAX_MATCH
    return out + (3 if length >= 7 else 2)


def estimated_size(fastlz_len: int) -> int:
    """`_fjordLinearRegression`: the Brotli size the regression predicts, in bytes × 1e6, floored."""
    return max(COST_INTERCEPT + COST_FASTLZ_COEF * fastlz_len, MIN_TRANSACTION_SIZE * 10**DECIMALS)


def fjord_l1_cost(fastlz_len: int, params: FjordFeeParams) -> int:
    """`_fjordL1Cost`: the L1 fee, in wei, of a transaction whose FastLZ length is `fastlz_len`."""
    return estimated_size(fastlz_len) * params.fee_scaled // 10 ** (2 * DECIMALS)


def oracle_l1_fee(tx: bytes, params: FjordFeeParams) -> int:
    """What `GasPriceOracle.getL1Fee(tx)` returns after Fjord: `tx` is taken as unsigned (+68 bytes).

    The contract computes `baseFeeScalar() * 16` in uint32 and reverts when that overflows; so does this.
    """
    if params.base_fee_scalar * CALLDATA_GAS_PER_BYTE >= _UINT32:
        raise ValueError(f"base_fee_scalar {params.base_fee_scalar} × 16 overflows uint32: GasPriceOracle.getL1Fee "
                         f"reverts for scalars of 2**28 and more (the node itself charges them)")
    return fjord_l1_cost(flz_compress_len(tx) + UNSIGNED_TX_PADDING, params)


def oracle_l1_gas_used(tx: bytes) -> int:
    """What `GasPriceOracle.getL1GasUsed(tx)` returns after Fjord: L1 calldata gas of the estimated size."""
    return estimated_size(flz_compress_len(tx) + UNSIGNED_TX_PADDING) * CALLDATA_GAS_PER_BYTE // 10**DECIMALS


def charged_l1_fee(signed_tx: bytes, params: FjordFeeParams) -> int:
    """The L1 fee the node charges a signed transaction (its EIP-2718 bytes as sent); 0 for a deposit."""
    if not signed_tx or signed_tx[0] == 0x7E:
        return 0
    return fjord_l1_cost(flz_compress_len(signed_tx), params)


@dataclass(frozen=True)
class TxEnvelope:
    """The fields of an EIP-1559 (type 2) transaction besides its calldata: what makes an executor
    call's bytes, and so its L1 fee, before it is signed."""

    chain_id: int
    to: bytes  # 20 bytes
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    nonce: int = 0
    value: int = 0

    def __post_init__(self) -> None:
        if len(self.to) != 20:
            raise ValueError(f"`to` must be a 20-byte address, got {len(self.to)} bytes: pass bytes.fromhex(addr[2:])")

    def unsigned(self, calldata: bytes) -> bytes:
        """`0x02 ‖ rlp([chainId, nonce, maxPriorityFee, maxFee, gas, to, value, data, accessList])`:
        the bytes a wallet signs and `getL1Fee` expects."""
        return b"\x02" + _rlp(self._fields(calldata))

    def signed(self, calldata: bytes, signature: tuple[int, int, int]) -> bytes:
        """The same with `(yParity, r, s)` appended: the EIP-2718 bytes a node receives."""
        return b"\x02" + _rlp(self._fields(calldata) + list(signature))

    def _fields(self, calldata: bytes) -> list[RlpItem]:
        return [self.chain_id, self.nonce, self.max_priority_fee_per_gas, self.max_fee_per_gas, self.gas, self.to,
                self.value, calldata, []]


def l1_fee(calldata: bytes, envelope: TxEnvelope, params: FjordFeeParams) -> int:
    """The gas model's L1 cost hook: the L1 fee of an executor call with `calldata`, before signing,
    as the chain's own oracle estimates it (`getL1Fee` of the unsigned transaction)."""
    return oracle_l1_fee(envelope.unsigned(calldata), params)


RlpItem = int | bytes | list["RlpItem"]


def _rlp(item: RlpItem) -> bytes:
    """Recursive-length-prefix encoding of unsigned ints (big-endian, no leading zeros), bytes and lists."""
    if isinstance(item, list):
        body = b"".join(_rlp(x) for x in item)
        return _rlp_length(len(body), 0xC0) + body
    if isinstance(item, int):
        if item < 0:
            raise ValueError(f"RLP encodes unsigned integers only, got {item}")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if len(item) == 1 and item[0] < 0x80:
        return item
    return _rlp_length(len(item), 0x80) + item


def _rlp_length(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(encoded)]) + encoded
