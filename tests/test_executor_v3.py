"""`ArbExecutor` on V3 hops: it pays only pools that the configured factory created, and a cycle
that mixes canonical Uniswap V2 pairs and canonical Uniswap V3 pools pays what the Python math
(`V2Pool` / `V3Pool`, read from the chain) predicts, to the wei.

Each test has its own anvil. The market: BASE/USD, USD/X and X/BASE on V2 at fair prices and on V3
with gaps (BASE/USD at 2100 on the 0.3 % pool and at 1900 on the 0.05 % one, X/BASE rich on the 1 %
one), each V3 pool with overlapping positions a few tick spacings wide around its price, so the
swaps that close a gap cross initialized ticks.
"""
from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.chain.v3 import create_pool, deploy_factory, factory_of, read_pool, send
from scanner.dex.pool import Pool
from scanner.dex.v2 import V2Pool
from scanner.dex.v3 import V3Pool, tick_at_sqrt_ratio
from scanner.errors import ChainError
from scanner.sim.v3_market import sqrt_price_x96
from scanner.submit.calibrate import ZERO_ADDRESS, execute_args, execute_fn

pytestmark = pytest.mark.chain

REPO = Path(__file__).resolve().parents[1]
E18 = 10**18
SUPPLY = 10**40
TX_GAS = 8_000_000
# (lower, upper) in tick spacings around the price, and a share of the pool's liquidity: a wide
# base and overlapping narrow ranges, so initialized ticks sit every spacing or two near the price
POSITIONS = [(-400, 400, 1.0), (-40, 40, 0.5), (-12, 4, 0.4), (-4, 12, 0.4), (-2, 3, 0.3), (1, 6, 0.3),
             (-7, -1, 0.3), (-20, -6, 0.4), (6, 20, 0.4), (-3, -2, 0.2), (2, 3, 0.2)]


@dataclass
class Market:
    w3: Web3
    me: str
    tokens: dict[str, Contract]  # BASE, USD, X
    v2: dict[str, Contract]  # name -> UniswapV2Pair
    v3: dict[str, Contract]  # name -> UniswapV3Pool
    factory: Contract  # the V3 factory
    harness: Contract
    executor: Contract

    def model(self, name: str) -> Pool:
        """The pool's state now, read from the chain into the Python pool of its kind."""
        if name in self.v3:
            return read_pool(self.w3, self.v3[name].address)
        pair = self.v2[name]
        r0, r1, _ = pair.functions.getReserves().call()
        return V2Pool(pair.address, pair.functions.token0().call(), pair.functions.token1().call(), r0, r1, 30)

    def balance(self, symbol: str, who: str | None = None) -> int:
        return self.tokens[symbol].functions.balanceOf(who or self.executor.address).call()

    def balances(self, who: str | None = None) -> tuple[int, ...]:
        return tuple(self.balance(s, who) for s in ("BASE", "USD", "X"))


def _sqrt_price_x96(market_tokens: dict[str, Contract], base: str, quote: str, price: Fraction) -> int:
    """sqrtPriceX96 of a pool where one `base` costs `price` `quote` (both 18 decimals)."""
    return sqrt_price_x96(price if int(market_tokens[base].address, 16) < int(market_tokens[quote].address, 16) else 1 / price)


def _v2_pair(w3: Web3, factory: Contract, me: str, a: Contract, b: Contract, amount_a: int, amount_b: int) -> Contract:
    send(w3, factory.functions.createPair(a.address, b.address), me)
    pair = artifacts.at(w3, "UniswapV2Pair", factory.functions.getPair(a.address, b.address).call())
    send(w3, a.functions.mint(pair.address, amount_a), me)
    send(w3, b.functions.mint(pair.address, amount_b), me)
    send(w3, pair.functions.mint(me), me)
    return pair


