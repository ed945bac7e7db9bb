"""Gas: what the next block charges (EIP-1559, per chain), what others tip, and what a route costs.

All fees are wei of ETH per gas. Profit is counted in a base token, so a route's gas bill is
converted explicitly with the base token's rate (`token_per_eth`: base-token wei per ETH wei;
exactly 1 for WETH, which unwraps 1:1). An OP-stack chain adds an L1 data fee per transaction:
`scanner.gas.l1fee`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import median_low

# EIP-1559 on Ethereum (https://eips.ethereum.org/EIPS/eip-1559, ELASTICITY_MULTIPLIER and
# BASE_FEE_MAX_CHANGE_DENOMINATOR).
ELASTICITY_MULTIPLIER = 2
BASE_FEE_MAX_CHANGE_DENOMINATOR = 8

WETH_PER_ETH = Fraction(1)

# Defaults until `GasModel.calibrate` is fed `eth_estimateGas` of the deployed executor:
# about one swap's worth of overhead (call, transfers in and out, profit check) plus one
# V2 swap per hop.
DEFAULT_BASE_GAS = 60_000
DEFAULT_GAS_PER_HOP = 60_000
# What a V3 hop costs beyond a V2 one through ArbExecutor (the callback, tick bitmap and price
# reads): eth_estimateGas of the 7 cycles of tests/test_executor_v3.py on the canonical pools
# gives +38k for each V2 hop swapped for a V3 one, in every pairing.
DEFAULT_V3_EXTRA_GAS = 38_000


@dataclass(frozen=True)
class Eip1559Rules:
    """How a chain moves its base fee block to block: the gas target is the gas limit / `elasticity`,
    and one block moves the fee by at most 1/`denominator` (EIP-1559's formula, the chain's numbers)."""

    elasticity: int
    denominator: int

    def __post_init__(self) -> None:
        if self.elasticity < 1 or self.denominator < 1:
            raise ValueError(f"EIP-1559 elasticity {self.elasticity} and denominator {self.denominator} must be >= 1")

    def next_base_fee(self, parent_base_fee: int, parent_gas_used: int, parent_gas_limit: int) -> int:
        """The base fee of the block after the parent, exactly as EIP-1559 specifies it."""
        target = parent_gas_limit // self.elasticity
        if target <= 0:
            raise ValueError(f"gas limit {parent_gas_limit} leaves no gas target at elasticity {self.elasticity}")
        if parent_gas_used == target:
            return parent_base_fee
        if parent_gas_used > target:
            delta = parent_base_fee * (parent_gas_used - target) // target // self.denominator
            return parent_base_fee + max(delta, 1)
        delta = parent_base_fee * (target - parent_gas_used) // target // self.denominator
        return parent_base_fee - delta


@dataclass(frozen=True)
class FlooredBaseFee:
    """A base fee that no parent header determines, predicted as the parent's, never below `floor`.

    Arbitrum's L2 base fee is not EIP-1559: ArbOS raises it from a gas backlog built up over
    seconds against the chain's speed limit (gas per second), across blocks, and lets it fall back
    to a floor. So this prediction is exact while the chain runs under its speed limit and sits at
    the floor (most of the time), and lags when it is congested.
    """

    floor: int

    def next_base_fee(self, parent_base_fee: int, parent_gas_used: int, parent_gas_limit: int) -> int:
        """The parent's base fee, at least the floor (`parent_gas_used`/`_limit` do not move it)."""
        return max(parent_base_fee, self.floor)


BaseFeeRules = Eip1559Rules | FlooredBaseFee

ETHEREUM = Eip1559Rules(ELASTICITY_MULTIPLIER, BASE_FEE_MAX_CHANGE_DENOMINATOR)
# OP Mainnet since Canyon (January 2024; the denominator was 50 before): elasticity 6, denominator
# 250, from docs.optimism.io "Differences between Ethereum and OP Mainnet" (EIP-1559 parameters) and
# the superchain-registry chain config (eip1559_elasticity, eip1559_denominator_canyon); `anvil
# --optimism` applies the same pair. Since Holocene (January 2025) the chain operator may change
# both in SystemConfig, and each block header's extraData carries the values in force.
OPTIMISM = Eip1559Rules(6, 250)
# Base mainnet: the same OP-stack defaults in its superchain-registry config (elasticity 6,
# denominator 50, 250 since Canyon); the Holocene note above applies.
BASE = Eip1559Rules(6, 250)
# Arbitrum One: "gas price floor 0.02 gwei" (docs.arbitrum.io, build-decentralized-apps/reference/
# chain-params); its base fee is not EIP-1559, see `FlooredBaseFee`.
ARBITRUM = FlooredBaseFee(floor=20_000_000)


# By the names a [[chains]] table's `eip1559` takes (`scanner.config.FEE_RULES`).
PRESETS: dict[str, BaseFeeRules] = {"ethereum": ETHEREUM, "optimism": OPTIMISM, "base": BASE, "arbitrum": ARBITRUM}


def chain_rules(preset: str, elasticity: int = 0, denominator: int = 0) -> BaseFeeRules:
    """A chain's base-fee rules: EIP-1559 at `elasticity`/`denominator` when both are set, else the preset."""
    if elasticity and denominator:
        return Eip1559Rules(elasticity, denominator)
    return PRESETS[preset]


def next_base_fee(parent_base_fee: int, parent_gas_used: int, parent_gas_limit: int,
                  rules: BaseFeeRules = ETHEREUM) -> int:
    """The base fee of the block after the parent under a chain's `rules` (Ethereum's by default)."""
    return rules.next_base_fee(parent_base_fee, parent_gas_used, parent_gas_limit)


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
    """Gas units of an executor route: base + per_hop × hops + v3_extra × V3 hops."""

    base: int = DEFAULT_BASE_GAS
    per_hop: int = DEFAULT_GAS_PER_HOP
    v3_extra: int = DEFAULT_V3_EXTRA_GAS

    def units(self, hops: int, v3_hops: int = 0) -> int:
        return self.base + self.per_hop * hops + self.v3_extra * v3_hops

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
        return cls(base=max(g - per_hop * h for h, g in pairs), per_hop=per_hop)  # fitted on V2 routes


def gas_cost_in_token(gas_units: int, gas_price: int, token_per_eth: Fraction = WETH_PER_ETH) -> int:
    """The ETH paid for `gas_units` at `gas_price`, in wei of the base token, rounded up."""
    cost = Fraction(gas_units * gas_price) * token_per_eth
    return -(-cost.numerator // cost.denominator)

