"""Canonical Uniswap V3 on a real anvil, and `scanner.dex.v3.V3Pool` proven equal to it to the wei.

The factory and pool are `@uniswap/v3-core`'s published bytecode (mainnet's init code hash), so
the pools here run the very contract mainnet runs. A seeded random walk of mints, burns and swaps
(both directions, exact input and output, 0, 1 and many ticks crossed, price limits hit) is
applied to the chain and to a Python pool side by side; every swap's amounts must be equal, and
so must the pool's price, tick and liquidity after it.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import pytest
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.chain.artifacts import CANONICAL_V3_POOL_INIT_CODE_HASH, v3_pool_address
from scanner.chain.v3 import FEE_TIERS, create_pool, deploy_factory, read_pool, send, swap_event
from scanner.dex.v3 import MAX_TICK, MIN_TICK, V3Pool, V3Revert, sqrt_ratio_at_tick

pytestmark = pytest.mark.chain

SEED = 20_240_607
SWAPS_PER_POOL = 80
SUPPLY = 10**40  # each token minted to the harness: far more than any position or swap needs
TX_GAS = 29_000_000  # skips estimateGas; a swap across a whole empty tick range needs a few million
HUGE = 10**50  # an exact input no position can absorb: the swap runs to its price limit


@dataclass
class Env:
    w3: Web3
    me: str
    token0: Contract
    token1: Contract
    factory: Contract
    harness: Contract


def make_env(w3: Web3) -> Env:
    """Two tokens (sorted), the canonical factory, and a harness funded with both tokens."""
    me = w3.eth.accounts[0]
    a = artifacts.deploy(w3, "TestToken", "TKA", "TKA", 18)
    b = artifacts.deploy(w3, "TestToken", "TKB", "TKB", 18)
    token0, token1 = sorted((a, b), key=lambda c: int(c.address, 16))
    factory = deploy_factory(w3)
    harness = artifacts.deploy(w3, "V3Harness")
    for token in (token0, token1):
        send(w3, token.functions.mint(harness.address, SUPPLY), me)
    return Env(w3, me, token0, token1, factory, harness)


# -- 1. the bytecode and the addresses ------------------------------------------------------------


def test_canonical_init_code_hash_and_pool_addresses(w3: Web3) -> None:
    pool_artifact = artifacts.load_artifact("UniswapV3Pool")
    assert pool_artifact.init_code_hash == CANONICAL_V3_POOL_INIT_CODE_HASH
    assert keccak(hexstr=pool_artifact.bytecode) == bytes(CANONICAL_V3_POOL_INIT_CODE_HASH)
    # mainnet's factory and its USDC/WETH 0.05% pool: the formula is PoolAddress.computeAddress's
    assert v3_pool_address(
        "0x1F98431c8aD98523631AE4a59f267346ea31F984",
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        500,
    ) == "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"

    env = make_env(w3)
    # the factory carries the pool creation code inside its own runtime code, byte for byte
    assert pool_artifact.bytecode[2:] in w3.eth.get_code(env.factory.address).hex()
    for fee, spacing in FEE_TIERS.items():
        assert env.factory.functions.feeAmountTickSpacing(fee).call() == spacing
        # reversed token order on purpose: the address depends on the sorted pair only
        pool = create_pool(w3, env.factory, env.token1.address, env.token0.address, fee, sqrt_ratio_at_tick(0))
        expected = v3_pool_address(env.factory.address, env.token0.address, env.token1.address, fee)
        assert pool.address == expected
        assert env.factory.functions.getPool(env.token0.address, env.token1.address, fee).call() == expected
        assert len(w3.eth.get_code(pool.address)) > 0
        state = read_pool(w3, expected)
        assert (state.token0, state.token1, state.fee, state.tick_spacing) == (
            env.token0.address, env.token1.address, fee, spacing)
        assert (state.sqrt_price_x96, state.tick, state.liquidity, state.ticks) == (sqrt_ratio_at_tick(0), 0, 0, {})


# -- 2. the property test -------------------------------------------------------------------------


@dataclass
class Tracked:
    """One pool on chain, its Python twin, and the harness's positions in it."""

    contract: Contract
    model: V3Pool
    band: tuple[int, int]  # ticks the walk steers back into when the price wanders off
    positions: dict[tuple[int, int], int] = field(default_factory=dict)


