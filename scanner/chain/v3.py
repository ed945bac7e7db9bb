"""Canonical Uniswap V3 on a chain: the factory deployed from the shipped build, pools created
and initialized through it, and a pool's state read back into `scanner.dex.v3.V3Pool`.

The factory and pool bytecode are `@uniswap/v3-core`'s published build, byte for byte, so pools
sit at mainnet's create2 addresses for their factory and what `V3Pool` predicts is checked
against the contract that runs on mainnet, not a re-implementation of it.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import BlockIdentifier, TxReceipt

from scanner.chain import artifacts
from scanner.chain.artifacts import v3_pool_address
from scanner.dex.v3 import V3Pool
from scanner.errors import ChainError

FEE_TIERS: dict[int, int] = {500: 10, 3000: 60, 10000: 200}
"""The fee tiers (hundredths of a bip) the V3 factory enables at deployment, with their tick spacings."""

UNISWAP_V3_FACTORY = "0x1F98431c8aD98523631AE4a59f267346ea31F984"
"""Uniswap's V3 factory on Ethereum mainnet (and at the same address on Arbitrum, Optimism, Polygon)."""

_RECEIPT_TIMEOUT_S = 10.0


def send(w3: Web3, fn: ContractFunction, sender: str | None = None, gas: int | None = None) -> TxReceipt:
    """Send `fn` as a transaction from `sender` (default: the node's first account) and insist it succeeded.

    Passing `gas` skips the node's estimate (one round trip less per transaction in long tests).
    """
    tx: dict[str, Any] = {"from": sender or w3.eth.accounts[0]}
    if gas is not None:
        tx["gas"] = gas
    try:
        tx_hash = fn.transact(tx)  # type: ignore[arg-type]
    except ContractLogicError as exc:
        raise ChainError(f"{fn.fn_name}{tuple(fn.args)!r} reverted: {exc.message or exc}") from exc
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=_RECEIPT_TIMEOUT_S, poll_latency=0.002)
    if receipt["status"] != 1:
        raise ChainError(f"{fn.fn_name}{tuple(fn.args)!r} reverted in transaction {tx_hash.to_0x_hex()}")
    return receipt


def deploy_factory(w3: Web3, sender: str | None = None) -> Contract:
    """The canonical UniswapV3Factory (fee tiers 500/3000/10000 enabled by its constructor)."""
    return artifacts.deploy(w3, "UniswapV3Factory", sender=sender)


def create_pool(
    w3: Web3, factory: Contract, token_a: str, token_b: str, fee: int, sqrt_price_x96: int, sender: str | None = None
) -> Contract:
    """Create the (token_a, token_b, fee) pool through the factory and initialize its price.

    The pool's address is checked against the create2 address derived from mainnet's init code
    hash: a mismatch means the factory was not deployed from the canonical build.
    """
    if fee not in FEE_TIERS:
        raise ChainError(f"fee tier {fee} is not one of the factory's {sorted(FEE_TIERS)}")
    send(w3, factory.functions.createPool(to_checksum_address(token_a), to_checksum_address(token_b), fee), sender)
    address = factory.functions.getPool(to_checksum_address(token_a), to_checksum_address(token_b), fee).call()
    expected = v3_pool_address(factory.address, token_a, token_b, fee)
    if address != expected:
        raise ChainError(f"factory {factory.address} created the {fee} pool at {address}, not at {expected}")
    pool = artifacts.at(w3, "UniswapV3Pool", address)
    send(w3, pool.functions.initialize(sqrt_price_x96), sender)
    return pool


def factory_of(pool: V3Pool, factories: Iterable[str]) -> str:
    """The one of `factories` that created `pool` (see `creator_of`)."""
    return creator_of(pool.address, pool.token0, pool.token1, pool.fee, factories)


def creator_of(address: str, token_a: str, token_b: str, fee: int, factories: Iterable[str]) -> str:
    """The one of `factories` whose create2 address for (token_a, token_b, fee) under the canonical
    init code hash is `address`. This is the check `ArbExecutor` makes before it swaps on a pool and
    again before its callback pays one. Raises ChainError naming the pool when none of them did."""
    factories = tuple(factories)
    for factory in factories:
        if v3_pool_address(factory, token_a, token_b, fee).lower() == address.lower():
            return to_checksum_address(factory)
    raise ChainError(f"V3 pool {address} ({token_a}, {token_b}, fee {fee}) was not created by any of the known "
                     f"V3 factories {list(factories)}: the executor would refuse it (NotAPool)")


def initialized_ticks(
    w3: Web3, pool: Contract, block: BlockIdentifier = "latest", from_block: BlockIdentifier = 0
) -> dict[int, tuple[int, int]]:
    """The pool's initialized ticks at `block`: {tick: (liquidityGross, liquidityNet)}.

    Every initialized tick is the bound of some position, and every position starts with a Mint,
    so the Mint logs name all candidates; `ticks()` at the block says which are still initialized
    (a burn to zero clears a tick). Fine for test and local pools; a mainnet pool with years of
    logs wants a tick-bitmap scan through a lens contract instead.
    """
    number = w3.eth.get_block(block)["number"]
    logs = pool.events.Mint().get_logs(from_block=from_block, to_block=number)
    candidates = sorted({t for log in logs for t in (log["args"]["tickLower"], log["args"]["tickUpper"])})
    ticks: dict[int, tuple[int, int]] = {}
    for tick in candidates:
        gross, net, *_rest, initialized = pool.functions.ticks(tick).call(block_identifier=number)
        if initialized:
            ticks[tick] = (gross, net)
    return ticks


def read_pool(w3: Web3, address: str, block: BlockIdentifier = "latest") -> V3Pool:
    """The pool's swap state at `block` (slot0, in-range liquidity, initialized ticks) as a V3Pool."""
    pool = artifacts.at(w3, "UniswapV3Pool", address)
    number = w3.eth.get_block(block)["number"]
    sqrt_price_x96, tick, *_ = pool.functions.slot0().call(block_identifier=number)
    if sqrt_price_x96 == 0:
        raise ChainError(f"V3 pool {pool.address} is not initialized at block {number}")
    return V3Pool(
        address=pool.address,
        token0=pool.functions.token0().call(),
        token1=pool.functions.token1().call(),
        fee=pool.functions.fee().call(),
        tick_spacing=pool.functions.tickSpacing().call(),
        sqrt_price_x96=sqrt_price_x96,
        tick=tick,
        liquidity=pool.functions.liquidity().call(block_identifier=number),
        ticks=initialized_ticks(w3, pool, number),
    )


def swap_event(pool: Contract, receipt: TxReceipt) -> dict[str, int]:
    """The pool's one Swap event in `receipt`: amount0, amount1, sqrtPriceX96, liquidity, tick."""
    events = [e for e in pool.events.Swap().process_receipt(receipt, errors=DISCARD) if e["address"] == pool.address]
    if len(events) != 1:
        raise ChainError(f"expected one Swap of {pool.address} in the transaction, found {len(events)}")
    return dict(events[0]["args"])
