"""The simulated market's canonical Uniswap V3 pools: created through the official factory at the
fair price, LPs with concentrated positions that move after the price, and noise swaps through them.

Every actor that touches a V3 pool (a trader, a competitor, an LP) owns a `V3Harness` (it pays the
pool's callbacks from tokens it holds; only its owner may call it), so each still sends at most one
transaction per block, as the market's V2 actors do. The V3 side draws from its own random stream,
so adding V3 pools leaves the V2 noise traders' draws as they were. The pools' states are kept in
`V3Pool` objects by applying each mined block's Swap, Mint and Burn events in order, as a watcher
would; the market reads prices, ticks and closing trades from them without further calls.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np
from web3 import Web3
from web3.contract import Contract

from scanner.chain import artifacts
from scanner.chain.v3 import create_pool, deploy_factory, read_pool
from scanner.dex.v3 import MAX_TICK, MIN_TICK, V3Pool, sqrt_ratio_at_tick, tick_at_sqrt_ratio
from scanner.sim.spec import GWEI, DeployedV3Pool, MarketSpec

# (lower, upper) in ticks around the price (a tick is 1 bp of price), rounded outwards to the tick
# spacing, and a share of the depth's liquidity: a wide base that never moves and overlapping
# narrower ranges that do, so initialized ticks sit near the price and big swaps cross them.
POSITIONS: tuple[tuple[int, int, float], ...] = (
    (-6000, 6000, 1.0), (-1500, 1500, 0.6), (-400, 400, 0.5), (-150, 50, 0.3), (-50, 150, 0.3), (-60, 60, 0.4),
)
LIMIT_TICKS = 4000  # a noise swap stops ~50 % away from the price it saw: no run to the curve's end

Batch = list[tuple[str, str, bytes, int]]  # (sender, to, calldata, gas), as Market._run_batch sends them
SendFn = Callable[[str, str, bytes, int, int, int], Any]  # (sender, to, data, gas, tip, base_fee) -> tx hash


def sqrt_price_x96(price: Fraction) -> int:
    """sqrtPriceX96 of a pool whose price is `price` raw units of token1 per raw unit of token0."""
    return math.isqrt(price.numerator * 2**192 // price.denominator)


def position_range(center: int, lower: int, upper: int, spacing: int) -> tuple[int, int]:
    """[center + lower, center + upper) rounded outwards to `spacing` (at least one spacing wide),
    within the ticks a position may use."""
    bound = MAX_TICK // spacing * spacing
    lo = max((center + lower) // spacing * spacing, -bound)
    hi = min(-(-(center + upper) // spacing) * spacing, bound)
    return lo, max(hi, lo + spacing)


def apply_event(pool: V3Pool, name: str, args: dict[str, Any]) -> None:
    """Apply one of the pool's Swap, Mint or Burn events to its `V3Pool` (in log order)."""
    if name == "Swap":
        pool.update(args["sqrtPriceX96"], args["tick"], args["liquidity"])
    elif name == "Mint":
        pool.mint(args["tickLower"], args["tickUpper"], args["amount"])
    elif name == "Burn":
        pool.burn(args["tickLower"], args["tickUpper"], args["amount"])
    else:
        raise ValueError(f"V3 event {name!r} does not change a pool's swap state (Swap, Mint, Burn do)")


