"""Gas: what the next block charges (EIP-1559), what others tip, and what a route costs.

All fees are wei of ETH per gas. Profit is counted in a base token, so a route's gas bill is
converted explicitly with the base token's rate (`token_per_eth`: base-token wei per ETH wei;
exactly 1 for WETH, which unwraps 1:1).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import median_low

ELASTICITY_MULTIPLIER = 2
BASE_FEE_MAX_CHANGE_DENOMINATOR = 8

WETH_PER_ETH = Fraction(1)

# Defaults until `GasModel.calibrate` is fed `eth_estimateGas` of the deployed executor:
# about one swap's worth of overhead (call, transfers in and out, profit check) plus one
# V2 swap per hop.
DEFAULT_BASE_GAS = 60_000
DEFAULT_GAS_PER_HOP = 60_000


def next_base_fee(parent_base_fee: int, parent_gas_used: int, parent_gas_limit: int) -> int:
    """The base fee of the block after the parent, exactly as EIP-1559 specifies it."""
    target = parent_gas_limit // ELASTICITY_MULTIPLIER
    if target <= 0:
        raise ValueError(f"gas limit {parent_gas_limit} leaves no gas target")
    if parent_gas_used == target:
        return parent_base_fee
    if parent_gas_used > target:
        delta = parent_base_fee * (parent_gas_used - target) // target // BASE_FEE_MAX_CHANGE_DENOMINATOR
        return parent_base_fee + max(delta, 1)
    delta = parent_base_fee * (target - parent_gas_used) // target // BASE_FEE_MAX_CHANGE_DENOMINATOR
    return parent_base_fee - delta


def congestion(gas_used: int, gas_limit: int) -> float:
    """How full a block is: 0.5 is the EIP-1559 target, 1.0 a full block."""
    if gas_limit <= 0:
        raise ValueError(f"gas limit {gas_limit} must be positive")
    return gas_used / gas_limit


def _wei(value: int | str) -> int:
    """A quantity as JSON-RPC sends it (hex string) or as web3 returns it (int)."""
    return int(value, 16) if isinstance(value, str) else int(value)


def tip_percentiles(fee_history: Mapping, percentiles: Sequence[float]) -> dict[float, int]:
    """For each reward percentile asked of `eth_feeHistory`, its median over the non-empty blocks.

    Empty blocks report 0 for every percentile, which says nothing about what it takes to get in,
    so they are left out; with no non-empty block every tip is 0.
    """
    rewards = fee_history.get("reward") or []
    ratios = fee_history.get("gasUsedRatio") or []
    if len(rewards) != len(ratios):
        raise ValueError(f"fee history has {len(rewards)} reward rows for {len(ratios)} blocks")
    rows = [row for row, ratio in zip(rewards, ratios) if float(ratio) > 0]
    for row in rows:
        if len(row) != len(percentiles):
            raise ValueError(f"fee history row has {len(row)} rewards for percentiles {list(percentiles)}")
    return {p: median_low([_wei(row[i]) for row in rows]) if rows else 0 for i, p in enumerate(percentiles)}


@dataclass(frozen=True)
class GasModel:
    """Gas units of an executor route: base + per_hop × hops."""

    base: int = DEFAULT_BASE_GAS
    per_hop: int = DEFAULT_GAS_PER_HOP

    def units(self, hops: int) -> int:
        return self.base + self.per_hop * hops

    @classmethod
    def calibrate(cls, samples: Iterable[tuple[int, int]]) -> GasModel:
        """Fit to measured (hops, gas) pairs: least-squares slope, then the smallest base that
        prices no measured route below what it used."""
        pairs = [(int(h), int(g)) for h, g in samples]
        if len({h for h, _ in pairs}) < 2:
            raise ValueError(f"calibration needs routes of at least two hop counts, got {sorted({h for h, _ in pairs})}")
        mean_h = Fraction(sum(h for h, _ in pairs), len(pairs))
        mean_g = Fraction(sum(g for _, g in pairs), len(pairs))
        slope = sum((h - mean_h) * (g - mean_g) for h, g in pairs) / sum((h - mean_h) ** 2 for h, _ in pairs)
        if slope < 0:
            raise ValueError(f"measured gas falls with hop count (slope {float(slope):.0f}); check the samples")
        per_hop = round(slope)
        return cls(base=max(g - per_hop * h for h, g in pairs), per_hop=per_hop)


def gas_cost_in_token(gas_units: int, gas_price: int, token_per_eth: Fraction = WETH_PER_ETH) -> int:
    """The ETH paid for `gas_units` at `gas_price`, in wei of the base token, rounded up."""
    cost = Fraction(gas_units * gas_price) * token_per_eth
    return -(-cost.numerator // cost.denominator)

