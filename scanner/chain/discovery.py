"""Pool discovery from V2 factories (their pair list) and V3 factories (their PoolCreated logs),
and batched reserve reads through a lens never deployed.

`PoolLens`'s runtime code is placed at an unused address with an `eth_call` state override, so
one call reads a few hundred pools on any node that supports overrides (geth, erigon, reth,
anvil) without deploying anything on a real chain. A cold start sends those calls raw, a few
at a time (`DISCOVERY_WORKERS`), all pinned to one block number, and decodes the answers by
slicing: web3's contract layer and address checksumming cost more than the node's work.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from tqdm import tqdm

from scanner.chain import artifacts
from scanner.chain.artifacts import CANONICAL_V3_POOL_INIT_CODE_HASH, v3_pool_address
from scanner.chain.rpc import ChainClient
from scanner.chain.v3 import read_pool
from scanner.config import DexConfig
from scanner.dex.pool import InvalidPool, PoolInfo
from scanner.errors import ChainError

log = logging.getLogger(__name__)

POOL_CREATED_TOPIC = "0x" + keccak(text="PoolCreated(address,address,uint24,int24,address)").hex()

LENS_ADDRESS = to_checksum_address("0x000000000000000000000000000000000a4b5ca1")


DISCOVERY_BATCH = 200  # pairs per lens call: 3 to 4M gas, far below the eth_call gas caps of public nodes (50M in geth)
DISCOVERY_WORKERS = 4  # lens calls in flight at once: the node runs them in parallel, bounded for a shared node
_PAIRS_OF = keccak(text="pairsOf(address,uint256,uint256)")[:4]
_ALL_PAIRS_LENGTH = keccak(text="allPairsLength()")[:4]
_PAIR_ROW = 5 * 32  # PoolLens.PoolInfo: pair, token0, token1, reserve0, reserve1, one word each


class PoolLens:
    """Calls to `PoolLens` with its code overridden in at `LENS_ADDRESS`."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        artifact = artifacts.load_artifact("PoolLens")
        self._contract = client.w3.eth.contract(address=LENS_ADDRESS, abi=artifact.abi)
        self._override = {LENS_ADDRESS: {"code": artifact.deployed_bytecode}}

    def pairs_of_request(self, factory: str, start: int, end: int, block: int) -> tuple[str, list[Any]]:
        """The raw `eth_call` of `pairsOf(factory, start, end)` at `block` (for `ChainClient.rpc_many`)."""
        data = _PAIRS_OF + abi_encode(["address", "uint256", "uint256"], [to_checksum_address(factory), start, end])
        return "eth_call", [{"to": LENS_ADDRESS, "data": "0x" + data.hex()}, hex(block), self._override]

    def reserves_of(self, pools: list[str], block: int | str = "latest") -> tuple[int, list[tuple[int, int]]]:
        """(block number the reserves are from, [(reserve0, reserve1)]) for `pools`, in order."""
        fn = self._contract.functions.reservesOf([to_checksum_address(p) for p in pools])
        number, out = self.client.call(fn.call, block_identifier=block, state_override=self._override)
        return number, [(int(r0), int(r1)) for r0, r1 in out]


def decode_pairs(result: str) -> list[tuple[str, str, str, int, int]]:
    """`pairsOf`'s answer as (pair, token0, token1, reserve0, reserve1) rows, addresses lower case."""
    raw = HexBytes(result)
    n = int.from_bytes(raw[32:64], "big") if len(raw) >= 64 else -1
    if n < 0 or int.from_bytes(raw[:32], "big") != 32 or len(raw) != 64 + n * _PAIR_ROW:
        raise ChainError(f"PoolLens.pairsOf returned {len(raw)} bytes that are not a PoolInfo[]: "
                         "the node may not apply eth_call state overrides")
    rows = []
    for at in range(64, len(raw), _PAIR_ROW):
        w = raw[at:at + _PAIR_ROW]
        rows.append(("0x" + w[12:32].hex(), "0x" + w[44:64].hex(), "0x" + w[76:96].hex(),
                     int.from_bytes(w[96:128], "big"), int.from_bytes(w[128:160], "big")))
    return rows