def pool_events(w3: Web3, addresses: Sequence[str], from_block: int, to_block: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(pool address, event name, args) of every Swap, Mint and Burn of `addresses`, in log order."""
    abi = w3.eth.contract(abi=artifacts.load_artifact("UniswapV3Pool").abi)
    events = {str(e.topic): e for e in (abi.events.Swap, abi.events.Mint, abi.events.Burn)}
    logs = w3.eth.get_logs({"fromBlock": from_block, "toBlock": to_block, "address": list(addresses),  # type: ignore[typeddict-item]
                            "topics": [list(events)]})
    out = []
    for log in logs:
        event = events[log["topics"][0].to_0x_hex()]
        decoded = event().process_log(log)
        out.append((str(decoded["address"]), decoded["event"], dict(decoded["args"])))
    return out


@dataclass(frozen=True)
class Position:
    pool: int  # index into the deployed V3 pools
    lower: int
    upper: int
    liquidity: int


@dataclass
class LiquidityProvider:
    """An LP account, its harness (which owns the positions) and its movable positions; a move is a
    burn in one block and, in the next, a mint of the same width and liquidity around the price."""

    account: str
    harness: Contract
    movable: list[Position]
    pending: Position | None = None  # burned, to be minted again


class V3Market:
    """The V3 pools of a `Market`: it deploys them and sends the V3 transactions of each block."""

    SWAP_GAS = 1_000_000  # a swap across many initialized ticks (the test reports the most one used)
    MINT_GAS = 600_000
    BURN_GAS = 300_000  # burn and collect

    def __init__(self, w3: Web3, spec: MarketSpec, send: SendFn, units: Callable[[str, float], int]) -> None:
        self.w3, self.spec, self._send, self._units = w3, spec, send, units
        self.rng = np.random.default_rng([spec.seed, 3])  # its own stream: the V2 draws stay as they were
        self.factory = ""
        self.pools: tuple[DeployedV3Pool, ...] = ()
        self.states: list[V3Pool] = []  # after the last mined block
        self.harnesses: dict[str, Contract] = {}
        self.lps: list[LiquidityProvider] = []

    # ----- set-up -------------------------------------------------------------------------
    def deploy(self, me: str, tokens: dict[str, Contract], actors: Sequence[str], lps: Sequence[str]) -> Batch:
        """Deploy the factory, create each pool at the fair price and a harness per actor and LP
        (automine on); returns the calls that fund the harnesses, to be mined with the market's set-up.
        Without V3 pools in the spec it deploys nothing (the V2 market's addresses stay as they were)."""
        if not self.spec.v3_pools:
            return []
        factory = deploy_factory(self.w3, me)
        pools = []
        for v in self.spec.v3_pools:
            (s0, t0), (s1, t1) = sorted(((v.token_a, tokens[v.token_a]), (v.token_b, tokens[v.token_b])),
                                        key=lambda t: int(t[1].address, 16))
            pool = create_pool(self.w3, factory, t0.address, t1.address, v.fee, self._fair_sqrt_price(s0, s1), me)
            pools.append(DeployedV3Pool(pool.address, t0.address, t1.address, s0, s1, v.fee,
                                        pool.functions.tickSpacing().call()))
        self.factory, self.pools = factory.address, tuple(pools)
        self.harnesses = {a: artifacts.deploy(self.w3, "V3Harness", sender=a) for a in (*actors, *lps)}
        self.lps = [LiquidityProvider(a, self.harnesses[a], []) for a in lps]
        big = 10**9
        return [(me, tok.address, artifacts.calldata("TestToken", "mint", h.address, self._units(sym, big)), 100_000)
                for h in self.harnesses.values() for sym, tok in tokens.items()]

    def initial_positions(self) -> Batch:
        """The LPs' first mints: POSITIONS around each pool's price, dealt to the LPs in turn."""
        batch: Batch = []
        for i, (pool, v) in enumerate(zip(self.pools, self.spec.v3_pools)):
            depth = math.isqrt(self._units(pool.symbol0, v.depth) * self._units(pool.symbol1, v.depth))
            center = tick_at_sqrt_ratio(self._fair_sqrt_price(pool.symbol0, pool.symbol1))
            for k, (lower, upper, share) in enumerate(POSITIONS):
                lp = self.lps[k % len(self.lps)]
                position = Position(i, *position_range(center, lower, upper, pool.tick_spacing), int(depth * share))
                if k:  # the wide base stays put
                    lp.movable.append(position)
                batch.append((lp.account, lp.harness.address, self._mint_data(lp, position), self.MINT_GAS))
        return batch

    def start(self, block: int) -> None:
        """Read every pool's state at `block` (the end of the set-up); from here on it follows the events."""
        self.states = [read_pool(self.w3, p.address, block) for p in self.pools]

    # ----- one block ----------------------------------------------------------------------
    def send(self, traders: Sequence[str], volatile: bool, base_fee: int) -> tuple[int, int]:
        """This block's V3 noise swaps and LP moves (none without V3 pools): how many of each."""
        if not self.pools:
            return 0, 0
        return self.send_noise(traders, volatile, base_fee), self.send_lp_moves(base_fee)

    def send_noise(self, traders: Sequence[str], volatile: bool, base_fee: int) -> int:
        """Noise swaps from `traders` (those with no transaction in this block yet): exact input or
        exact output, sized as the V2 noise trades against the pool's virtual reserves."""
        spec, rng = self.spec, self.rng
        n = min(int(rng.poisson(spec.v3_trades_per_block * (2.0 if volatile else 1.0))), len(traders))
        for t in rng.choice(len(traders), size=n, replace=False):
            i = int(rng.integers(len(self.pools)))
            zero_for_one = bool(rng.random() < 0.5)
            exact_output = bool(rng.random() < spec.v3_exact_output_prob)
            state = self.states[i]
            reserve = state.reserve_in(zero_for_one != exact_output)  # of the token fixed: in, or out
            amount = max(1, int(reserve * spec.noise_fraction(rng)))
            tick = min(max(state.tick + (-LIMIT_TICKS if zero_for_one else LIMIT_TICKS), MIN_TICK + 1), MAX_TICK - 1)
            tip = int(rng.uniform(0.05, 1.5) * GWEI)
            self.send_swap(traders[int(t)], i, zero_for_one, -amount if exact_output else amount,
                           sqrt_ratio_at_tick(tick), tip, base_fee)
        return n

    def send_lp_moves(self, base_fee: int) -> int:
        """Each LP mints the position it burned last block again around the price, or burns one of
        its movable positions with probability `lp_move_prob`."""
        rng, moves = self.rng, 0
        for lp in self.lps:
            tip = int(rng.uniform(0.05, 1.5) * GWEI)
            if lp.pending is not None:
                old, spacing = lp.pending, self.pools[lp.pending.pool].tick_spacing
                width = old.upper - old.lower
                center = self.states[old.pool].tick + int(rng.integers(-2, 3)) * spacing
                lower, upper = position_range(center, -(width // 2), width - width // 2, spacing)
                new = replace(old, lower=lower, upper=upper)
                self._send(lp.account, lp.harness.address, self._mint_data(lp, new), self.MINT_GAS, tip, base_fee)
                lp.movable.append(new)
                lp.pending = None
                moves += 1
            elif lp.movable and rng.random() < self.spec.lp_move_prob:
                old = lp.movable.pop(int(rng.integers(len(lp.movable))))
                data = artifacts.calldata("V3Harness", "burn", self.pools[old.pool].address, old.lower, old.upper, old.liquidity)
                self._send(lp.account, lp.harness.address, data, self.BURN_GAS, tip, base_fee)
                lp.pending = old
                moves += 1
        return moves

    def send_swap(self, sender: str, i: int, zero_for_one: bool, amount_specified: int, limit: int, tip: int,
                  base_fee: int) -> Any:
        """One swap on pool i through the sender's harness (amount > 0: exact input, < 0: exact output)."""
        harness = self.harnesses[sender]
        data = artifacts.calldata("V3Harness", "swap", self.pools[i].address, zero_for_one, amount_specified, limit)
        return self._send(sender, harness.address, data, self.SWAP_GAS, tip, base_fee)

    def follow(self, block: int) -> None:
        """Bring the pool states to the end of `block` by applying its events."""
        if not self.pools:
            return
        index = {p.address: i for i, p in enumerate(self.pools)}
        for address, name, args in pool_events(self.w3, list(index), block, block):
            apply_event(self.states[index[address]], name, args)

    def price(self, i: int, decimals: dict[str, int]) -> float:
        """Mid price of pool i as whole token1 per whole token0."""
        p = self.pools[i]
        return (self.states[i].sqrt_price_x96 / 2**96) ** 2 * 10 ** decimals[p.symbol0] / 10 ** decimals[p.symbol1]

    def _fair_sqrt_price(self, symbol0: str, symbol1: str) -> int:
        """sqrtPriceX96 of the fair price now: raw token1 per raw token0."""
        return sqrt_price_x96(Fraction(self._units(symbol1, 1.0), self._units(symbol0, 1.0)))

    def _mint_data(self, lp: LiquidityProvider, p: Position) -> bytes:
        return artifacts.calldata("V3Harness", "mint", self.pools[p.pool].address, p.lower, p.upper, p.liquidity)
