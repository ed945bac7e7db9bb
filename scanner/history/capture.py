"""Capture a block range from a node into a `Store`: headers, the configured DEXes' pool logs, the
pools' state at the first block.

Logs are read with one `eth_getLogs` per block range, filtered by topic only (the pool events and
the factories' creation events) and then kept when the emitter is a tracked pool: a real factory has
tens of thousands of pools, more than providers take in an address list, and a pool created inside
a range has its first Sync or Initialize in that same range. When the node refuses a range (too many
results, range or response too large) the range is halved and retried; after a few successes it
doubles again, so the capture runs at the widest range the node allows. Transient faults are
retried by `ChainClient`'s policy.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import pyarrow as pa
from eth_abi import decode as abi_decode
from eth_utils import keccak
from tqdm import tqdm
from web3 import HTTPProvider
from web3.types import RPCEndpoint

from scanner.chain import artifacts
from scanner.chain.discovery import POOL_CREATED_TOPIC, discover
from scanner.chain.follow import SWAP_TOPIC, SYNC_TOPIC, V3_BURN_TOPIC, V3_MINT_TOPIC, V3_SWAP_TOPIC
from scanner.chain.rpc import ChainClient
from scanner.config import DexConfig
from scanner.errors import ChainError, ConfigError
from scanner.history.store import HEADERS_SCHEMA, LOGS_SCHEMA, POOLS_SCHEMA, TICKS_SCHEMA, Capture, Chunk, Store, load


def _topic(hex_topic: str) -> bytes:
    return bytes.fromhex(hex_topic[2:])


V2, V3 = "uniswap-v2", "uniswap-v3"
PAIR_CREATED = keccak(text="PairCreated(address,address,address,uint256)")
POOL_CREATED = _topic(POOL_CREATED_TOPIC)
CREATION_TOPIC = {V2: PAIR_CREATED, V3: POOL_CREATED}
V3_MINT = _topic(V3_MINT_TOPIC)
POOL_TOPICS = {
    V2: {_topic(SYNC_TOPIC), _topic(SWAP_TOPIC)},
    V3: {keccak(text="Initialize(uint160,int24)"), _topic(V3_SWAP_TOPIC), V3_MINT, _topic(V3_BURN_TOPIC)},
}
ALL_TOPICS = sorted({PAIR_CREATED, POOL_CREATED} | POOL_TOPICS[V2] | POOL_TOPICS[V3])

REFUSALS = ("query returned more than", "response size", "too large", "too wide", "too many", "exceed",
            "limited to", "block range")
"""Lower-case fragments of the errors with which nodes and providers refuse an eth_getLogs range
(geth/Infura "query returned more than 10000 results", Alchemy "Log response size exceeded",
erigon "exceed maximum block range", Cloudflare "block range too large", ...)."""


def refused(exc: BaseException) -> bool:
    """Whether `exc` is a node refusing an eth_getLogs range as too big (then a smaller one may pass)."""
    return any(fragment in str(exc).lower() for fragment in REFUSALS)


@dataclass
class LogFetcher:
    """`eth_getLogs` over a block range in as few requests as the node allows."""

    client: ChainClient
    span: int = 2_000  # blocks per request now: halved on refusal, doubled after `grow_after` successes
    max_span: int = 100_000
    grow_after: int = 4
    requests: int = 0
    refusals: int = 0

    def fetch(self, first: int, last: int, topics: list[bytes], address: str | None = None) -> list[dict]:
        """The logs of blocks `first`..`last` with one of `topics` first, as store rows (plus `block_hash`).

        Raw JSON-RPC, not web3's formatted logs: formatting costs more than the request on a local node.
        """
        out: list[dict] = []
        start, successes = first, 0
        while start <= last:
            end = min(last, start + self.span - 1)
            params: dict = {"fromBlock": hex(start), "toBlock": hex(end), "topics": [["0x" + t.hex() for t in topics]]}
            if address is not None:
                params["address"] = address
            self.requests += 1
            try:
                logs = self.client.rpc("eth_getLogs", params)
            except ChainError as exc:
                if not refused(exc):
                    raise
                if end == start:
                    raise ChainError(f"{self.client.url} refuses eth_getLogs even for block {start} alone ({exc}): "
                                     "use a node without a result cap (your own, or an archive provider's)") from exc
                self.refusals += 1
                self.span, successes = max(1, (end - start + 1) // 2), 0
                continue
            out += [_row(log) for log in logs]
            start, successes = end + 1, successes + 1
            if successes >= self.grow_after:
                self.span, successes = min(self.max_span, self.span * 2), 0
        return out


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def _row(log: dict) -> dict:
    """A raw JSON-RPC log as a `LOGS_SCHEMA` row, with its block hash to check against the header."""
    return {"block_number": int(log["blockNumber"], 16), "tx_index": int(log["transactionIndex"], 16),
            "log_index": int(log["logIndex"], 16), "tx_hash": _bytes(log["transactionHash"]), "address": log["address"].lower(),
            "topics": [_bytes(t) for t in log["topics"]], "data": _bytes(log["data"]), "block_hash": _bytes(log["blockHash"])}


@dataclass
class CaptureReport:
    first: int
    last: int
    blocks: int  # captured by this run (a resumed run counts only what it added)
    logs: int
    chunks: int
    requests: int
    refusals: int
    seconds: float


def manifest_of(chain_id: int, first: int, dexes: list[DexConfig]) -> dict:
    return {"chain_id": chain_id, "from_block": first, "dexes": [dataclasses.asdict(d) for d in dexes]}


def capture(
    client: ChainClient,
    dexes: list[DexConfig],
    first: int,
    last: int,
    out: str,
    *,
    chunk_blocks: int = 500,
    batch: int = 50,
    fetcher: LogFetcher | None = None,
    progress: bool = True,
) -> CaptureReport:
    """Capture blocks `first`..`last` into the store at `out`, resuming what a previous run committed."""
    if not 0 < first <= last:
        raise ConfigError(f"--from must be >= 1 and <= --to, got {first}..{last}")
    head = client.block_number()
    if last > head:
        raise ConfigError(f"--to {last} is above the node's head {head}: capture only blocks the node has")
    if chunk_blocks < 1:
        raise ConfigError(f"chunk size must be >= 1 block, got {chunk_blocks}")
    fetcher = fetcher or LogFetcher(client)
    started = time.monotonic()
    with Store(out) as store:
        wanted = manifest_of(client.chain_id(), first, dexes)
        found = store.manifest()
        if found is None:
            pools, ticks = initial_state(client, fetcher, dexes, first - 1, progress)
            state = client.get_block(first - 1)
            store.commit_state({**wanted, "state_block_hash": bytes(state["hash"]).hex(), "state_header": {
                "parent_hash": bytes(state["parentHash"]).hex(), "base_fee": state.get("baseFeePerGas"),
                "gas_used": state["gasUsed"], "gas_limit": state["gasLimit"]}}, pools, ticks)
        elif {k: found.get(k) for k in wanted} != wanted:
            raise ConfigError(f"{out} holds a capture of chain {found['chain_id']} from block {found['from_block']} of DEXes "
                              f"{[d['factory'] for d in found['dexes']]}, not of chain {wanted['chain_id']} from block {first} "
                              f"of {[d.factory for d in dexes]}: resume it with its --from and --config, or pass a new --out")
        stored = load(out)
        tracked = tracked_pools(stored, dexes)
        parent = _last_hash(stored)
        start = stored.last_block + 1
        bar = tqdm(total=last - first + 1, initial=start - first, unit="block", desc="capturing", disable=not progress)
        logs = chunks = 0
        for a in range(start, last + 1, chunk_blocks):
            chunk = Chunk(a, min(last, a + chunk_blocks - 1))
            headers = fetch_headers(client, chunk, parent, batch)
            rows = select_logs(fetcher.fetch(chunk.first, chunk.last, ALL_TOPICS), tracked, dexes, headers)
            store.commit_chunk(chunk, headers, rows)
            parent = headers["hash"][-1].as_py()
            logs, chunks = logs + rows.num_rows, chunks + 1
            bar.update(chunk.last - chunk.first + 1)
            bar.set_postfix(logs=logs, span=fetcher.span)
        bar.close()
    return CaptureReport(first, last, max(0, last - start + 1), logs, chunks, fetcher.requests, fetcher.refusals,
                         time.monotonic() - started)


def _last_hash(stored: Capture) -> bytes:
    """The hash of the last committed block: the parent the next chunk must extend."""
    if not stored.chunks:
        return bytes.fromhex(stored.manifest["state_block_hash"])
    return stored.headers()["hash"][-1].as_py()


def fetch_headers(client: ChainClient, chunk: Chunk, parent: bytes, batch: int) -> pa.Table:
    """Headers of the chunk's blocks, in JSON-RPC batches; each must extend the one before (else the
    chain reorganised under the capture)."""
    rows = []
    for a in range(chunk.first, chunk.last + 1, batch):
        calls = [(RPCEndpoint("eth_getBlockByNumber"), [hex(n), False]) for n in range(a, min(chunk.last, a + batch - 1) + 1)]
        replies = client.call(cast(HTTPProvider, client.w3.provider).make_batch_request, calls)
        for reply in replies if isinstance(replies, list) else [replies]:
            block = reply.get("result")
            if not block:
                raise ChainError(f"{client.url} did not return a block in {calls[0][1][0]}..{calls[-1][1][0]}: {reply.get('error')}")
            number = int(block["number"], 16)
            if _bytes(block["parentHash"]) != parent:
                raise ChainError(f"block {number}'s parent is not the block {number - 1} captured before it: the chain "
                                 "reorganised during the capture; capture only finalized blocks (a --to some 64 blocks "
                                 "below the head) into a new --out")
            parent = _bytes(block["hash"])
            base_fee = block.get("baseFeePerGas")
            rows.append({"number": number, "hash": parent, "parent_hash": _bytes(block["parentHash"]),
                         "timestamp": int(block["timestamp"], 16), "base_fee": None if base_fee is None else int(base_fee, 16),
                         "gas_used": int(block["gasUsed"], 16), "gas_limit": int(block["gasLimit"], 16)})
    return pa.Table.from_pylist(rows, schema=HEADERS_SCHEMA)


def created_pool(dex: DexConfig, log: dict) -> tuple[str, str, str, int, int] | None:
    """(pool, token0, token1, fee_ppm, tick_spacing) from a factory's creation log (a store row); None
    for a V3 fee tier the config does not track."""
    topics, data = log["topics"], log["data"]
    token0, token1 = ("0x" + t[12:].hex() for t in topics[1:3])
    if dex.kind == V2:
        pool, _ = abi_decode(["address", "uint256"], data)
        return pool.lower(), token0, token1, dex.fee_bps * 100, 0
    fee = int.from_bytes(topics[3], "big")
    spacing, pool = abi_decode(["int24", "address"], data)
    return (pool.lower(), token0, token1, fee, spacing) if fee in dex.fees else None


def select_logs(raw: list[dict], tracked: dict[str, str], dexes: list[DexConfig], headers: pa.Table) -> pa.Table:
    """The tracked pools' logs and the creation logs of pools that start being tracked, in order.

    `tracked` (pool -> kind) grows as creation logs go by, so a pool's logs count from its creation on.
    """
    factories = {d.factory.lower(): d for d in dexes}
    hashes = dict(zip(headers["number"].to_pylist(), headers["hash"].to_pylist(), strict=True))
    rows = []
    for log in sorted(raw, key=lambda e: (e["block_number"], e["tx_index"], e["log_index"])):
        address, topic0 = log["address"], log["topics"][0]
        if log["block_hash"] != hashes[log["block_number"]]:
            raise ChainError(f"a log of block {log['block_number']} names another block hash than its header: the chain "
                             "reorganised during the capture; capture only finalized blocks into a new --out")
        dex = factories.get(address)
        if dex is not None and topic0 == CREATION_TOPIC[dex.kind]:
            pool = created_pool(dex, log)
            if pool is None:
                continue
            tracked[pool[0]] = dex.kind
        elif topic0 not in POOL_TOPICS.get(tracked.get(address, ""), ()):
            continue
        rows.append(log)
    return pa.Table.from_pylist(rows, schema=LOGS_SCHEMA)


def tracked_pools(stored: Capture, dexes: list[DexConfig]) -> dict[str, str]:
    """pool -> kind for the pools of the initial state and those created in the committed chunks."""
    pools = stored.pools()
    tracked = dict(zip(pools["address"].to_pylist(), pools["kind"].to_pylist(), strict=True))
    factories = {d.factory.lower(): d for d in dexes}
    for _, logs in stored.chunk_tables(columns=["address", "topics", "data"]):
        for log in logs.to_pylist():
            dex = factories.get(log["address"])
            if dex is not None and log["topics"][0] == CREATION_TOPIC[dex.kind]:
                pool = created_pool(dex, log)
                if pool is not None:
                    tracked[pool[0]] = dex.kind
    return tracked


def initial_state(
    client: ChainClient, fetcher: LogFetcher, dexes: Iterable[DexConfig], block: int, progress: bool
) -> tuple[pa.Table, pa.Table]:
    """(pools, ticks) tables: every tracked pool's state at the end of `block`."""
    pools: list[dict] = []
    ticks: list[dict] = []
    for dex in dexes:
        base = {"factory": dex.factory.lower(), "kind": dex.kind, "dex": dex.name}
        if not client.call(client.w3.eth.get_code, client.w3.to_checksum_address(dex.factory), block):
            continue  # the factory comes later: its pools appear through its creation logs
        if dex.kind == V2:
            for p in discover(client, [dex], block=block, progress=progress):
                pools.append({**base, "address": p.address, "token0": p.token0, "token1": p.token1,
                              "fee_ppm": dex.fee_bps * 100, "reserve0": str(p.reserve0), "reserve1": str(p.reserve1)})
            continue
        for log in fetcher.fetch(dex.from_block, block, [POOL_CREATED], address=dex.factory.lower()):
            created = created_pool(dex, log)
            if created is None:
                continue
            address, token0, token1, fee, spacing = created
            pool = artifacts.at(client.w3, "UniswapV3Pool", address).functions
            sqrt_price, tick, *_ = client.call(pool.slot0().call, block_identifier=block)  # 0: not initialized yet
            liquidity = client.call(pool.liquidity().call, block_identifier=block)
            pools.append({**base, "address": address, "token0": token0, "token1": token1, "fee_ppm": fee, "tick_spacing": spacing,
                          "sqrt_price_x96": str(sqrt_price), "tick": tick, "liquidity": str(liquidity)})
            ticks += _initialized_ticks(client, fetcher, address, log["block_number"], block)
    return pa.Table.from_pylist(pools, schema=POOLS_SCHEMA), pa.Table.from_pylist(ticks, schema=TICKS_SCHEMA)


def _initialized_ticks(client: ChainClient, fetcher: LogFetcher, pool: str, created: int, block: int) -> list[dict]:
    """TICKS_SCHEMA rows of the pool's initialized ticks at `block`: `scanner.chain.v3.initialized_ticks`'
    rule (every position's bounds come from a Mint; `ticks()` says which are still initialized), with
    the Mint logs read by the range-splitting fetcher, since a node may refuse the pool's whole history."""
    contract = artifacts.at(client.w3, "UniswapV3Pool", pool).functions
    mints = fetcher.fetch(created, block, [V3_MINT], address=pool)
    rows = []
    for tick in sorted({int.from_bytes(log["topics"][i], "big", signed=True) for log in mints for i in (2, 3)}):
        gross, net, *_, initialized = client.call(contract.ticks(tick).call, block_identifier=block)
        if initialized:
            rows.append({"pool": pool, "tick": tick, "liquidity_gross": str(gross), "liquidity_net": str(net)})
    return rows
