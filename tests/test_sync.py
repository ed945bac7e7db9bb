"""Cold start on a real anvil: the batched, concurrent discovery reads what one call per value reads.

The bench's chain (`scanner.bench.sync.build_chain`) makes its pairs with the canonical factory's
`createPair`; only the reserves are written into storage. Timing lives in `arbscan bench sync`.
"""
from __future__ import annotations

import pytest

from scanner.bench.sync import block_gas_limit, build_chain, read_naive
from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.chain.discovery import discover
from scanner.chain.rpc import ChainClient
from scanner.config import DexConfig
from scanner.errors import ChainError

POOLS = 50


@pytest.fixture(scope="module")
def chain():
    node = Anvil.start(gas_limit=block_gas_limit(POOLS))
    try:
        client = ChainClient(node.url)
        yield client, build_chain(client, POOLS, seed=3)
    finally:
        node.stop()


def test_fast_discovery_equals_one_call_per_value(chain):
    client, built = chain
    block = client.block_number()
    naive = read_naive(client, built.factory, range(POOLS), block)
    # batch 7: eight lens calls in flight together, the last one short
    fast = discover(client, [DexConfig("bench", built.factory)], batch=7, block=block, progress=False)
    assert fast == naive == built.pools
    code = client.w3.eth.get_code(client.w3.to_checksum_address(built.pools[0].address))
    assert "0x" + code.hex() == artifacts.load_artifact("UniswapV2Pair").deployed_bytecode.lower()
    assert built.pools[0].address == artifacts.pair_address(built.factory, built.pools[0].token0,
                                                            built.pools[0].token1).lower()


def test_every_pool_is_read_at_the_block_asked(chain):
    client, built = chain
    dex = [DexConfig("bench", built.factory)]
    before = client.block_number()
    client.rpc("evm_mine")  # anvil_setStorageAt rewrites the head's state in place: write above `before`
    pair = built.pools[-1].address
    client.rpc("anvil_setStorageAt", pair, hex(8), "0x" + (5 | 6 << 112).to_bytes(32, "big").hex())
    client.rpc("evm_mine")
    try:
        assert discover(client, dex, batch=7, block=before, progress=False) == built.pools
        latest = discover(client, dex, batch=7, progress=False)
        assert (latest[-1].reserve0, latest[-1].reserve1) == (5, 6) and latest[:-1] == built.pools[:-1]
        assert discover(client, dex, batch=7, max_pools=10, progress=False) == built.pools[:10]
    finally:
        last = built.pools[-1]
        client.rpc("anvil_setStorageAt", pair, hex(8), "0x" + (last.reserve0 | last.reserve1 << 112).to_bytes(32, "big").hex())
        client.rpc("evm_mine")


def test_batched_and_concurrent_requests_keep_order_and_name_errors(chain):
    client, _ = chain
    calls = [("eth_getBlockByNumber", [hex(n), False]) for n in range(4)]
    numbers = [int(b["number"], 16) for b in client.rpc_many(calls, workers=3)]
    assert numbers == [int(b["number"], 16) for b in client.rpc_batch(calls)] == [0, 1, 2, 3]
    sent = client.rpc_calls
    client.rpc_batch(calls)
    assert client.rpc_calls == sent + len(calls)
    with pytest.raises(ChainError, match="eth_nosuchmethod failed"):
        client.rpc_batch([("eth_blockNumber", []), ("eth_nosuchmethod", [])])
