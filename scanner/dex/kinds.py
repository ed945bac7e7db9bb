"""From a discovered pool's description to the pool object of its kind."""
from __future__ import annotations

from scanner.dex.pool import InvalidPool, Pool, PoolInfo
from scanner.dex.v2 import V2Pool
from scanner.dex.v3 import V3Pool


def make_pool(info: PoolInfo) -> Pool:
    """The pool object for `info`, in the state discovery saw (InvalidPool naming the pool when it has none)."""
    if info.kind == "uniswap-v2":
        return V2Pool(info.address, info.token0, info.token1, info.reserve0, info.reserve1, info.fee_bps)
    if info.kind == "uniswap-v3":
        if info.v3 is None:
            raise InvalidPool(info.address, "a V3 pool discovered without its state (slot0, liquidity, ticks)")
        state = info.v3
        return V3Pool(info.address, info.token0, info.token1, info.fee_bps * 100, info.tick_spacing,
                      state.sqrt_price_x96, state.tick, state.liquidity, dict(state.ticks))
    raise InvalidPool(info.address, f"unknown pool kind {info.kind!r} (known: uniswap-v2, uniswap-v3)")
