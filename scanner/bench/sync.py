"""`arbscan bench sync`: cold start, discovery plus state of N Uniswap V2 pools from a local anvil.

The fast way is `scanner.chain.discovery.discover`: `PoolLens.pairsOf` calls of `batch` pairs,
a few in flight, pinned to one block. The naive way reads each pair with its own calls
(`allPairs(i)`, then `token0`, `token1` and `getReserves` of the pair), one after another, as
a client without a lens would; it is timed on a sample of pools and scaled (`naive_sampled_pools`,
`naive_scaled`).

The bench chain is real where discovery looks: one canonical `UniswapV2Factory`, and every pair
made by the factory's `createPair` (canonical `UniswapV2Pair` code at its create2 address,
initialized by the factory, listed in `allPairs`), 500 pairs per transaction through a tiny
batch caller placed with `anvil_setCode`, all mined in one block. Only the reserves are written
with `anvil_setStorageAt` (minting liquidity into 10,000 pairs would cost three more
transactions each); `deploy_seconds` reports the build apart from the timed reads.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3.types import Nonce
from web3.utils.address import get_create_address

from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.chain.discovery import DISCOVERY_BATCH, DISCOVERY_WORKERS, discover
from scanner.chain.rpc import ChainClient
from scanner.config import DexConfig
from scanner.dex.pool import PoolInfo
from scanner.errors import ChainError

RESERVES_SLOT = 8  # UniswapV2Pair: uint112 reserve0 | uint112 reserve1 << 112 | uint32 blockTimestampLast << 224
CREATE_PAIR = keccak(text="createPair(address,address)")[:4]
CREATE_PAIR_GAS = 3_000_000  # createPair deploys the pair's 11.3 kB of code: 2.48M gas each
PAIRS_PER_TX = 500
BATCH_CALLER = "0x00000000000000000000000000000000ba7c4ca1"  # where anvil_setCode puts the batch caller
SEND_BATCH = 2_000  # JSON-RPC requests per HTTP batch while building the chain
NAIVE_CALLS_PER_POOL = 4  # allPairs(i), token0, token1, getReserves


@dataclass(frozen=True)
class SyncChain:
    """What the bench chain holds: the factory and every pair as discovery should find it."""

    factory: str
    pools: list[PoolInfo]  # in `allPairs` order


def build_chain(client: ChainClient, pools: int, seed: int = 0, dex: str = "bench") -> SyncChain:
    """`pools` canonical V2 pairs over the fewest real tokens that have that many pairs.

    Needs a node whose block gas limit is at least `block_gas_limit(pools)`: every pair is made
    in one block (anvil does not cap a transaction's gas below its block's unless asked to).
    """
    w3 = client.w3
    me = w3.eth.accounts[0]
    client.rpc("evm_setAutomine", True)
    factory = artifacts.deploy(w3, "UniswapV2Factory", me, sender=me).address
    n_tokens = math.ceil((1 + math.sqrt(1 + 8 * pools)) / 2)
    token = artifacts.load_artifact("TestToken")
    ctor = w3.eth.contract(abi=token.abi, bytecode=token.bytecode).constructor
    nonce = int(w3.eth.get_transaction_count(me))
    tokens = [get_create_address(me, Nonce(nonce + i)) for i in range(n_tokens)]
    client.rpc("evm_setAutomine", False)
    _in_batches(client, [("eth_sendTransaction", [{"from": me, "nonce": hex(nonce + i), "gas": hex(2_000_000),
                                                   "data": ctor(f"T{i}", f"T{i}", 18).data_in_transaction}])
                         for i in range(n_tokens)])
    client.rpc("evm_mine")
    rng = np.random.default_rng(seed)
    combos = [(a, b) for a in range(n_tokens) for b in range(a + 1, n_tokens)]
    chosen = [combos[i] for i in rng.permutation(len(combos))[:pools]]
    words = [bytes(12) + bytes.fromhex(t[2:]) for t in tokens]
    calldata = [CREATE_PAIR + words[a] + words[b] for a, b in chosen]
    client.rpc("anvil_setCode", BATCH_CALLER, "0x" + batch_caller_code(factory).hex())
    nonce += n_tokens
    _in_batches(client, [("eth_sendTransaction", [{"from": me, "nonce": hex(nonce + k), "to": BATCH_CALLER,
                                                   "gas": hex(CREATE_PAIR_GAS * PAIRS_PER_TX),
                                                   "data": "0x" + b"".join(calldata[start:start + PAIRS_PER_TX]).hex()}])
                         for k, start in enumerate(range(0, pools, PAIRS_PER_TX))])
    client.rpc("evm_mine")
    pairs_made = int(client.rpc("eth_call", {"to": factory, "data": "0x" + keccak(text="allPairsLength()")[:4].hex()},
                                "latest"), 16)
    if pairs_made != pools:
        raise ChainError(f"bench chain: the factory holds {pairs_made} pairs after mining, expected {pools}: "
                         "raise the block gas limit (Anvil.start(gas_limit=...)) or lower --pools")
    reserves = np.exp(rng.uniform(math.log(1e18), math.log(1e24), size=(pools, 2)))
    out, writes = [], []
    for (a, b), (r0f, r1f) in zip(chosen, reserves):
        pair = artifacts.pair_address(factory, tokens[a], tokens[b]).lower()
        t0, t1 = sorted((tokens[a].lower(), tokens[b].lower()))
        r0, r1 = int(r0f), int(r1f)
        writes.append(("anvil_setStorageAt", [pair, hex(RESERVES_SLOT), "0x" + (r0 | r1 << 112).to_bytes(32, "big").hex()]))
        out.append(PoolInfo(pair, t0, t1, r0, r1, dex, 30))
    _in_batches(client, writes)
    client.rpc("evm_mine")
    return SyncChain(factory.lower(), out)


def block_gas_limit(pools: int) -> int:
    """A block gas limit that fits all the `createPair` transactions of `pools` pools."""
    return CREATE_PAIR_GAS * max(pools, PAIRS_PER_TX) + 30_000_000


def batch_caller_code(target: str) -> bytes:
    """Runtime code that calls `target` once per 68-byte chunk of its calldata (a two-argument call
    each, e.g. `createPair(a, b)`) and reverts if any call fails: many pairs per transaction."""
    chunk, loop, end, fail = 68, 0x02, 0x3B, 0x3D  # byte offsets of the JUMPDESTs below
    return bytes([
        0x60, 0x00,                                      # i = 0
        0x5B,                                            # loop:
        0x80, 0x36, 0x11, 0x15, 0x60, end, 0x57,         # if !(calldatasize > i) goto end
        0x60, chunk, 0x81, 0x60, 0x00, 0x37,             # calldatacopy(0, i, 68)
        0x60, 0x00, 0x60, 0x00, 0x60, chunk, 0x60, 0x00, 0x60, 0x00,
        0x73, *bytes.fromhex(target[2:]), 0x5A, 0xF1,    # call(gas, target, 0, 0, 68, 0, 0)
        0x15, 0x60, fail, 0x57,                          # if it failed goto fail
        0x60, chunk, 0x01, 0x60, loop, 0x56,             # i += 68; goto loop
        0x5B, 0x00,                                      # end: stop
        0x5B, 0x60, 0x00, 0x80, 0xFD,                    # fail: revert(0, 0)
    ])


def _in_batches(client: ChainClient, calls: list[tuple[str, list[Any]]]) -> None:
    for start in range(0, len(calls), SEND_BATCH):
        client.rpc_batch(calls[start:start + SEND_BATCH])


def read_naive(client: ChainClient, factory: str, indexes: range, block: int, dex: str = "bench") -> list[PoolInfo]:
    """Pairs `indexes` of `factory` read one call per value: what a client without a lens does."""
    tag = hex(block)

    def call(to: str, signature: str, *args: Any, types: tuple[str, ...] = ()) -> bytes:
        data = keccak(text=signature)[:4] + abi_encode(list(types), list(args))
        return bytes.fromhex(client.rpc("eth_call", {"to": to, "data": "0x" + data.hex()}, tag)[2:])

    found = []
    for i in indexes:  # NAIVE_CALLS_PER_POOL calls each
        pair = "0x" + call(factory, "allPairs(uint256)", i, types=("uint256",))[12:32].hex()
        t0 = "0x" + call(pair, "token0()")[12:32].hex()
        t1 = "0x" + call(pair, "token1()")[12:32].hex()
        reserves = call(pair, "getReserves()")
        found.append(PoolInfo(pair, t0, t1, int.from_bytes(reserves[:32], "big"), int.from_bytes(reserves[32:64], "big"),
                              dex, 30))
    return found


def run(pools: int = 10_000, seed: int = 0, naive_sample: int = 500) -> dict[str, Any]:
    """Build the chain, then time the cold start both ways at the same block; one dict of figures.

    The naive way sends 4 calls per pool (about a millisecond each on anvil), so it is timed on
    `naive_sample` pools and scaled to all of them.
    """
    if pools < 1:
        raise ValueError(f"bench sync needs at least one pool, got {pools}")
    with Anvil.start(gas_limit=block_gas_limit(pools)) as node:
        client = ChainClient(node.url)
        t0 = time.perf_counter()
        chain = build_chain(client, pools, seed)
        deploy_s = time.perf_counter() - t0
        block = int(client.rpc("eth_blockNumber"), 16)
        calls_before = client.rpc_calls
        t0 = time.perf_counter()
        found = discover(client, [DexConfig("bench", chain.factory)], block="latest", progress=False)
        seconds = time.perf_counter() - t0
        rpc_calls = client.rpc_calls - calls_before
        if found != chain.pools:
            raise ChainError(f"bench sync: discovery found {len(found)} pools that differ from the {pools} built")
        sample = min(pools, naive_sample)
        t0 = time.perf_counter()
        naive = read_naive(client, chain.factory, range(sample), block)
        naive_s = (time.perf_counter() - t0) * pools / sample
        if naive != chain.pools[:sample]:
            raise ChainError("bench sync: the naive reads differ from the pools built")
    return {
        "pools": len(found), "seconds": seconds, "rpc_calls": rpc_calls, "pools_per_s": len(found) / seconds,
        "naive_seconds": naive_s, "naive_rpc_calls": NAIVE_CALLS_PER_POOL * pools, "naive_sampled_pools": sample,
        "naive_scaled": sample < pools, "speedup": naive_s / seconds, "deploy_seconds": deploy_s,
        "config": {"node": "anvil", "lens_batch": DISCOVERY_BATCH, "workers": DISCOVERY_WORKERS, "seed": seed},
    }
