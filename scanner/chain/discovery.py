"""Pool discovery from V2 factories and batched reserve reads, through a lens never deployed.

`PoolLens`'s runtime code is placed at an unused address with an `eth_call` state override, so
one call reads a few hundred pools on any node that supports overrides (geth, erigon, reth,
anvil) without deploying anything on a real chain.
"""
from __future__ import annotations

from collections.abc import Iterable

from eth_utils import to_checksum_address
from tqdm import tqdm

from scanner.chain import artifacts
from scanner.chain.rpc import ChainClient
from scanner.config import DexConfig
from scanner.dex.pool import PoolInfo

LENS_ADDRESS = to_checksum_address("0x000000000000000000000000000000000a4b5ca1")


class PoolLens:
    """Calls to `PoolLens` with its code overridden in at `LENS_ADDRESS`."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        artifact = artifacts.load_artifact("PoolLens")
        self._contract = client.w3.eth.contract(address=LENS_ADDRESS, abi=artifact.abi)
        self._override = {LENS_ADDRESS: {"code": artifact.deployed_bytecode}}

    def pairs_of(self, factory: str, start: int, end: int, block: int | str = "latest") -> list[tuple]:
        fn = self._contract.functions.pairsOf(to_checksum_address(factory), start, end)
        return self.client.call(fn.call, block_identifier=block, state_override=self._override)

    def reserves_of(self, pools: list[str], block: int | str = "latest") -> tuple[int, list[tuple[int, int]]]:
        """(block number the reserves are from, [(reserve0, reserve1)]) for `pools`, in order."""
        fn = self._contract.functions.reservesOf([to_checksum_address(p) for p in pools])
        number, out = self.client.call(fn.call, block_identifier=block, state_override=self._override)
        return number, [(int(r0), int(r1)) for r0, r1 in out]


def pairs_count(client: ChainClient, factory: str) -> int:
    fn = artifacts.at(client.w3, "UniswapV2Factory", factory).functions.allPairsLength()
    return int(client.call(fn.call))


def discover(
    client: ChainClient,
    dexes: Iterable[DexConfig],
    *,
    batch: int = 200,
    max_pools: int = 0,
    block: int | str = "latest",
    progress: bool = True,
) -> list[PoolInfo]:
    """Every pair of every configured factory (up to `max_pools` each), with reserves at `block`."""
    lens = PoolLens(client)
    found: list[PoolInfo] = []
    for dex in dexes:
        total = pairs_count(client, dex.factory)
        if max_pools:
            total = min(total, max_pools)
        bar = tqdm(total=total, desc=f"discovering {dex.name} pools", unit="pool", disable=not progress)
        for start in range(0, total, batch):
            rows = lens.pairs_of(dex.factory, start, min(total, start + batch), block)
            for pair, t0, t1, r0, r1 in rows:
                found.append(PoolInfo(pair.lower(), t0.lower(), t1.lower(), int(r0), int(r1), dex.name, dex.fee_bps))
            bar.update(len(rows))
        bar.close()
    return found