def _v3_pool(m: Market, fee: int, base: str, quote: str, price: Fraction, base_reserve: int) -> Contract:
    """A V3 pool at `price` with POSITIONS around it, as deep near the price as a V2 pair holding
    `base_reserve` of `base` (liquidity = sqrt(x·y))."""
    sqrt_price = _sqrt_price_x96(m.tokens, base, quote, price)
    pool = create_pool(m.w3, m.factory, m.tokens[base].address, m.tokens[quote].address, fee, sqrt_price)
    spacing = pool.functions.tickSpacing().call()
    center = tick_at_sqrt_ratio(sqrt_price) // spacing * spacing
    depth = math.isqrt(base_reserve * base_reserve * price.numerator // price.denominator)
    for lower, upper, share in POSITIONS:
        liquidity = int(depth * share)
        send(m.w3, m.harness.functions.mint(pool.address, center + lower * spacing, center + upper * spacing, liquidity),
             m.me, TX_GAS)
    return pool


def make_market(w3: Web3) -> Market:
    me = w3.eth.accounts[0]
    tokens = {s: artifacts.deploy(w3, "TestToken", s, s, 18) for s in ("BASE", "USD", "X")}
    v2_factory = artifacts.deploy(w3, "UniswapV2Factory", me)
    m = Market(w3, me, tokens, {}, {}, deploy_factory(w3), artifacts.deploy(w3, "V3Harness"),
               artifacts.deploy(w3, "ArbExecutor"))
    base, usd, x = tokens["BASE"], tokens["USD"], tokens["X"]
    for token in tokens.values():
        send(w3, token.functions.mint(m.harness.address, SUPPLY), me)
        # the executor's inventory: BASE to trade, USD and X that no forged callback may take
        send(w3, token.functions.mint(m.executor.address, 1_000_000 * E18), me)
    m.v2 = {
        "v2_bu": _v2_pair(w3, v2_factory, me, base, usd, 1_000 * E18, 2_000_000 * E18),  # 2000 USD per BASE
        "v2_ux": _v2_pair(w3, v2_factory, me, usd, x, 1_000_000 * E18, 500_000 * E18),  # 0.5 X per USD
        "v2_xb": _v2_pair(w3, v2_factory, me, x, base, 1_000_000 * E18, 1_000 * E18),  # 1000 X per BASE
    }
    m.v3 = {
        "v3_bu_hi": _v3_pool(m, 3000, "BASE", "USD", Fraction(2100), 500 * E18),
        "v3_bu_lo": _v3_pool(m, 500, "BASE", "USD", Fraction(1900), 500 * E18),
        "v3_ux": _v3_pool(m, 500, "USD", "X", Fraction(1, 2), 1_000_000 * E18),
        "v3_xb": _v3_pool(m, 10000, "BASE", "X", Fraction(950), 300 * E18),  # X dear: 950 X buy a BASE
    }
    # Age the V2 pairs (non-zero price accumulators) and move the clock, as live pools are.
    w3.provider.make_request("evm_increaseTime", [12])
    for pair in m.v2.values():
        send(w3, pair.functions.sync(), me)
    w3.provider.make_request("evm_increaseTime", [12])
    return m


# Cycles that start and end in BASE, as (pool, token sold) per hop.
CYCLES: dict[str, list[tuple[str, str]]] = {
    "V3>V2": [("v3_bu_hi", "BASE"), ("v2_bu", "USD")],
    "V2>V3": [("v2_bu", "BASE"), ("v3_bu_lo", "USD")],
    "V3>V3": [("v3_bu_hi", "BASE"), ("v3_bu_lo", "USD")],
    "V2>V3>V3": [("v2_bu", "BASE"), ("v3_ux", "USD"), ("v3_xb", "X")],
    "V3>V2>V2": [("v3_bu_hi", "BASE"), ("v2_ux", "USD"), ("v2_xb", "X")],
    "V3>V3>V3": [("v3_bu_hi", "BASE"), ("v3_ux", "USD"), ("v3_xb", "X")],
    "V2>V2>V3": [("v2_bu", "BASE"), ("v2_ux", "USD"), ("v3_xb", "X")],
}


@dataclass
class Route:
    """A cycle with its pools' state read from the chain now."""

    models: list[Pool]
    zero_for_one: list[bool]

    def quote(self, amount_in: int) -> tuple[int, int]:
        """(profit, most ticks any V3 hop crosses) by chaining the pools' exact quotes."""
        amount, crossed = amount_in, 0
        for pool, z41 in zip(self.models, self.zero_for_one):
            if isinstance(pool, V3Pool):
                crossed = max(crossed, pool.swap(z41, amount).ticks_crossed)
            amount = pool.quote_out(z41, amount)
        return amount - amount_in, crossed

    def as_dict(self, amount_in: int) -> dict[str, Any]:
        """As the query API would serve it: addresses and fees only (the kind comes from `pools=`)."""
        return {"pools": [p.address for p in self.models], "zero_for_one": self.zero_for_one,
                "fees_bps": [p.fee_bps for p in self.models], "amount_in": amount_in}


def route_of(m: Market, name: str) -> Route:
    models = [m.model(pool) for pool, _ in CYCLES[name]]
    z41 = [pool.zero_for_one(m.tokens[sold].address) for pool, (_, sold) in zip(models, CYCLES[name])]
    return Route(models, z41)


def _best_input(route: Route) -> int:
    """The integer input of most profit, by golden-section search on the exact quote (unimodal here)."""
    lo, hi = 10**12, 200 * E18
    while hi - lo > 10**9:
        a, b = lo + (hi - lo) // 3, hi - (hi - lo) // 3
        if route.quote(a)[0] < route.quote(b)[0]:
            lo = a
        else:
            hi = b
    return lo


def _snapshot(anvil: Anvil) -> str:
    return anvil.call("evm_snapshot")


def _revert(anvil: Anvil, snapshot: str) -> None:
    assert anvil.call("evm_revert", snapshot) is True


@dataclass
class Tally:
    compared: int = 0
    profitable: int = 0
    losing: int = 0  # reverted with InsufficientProfit naming exactly the predicted output
    crossing: int = 0  # sizes where some V3 hop crossed >= 1 initialized tick
    max_crossed: int = 0


def check_size(m: Market, route: Route, amount_in: int, tally: Tally, label: str) -> int:
    """eth_call and transaction of `execute` for `amount_in` against the Python prediction from the
    state on chain now: the returned profit, the Arb event and the executor's BASE balance change
    (or, for a losing size, the revert's output) must all equal it to the wei. Returns the profit."""
    predicted, crossed = route.quote(amount_in)
    case = f"{label} amount_in {amount_in}: predicted {predicted}"
    fn = execute_fn(m.w3, m.executor.address, route.as_dict(amount_in), pools=route.models,
                    v3_factories=[m.factory.address])
    tally.compared += 1
    tally.crossing += crossed > 0
    tally.max_crossed = max(tally.max_crossed, crossed)
    if predicted < 0:
        with pytest.raises(ContractCustomError) as loss:
            fn.call({"from": m.me})
        assert artifacts.describe_revert("ArbExecutor", loss.value) == \
            f"InsufficientProfit(amountOut={amount_in + predicted}, required={amount_in})", case
        tally.losing += 1
        return predicted
    assert fn.call({"from": m.me}) == predicted, case
    strict = execute_fn(m.w3, m.executor.address, route.as_dict(amount_in), predicted + 1, pools=route.models,
                        v3_factories=[m.factory.address])
    with pytest.raises(ContractCustomError) as short:
        strict.call({"from": m.me})
    assert artifacts.describe_revert("ArbExecutor", short.value) == \
        f"InsufficientProfit(amountOut={amount_in + predicted}, required={amount_in + predicted + 1})", case

    before = m.balances()
    fn = execute_fn(m.w3, m.executor.address, route.as_dict(amount_in), predicted, pools=route.models,
                    v3_factories=[m.factory.address])
    receipt = send(m.w3, fn, m.me, TX_GAS)
    (arb,) = m.executor.events.Arb().process_receipt(receipt, errors=DISCARD)
    assert (arb["args"]["amountIn"], arb["args"]["profit"]) == (amount_in, predicted), case
    after = m.balances()
    assert after[0] - before[0] == predicted, case
    assert after[1:] == before[1:], case  # every intermediate token went on to the next hop, exactly
    # and each V3 pool ends where the Python swap said it would
    amount = amount_in
    for pool, z41 in zip(route.models, route.zero_for_one):
        if isinstance(pool, V3Pool):
            result = pool.swap(z41, amount)
            chain = read_pool(m.w3, pool.address)
            assert (chain.sqrt_price_x96, chain.tick, chain.liquidity) == (
                result.sqrt_price_x96, result.tick, result.liquidity), case
        amount = pool.quote_out(z41, amount)
    tally.profitable += 1
    return predicted


# -- 1. mixed cycles pay what Python predicts, to the wei -----------------------------------------


def test_mixed_cycles_pay_the_predicted_profit_to_the_wei(anvil: Anvil, w3: Web3) -> None:
    m = make_market(w3)
    tally = Tally()
    best: dict[str, int] = {}
    for name in CYCLES:
        route = route_of(m, name)
        x = best[name] = _best_input(route)
        assert route.quote(x)[0] > 0, f"{name}: no gap to take"
        # tiny (inside one tick range), around the optimum, and past it (losing)
        sizes = [10**15, 10**17 + 12345, x // 4, x // 2, x - 1, x, x + 1, 2 * x, 4 * x]
        for amount in sizes:  # each from the same state: the route read once above holds for all
            snapshot = _snapshot(anvil)
            check_size(m, route, amount, tally, name)
            _revert(anvil, snapshot)
    # then every cycle once more, in a row on the chain as it goes: the pools they share have moved
    for name in CYCLES:
        check_size(m, route_of(m, name), best[name] // 2, tally, f"{name} (in sequence)")
    print(f"\nexecutor vs Python: {tally.compared} cycle/size cases over {len(CYCLES)} cycles, all wei-exact: "
          f"{tally.profitable} profitable (eth_call = transaction = balance change), {tally.losing} losing "
          f"(InsufficientProfit names the predicted output); {tally.crossing} cross V3 ticks, max {tally.max_crossed}")
    assert tally.compared == len(CYCLES) * 10
    assert tally.profitable >= 5 * len(CYCLES) and tally.losing >= len(CYCLES)
    assert tally.crossing >= 3 * len(CYCLES) and tally.max_crossed >= 5


def test_v2_routes_keep_the_v2_form_and_the_mixed_form_agrees(w3: Web3) -> None:
    m = make_market(w3)
    route = route_of(m, "V2>V2>V3")
    v2_only = Route(route.models[:2] + [m.model("v2_xb")], route.zero_for_one[:2] + [
        m.model("v2_xb").zero_for_one(m.tokens["X"].address)])
    amount = 3 * E18
    # a V2 route: today's five arguments, from addresses alone or from V2Pool objects
    plain = execute_args(v2_only.as_dict(amount))
    assert plain == execute_args(v2_only.as_dict(amount), pools=v2_only.models) == execute_args(
        {**v2_only.as_dict(amount), "pools": v2_only.models})
    assert len(plain) == 5 and plain[2] == [30, 30, 30]
    # the V2 pairs are all at fair prices: the cycle loses its fees, and both forms say by exactly how much
    predicted = v2_only.quote(amount)[0]
    assert predicted < 0
    for call in (m.executor.functions.execute(*plain),
                 m.executor.functions.execute(plain[0], plain[1], plain[2], [ZERO_ADDRESS] * 3, amount, 0)):
        with pytest.raises(ContractCustomError) as loss:
            call.call({"from": m.me})
        assert artifacts.describe_revert("ArbExecutor", loss.value) == \
            f"InsufficientProfit(amountOut={amount + predicted}, required={amount})"

    # a V3 hop: the mixed form, fee tier in pips and the factory found by its create2 address
    args = execute_args(route.as_dict(amount), pools={p.address.lower(): p for p in route.models},
                        v3_factories=[ZERO_ADDRESS, m.factory.address])
    assert args[2:4] == [[30, 30, 10000], [ZERO_ADDRESS, ZERO_ADDRESS, m.factory.address]]
    # the same from a route that holds its pool objects (then fees_bps is not needed)
    objects = {k: v for k, v in route.as_dict(amount).items() if k != "fees_bps"} | {"pools": route.models}
    assert execute_args(objects, v3_factories=[m.factory.address]) == args
    # without its pool objects a route is read as V2 pairs with its fees_bps, as the query API serves it
    assert len(execute_args(route.as_dict(amount))) == 5
    # a V3 pool no listed factory created is refused before anything is sent
    other = deploy_factory(w3)
    with pytest.raises(ChainError, match="not created by any of the known V3 factories"):
        execute_args(route.as_dict(amount), pools=route.models, v3_factories=[other.address])
    assert factory_of(route.models[2], [other.address, m.factory.address]) == m.factory.address
    with pytest.raises(ContractCustomError) as bad:
        m.executor.functions.execute(args[0], args[1], args[2], args[3][:2], amount, 0).call({"from": m.me})
    assert artifacts.describe_revert("ArbExecutor", bad.value) == "BadPath()"


def test_a_v3_hop_that_cannot_take_its_whole_input_reverts(w3: Web3) -> None:
    m = make_market(w3)
    route = route_of(m, "V3>V2")
    pool = route.models[0]
    assert isinstance(pool, V3Pool)
    cap = pool.max_input(route.zero_for_one[0])  # the input that runs the price to the limit, past every position
    fn = execute_fn(w3, m.executor.address, route.as_dict(cap + 1), pools=route.models,
                    v3_factories=[m.factory.address])
    with pytest.raises(ContractCustomError) as partial:
        fn.call({"from": m.me, "gas": 29_000_000})
    assert artifacts.describe_revert("ArbExecutor", partial.value).lower() == \
        f"partialfill(pool={pool.address.lower()}, amountin={cap + 1}, taken={cap})"


# -- 2. nobody but a pool of the factory gets paid ------------------------------------------------

ATTACKERS = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IToken { function transfer(address to, uint256 value) external returns (bool); }
interface ICallback { function uniswapV3SwapCallback(int256 amount0, int256 amount1, bytes calldata data) external; }

/// Calls the executor's callback directly, with whatever it is told to claim.
contract ForgedCaller {
    function forge(address executor, int256 amount0, int256 amount1, bytes calldata data) external {
        ICallback(executor).uniswapV3SwapCallback(amount0, amount1, data);
    }
}

/// A pool no factory created, with both faces: a V3 pool's swap and a V2 pair's getReserves and
/// swap. Whichever the executor calls, it asks to be paid `ask0`/`ask1` through the executor's V3
/// callback, passing on the executor's data or `forged`. As a V2 pair it quotes from the reserves it
/// is told and really pays what the executor computes from them, so the cycle ends in profit.
contract FakePool {
    address public immutable token0;
    address public immutable token1;
    int256 public ask0;
    int256 public ask1;
    bytes public forged;
    uint112 public reserve0;
    uint112 public reserve1;

    constructor(address t0, address t1) { token0 = t0; token1 = t1; }

    function configure(int256 a0, int256 a1, uint112 r0, uint112 r1, bytes calldata data) external {
        (ask0, ask1, reserve0, reserve1, forged) = (a0, a1, r0, r1, data);
    }

    function swap(address, bool, int256, uint160, bytes calldata data) external returns (int256, int256) {
        _askToBePaid(data);
        return (ask0, ask1);
    }

    function getReserves() external view returns (uint112, uint112, uint32) {
        return (reserve0, reserve1, 0);
    }

    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata) external {
        if (amount0Out > 0) IToken(token0).transfer(to, amount0Out);
        if (amount1Out > 0) IToken(token1).transfer(to, amount1Out);
        _askToBePaid("");
    }

    function _askToBePaid(bytes memory data) private {
        if (forged.length > 0) data = forged;
        ICallback(msg.sender).uniswapV3SwapCallback(ask0, ask1, data);
    }
}
"""


def _compile(source: str) -> dict[str, tuple[list, str]]:
    """name -> (abi, creation bytecode) of the contracts in `source`, with the project's npm solc."""
    script = ("const solc = require('solc'); const src = require('fs').readFileSync(0, 'utf8');"
              "const out = JSON.parse(solc.compile(JSON.stringify({language: 'Solidity',"
              " sources: {'a.sol': {content: src}}, settings: {optimizer: {enabled: true, runs: 200},"
              " evmVersion: 'cancun', outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object']}}}})));"
              "process.stdout.write(JSON.stringify(out));")
    done = subprocess.run(["node", "-e", script], input=source, cwd=REPO, capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    errors = [e["formattedMessage"] for e in out.get("errors", []) if e["severity"] == "error"]
    assert not errors, errors
    return {name: (c["abi"], "0x" + c["evm"]["bytecode"]["object"]) for name, c in out["contracts"]["a.sol"].items()}


def _deploy(w3: Web3, compiled: dict[str, tuple[list, str]], name: str, *args: Any) -> Contract:
    abi, bytecode = compiled[name]
    tx = w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).transact({"from": w3.eth.accounts[0]})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=10)
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=abi)


