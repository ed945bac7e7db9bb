"""Uniswap-V3 pools: exact integer math, identical to Uniswap/v3-core 1.0.1 to the wei.

Each function ports the Solidity it names (FullMath, TickMath, SqrtPriceMath, SwapMath,
LiquidityMath, UniswapV3Pool's swap loop and _modifyPosition) with the same rounding, the same
reverts (`V3Revert`, with the contract's reason) and the same swap steps: one per initialized
tick and per end of a 256-tick-spacing bitmap word, as the rounding of the amounts depends on
where steps stop. Proven in tests/test_dex_v3.py: replaying 379 real Swap/Mint/Burn events of the
mainnet WBTC/WETH 0.3% pool reproduces every swap's amounts, price, tick and liquidity and ends at
the recorded state tick by tick; a literal port of the loop checks the word boundaries.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from itertools import accumulate
from operator import add, sub
from typing import Any, ClassVar, TypeVar

from scanner.dex.pool import DEAD_MOBIUS, InvalidPool, Mobius, Pool, V3State

_T = TypeVar("_T")

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
Q96 = 1 << 96
Q128 = 1 << 128
PIPS = 1_000_000
"""Fees are in hundredths of a bip: fee / PIPS of the input (3000 = 0.3%)."""
TICK_SPACINGS = {100: 1, 500: 10, 3000: 60, 10000: 200}
"""The tick spacing the Uniswap-V3 factory assigns to each fee tier."""

UINT256_MAX = (1 << 256) - 1
UINT160_MAX = (1 << 160) - 1
UINT128_MAX = (1 << 128) - 1
INT128_MIN = -(1 << 127)
INT128_MAX = (1 << 127) - 1
INT256_MAX = (1 << 255) - 1
_WORD = 256  # ticks (in units of tick spacing) per tick-bitmap word


class V3Revert(ArithmeticError):
    """The pool contract would revert here; `reason` is its require message ('SPL', 'LS', ...)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# -- FullMath, UnsafeMath, LiquidityMath -----------------------------------------------------


def mul_div(a: int, b: int, denominator: int) -> int:
    """floor(a·b / denominator) with full precision (FullMath.mulDiv)."""
    if denominator <= 0:
        raise V3Revert("FullMath", "mulDiv by zero")
    result = a * b // denominator
    if result > UINT256_MAX:
        raise V3Revert("FullMath", f"mulDiv result {result} exceeds uint256")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """ceil(a·b / denominator) with full precision (FullMath.mulDivRoundingUp)."""
    if denominator <= 0:
        raise V3Revert("FullMath", "mulDivRoundingUp by zero")
    result, remainder = divmod(a * b, denominator)
    if remainder:
        result += 1
    if result > UINT256_MAX:
        raise V3Revert("FullMath", f"mulDivRoundingUp result {result} exceeds uint256")
    return result


def add_delta(liquidity: int, delta: int) -> int:
    """liquidity + delta, reverting like LiquidityMath.addDelta when it leaves uint128."""
    result = liquidity + delta
    if result < 0:
        raise V3Revert("LS", f"liquidity {liquidity} minus {-delta} is negative")
    if result > UINT128_MAX:
        raise V3Revert("LA", f"liquidity {liquidity} plus {delta} exceeds uint128")
    return result


# -- TickMath ---------------------------------------------------------------------------------

_TICK_FACTORS = (
    (0x2, 0xfff97272373d413259a46990580e213a),
    (0x4, 0xfff2e50f5f656932ef12357cf3c7fdcc),
    (0x8, 0xffe5caca7e10e4e61c3624eaa0941cd0),
    (0x10, 0xffcb9843d60f6159c9db58835c926644),
    (0x20, 0xff973b41fa98c081472e6896dfb254c0),
    (0x40, 0xff2ea16466c96a3843ec78b326b52861),
    (0x80, 0xfe5dee046a99a2a811c461f1969c3053),
    (0x100, 0xfcbe86c7900a88aedcffc83b479aa3a4),
    (0x200, 0xf987a7253ac413176f2b074cf7815e54),
    (0x400, 0xf3392b0822b70005940c7a398e4b70f3),
    (0x800, 0xe7159475a2c29b7443b29c7fa6e889d9),
    (0x1000, 0xd097f3bdfd2022b8845ad8f792aa5825),
    (0x2000, 0xa9f746462d870fdf8a65dc1f90e061e5),
    (0x4000, 0x70d869a156d2a1b890bb3df62baf32f7),
    (0x8000, 0x31be135f97d08fd981231505542fcfa6),
    (0x10000, 0x9aa508b5b7a84e1c677de54f3e99bc9),
    (0x20000, 0x5d6af8dedb81196699c329225ee604),
    (0x40000, 0x2216e584f5fa1ea926041bedfe98),
    (0x80000, 0x48a170391f7dc42444e8fa2),
)


@lru_cache(maxsize=1 << 16)
def sqrt_ratio_at_tick(tick: int) -> int:
    """sqrt(1.0001^tick)·2^96, rounded as TickMath.getSqrtRatioAtTick (revert 'T' outside the ticks)."""
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise V3Revert("T", f"tick {tick} is outside [{MIN_TICK}, {MAX_TICK}]")
    ratio = 0xfffcb933bd6fad37aa2d162d1a594001 if abs_tick & 0x1 else 0x100000000000000000000000000000000
    for bit, factor in _TICK_FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = UINT256_MAX // ratio
    return (ratio >> 32) + (1 if ratio & 0xffffffff else 0)


def tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """The greatest tick whose sqrt ratio is <= sqrt_price_x96: TickMath.getTickAtSqrtRatio's own
    log2 algorithm, step for step (revert 'R' outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO))."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise V3Revert("R", f"sqrt price {sqrt_price_x96} is outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO)")
    ratio = sqrt_price_x96 << 32
    msb = ratio.bit_length() - 1
    r = ratio >> (msb - 127) if msb >= 128 else ratio << (127 - msb)
    log_2 = (msb - 128) << 64
    for shift in range(63, 49, -1):
        r = (r * r) >> 127
        f = r >> 128
        log_2 |= f << shift
        r >>= f
    log_sqrt10001 = log_2 * 255738958999603826347141
    tick_low = (log_sqrt10001 - 3402992956809132418596140100660247210) >> 128
    tick_high = (log_sqrt10001 + 291339464771989622907027621153398088495) >> 128
    if tick_low == tick_high:
        return tick_low
    return tick_high if sqrt_ratio_at_tick(tick_high) <= sqrt_price_x96 else tick_low


# -- SqrtPriceMath ----------------------------------------------------------------------------


def next_sqrt_price_from_amount0_rounding_up(sqrt_price_x96: int, liquidity: int, amount: int, add: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromAmount0RoundingUp, including its 256-bit overflow branches."""
    if amount == 0:
        return sqrt_price_x96
    numerator1 = liquidity << 96
    product = amount * sqrt_price_x96
    if add:
        if product <= UINT256_MAX and numerator1 + product <= UINT256_MAX:
            return mul_div_rounding_up(numerator1, sqrt_price_x96, numerator1 + product)
        denominator = numerator1 // sqrt_price_x96 + amount
        if denominator > UINT256_MAX:
            raise V3Revert("SqrtPriceMath", "amount0 denominator exceeds uint256")
        return -(-numerator1 // denominator)
    if product > UINT256_MAX or numerator1 <= product:
        raise V3Revert("SqrtPriceMath", f"removing {amount} of token0 exhausts liquidity {liquidity}")
    result = mul_div_rounding_up(numerator1, sqrt_price_x96, numerator1 - product)
    if result > UINT160_MAX:
        raise V3Revert("SqrtPriceMath", "next sqrt price exceeds uint160")
    return result


def next_sqrt_price_from_amount1_rounding_down(sqrt_price_x96: int, liquidity: int, amount: int, add: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromAmount1RoundingDown."""
    if add:
        result = sqrt_price_x96 + mul_div(amount, Q96, liquidity)
        if result > UINT160_MAX:
            raise V3Revert("SqrtPriceMath", "next sqrt price exceeds uint160")
        return result
    quotient = mul_div_rounding_up(amount, Q96, liquidity)
    if sqrt_price_x96 <= quotient:
        raise V3Revert("SqrtPriceMath", f"removing {amount} of token1 exhausts liquidity {liquidity}")
    return sqrt_price_x96 - quotient


def next_sqrt_price_from_input(sqrt_price_x96: int, liquidity: int, amount_in: int, zero_for_one: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromInput: rounds so the price does not pass the target."""
    if sqrt_price_x96 <= 0 or liquidity <= 0:
        raise V3Revert("SqrtPriceMath", "price and liquidity must be positive")
    if zero_for_one:
        return next_sqrt_price_from_amount0_rounding_up(sqrt_price_x96, liquidity, amount_in, True)
    return next_sqrt_price_from_amount1_rounding_down(sqrt_price_x96, liquidity, amount_in, True)


def next_sqrt_price_from_output(sqrt_price_x96: int, liquidity: int, amount_out: int, zero_for_one: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromOutput: rounds so the price passes the target."""
    if sqrt_price_x96 <= 0 or liquidity <= 0:
        raise V3Revert("SqrtPriceMath", "price and liquidity must be positive")
    if zero_for_one:
        return next_sqrt_price_from_amount1_rounding_down(sqrt_price_x96, liquidity, amount_out, False)
    return next_sqrt_price_from_amount0_rounding_up(sqrt_price_x96, liquidity, amount_out, False)


def amount0_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount0Delta: L·(√b − √a)/(√a·√b) of token0 between two prices."""
    if sqrt_a_x96 > sqrt_b_x96:
        sqrt_a_x96, sqrt_b_x96 = sqrt_b_x96, sqrt_a_x96
    if sqrt_a_x96 <= 0:
        raise V3Revert("SqrtPriceMath", "sqrt price must be positive")
    numerator1 = liquidity << 96
    numerator2 = sqrt_b_x96 - sqrt_a_x96
    if round_up:
        return -(-mul_div_rounding_up(numerator1, numerator2, sqrt_b_x96) // sqrt_a_x96)
    return mul_div(numerator1, numerator2, sqrt_b_x96) // sqrt_a_x96


def amount1_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount1Delta: L·(√b − √a) of token1 between two prices."""
    if sqrt_a_x96 > sqrt_b_x96:
        sqrt_a_x96, sqrt_b_x96 = sqrt_b_x96, sqrt_a_x96
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b_x96 - sqrt_a_x96, Q96)
    return mul_div(liquidity, sqrt_b_x96 - sqrt_a_x96, Q96)


def signed_amount0_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity_delta: int) -> int:
    """The signed getAmount0Delta: rounded up when liquidity is added, down (and negated) when removed."""
    if liquidity_delta < 0:
        return -amount0_delta(sqrt_a_x96, sqrt_b_x96, -liquidity_delta, False)
    return amount0_delta(sqrt_a_x96, sqrt_b_x96, liquidity_delta, True)


def signed_amount1_delta(sqrt_a_x96: int, sqrt_b_x96: int, liquidity_delta: int) -> int:
    """The signed getAmount1Delta: rounded up when liquidity is added, down (and negated) when removed."""
    if liquidity_delta < 0:
        return -amount1_delta(sqrt_a_x96, sqrt_b_x96, -liquidity_delta, False)
    return amount1_delta(sqrt_a_x96, sqrt_b_x96, liquidity_delta, True)


# -- SwapMath ---------------------------------------------------------------------------------


def compute_swap_step(sqrt_current_x96: int, sqrt_target_x96: int, liquidity: int, amount_remaining: int,
                      fee_pips: int) -> tuple[int, int, int, int]:
    """SwapMath.computeSwapStep: (next sqrt price, amount in, amount out, fee amount) of swapping
    toward the target within one liquidity range; exact input when amount_remaining >= 0."""
    zero_for_one = sqrt_current_x96 >= sqrt_target_x96
    exact_in = amount_remaining >= 0
    amount_in = amount_out = 0
    if exact_in:
        remaining_less_fee = mul_div(amount_remaining, PIPS - fee_pips, PIPS)
        amount_in = (amount0_delta(sqrt_target_x96, sqrt_current_x96, liquidity, True) if zero_for_one
                     else amount1_delta(sqrt_current_x96, sqrt_target_x96, liquidity, True))
        if remaining_less_fee >= amount_in:
            sqrt_next = sqrt_target_x96
        else:
            sqrt_next = next_sqrt_price_from_input(sqrt_current_x96, liquidity, remaining_less_fee, zero_for_one)
    else:
        amount_out = (amount1_delta(sqrt_target_x96, sqrt_current_x96, liquidity, False) if zero_for_one
                      else amount0_delta(sqrt_current_x96, sqrt_target_x96, liquidity, False))
        if -amount_remaining >= amount_out:
            sqrt_next = sqrt_target_x96
        else:
            sqrt_next = next_sqrt_price_from_output(sqrt_current_x96, liquidity, -amount_remaining, zero_for_one)
    reached = sqrt_target_x96 == sqrt_next
    if zero_for_one:
        if not (reached and exact_in):
            amount_in = amount0_delta(sqrt_next, sqrt_current_x96, liquidity, True)
        if not (reached and not exact_in):
            amount_out = amount1_delta(sqrt_next, sqrt_current_x96, liquidity, False)
    else:
        if not (reached and exact_in):
            amount_in = amount1_delta(sqrt_current_x96, sqrt_next, liquidity, True)
        if not (reached and not exact_in):
            amount_out = amount0_delta(sqrt_current_x96, sqrt_next, liquidity, False)
    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining
    if exact_in and not reached:
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, PIPS - fee_pips)
    return sqrt_next, amount_in, amount_out, fee_amount


def virtual_curve(liquidity: int, sqrt_price_x96: int, zero_for_one: bool, fee: int, extra_bits: int = 0) -> Mobius:
    """The constant-product curve, fee included, of `liquidity` at `sqrt_price_x96`: virtual reserves
    L/√P (token0) and L·√P (token1), the reserve in rounded down and the reserve out up, to
    2^-extra_bits of a unit (the curve is the same with both reserves scaled). Never below the
    exact output of a swap from that price that meets no more than `liquidity` on its way (see
    `V3Pool.mobius`). Rounding to whole units loosens the curve by up to one unit of the reserve
    out, which matters for a 6-decimal token with a small reserve: the search uses extra bits."""
    if liquidity <= 0:
        return DEAD_MOBIUS
    scaled = liquidity << extra_bits
    if zero_for_one:
        r_in = (scaled << 96) // sqrt_price_x96
        r_out = -(-(scaled * sqrt_price_x96) >> 96)
    else:
        r_in = scaled * sqrt_price_x96 >> 96
        r_out = -(-(scaled << 96) // sqrt_price_x96)
    gamma = PIPS - fee
    return gamma * r_out, PIPS * r_in, gamma << extra_bits


# -- the pool ---------------------------------------------------------------------------------


def _step_target(initialized: list[int], tick: int, spacing: int, merged: bool, zero_for_one: bool,
                 limit: int) -> tuple[int, bool, int, int]:
    """Where the contract's next swap step ends: (tick, whether it is initialized, its sqrt price, the
    step's target price). A step stops at the next initialized tick or at the end of the current
    256-spacing bitmap word, whichever comes first; `merged` (no liquidity in range) runs on to the
    next initialized tick, which moves no amounts."""
    i = bisect_right(initialized, tick)
    if zero_for_one:
        bound = MIN_TICK if merged else (tick // spacing >> 8 << 8) * spacing
        if i and initialized[i - 1] >= bound:
            tick_next, is_initialized = initialized[i - 1], True
        else:
            tick_next, is_initialized = max(bound, MIN_TICK), False
        sqrt_next = sqrt_ratio_at_tick(tick_next)
        return tick_next, is_initialized, sqrt_next, max(sqrt_next, limit)
    bound = MAX_TICK if merged else ((tick // spacing + 1 >> 8 << 8) + _WORD - 1) * spacing
    if i < len(initialized) and initialized[i] <= bound:
        tick_next, is_initialized = initialized[i], True
    else:
        tick_next, is_initialized = min(bound, MAX_TICK), False
    sqrt_next = sqrt_ratio_at_tick(tick_next)
    return tick_next, is_initialized, sqrt_next, min(sqrt_next, limit)


@dataclass(frozen=True)
class SwapResult:
    """What UniswapV3Pool.swap returns and emits: amounts signed from the pool's side (positive =
    paid into the pool), and the state after the swap."""

    amount0: int
    amount1: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks_crossed: int


def max_liquidity_per_tick(tick_spacing: int) -> int:
    """Tick.tickSpacingToMaxLiquidityPerTick: the most gross liquidity one tick may reference."""
    min_tick = -(-MIN_TICK // tick_spacing) * tick_spacing  # Solidity division truncates toward 0
    max_tick = MAX_TICK // tick_spacing * tick_spacing
    return UINT128_MAX // ((max_tick - min_tick) // tick_spacing + 1)


@dataclass(eq=False)
class V3Pool(Pool):
    """A Uniswap-V3 pool: slot0 (sqrt price, tick), in-range liquidity and its initialized ticks.

    `ticks` maps each initialized tick to (liquidityGross, liquidityNet); only liquidityNet and
    which ticks are initialized affect a swap. Fee growth, protocol fees and oracle observations
    are not kept: none of them changes a swap's amounts, price, tick or liquidity. Change the
    state only through `update`, `apply`, `mint` and `burn`.
    """

    kind: ClassVar[str] = "uniswap-v3"
    address: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks: dict[int, tuple[int, int]] = field(default_factory=dict)
    fee_bps: int = field(init=False)
    _initialized: list[int] = field(init=False, repr=False)
    _version: int = field(init=False, repr=False)  # bumped whenever `ticks` changes
    _memo: dict[tuple[Any, ...], Any] = field(init=False, repr=False)
    _steps: dict[tuple[Any, ...], SwapSteps] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.token0 == self.token1:
            raise InvalidPool(self.address, f"both tokens are {self.token0}")
        if not 0 <= self.fee < PIPS:
            raise InvalidPool(self.address, f"fee {self.fee} pips is outside [0, {PIPS})")
        if not 0 < self.tick_spacing < 16384:
            raise InvalidPool(self.address, f"tick spacing {self.tick_spacing} is outside (0, 16384)")
        self.fee_bps = self.fee // 100
        for tick, (gross, net) in self.ticks.items():
            self._check_initialized(tick, gross, net)
        self._initialized = sorted(self.ticks)
        self._version = 0
        self._memo = {}
        self._steps = {}
        self.update(self.sqrt_price_x96, self.tick, self.liquidity)

    # -- construction from recorded data ------------------------------------------------------

    @classmethod
    def from_simulator_json(cls, doc: Mapping[str, Any]) -> V3Pool:
        """From the `pool.json` shape of github.com/chris-aubin/Uniswap-Simulator: {poolAddress,
        data: {token0, token1, fee, tickSpacing, liquidity, slot0: {sqrtPriceX96, tick},
        ticks: {tick: {liquidityGross, liquidityNet}}}}; ticks with no gross liquidity are not initialized."""
        data = doc["data"]
        ticks = {int(t): (int(info["liquidityGross"]), int(info["liquidityNet"]))
                 for t, info in data["ticks"].items() if int(info["liquidityGross"])}
        return cls(doc["poolAddress"], data["token0"], data["token1"], int(data["fee"]), int(data["tickSpacing"]),
                   int(data["slot0"]["sqrtPriceX96"]), int(data["slot0"]["tick"]), int(data["liquidity"]), ticks)

    @classmethod
    def from_l2_state(cls, address: str, state: Mapping[str, Any], token0: str, token1: str, fee: int) -> V3Pool:
        """From the `initial_pool_states.json` shape of github.com/tivas-g/Torres_Shared_Sequencing_Arbitrage:
        {sqrt_price, tick, liquidity, ticks: {tick: liquidityNet}}, integers as strings or numbers.

        The data has no liquidityGross: it is set to |liquidityNet|, its lower bound, which a swap
        never reads (mint/burn on such a pool may clear a tick that the chain keeps). Ticks with
        liquidityNet 0 are dropped: the source lists many ticks that are no longer initialized, and
        a tick with no net liquidity changes a swap only by where a step stops (a wei of rounding).
        The tick spacing is the factory's for the fee tier.
        """
        if fee not in TICK_SPACINGS:
            raise InvalidPool(address, f"fee tier {fee} has no known tick spacing ({sorted(TICK_SPACINGS)})")
        for key in ("sqrt_price", "tick", "liquidity"):
            if state.get(key) is None:
                raise InvalidPool(address, f"the recorded state has no {key}")
        nets = {int(t): int(net) for t, net in (state.get("ticks") or {}).items() if int(net)}
        return cls(address, token0, token1, fee, TICK_SPACINGS[fee], int(state["sqrt_price"]), int(state["tick"]),
                   int(state["liquidity"]), {t: (abs(net), net) for t, net in nets.items()})

    # -- state --------------------------------------------------------------------------------

    def _check_initialized(self, tick: int, gross: int, net: int) -> None:
        self._check_tick(tick, "initialized tick")
        if not 0 < gross <= UINT128_MAX or not INT128_MIN <= net <= INT128_MAX or abs(net) > gross:
            raise InvalidPool(self.address, f"tick {tick} has liquidityGross {gross}, liquidityNet {net}")

    def _check_tick(self, tick: int, what: str) -> None:
        if not MIN_TICK <= tick <= MAX_TICK:
            raise InvalidPool(self.address, f"{what} {tick} is outside [{MIN_TICK}, {MAX_TICK}]")
        if tick % self.tick_spacing:
            raise InvalidPool(self.address, f"{what} {tick} is not a multiple of the tick spacing {self.tick_spacing}")

    def state(self) -> V3State:
        """The whole swap state, as a watcher sends it when the receiver knows nothing yet."""
        return V3State(self.sqrt_price_x96, self.tick, self.liquidity, dict(self.ticks), True)

    def reserve_in(self, zero_for_one: bool) -> int:
        """The virtual reserve of the token sold at the current price: L/√P (token0) or L·√P (token1)."""
        if zero_for_one:
            return (self.liquidity << 96) // self.sqrt_price_x96
        return (self.liquidity * self.sqrt_price_x96) >> 96

    def update(self, sqrt_price_x96: int, tick: int, liquidity: int,
               ticks: Mapping[int, tuple[int, int]] | None = None, replace_ticks: bool = False) -> None:
        """Replace slot0 (sqrtPriceX96, tick) and the in-range liquidity with what the chain reports,
        and the initialized ticks: all of them (`replace_ticks`) or those in `ticks` ((0, 0) = cleared).
        All or nothing: a bad value raises InvalidPool naming it and leaves the pool as it was."""
        if ticks:
            for t, (gross, net) in ticks.items():
                if gross or net or replace_ticks:
                    self._check_initialized(t, gross, net)
                else:
                    self._check_tick(t, "cleared tick")
        if sqrt_price_x96 == 0:
            raise InvalidPool(self.address, "slot0 is not initialized (sqrtPriceX96 = 0)")
        if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
            raise InvalidPool(self.address, f"sqrtPriceX96 {sqrt_price_x96} is outside [MIN_SQRT_RATIO, MAX_SQRT_RATIO)")
        if not MIN_TICK <= tick <= MAX_TICK:
            raise InvalidPool(self.address, f"tick {tick} is outside [{MIN_TICK}, {MAX_TICK}]")
        # the contract's tick is tick_at(price), or one below after crossing down onto a tick's price:
        # either way the price lies in [ratio(tick), ratio(tick + 1)] (cached ratios, no log search)
        if tick == MAX_TICK or not sqrt_ratio_at_tick(tick) <= sqrt_price_x96 <= sqrt_ratio_at_tick(tick + 1):
            raise InvalidPool(self.address, f"tick {tick} does not match sqrtPriceX96 {sqrt_price_x96} "
                                            f"(tick {tick_at_sqrt_ratio(sqrt_price_x96)})")
        if not 0 <= liquidity <= UINT128_MAX:
            raise InvalidPool(self.address, f"liquidity {liquidity} is outside uint128")
        if replace_ticks:
            self.ticks = dict(ticks or {})
        elif ticks:
            for t, (gross, net) in ticks.items():
                if gross:
                    self.ticks[t] = (gross, net)
                else:
                    self.ticks.pop(t, None)
        if ticks or replace_ticks:
            self._initialized = sorted(self.ticks)
            self._version += 1
        self.sqrt_price_x96, self.tick, self.liquidity = sqrt_price_x96, tick, liquidity

    def apply(self, result: SwapResult) -> None:
        """Move the pool to the state after a swap that `swap` computed from the current state."""
        self.sqrt_price_x96, self.tick, self.liquidity = result.sqrt_price_x96, result.tick, result.liquidity

    def ticks_crossed(self, tick_before: int, tick_after: int) -> int:
        """How many initialized ticks a swap from `tick_before` to `tick_after` crossed (what
        `SwapResult.ticks_crossed` counts), from the ticks initialized now (a swap changes none).

        Moving down, the swap crosses tick T when its price reaches T's and its tick becomes T − 1;
        moving up, when its tick becomes T. Either way the crossed ticks are the initialized ones in
        (lower, upper] of the two ticks: two bisections, however many ticks the swap crossed."""
        lo, hi = min(tick_before, tick_after), max(tick_before, tick_after)
        return bisect_right(self._initialized, hi) - bisect_right(self._initialized, lo)

    def _modify_position(self, tick_lower: int, tick_upper: int, delta: int) -> tuple[int, int]:
        """UniswapV3Pool._modifyPosition for liquidity bookkeeping (Tick.update, the bitmap flips,
        the in-range liquidity): the signed token amounts owed to the pool. All or nothing."""
        if tick_lower >= tick_upper:
            raise V3Revert("TLU", f"tick lower {tick_lower} is not below tick upper {tick_upper}")
        if tick_lower < MIN_TICK:
            raise V3Revert("TLM", f"tick lower {tick_lower} is below {MIN_TICK}")
        if tick_upper > MAX_TICK:
            raise V3Revert("TUM", f"tick upper {tick_upper} is above {MAX_TICK}")
        if delta == 0:
            return 0, 0
        updated = {}
        for tick, upper in ((tick_lower, False), (tick_upper, True)):
            gross, net = self.ticks.get(tick, (0, 0))
            gross_after = add_delta(gross, delta)
            if gross_after > max_liquidity_per_tick(self.tick_spacing):
                raise V3Revert("LO", f"tick {tick} would reference {gross_after} liquidity")
            net = net - delta if upper else net + delta
            if not INT128_MIN <= net <= INT128_MAX:
                raise V3Revert("SafeCast", f"liquidityNet {net} of tick {tick} exceeds int128")
            if (gross == 0) != (gross_after == 0) and tick % self.tick_spacing:
                raise V3Revert("TickBitmap", f"tick {tick} is not a multiple of the tick spacing {self.tick_spacing}")
            updated[tick] = (gross_after, net)
        in_range = tick_lower <= self.tick < tick_upper
        liquidity = add_delta(self.liquidity, delta) if in_range else self.liquidity
        for tick, (gross_after, net) in updated.items():
            if gross_after == 0:
                del self.ticks[tick]
                self._initialized.remove(tick)
            else:
                if tick not in self.ticks:
                    insort(self._initialized, tick)
                self.ticks[tick] = (gross_after, net)
        self._version += 1
        sqrt_lower, sqrt_upper = sqrt_ratio_at_tick(tick_lower), sqrt_ratio_at_tick(tick_upper)
        if self.tick < tick_lower:
            return signed_amount0_delta(sqrt_lower, sqrt_upper, delta), 0
        if in_range:
            self.liquidity = liquidity
            return (signed_amount0_delta(self.sqrt_price_x96, sqrt_upper, delta),
                    signed_amount1_delta(sqrt_lower, self.sqrt_price_x96, delta))
        return 0, signed_amount1_delta(sqrt_lower, sqrt_upper, delta)

    def mint(self, tick_lower: int, tick_upper: int, amount: int) -> tuple[int, int]:
        """Add `amount` liquidity over [tick_lower, tick_upper); returns (amount0, amount1) paid in, as Mint emits."""
        if not 0 < amount <= INT128_MAX:
            raise V3Revert("mint", f"amount {amount} is outside (0, 2**127)")
        return self._modify_position(tick_lower, tick_upper, amount)

    def burn(self, tick_lower: int, tick_upper: int, amount: int) -> tuple[int, int]:
        """Remove `amount` liquidity over [tick_lower, tick_upper); returns (amount0, amount1) owed out, as Burn emits.

        Positions are not tracked, so burning more than an owner holds is not caught.
        """
        if not 0 <= amount <= INT128_MAX:
            raise V3Revert("burn", f"amount {amount} is outside [0, 2**127)")
        amount0, amount1 = self._modify_position(tick_lower, tick_upper, -amount)
        return -amount0, -amount1

    # -- swapping -----------------------------------------------------------------------------

    def default_limit(self, zero_for_one: bool) -> int:
        """The price limit routers pass for 'no limit': one inside the extreme ratios."""
        return MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1

    def _walk(self, zero_for_one: bool, amount_specified: int, limit: int) -> tuple[int, int, int, int, int, int]:
        """UniswapV3Pool.swap's loop: (amount remaining, amount calculated, sqrt price, tick, liquidity,
        ticks crossed).

        Steps stop where the contract's do: at the next initialized tick or the end of the current
        tick-bitmap word, whichever comes first. Where the in-range liquidity is 0 every step swaps
        nothing, so those steps are merged up to the next initialized tick (or the limit).
        """
        sqrt_price, tick, liquidity = self.sqrt_price_x96, self.tick, self.liquidity
        spacing, fee, ticks, initialized = self.tick_spacing, self.fee, self.ticks, self._initialized
        exact_input = amount_specified > 0
        remaining, calculated, crossed = amount_specified, 0, 0
        stale = False  # the tick must be recomputed from the price (the contract does it at once)
        merged = False  # the last step merged zero-liquidity steps
        while remaining and sqrt_price != limit:
            if stale:
                tick, stale = tick_at_sqrt_ratio(sqrt_price), False
            merged = liquidity == 0
            tick_next, is_initialized, sqrt_next, target = _step_target(initialized, tick, spacing, merged,
                                                                        zero_for_one, limit)
            sqrt_start = sqrt_price
            sqrt_price, amount_in, amount_out, fee_amount = compute_swap_step(sqrt_price, target, liquidity,
                                                                              remaining, fee)
            if exact_input:
                remaining -= amount_in + fee_amount
                calculated -= amount_out
            else:
                remaining += amount_out
                calculated += amount_in + fee_amount
            if sqrt_price == sqrt_next:
                if is_initialized:
                    net = ticks[tick_next][1]
                    liquidity = add_delta(liquidity, -net if zero_for_one else net)
                    crossed += 1
                tick = tick_next - 1 if zero_for_one else tick_next
            elif sqrt_price != sqrt_start:
                stale = True
        if stale:
            tick = tick_at_sqrt_ratio(sqrt_price)
            if merged and zero_for_one and tick % (spacing * _WORD) == 0 and sqrt_ratio_at_tick(tick) == sqrt_price:
                # the contract would have stepped to this word boundary and set the tick one below it
                tick -= 1
        return remaining, calculated, sqrt_price, tick, liquidity, crossed

    def check_swap(self, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None) -> int:
        """The swap's argument checks ('AS', 'SPL'); returns the price limit, the default one for None."""
        if amount_specified == 0:
            raise V3Revert("AS", f"pool {self.address}: the amount specified is 0")
        if not -INT256_MAX <= amount_specified <= INT256_MAX:
            raise V3Revert("SafeCast", f"amount {amount_specified} is outside int256")
        limit = self.default_limit(zero_for_one) if sqrt_price_limit_x96 is None else sqrt_price_limit_x96
        if zero_for_one:
            if not MIN_SQRT_RATIO < limit < self.sqrt_price_x96:
                raise V3Revert("SPL", f"pool {self.address}: price limit {limit} is not in (MIN_SQRT_RATIO, "
                                      f"{self.sqrt_price_x96}), the prices below the current one")
        elif not self.sqrt_price_x96 < limit < MAX_SQRT_RATIO:
            raise V3Revert("SPL", f"pool {self.address}: price limit {limit} is not in ({self.sqrt_price_x96}, "
                                  f"MAX_SQRT_RATIO), the prices above the current one")
        return limit

    def swap(self, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None) -> SwapResult:
        """UniswapV3Pool.swap without changing the pool: exact input when amount_specified > 0,
        exact output when < 0; no limit by default. Apply the result with `apply`."""
        limit = self.check_swap(zero_for_one, amount_specified, sqrt_price_limit_x96)
        remaining, calculated, sqrt_price, tick, liquidity, crossed = self._walk(zero_for_one, amount_specified, limit)
        if zero_for_one == (amount_specified > 0):
            amount0, amount1 = amount_specified - remaining, calculated
        else:
            amount0, amount1 = calculated, amount_specified - remaining
        return SwapResult(amount0, amount1, sqrt_price, tick, liquidity, crossed)

    def _can_move(self, zero_for_one: bool) -> bool:
        """Whether any swap in this direction passes the default limit check."""
        if zero_for_one:
            return self.sqrt_price_x96 > MIN_SQRT_RATIO + 1
        return self.sqrt_price_x96 < MAX_SQRT_RATIO - 1

    def quote_out(self, zero_for_one: bool, amount: int) -> int:
        """Output of an exact-input swap of `amount` with no limit. Above `max_input` the pool takes
        only `max_input` and this is everything it can give."""
        if amount <= 0 or not self._can_move(zero_for_one):
            return 0
        return -self._walk(zero_for_one, min(amount, INT256_MAX), self.default_limit(zero_for_one))[1]

    def quote_in(self, zero_for_one: bool, amount_out: int) -> int | None:
        """Smallest exact input whose `quote_out` is at least `amount_out`; None when the pool cannot
        give it. Starts from the exact-output swap's input and corrects its rounding."""
        if amount_out <= 0 or not self._can_move(zero_for_one):
            return None
        remaining, amount_in, *_ = self._walk(zero_for_one, -amount_out, self.default_limit(zero_for_one))
        if remaining:
            return None
        hi = amount_in
        if self.quote_out(zero_for_one, hi) < amount_out:
            cap = self.max_input(zero_for_one)
            if self.quote_out(zero_for_one, cap) < amount_out:
                return None
            lo, step = hi, 1
            while True:
                hi = min(lo + step, cap)
                if self.quote_out(zero_for_one, hi) >= amount_out:
                    break
                lo, step = hi, step * 2
        else:
            lo, step = hi - 1, 1
            while lo > 0 and self.quote_out(zero_for_one, lo) >= amount_out:
                hi, step = lo, step * 2
                lo = max(hi - step, 0)
        while hi - lo > 1:  # quote_out(lo) < amount_out <= quote_out(hi)
            mid = (lo + hi) // 2
            if self.quote_out(zero_for_one, mid) >= amount_out:
                hi = mid
            else:
                lo = mid
        return hi

    def _remember(self, what: str, zero_for_one: bool, compute: Callable[[], _T]) -> _T:
        """`compute()`, kept until the state changes."""
        key = (what, zero_for_one, self.sqrt_price_x96, self.tick, self.liquidity, self._version)
        value = self._memo.get(key)
        if value is None:
            if len(self._memo) >= 16:
                self._memo.clear()
            value = self._memo[key] = compute()
        return value

    def max_input(self, zero_for_one: bool) -> int:
        """The exact input that takes the price to the default limit; any larger input gets the same output."""
        if not self._can_move(zero_for_one):
            return 0
        return self._remember("max_input", zero_for_one, lambda: INT256_MAX - self._walk(
            zero_for_one, INT256_MAX, self.default_limit(zero_for_one))[0])

    def _state_key(self, zero_for_one: bool) -> tuple[Any, ...]:
        return zero_for_one, self.sqrt_price_x96, self.tick, self.liquidity, self._version

    def swap_steps(self, zero_for_one: bool) -> SwapSteps:
        """The steps of every exact-input swap from the current state in this direction (see
        `SwapSteps`), computed as far as they are asked for and kept until the state changes."""
        key = self._state_key(zero_for_one)
        steps = self._steps.get(key)
        if steps is None:
            if len(self._steps) >= 4:
                self._steps.clear()
            steps = self._steps[key] = SwapSteps(self, zero_for_one)
        return steps

    def mobius(self, zero_for_one: bool) -> Mobius:
        """The constant-product curve, fee included, of the most liquidity the swap can meet, from the
        price where it first meets liquidity: never below the exact output.

        Proof. A range without liquidity costs no input and pays no output (each of its steps has
        amounts 0 and fee 0), so every swap's output is that of a swap from the first price with
        liquidity ahead. From there, selling dx (after fee) moves 1/√P (token0 in) or √P (token1 in)
        by dx/L(P), and each unit sold earns the current price. With L(P) <= Lmax everywhere on the
        way, the price after any cumulative input is at least as good as with Lmax everywhere, so
        the continuous output of the real pool is at most that of the constant product with Lmax,
        whose virtual reserves are Lmax/√P (token0) and Lmax·√P (token1). The contract's rounding
        only lowers the output: each step rounds its input up and output down, the fee is at least
        fee/(1e6-fee) of the step's input, so at most (1e6-fee)/1e6 of the input reaches the curve.
        The reserve in is rounded down and the reserve out up, which only raises the curve.
        """
        if not self._can_move(zero_for_one):
            return DEAD_MOBIUS
        return self._remember("mobius", zero_for_one, lambda: self._mobius(zero_for_one))

    def _mobius(self, zero_for_one: bool) -> Mobius:
        liquidity = top = self.liquidity
        start = self.sqrt_price_x96
        i = bisect_right(self._initialized, self.tick)
        crossing = reversed(self._initialized[:i]) if zero_for_one else self._initialized[i:]
        sign = -1 if zero_for_one else 1
        for tick in crossing:
            if top <= 0:  # nothing met yet: the swap reaches this tick for free
                start = sqrt_ratio_at_tick(tick)
            liquidity += sign * self.ticks[tick][1]
            top = max(top, liquidity)
        if top <= 0:
            return DEAD_MOBIUS
        return virtual_curve(top, start, zero_for_one, self.fee)

    def spot_price(self) -> Fraction:
        """The pool's marginal price before fees: raw token1 units per raw token0 unit, (√P/2^96)²."""
        return Fraction(self.sqrt_price_x96 * self.sqrt_price_x96, 1 << 192)


Piece = tuple[int, int, int, int, int]
_PRECISE = 64  # extra bits of the virtual reserves in the pieces of `SwapSteps`
"""(k, m, n, O, C): the curve O + k·(u − C) / (m + n·(u − C)) of a pool's output for input u."""


class SwapSteps:
    """Every exact-input swap from one state of a V3 pool in one direction, as the contract's steps.

    State j is where a swap stands after j full steps: `starts[j]` input consumed (amounts in plus
    fees), `outs[j]` output paid, `prices[j]` the sqrt price, `liquidities[j]` the in-range
    liquidity, `crossed[j]` initialized ticks crossed; `targets[j]` is where step j stops (an
    initialized tick, the end of a bitmap word, or the price limit). The contract swaps an exact
    input u with starts[j] <= u < starts[j + 1] as the full steps before j and one partial step j
    (step j is full exactly when its input covers amount in plus fee), so `out(u)` is outs[j] plus
    one `compute_swap_step`: the amounts of `V3Pool.quote_out`, found by bisection. Steps are
    computed as far as they are asked for. Between starts[j] and starts[j + 1] the output is one
    constant-product step, so state j has a Möbius upper bound (`local`), which is what lets
    sizing treat a V3 hop like a V2 hop one range at a time.

    A table belongs to one pool state (`V3Pool.swap_steps` keeps it); extending it after the pool
    changed raises RuntimeError.
    """

    def __init__(self, pool: V3Pool, zero_for_one: bool):
        self.zero_for_one = zero_for_one
        self.fee = pool.fee
        self.starts = [0]
        self.outs = [0]
        self.prices = [pool.sqrt_price_x96]
        self.liquidities = [pool.liquidity]
        self.crossed = [0]
        self.targets: list[int] = []
        self.done = not pool._can_move(zero_for_one)  # the last state is final: larger inputs are not taken
        self._pool = pool
        self._key = pool._state_key(zero_for_one)
        self._tick = pool.tick
        self._limit = pool.default_limit(zero_for_one)
        self._prefix_max: list[int] = []
        self._suffix_max: list[int] = []
        self._locals: dict[int, Piece] = {}  # `local` of the states whose step is known (they never change)

    # -- the steps ----------------------------------------------------------------------------

    def _extend(self) -> None:
        """Compute the next full step, as `V3Pool._walk` does with an unlimited exact input."""
        pool, zero_for_one = self._pool, self.zero_for_one
        if pool._state_key(zero_for_one) != self._key:
            raise RuntimeError(f"pool {pool.address} changed since its swap steps were computed")
        sqrt_price, liquidity, tick, limit = self.prices[-1], self.liquidities[-1], self._tick, self._limit
        spacing, initialized = pool.tick_spacing, pool._initialized
        tick_next, is_initialized, sqrt_next, target = _step_target(initialized, tick, spacing, liquidity == 0,
                                                                    zero_for_one, limit)
        try:
            sqrt_new, amount_in, amount_out, fee_amount = compute_swap_step(sqrt_price, target, liquidity,
                                                                            INT256_MAX, pool.fee)
            crossed = self.crossed[-1]
            if sqrt_new == sqrt_next:
                if is_initialized:
                    net = pool.ticks[tick_next][1]
                    liquidity = add_delta(liquidity, -net if zero_for_one else net)
                    crossed += 1
                tick = tick_next - 1 if zero_for_one else tick_next
        except V3Revert:  # a swap that gets this far reverts: only the inputs before this step exist
            self.done = True
            return
        if sqrt_new != target:  # not even 2**255 of input finishes the step
            self.done = True
            return
        self.targets.append(target)
        self.starts.append(self.starts[-1] + amount_in + fee_amount)
        self.outs.append(self.outs[-1] + amount_out)
        self.prices.append(sqrt_new)
        self.liquidities.append(liquidity)
        self.crossed.append(crossed)
        self._tick = tick
        if sqrt_new == limit:
            self.done = True

    def _reach_input(self, amount: int) -> None:
        while not self.done and self.starts[-1] <= amount:
            self._extend()

    def max_input(self) -> int:
        """`V3Pool.max_input`: the input that takes the price to the limit (walks every step)."""
        while not self.done:
            self._extend()
        return self.starts[-1]

    def accepts(self, amount: int) -> bool:
        """Whether the pool takes all of `amount` (it is at most `max_input`), walking only as far as `amount`."""
        self._reach_input(amount)
        return not self.done or amount <= self.starts[-1]

    def state_of(self, amount: int) -> int:
        """The state whose step an exact input of `amount` (>= 0, accepted) ends in."""
        starts = self.starts
        if starts[-1] <= amount and not self.done:
            self._reach_input(amount)
        return bisect_right(starts, amount) - 1

    def end_of(self, state: int) -> int | None:
        """The smallest input past the step of `state` (None for the final state)."""
        return self.starts[state + 1] if state + 1 < len(self.starts) else None

    def _step_out(self, state: int, rest: int) -> int:
        """Output of step `state` for `rest` of input: `compute_swap_step`'s, without the amounts it
        works out and then drops (a step is full exactly when `rest` covers its amount in plus fee).
        SqrtPriceMath's usual branch is written out here (the search quotes thousands of partial
        steps); its overflow branches and reverts go through the ported functions."""
        if rest <= 0:
            return 0
        starts = self.starts
        if rest >= starts[state + 1] - starts[state]:
            return self.outs[state + 1] - self.outs[state]
        sqrt_price, liquidity = self.prices[state], self.liquidities[state]
        amount = rest * (PIPS - self.fee) // PIPS
        if liquidity > 0 and sqrt_price > 0:
            if self.zero_for_one:  # getNextSqrtPriceFromAmount0RoundingUp, then getAmount1Delta rounded down
                numerator1 = liquidity << 96
                denominator = numerator1 + amount * sqrt_price
                if denominator <= UINT256_MAX:
                    return liquidity * (sqrt_price + -(numerator1 * sqrt_price) // denominator) >> 96
            else:  # getNextSqrtPriceFromAmount1RoundingDown, then getAmount0Delta rounded down
                sqrt_next = sqrt_price + (amount << 96) // liquidity
                if sqrt_next <= UINT160_MAX:
                    return (liquidity << 96) * (sqrt_next - sqrt_price) // sqrt_next // sqrt_price
        sqrt_next = next_sqrt_price_from_input(sqrt_price, liquidity, amount, self.zero_for_one)
        if self.zero_for_one:
            return amount1_delta(sqrt_next, sqrt_price, liquidity, False)
        return amount0_delta(sqrt_price, sqrt_next, liquidity, False)

    def quote(self, amount: int) -> tuple[int, int] | None:
        """(`out(amount)`, `state_of(amount)`), None when the pool does not take all of `amount`."""
        if amount <= 0:
            return 0, self.state_of(0)
        starts = self.starts
        if starts[-1] <= amount and not self.done:
            self._reach_input(amount)
        state = bisect_right(starts, amount) - 1
        if state == len(self.targets):
            return (self.outs[state], state) if amount == starts[state] else None
        return self.outs[state] + self._step_out(state, amount - starts[state]), state

    def out(self, amount: int) -> int:
        """`V3Pool.quote_out(zero_for_one, amount)`, to the wei."""
        if amount <= 0:
            return 0
        state = self.state_of(amount)
        if state == len(self.targets):  # the final state: the pool takes no more
            return self.outs[state]
        return self.outs[state] + self._step_out(state, amount - self.starts[state])

    def smallest_in(self, amount_out: int) -> int | None:
        """`V3Pool.quote_in`: the smallest exact input whose output is at least `amount_out`; None
        when no input gets it."""
        if amount_out <= 0:
            return None
        while not self.done and self.outs[-1] < amount_out:
            self._extend()
        if self.outs[-1] < amount_out:
            return None
        state = bisect_left(self.outs, amount_out) - 1  # outs[state] < amount_out <= outs[state + 1]
        need = amount_out - self.outs[state]
        full = self.starts[state + 1] - self.starts[state]
        k, m, n, _, _ = self.local(state)  # the continuous input for `need`, within a unit or two of the answer
        room = k - n * need
        if room > 0:
            guess = -(-m * need // room)
        else:
            _, amount_in, _, fee_amount = compute_swap_step(self.prices[state], self.targets[state],
                                                            self.liquidities[state], -need, self.fee)
            guess = amount_in + fee_amount
        guess = min(max(guess, 1), full)
        if self._step_out(state, guess) >= need:  # search down: out(lo) < need <= out(hi)
            hi, step = guess, 1
            lo = hi - 1
            while lo > 0 and self._step_out(state, lo) >= need:
                hi, step = lo, step * 2
                lo = max(hi - step, 0)
        else:  # search up
            lo, step = guess, 1
            while True:
                hi = min(lo + step, full)
                if self._step_out(state, hi) >= need:
                    break
                lo, step = hi, step * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._step_out(state, mid) >= need:
                hi = mid
            else:
                lo = mid
        return self.starts[state] + hi

    # -- upper bounds ---------------------------------------------------------------------------

    def local(self, state: int) -> Piece:
        """A curve never below `out(u)` for u from starts[state] to the end of its step (included):
        the constant product of the step's liquidity from its exact start, since one step's rounding
        only loses (see `V3Pool.mobius`). The final state's curve is its output, a constant."""
        piece = self._locals.get(state)
        if piece is None:
            if state == len(self.targets):
                return 0, 1, 0, self.outs[state], self.starts[state]
            curve = virtual_curve(self.liquidities[state], self.prices[state], self.zero_for_one, self.fee, _PRECISE)
            piece = self._locals[state] = (*curve, self.outs[state], self.starts[state])
        return piece

    def _liquidity_bounds(self) -> tuple[list[int], list[int]]:
        """Most liquidity met up to, and from, each number of initialized ticks crossed."""
        if not self._suffix_max:
            pool = self._pool
            if pool._state_key(self.zero_for_one) != self._key:
                raise RuntimeError(f"pool {pool.address} changed since its swap steps were computed")
            i = bisect_right(pool._initialized, self._key[2])
            crossing = reversed(pool._initialized[:i]) if self.zero_for_one else pool._initialized[i:]
            ticks = pool.ticks
            seq = list(accumulate((ticks[tick][1] for tick in crossing), sub if self.zero_for_one else add,
                                  initial=pool.liquidity))
            prefix = list(accumulate(seq, max, initial=0))[1:]
            suffix = list(accumulate(reversed(seq), max, initial=0))[:0:-1]
            self._prefix_max, self._suffix_max = prefix, suffix
        return self._prefix_max, self._suffix_max

    def tail(self, state: int) -> Piece:
        """A curve never below `out(u)` for every accepted u >= starts[state]: the constant product,
        from the state's exact start, of the most liquidity met from there on."""
        if state == len(self.targets):
            return self.local(state)
        top = self._liquidity_bounds()[1][self.crossed[state]]
        return (*virtual_curve(top, self.prices[state], self.zero_for_one, self.fee, _PRECISE), self.outs[state],
                self.starts[state])

    def head(self, state: int) -> Piece:
        """A curve never below `out(u)` for every u up to the end of the state's step: the constant
        product, from the pool's price, of the most liquidity met up to that step."""
        top = self._liquidity_bounds()[0][self.crossed[state]]
        return (*virtual_curve(top, self.prices[0], self.zero_for_one, self.fee, _PRECISE), 0, 0)