def pairs_count(client: ChainClient, factory: str, block: int | str = "latest") -> int:
    tag = hex(block) if isinstance(block, int) else block
    return int(client.rpc("eth_call", {"to": to_checksum_address(factory), "data": "0x" + _ALL_PAIRS_LENGTH.hex()}, tag), 16)


def discover(
    client: ChainClient,
    dexes: Iterable[DexConfig],
    *,
    batch: int = DISCOVERY_BATCH,
    max_pools: int = 0,
    block: int | str = "latest",
    progress: bool = True,
) -> list[PoolInfo]:
    """Every pool of every configured DEX (up to `max_pools` each), with its state at `block`.

    A block tag is resolved to its number once, so every pool's state is of the same block.
    """
    number = block if isinstance(block, int) else int(client.rpc("eth_getBlockByNumber", block, False)["number"], 16)
    lens = PoolLens(client)
    found: list[PoolInfo] = []
    for dex in dexes:
        if dex.kind == "uniswap-v3":
            found += discover_v3(client, dex, max_pools=max_pools, block=number, progress=progress)
            continue
        total = pairs_count(client, dex.factory, number)
        if max_pools:
            total = min(total, max_pools)
        ranges = [(start, min(total, start + batch)) for start in range(0, total, batch)]
        with tqdm(total=total, desc=f"discovering {dex.name} pools", unit="pool", disable=not progress) as bar:
            answers = client.rpc_many([lens.pairs_of_request(dex.factory, s, e, number) for s, e in ranges],
                                      DISCOVERY_WORKERS, on_result=_progress(bar, [e - s for s, e in ranges]))
        for answer in answers:
            for pair, t0, t1, r0, r1 in decode_pairs(answer):
                found.append(PoolInfo(pair, t0, t1, r0, r1, dex.name, dex.fee_bps))
    return found


def _progress(bar: tqdm, sizes: list[int]) -> Callable[[int], None]:
    """Advance `bar` by request i's pools when its answer arrives."""
    return lambda i: bar.update(sizes[i])


def discover_v3(client: ChainClient, dex: DexConfig, *, max_pools: int = 0, block: int | str = "latest",
                progress: bool = True) -> list[PoolInfo]:
    """The pools a V3 factory created (its PoolCreated logs from `dex.from_block`) in the fee tiers
    `dex.fees`, each with its state at `block`.

    A pool is skipped, with the reason logged, when its address is not the create2 address of the
    configured init code hash (the executor would refuse to pay it), when its price was never
    initialized, or when its state is not one a V3 pool can have; it is never quoted wrongly.
    """
    number = int(client.get_block(block)["number"])
    code_hash = HexBytes(dex.init_code_hash) if dex.init_code_hash else CANONICAL_V3_POOL_INIT_CODE_HASH
    logs = client.rpc("eth_getLogs", {"address": to_checksum_address(dex.factory), "topics": [POOL_CREATED_TOPIC],
                                      "fromBlock": hex(dex.from_block), "toBlock": hex(number)})
    found: list[PoolInfo] = []
    for entry in tqdm(logs, desc=f"discovering {dex.name} pools", unit="pool", disable=not progress):
        token0, token1, fee = (abi_decode([t], HexBytes(topic))[0]
                               for t, topic in zip(("address", "address", "uint24"), entry["topics"][1:4]))
        _spacing, address = abi_decode(["int24", "address"], HexBytes(entry["data"]))
        if fee not in dex.fees:
            continue
        if v3_pool_address(dex.factory, token0, token1, fee, code_hash).lower() != address.lower():
            log.warning("%s: skipping pool %s: not the create2 address of (%s, %s, %d) under init code hash %s",
                        dex.name, address, token0, token1, fee, code_hash.to_0x_hex())
            continue
        try:
            pool = read_pool(client.w3, address, number)
        except (ChainError, InvalidPool) as e:
            log.warning("%s: skipping pool %s: %s", dex.name, address, e)
            continue
        found.append(PoolInfo(address.lower(), token0.lower(), token1.lower(), 0, 0, dex.name, fee // 100,
                              kind="uniswap-v3", tick_spacing=pool.tick_spacing, v3=pool.state()))
        if max_pools and len(found) >= max_pools:
            break
    return found
