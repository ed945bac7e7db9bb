"""Gas per route measured on the deployed executor: `eth_estimateGas` of real opportunities,
fitted into the scanner's `GasModel` (base + per_hop × hops).

What a cycle's `execute` costs is not a pure function of its hop count. Every estimate is one
fresh transaction, so each slot it touches is cold once; what moves the number is the state it
meets. Each hop's pair updates its price accumulators (two storage writes, ~10k gas) only when
the block's timestamp is past the pair's last swap, and anvil mines many blocks within one
second: simulated in the block it was ranked at, a route through pairs swapped that second
skips those writes and looks up to ~10k gas per hop cheaper than it will be. So `measure`
estimates in the environment of the next block (number + 1, a later timestamp), where every
hop pays its accumulator update, as it does on a chain with a block per slot. Calldata and the
two pair contracts (canonical Uniswap V2, the fee fork) shift it by a few hundred gas.

The fit covers routes through pairs that have been swapped before, over pair contracts like
the ones measured. A pair never swapped since its liquidity was added still has zero price
accumulators and costs ~34k more for their first write. The numbers are gas limits
(`eth_estimateGas`), a little above what a landed transaction is charged after the refund of
each pair's re-entrancy lock. `GasModel.calibrate` takes the least-squares slope and the
smallest base that prices no measured route below its estimate.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import RPCEndpoint

from scanner.chain import artifacts
from scanner.chain.rpc import ChainClient
from scanner.chain.v3 import UNISWAP_V3_FACTORY, creator_of, factory_of
from scanner.dex.pool import Pool
from scanner.dex.v2 import V2Pool
from scanner.dex.v3 import V3Pool
from scanner.errors import ChainError
from scanner.gas.fees import GasModel
from scanner.rank.ranking import Opportunity

Route = Opportunity | Mapping[str, Any]
"""An opportunity as the scanner makes it, or as the query API serves it (a dict)."""
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def execute_args(route: Route, min_profit: int = 0, *, pools: Mapping[str, Pool] | Iterable[Pool] = (),
                 v3_factories: Iterable[str] = (UNISWAP_V3_FACTORY,)) -> list:
    """The arguments of `ArbExecutor.execute` for a route.

    Each hop's kind comes from its pool object: an entry of the route's `pools` that is a `Pool`,
    else the pool of that address in `pools` (a mapping by address, any case, or the pool objects).
    An address with neither is read from the route itself, as the query API serves it: its
    `kinds` (a V3 hop's fee tier is `fees_bps` × 100 and its tokens are the route's `tokens`), or
    a V2 pair with the route's `fees_bps` when it has no `kinds`. A route of V2 pairs only gets the V2 form:
    (pairs, zeroForOne, feeBps, amountIn, minProfit). A route with a `V3Pool` in it gets the mixed
    form (pools, zeroForOne, fees, factories, amountIn, minProfit): a V2 hop has factory 0x0 and its
    fee in bps, a V3 hop its fee tier in pips and the one of `v3_factories` whose create2 address
    for the pool is the pool's (ChainError when none is: the executor would refuse it).
    """
    get: Callable[[str], Any] = route.get if isinstance(route, Mapping) else lambda name: getattr(route, name)
    known = {k.lower(): p for k, p in pools.items()} if isinstance(pools, Mapping) \
        else {p.address.lower(): p for p in pools}
    entries = list(get("pools"))
    route_fees = get("fees_bps") or [None] * len(entries)  # optional when every hop has its pool object
    kinds = _optional(get, "kinds") or ["uniswap-v2"] * len(entries)
    tokens = _optional(get, "tokens") or []
    factories = tuple(v3_factories)
    addresses: list[str] = []
    fees: list[int] = []
    makers: list[str] = []  # per hop: the V3 factory, or ZERO_ADDRESS for a V2 pair
    for hop, (entry, route_fee, kind) in enumerate(zip(entries, route_fees, kinds)):
        pool = entry if isinstance(entry, Pool) else known.get(str(entry).lower())
        if isinstance(pool, V3Pool):
            fees.append(pool.fee)
            makers.append(factory_of(pool, factories))
        elif isinstance(pool, V2Pool):
            fees.append(pool.fee_bps)
            makers.append(ZERO_ADDRESS)
        elif pool is None and kind == "uniswap-v3" and route_fee is not None and len(tokens) > hop + 1:
            fees.append(int(route_fee) * 100)
            makers.append(creator_of(str(entry), tokens[hop], tokens[hop + 1], fees[-1], factories))
        elif pool is None and kind == "uniswap-v3":
            raise ValueError(f"route hop {entry}: a V3 hop needs its pool object or the route's fees_bps and tokens")
        elif pool is None and route_fee is not None:
            fees.append(int(route_fee))
            makers.append(ZERO_ADDRESS)
        elif pool is None:
            raise ValueError(f"route hop {entry}: no pool object and no fees_bps to read it as a V2 pair")
        else:
            raise TypeError(f"pool {pool.address} is a {type(pool).__name__}: the executor swaps V2 pairs and V3 pools")
        addresses.append(to_checksum_address(pool.address if pool is not None else entry))
    zero_for_one, amount_in = list(get("zero_for_one")), int(get("amount_in"))
    if all(maker == ZERO_ADDRESS for maker in makers):
        return [addresses, zero_for_one, fees, amount_in, min_profit]
    return [addresses, zero_for_one, fees, makers, amount_in, min_profit]


def _optional(get: Callable[[str], Any], name: str) -> Any:
    try:
        return get(name)
    except (KeyError, AttributeError):
        return None


def execute_fn(w3: Web3, executor: str, route: Route, min_profit: int = 0, *,
               pools: Mapping[str, Pool] | Iterable[Pool] = (),
               v3_factories: Iterable[str] = (UNISWAP_V3_FACTORY,)) -> ContractFunction:
    """`ArbExecutor.execute` for a route (`execute_args` says which form): called from the owner,
    it returns the cycle's profit."""
    args = execute_args(route, min_profit, pools=pools, v3_factories=v3_factories)
    return artifacts.at(w3, "ArbExecutor", executor).functions.execute(*args)