def _mined_and_reverted(w3: Web3, fn: Any, sender: str) -> None:
    """Sent as a real transaction (fixed gas, no estimate), it is mined and reverts."""
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": 3_000_000}), timeout=10)
    assert receipt["status"] == 0


def test_forged_callbacks_and_fake_pools_are_never_paid(anvil: Anvil, w3: Web3) -> None:
    m = make_market(w3)
    attackers = _compile(ATTACKERS)
    stranger = w3.eth.accounts[3]
    pool = m.v3["v3_bu_hi"]
    token0, token1, fee = pool.functions.token0().call(), pool.functions.token1().call(), pool.functions.fee().call()
    genuine = abi_encode(["address", "address", "address", "uint24"], [m.factory.address, token0, token1, fee])
    held = {who: m.balances(who) for who in (m.executor.address, pool.address)}
    drain = 1_000 * E18

    # an EOA (the owner too) calling the callback directly, claiming to be the genuine pool
    for caller in (stranger, m.me):
        for a0, a1 in ((drain, -1), (-1, drain)):
            fn = m.executor.functions.uniswapV3SwapCallback(a0, a1, genuine)
            with pytest.raises(ContractCustomError) as refused:
                fn.call({"from": caller})
            assert artifacts.describe_revert("ArbExecutor", refused.value).lower() == \
                f"unauthorizedcallback(caller={caller.lower()}, pool={pool.address.lower()})"
            _mined_and_reverted(w3, fn, caller)

    # a contract doing the same, with the genuine pool's data or with data naming itself as a pool
    forger = _deploy(w3, attackers, "ForgedCaller")
    self_named = abi_encode(["address", "address", "address", "uint24"], [forger.address, token0, token1, fee])
    for data in (genuine, self_named):
        fn = forger.functions.forge(m.executor.address, drain, 0, data)
        with pytest.raises(ContractCustomError) as refused:
            fn.call({"from": stranger})
        assert artifacts.describe_revert("ArbExecutor", refused.value).lower().startswith(
            f"unauthorizedcallback(caller={forger.address.lower()}")
        _mined_and_reverted(w3, fn, stranger)
    with pytest.raises(ContractLogicError):  # data that does not even decode
        forger.functions.forge(m.executor.address, drain, 0, b"").call({"from": stranger})

    # a fake pool routed during an execute, asking for the executor's USD inventory (a theft the
    # final BASE profit check alone would not see)
    base, usd = m.tokens["BASE"], m.tokens["USD"]
    pair = sorted((base.address, usd.address), key=lambda a: int(a, 16))
    fake = _deploy(w3, attackers, "FakePool", *pair)
    send(w3, usd.functions.mint(fake.address, 10**9 * E18), m.me)
    ask = (drain, 0) if pair[0] == usd.address else (0, drain)
    # as a V2 pair it offers 10,000 USD a BASE: paid, the cycle would end well in BASE profit
    rich = (10**24, 10**28) if pair[0] == base.address else (10**28, 10**24)
    held[fake.address] = m.balances(fake.address)
    real = route_of(m, "V2>V3")  # BASE -> USD on V2, USD -> BASE on the 0.05 % pool
    amount = E18
    args = execute_args(real.as_dict(amount), pools=real.models, v3_factories=[m.factory.address])
    genuine_lo = abi_encode(["address", "address", "address", "uint24"], [m.factory.address, *pair, 500])

    def refused_with(call_args: list, expected: str) -> None:
        fn = m.executor.functions.execute(*call_args)
        with pytest.raises(ContractCustomError) as refused:
            fn.call({"from": m.me})
        assert artifacts.describe_revert("ArbExecutor", refused.value).lower().startswith(expected.lower())
        _mined_and_reverted(w3, fn, m.me)

    # in a V3 slot, as the real factory's pool: `execute` refuses it before calling it
    send(w3, fake.functions.configure(*ask, *rich, b""), m.me)
    as_v3 = [[args[0][0], fake.address], *args[1:]]
    refused_with(as_v3, f"NotAPool(pool={fake.address}, expected={m.v3['v3_bu_lo'].address})")
    # in a V2 slot (V2 pairs are not authenticated): called, it asks through the V3 callback, with the
    # executor's empty data, the genuine data of either BASE/USD pool, or data naming itself
    as_v2 = [[fake.address, args[0][1]], *args[1:]]
    for forged in (b"", genuine, genuine_lo, abi_encode(["address", "address", "address", "uint24"],
                                                       [fake.address, *pair, 500])):
        send(w3, fake.functions.configure(*ask, *rich, forged), m.me)
        if forged:
            refused_with(as_v2, f"UnauthorizedCallback(caller={fake.address}")
        else:
            with pytest.raises(ContractLogicError):  # nothing to decode: no pool named, nothing paid
                m.executor.functions.execute(*as_v2).call({"from": m.me})
            _mined_and_reverted(w3, m.executor.functions.execute(*as_v2), m.me)

    # a genuine V3 pool, but of another factory, routed as the real factory's: refused alike
    rogue_factory = deploy_factory(w3)
    rogue = create_pool(w3, rogue_factory, base.address, usd.address, 500, m.v3["v3_bu_lo"].functions.slot0().call()[0])
    send(w3, m.harness.functions.mint(rogue.address, -887270, 887270, 10**22), m.me, TX_GAS)
    held[rogue.address] = m.balances(rogue.address)
    refused_with([[args[0][0], rogue.address], *args[1:]],
                 f"NotAPool(pool={rogue.address}, expected={m.v3['v3_bu_lo'].address})")

    # nothing left anyone's hands
    for who, balances in held.items():
        assert m.balances(who) == balances, who
    # and the genuine route still pays, through the same callback
    assert check_size(m, route_of(m, "V2>V3"), amount, Tally(), "V2>V3") > 0