@dataclass
class Stats:
    compared: int = 0
    reverted_both: int = 0
    exact_in: int = 0
    exact_out: int = 0
    zero_for_one: int = 0
    one_for_zero: int = 0
    crossed: dict[int, int] = field(default_factory=dict)
    limit_hit: int = 0
    empty_range: int = 0  # swaps that started or ended where no liquidity is in range
    mints: int = 0
    burns: int = 0

    @property
    def max_crossed(self) -> int:
        return max(self.crossed, default=0)


def _aligned(tick: int, spacing: int) -> int:
    return tick // spacing * spacing


def _positions(rng: random.Random, center: int, spacing: int, full_range: bool) -> list[tuple[int, int, int]]:
    """(lower, upper, liquidity) for overlapping wide, medium, narrow and far ranges around `center`."""
    base = _aligned(center, spacing)
    out: list[tuple[int, int]] = []
    for _ in range(2):  # wide
        out.append((base - spacing * rng.randint(200, 1500), base + spacing * rng.randint(200, 1500)))
    for _ in range(3):  # medium, overlapping
        out.append((base - spacing * rng.randint(5, 120), base + spacing * rng.randint(5, 120)))
    for _ in range(6):  # narrow, clustered around the price: many initialized ticks close together
        lower = base + spacing * rng.randint(-12, 12)
        out.append((lower, lower + spacing * rng.randint(1, 3)))
    for sign in (1, -1):  # far, one token only, beyond an empty gap
        start = base + sign * spacing * rng.randint(2000, 4000)
        width = spacing * rng.randint(1, 60)
        out.append((start, start + width) if sign > 0 else (start - width, start))
    if full_range:
        out.append((-(-MIN_TICK // spacing) * spacing, MAX_TICK // spacing * spacing))
    return [(lo, hi, int(10 ** rng.uniform(15, 21)) + rng.randrange(10**15)) for lo, hi in out]


def _mint(env: Env, pool: Tracked, lower: int, upper: int, amount: int, stats: Stats) -> None:
    expected = pool.model.mint(lower, upper, amount)
    receipt = send(env.w3, env.harness.functions.mint(pool.contract.address, lower, upper, amount), env.me, TX_GAS)
    (event,) = pool.contract.events.Mint().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["amount0"], event["args"]["amount1"]) == expected, (pool.model.fee, lower, upper, amount)
    pool.positions[(lower, upper)] = pool.positions.get((lower, upper), 0) + amount
    stats.mints += 1


def _burn(env: Env, pool: Tracked, rng: random.Random, stats: Stats) -> None:
    (lower, upper), held = rng.choice(sorted(pool.positions.items()))
    amount = held if rng.random() < 0.5 else rng.randint(1, held)
    expected = pool.model.burn(lower, upper, amount)
    receipt = send(env.w3, env.harness.functions.burn(pool.contract.address, lower, upper, amount), env.me, TX_GAS)
    (event,) = pool.contract.events.Burn().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["amount0"], event["args"]["amount1"]) == expected, (pool.model.fee, lower, upper, amount)
    pool.positions[(lower, upper)] = held - amount
    if not pool.positions[(lower, upper)]:
        del pool.positions[(lower, upper)]
    stats.burns += 1


def _targets(model: V3Pool, zero_for_one: bool) -> list[int]:
    """Initialized ticks the price meets next in this direction, nearest first, strictly beyond the price."""
    if zero_for_one:
        return sorted((t for t in model.ticks if sqrt_ratio_at_tick(t) < model.sqrt_price_x96), reverse=True)
    return sorted(t for t in model.ticks if sqrt_ratio_at_tick(t) > model.sqrt_price_x96)


def _to_price(model: V3Pool, zero_for_one: bool, sqrt_limit: int) -> tuple[int, int]:
    """(input, output) of the swap that moves the price exactly to `sqrt_limit`."""
    r = model.swap(zero_for_one, HUGE, sqrt_limit)
    return (r.amount0, -r.amount1) if zero_for_one else (r.amount1, -r.amount0)


def _between(rng: random.Random, lo: int, hi: int) -> int:
    """A size strictly between two sizes when there is room, else a fresh random one."""
    if hi - lo > 2:
        return rng.randint(lo + 1, hi - 1)
    return rng.randint(1, 10**18)


def _plan_swap(rng: random.Random, pool: Tracked) -> tuple[bool, int, int | None]:
    """(zero_for_one, amount_specified, sqrt limit or None) aimed at 0, 1 or many crossings or a limit."""
    model = pool.model
    low, high = pool.band
    if model.tick < low:
        zero_for_one = False
    elif model.tick > high:
        zero_for_one = True
    else:
        zero_for_one = rng.random() < 0.5
    targets = _targets(model, zero_for_one)
    if not targets:
        zero_for_one = not zero_for_one
        targets = _targets(model, zero_for_one)
    exact_in = rng.random() < 0.5
    kind = rng.choices(["zero", "one", "many", "limit", "random", "through"], [25, 25, 25, 15, 7, 3])[0]
    limit_default = model.default_limit(zero_for_one)

    def size_to(index: int) -> tuple[int, int]:
        sqrt_at = sqrt_ratio_at_tick(targets[index]) if index < len(targets) else limit_default
        return _to_price(model, zero_for_one, sqrt_at)

    if kind == "through":
        # past every initialized tick: into the empty range beyond, where the pool steps word by word
        amount = int(10 ** rng.uniform(24, 30))
        return zero_for_one, amount if exact_in else -amount, None
    if kind == "random" or not targets:
        amount = int(10 ** rng.uniform(2, 22))
        return zero_for_one, amount if exact_in else -amount, None
    if kind == "limit":
        # a limit between the price and a tick a few crossings away, with more than enough size to hit it
        k = rng.randint(0, min(4, len(targets) - 1))
        far = sqrt_ratio_at_tick(targets[k])
        near = model.sqrt_price_x96
        limit = rng.randint(min(near, far) + 1, max(near, far) - 1) if abs(far - near) > 2 else far
        sub = rng.random()
        if sub < 0.5:
            # a limit on a tick's own price, as routers set: an aligned tick, often a bitmap-word
            # boundary (where the contract's steps stop), sometimes in the empty range past every position
            word = model.tick_spacing * 256
            if sub < 0.2:
                tick = rng.randint(min(model.tick, targets[k]), max(model.tick, targets[k]))
                tick = _aligned(tick, model.tick_spacing)
            else:
                start = targets[k] if sub < 0.35 else targets[-1]
                step = rng.randint(0, 3) + (1 if sub >= 0.35 else 0)
                tick = (start // word - step) * word if zero_for_one else (start // word + 1 + step) * word
            if MIN_TICK < tick < MAX_TICK:
                at_tick = sqrt_ratio_at_tick(tick)
                if (at_tick < near) if zero_for_one else (at_tick > near):
                    limit = at_tick
        amount_in, amount_out = _to_price(model, zero_for_one, limit)
        if exact_in:
            return zero_for_one, max(1, amount_in * rng.randint(2, 50)), limit
        return zero_for_one, -max(1, amount_out * rng.randint(2, 50)), limit
    if kind == "zero":
        k = 0
        lo_in, lo_out = 0, 0
    else:
        k = 1 if kind == "one" else rng.randint(2, max(2, min(20, len(targets))))
        k = min(k, len(targets))
        lo_in, lo_out = size_to(k - 1)
    hi_in, hi_out = size_to(k)
    amount = _between(rng, lo_in, hi_in) if exact_in else _between(rng, lo_out, hi_out)
    return zero_for_one, amount if exact_in else -amount, None


def _swap(env: Env, pool: Tracked, zero_for_one: bool, amount: int, limit: int | None, stats: Stats) -> None:
    model, contract = pool.model, pool.contract
    before_liquidity = model.liquidity
    call = env.harness.functions.swap(contract.address, zero_for_one, amount, limit or 0)
    case = f"fee {model.fee} {'0->1' if zero_for_one else '1->0'} amount {amount} limit {limit} " \
           f"from sqrtPriceX96 {model.sqrt_price_x96} tick {model.tick} liquidity {model.liquidity}"
    try:
        predicted = model.swap(zero_for_one, amount, limit)
    except V3Revert:
        with pytest.raises((ContractLogicError, ContractCustomError)):
            call.call({"from": env.me})
        stats.reverted_both += 1
        return
    quoted = call.call({"from": env.me})  # eth_call: the harness returns what the pool returned
    assert tuple(quoted) == (predicted.amount0, predicted.amount1), case
    event = swap_event(contract, send(env.w3, call, env.me, TX_GAS))
    got = (event["amount0"], event["amount1"], event["sqrtPriceX96"], event["tick"], event["liquidity"])
    want = (predicted.amount0, predicted.amount1, predicted.sqrt_price_x96, predicted.tick, predicted.liquidity)
    assert got == want, case
    model.apply(predicted)
    slot0 = contract.functions.slot0().call()
    assert (slot0[0], slot0[1], contract.functions.liquidity().call()) == (
        model.sqrt_price_x96, model.tick, model.liquidity), case

    stats.compared += 1
    stats.crossed[predicted.ticks_crossed] = stats.crossed.get(predicted.ticks_crossed, 0) + 1
    if amount > 0:
        stats.exact_in += 1
    else:
        stats.exact_out += 1
    if zero_for_one:
        stats.zero_for_one += 1
    else:
        stats.one_for_zero += 1
    if before_liquidity == 0 or predicted.liquidity == 0:
        stats.empty_range += 1
    if limit is not None and predicted.sqrt_price_x96 == limit:
        stats.limit_hit += 1


def _assert_synced(w3: Web3, pool: Tracked) -> None:
    """The whole Python pool equals the chain's, initialized ticks included (read back by read_pool)."""
    chain = read_pool(w3, pool.contract.address)
    model = pool.model
    assert (chain.sqrt_price_x96, chain.tick, chain.liquidity) == (model.sqrt_price_x96, model.tick, model.liquidity)
    assert chain.ticks == model.ticks


def test_v3_pool_math_equals_canonical_pool_to_the_wei(w3: Web3) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    env = make_env(w3)
    stats = Stats()
    pools: list[Tracked] = []
    for fee, spacing in FEE_TIERS.items():
        center = rng.randint(-30_000, 30_000)
        lo, hi = sqrt_ratio_at_tick(center), sqrt_ratio_at_tick(center + 1)
        contract = create_pool(w3, env.factory, env.token0.address, env.token1.address, fee, rng.randint(lo, hi - 1))
        pool = Tracked(contract, read_pool(w3, contract.address), (center - 600 * spacing, center + 600 * spacing))
        assert pool.model.tick == center
        full_range = fee == 3000  # the other two have empty gaps that swaps must run through
        for lower, upper, amount in _positions(rng, center, spacing, full_range):
            _mint(env, pool, lower, upper, amount, stats)
        _assert_synced(w3, pool)
        pools.append(pool)

    for step in range(SWAPS_PER_POOL * len(pools)):
        pool = pools[step % len(pools)] if step < 3 * len(pools) else rng.choice(pools)
        roll = rng.random()
        if roll < 0.08 and pool.positions:
            _burn(env, pool, rng, stats)
        elif roll < 0.12:
            spacing = pool.model.tick_spacing
            low, high = pool.band  # near the price, or inside the band when the price ran off to an extreme
            near = pool.model.tick if low <= pool.model.tick <= high else rng.randint(low, high)
            lower = _aligned(near, spacing) + spacing * rng.randint(-40, 30)
            _mint(env, pool, lower, lower + spacing * rng.randint(1, 10), 10 ** rng.randint(15, 20), stats)
        zero_for_one, amount, limit = _plan_swap(rng, pool)
        _swap(env, pool, zero_for_one, amount, limit, stats)
        if step % 40 == 39:
            # what the contract refuses, Python refuses too: a limit at the price itself ('SPL'), amount 0 ('AS')
            _swap(env, pool, zero_for_one, amount, pool.model.sqrt_price_x96, stats)
            _swap(env, pool, not zero_for_one, 0, None, stats)
        if step % 60 == 59:
            _assert_synced(w3, pool)

    walk_burns = stats.burns
    # burn everything left: the ticks clear on both sides, the last swaps meet the emptied ranges
    for pool in pools:
        while pool.positions:
            _burn(env, pool, rng, stats)
        _assert_synced(w3, pool)
        assert pool.model.ticks == {} and pool.model.liquidity == 0

    elapsed = time.monotonic() - started
    print(f"\nV3 vs chain: {stats.compared} swaps equal to the wei ({stats.reverted_both} reverted on both), "
          f"ticks crossed max {stats.max_crossed}, histogram {dict(sorted(stats.crossed.items()))}, "
          f"limit hit {stats.limit_hit}, in an empty range {stats.empty_range}, exact in/out {stats.exact_in}/{stats.exact_out}, "
          f"0->1/1->0 {stats.zero_for_one}/{stats.one_for_zero}, mints {stats.mints}, burns {walk_burns} + {stats.burns - walk_burns} at the end, "
          f"{elapsed:.1f} s")
    assert stats.compared >= 200
    assert stats.crossed.get(0, 0) >= 20 and stats.crossed.get(1, 0) >= 20
    assert sum(n for k, n in stats.crossed.items() if k >= 2) >= 20 and stats.max_crossed >= 8
    assert stats.limit_hit >= 10 and stats.empty_range >= 5
    assert min(stats.exact_in, stats.exact_out, stats.zero_for_one, stats.one_for_zero) >= 40
    assert walk_burns >= 10 and stats.reverted_both >= 10


# -- 3. the harness pays only the pool it is calling ----------------------------------------------


def test_forged_callbacks_are_refused(anvil: Anvil, w3: Web3) -> None:
    env = make_env(w3)
    pool = create_pool(w3, env.factory, env.token0.address, env.token1.address, 3000, sqrt_ratio_at_tick(0))
    send(w3, env.harness.functions.mint(pool.address, -600, 600, 10**20), env.me)
    balances = (env.token0.functions.balanceOf(env.harness.address).call(),
                env.token1.functions.balanceOf(env.harness.address).call())
    stranger = list(w3.eth.accounts)[3]

    forged = [
        env.harness.functions.uniswapV3SwapCallback(10**18, -1, b""),
        env.harness.functions.uniswapV3SwapCallback(-1, 10**18, b""),
        env.harness.functions.uniswapV3MintCallback(10**18, 10**18, b""),
    ]
    # an EOA, and the pool itself outside a harness call (eth_call from its address)
    for caller in (stranger, env.me, pool.address):
        for fn in forged:
            with pytest.raises(ContractCustomError):
                fn.call({"from": caller})
    # a real transaction from the pool's address (a contract, impersonated) is mined and reverts
    anvil.call("anvil_impersonateAccount", pool.address)
    anvil.call("anvil_setBalance", pool.address, hex(10**18))
    for fn in forged:
        tx = fn.transact({"from": pool.address, "gas": 200_000})
        assert w3.eth.wait_for_transaction_receipt(tx, timeout=10)["status"] == 0
    anvil.call("anvil_stopImpersonatingAccount", pool.address)
    assert balances == (env.token0.functions.balanceOf(env.harness.address).call(),
                        env.token1.functions.balanceOf(env.harness.address).call())
    # only the owner drives the harness
    with pytest.raises(ContractCustomError):
        env.harness.functions.swap(pool.address, True, 10**15, 0).call({"from": stranger})

    # the genuine callback still pays: a swap through the harness goes through
    event = swap_event(pool, send(w3, env.harness.functions.swap(pool.address, True, 10**15, 0), env.me))
    assert event["amount0"] == 10**15 and event["amount1"] < 0