def execute_calldata(route: Route, min_profit: int = 0, *, pools: Mapping[str, Pool] | Iterable[Pool] = (),
                     v3_factories: Iterable[str] = (UNISWAP_V3_FACTORY,)) -> bytes:
    """The calldata of `execute` for a route, without a node and in ~0.05 ms (web3's encoder takes 30x
    that): what an OP-stack L1 data fee is computed from for every ranked route."""
    return artifacts.calldata("ArbExecutor", "execute", *execute_args(route, min_profit, pools=pools, v3_factories=v3_factories))


def _rpc(client_or_w3: ChainClient | Web3, method: str, *params: Any) -> Any:
    """A raw request (web3's estimate_gas takes no block overrides), retried when a client is given."""
    if isinstance(client_or_w3, ChainClient):
        return client_or_w3.rpc(method, *params)
    reply = client_or_w3.provider.make_request(RPCEndpoint(method), list(params))
    if "error" in reply:
        raise ChainError(f"{method} failed: {reply['error']}")
    return reply["result"]


def measure(client_or_w3: ChainClient | Web3, executor: str, sender: str, routes: Iterable[Route],
            block: int | str, v3_factories: Iterable[str] = (UNISWAP_V3_FACTORY,)) -> list[tuple[int, int]]:
    """(hops, `eth_estimateGas` of `execute` from `sender`) for each route, on the state after
    `block`, as the next block would run it."""
    tag = hex(block) if isinstance(block, int) else block
    header = _rpc(client_or_w3, "eth_getBlockByNumber", tag, False)
    number, timestamp = int(header["number"], 16), int(header["timestamp"], 16)
    next_block = {"number": hex(number + 1), "time": hex(timestamp + 1)}
    contract = artifacts.at(client_or_w3.w3 if isinstance(client_or_w3, ChainClient) else client_or_w3,
                            "ArbExecutor", executor)
    tx = {"from": to_checksum_address(sender), "to": contract.address}
    out = []
    for route in routes:
        args = execute_args(route, v3_factories=v3_factories)
        try:
            gas = _rpc(client_or_w3, "eth_estimateGas", {**tx, "data": contract.encode_abi("execute", args)},
                       hex(number), None, next_block)
        except ChainError as e:
            raise ChainError(f"estimating the route {args[0]} at block {number}: {e}") from e
        out.append((len(args[0]), int(gas, 16)))
    return out


def calibrate_gas(client_or_w3: ChainClient | Web3, executor: str, sender: str, routes: Iterable[Route],
                  block: int | str) -> GasModel:
    """A GasModel fitted to the executor's estimates for `routes` (at least two hop counts) at `block`."""
    return GasModel.calibrate(measure(client_or_w3, executor, sender, routes, block))
