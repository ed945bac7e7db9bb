"""`arbscan capture` against a real anvil: canonical Uniswap V2 pairs, a fee fork's pairs and canonical
V3 pools, captured into Parquet and checked against the node itself.

The chain (built once per module): pools with liquidity, blocks of swaps from several accounts
(several transactions per block), more pools created inside the captured range, and a stretch of
empty blocks so the kill test has many chunks to be killed in.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from web3 import HTTPProvider, Web3

from actors.cli import build_parser
from scanner.chain import artifacts
from scanner.chain.anvil import Anvil
from scanner.chain.discovery import PoolLens, discover
from scanner.chain.follow import ShardState
from scanner.chain.rpc import ChainClient
from scanner.chain.v3 import create_pool, deploy_factory, read_pool, send
from scanner.config import Config, DexConfig, dump
from scanner.errors import ChainError, ConfigError
from scanner.history.capture import ALL_TOPICS, POOL_TOPICS, V3, LogFetcher, capture
from scanner.history.store import Capture, Store, load

pytestmark = pytest.mark.chain
REPO = Path(__file__).resolve().parents[1]
SQRT_PRICE_1 = 2**96


@dataclass
class Chain:
    anvil: Anvil
    w3: Web3
    dexes: list[DexConfig]
    v3_pools: list[str]
    config: Path
    first: int  # the first captured block: some pools exist before it, others are created after it


def _add_pools(w3: Web3, factories: list, pairs: list[tuple[int, int, int]], tokens: list, v3: dict, pools: list) -> None:
    """V2 pairs (factory, token, token) with liquidity, and one V3 pool with a position (automine on)."""
    for f, a, b in pairs:
        send(w3, factories[f].functions.createPair(tokens[a].address, tokens[b].address))
        pair = factories[f].functions.getPair(tokens[a].address, tokens[b].address).call()
        for t in (a, b):
            send(w3, tokens[t].functions.transfer(pair, 10**24 * (1 + t)))
        send(w3, artifacts.at(w3, "UniswapV2Pair", pair).functions.mint(w3.eth.accounts[0]))
        pools.append((artifacts.at(w3, "UniswapV2Pair", pair), (30, 25)[f]))
    fee = (3000, 500)[len(v3["pools"]) % 2]
    v3["pools"].append(create_pool(w3, v3["factory"], tokens[0].address, tokens[1].address, fee, SQRT_PRICE_1))
    send(w3, v3["harness"].functions.mint(v3["pools"][-1].address, -1200, 1200, 10**21), gas=2_000_000)


def _trade(anvil: Anvil, w3: Web3, router, pools: list, v3: dict, rng: random.Random, blocks: int) -> None:
    """Blocks of swaps from several accounts (one transaction each per block), V3 swaps every few blocks."""
    anvil.set_automine(False)
    for n in range(blocks):
        for sender in w3.eth.accounts[1:1 + rng.randint(0, 5)]:
            pair, fee_bps = rng.choice(pools)
            router.functions.swap(pair.address, rng.random() < 0.5, fee_bps, rng.randint(1, 10**21), 0, sender).transact(
                {"from": sender, "gas": 300_000})
        if n % 4 == 0:
            pool = rng.choice(v3["pools"])
            v3["harness"].functions.swap(pool.address, rng.random() < 0.5, 10**18, 0).transact(
                {"from": w3.eth.accounts[0], "gas": 2_000_000})
        anvil.mine(1)
    anvil.set_automine(True)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    anvil = Anvil.start()
    try:
        w3 = Web3(HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
        me, rng = w3.eth.accounts[0], random.Random(15)
        tokens = [artifacts.deploy(w3, "TestToken", s, s, 18) for s in ("TKA", "TKB", "TKC")]
        router = artifacts.deploy(w3, "SimRouter")
        for token in tokens:
            for account in w3.eth.accounts[:6]:
                send(w3, token.functions.mint(account, 10**30))
                send(w3, token.functions.approve(router.address, 2**256 - 1), account)
        factories = [artifacts.deploy(w3, "UniswapV2Factory", me), artifacts.deploy(w3, "FeeFactory", me, 25)]
        v3 = {"factory": deploy_factory(w3), "harness": artifacts.deploy(w3, "V3Harness"), "pools": []}
        for token in tokens:
            send(w3, token.functions.mint(v3["harness"].address, 10**40))
        pools: list = []
        _add_pools(w3, factories, [(0, 0, 1), (1, 0, 1), (0, 1, 2)], tokens, v3, pools)
        _trade(anvil, w3, router, pools, v3, rng, 10)
        first = w3.eth.block_number + 1
        _trade(anvil, w3, router, pools, v3, rng, 10)
        _add_pools(w3, factories, [(1, 1, 2), (0, 0, 2)], tokens, v3, pools)  # created inside the range
        _trade(anvil, w3, router, pools, v3, rng, 30)
        w3.provider.make_request("anvil_mine", [hex(1500)])  # web3's 30 s timeout: slow on a busy machine
        _trade(anvil, w3, router, pools, v3, rng, 5)
        dexes = [DexConfig("uniswap-v2", factories[0].address.lower(), 30), DexConfig("fork", factories[1].address.lower(), 25),
                 DexConfig("uniswap-v3", v3["factory"].address.lower(), kind=V3, fees=[500, 3000])]
        config = tmp_path_factory.mktemp("config") / "capture.toml"
        config.write_text(dump(Config(dexes=dexes)))
        yield Chain(anvil, w3, dexes, [p.address.lower() for p in v3["pools"]], config, first)
    finally:
        anvil.stop()


def _capture(chain: Chain, out: Path, to: int | None = None, **kwargs) -> Capture:
    client = ChainClient(chain.anvil.url)
    capture(client, chain.dexes, chain.first, to or chain.w3.eth.block_number, str(out), progress=False, **kwargs)
    return load(out)


def _same(a: Capture, b: Capture) -> None:
    """Row for row: the state, every header and every log."""
    for table in ("pools", "ticks", "headers", "logs"):
        assert getattr(a, table)().equals(getattr(b, table)()), table
    assert a.last_block == b.last_block


def test_capture_equals_what_the_node_says(chain, tmp_path):
    w3, head = chain.w3, chain.w3.eth.block_number
    stored = _capture(chain, tmp_path / "c", chunk_blocks=97)
    assert len(stored.chunks) == -(-(head - chain.first + 1) // 97) and stored.last_block == head

    # Pools: every pair the factories had at first - 1 with its reserves then; V3 with slot0, liquidity, ticks.
    pools = stored.pools().to_pylist()
    lens = PoolLens(ChainClient(chain.anvil.url))
    v2 = [p for p in pools if p["kind"] == "uniswap-v2"]
    assert 0 < len(v2) < len(_pairs_at(w3, chain, head)) and [(int(p["reserve0"]), int(p["reserve1"])) for p in v2] == lens.reserves_of(
        [p["address"] for p in v2], chain.first - 1)[1]
    (v3,) = [p for p in pools if p["kind"] == V3]
    on_chain = read_pool(w3, v3["address"], chain.first - 1)
    assert (int(v3["sqrt_price_x96"]), v3["tick"], int(v3["liquidity"])) == (on_chain.sqrt_price_x96, on_chain.tick, on_chain.liquidity)
    assert {r["tick"]: (int(r["liquidity_gross"]), int(r["liquidity_net"])) for r in stored.ticks().to_pylist()} == on_chain.ticks

    # Logs: exactly what eth_getLogs gives for the factories and every pool, in (block, tx, log) order.
    all_pools = {p["address"] for p in pools} | {p.address.lower() for p in _pairs_at(w3, chain, head)} | set(chain.v3_pools)
    addresses = [Web3.to_checksum_address(a) for a in sorted(all_pools | {d.factory.lower() for d in chain.dexes})]
    direct = w3.eth.get_logs({"fromBlock": chain.first, "toBlock": head, "address": addresses,
                              "topics": [["0x" + t.hex() for t in ALL_TOPICS]]})
    logs = stored.logs().to_pylist()
    assert [(r["block_number"], r["tx_index"], r["log_index"], r["address"], r["topics"], r["data"]) for r in logs] == [
        (e["blockNumber"], e["transactionIndex"], e["logIndex"], e["address"].lower(), [bytes(t) for t in e["topics"]],
         bytes(e["data"])) for e in direct]
    assert sorted(logs, key=lambda r: (r["block_number"], r["tx_index"], r["log_index"])) == logs
    assert {r["address"] for r in logs if bytes(r["topics"][0]) in POOL_TOPICS[V3]} == set(chain.v3_pools)

    # Headers: every block, as the node has it.
    headers = stored.headers().to_pylist()
    assert [h["number"] for h in headers] == list(range(chain.first, head + 1))
    for h in headers[:: max(1, len(headers) // 40)] + headers[-1:]:
        block = w3.eth.get_block(h["number"])
        assert (h["hash"], h["parent_hash"], h["timestamp"], h["base_fee"], h["gas_used"], h["gas_limit"]) == (
            bytes(block["hash"]), bytes(block["parentHash"]), block["timestamp"], block["baseFeePerGas"],
            block["gasUsed"], block["gasLimit"])

    # Replay: the state at first - 1 plus every Sync gives each V2 pool's reserves at the head, to the unit.
    state = ShardState({p["address"]: (int(p["reserve0"]), int(p["reserve1"])) for p in v2}, history_blocks=1)
    state.reserves |= {p.address.lower(): (0, 0) for p in _pairs_at(w3, chain, head) if p.address.lower() not in state.reserves}
    for block in stored.blocks():
        state.apply_logs(block.header.number, block.logs)
    addresses = sorted(state.reserves)
    assert [state.reserves[a] for a in addresses] == lens.reserves_of(addresses, head)[1]


def _pairs_at(w3: Web3, chain: Chain, block: int):
    v2 = [d for d in chain.dexes if d.kind == "uniswap-v2"]
    return discover(ChainClient(chain.anvil.url), v2, block=block, progress=False)


class RefusingClient(ChainClient):
    """A node that refuses eth_getLogs over more than `limit` blocks, with geth's error reply."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(url)
        self.limit = limit
        self.widest = 0
        forward = self.w3.provider.make_request

        def make_request(method, params):
            if method == "eth_getLogs":
                width = int(params[0]["toBlock"], 16) - int(params[0]["fromBlock"], 16) + 1
                if width > self.limit:
                    return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "query returned more than 10000 results"}}
                self.widest = max(self.widest, width)
            return forward(method, params)

        self.w3.provider.make_request = make_request  # type: ignore[method-assign]


def test_a_refused_range_is_halved_and_the_result_is_the_same(chain, tmp_path):
    head = chain.w3.eth.block_number
    reference = _capture(chain, tmp_path / "whole", chunk_blocks=2000)
    client = RefusingClient(chain.anvil.url, limit=37)
    fetcher = LogFetcher(client, span=1000)
    capture(client, chain.dexes, chain.first, head, str(tmp_path / "split"), chunk_blocks=2000, fetcher=fetcher, progress=False)
    _same(reference, load(tmp_path / "split"))
    assert fetcher.refusals > 0 and 18 < client.widest <= 37  # it grew back up to the node's limit after splitting

    with pytest.raises(ChainError, match="even for block"):
        LogFetcher(RefusingClient(chain.anvil.url, limit=0)).fetch(chain.first, chain.first + 3, ALL_TOPICS)
    with pytest.raises(ChainError, match="Invalid"):  # not a refusal: raised as it is, not split
        LogFetcher(ChainClient(chain.anvil.url)).fetch(chain.first, chain.first, [b"\x00"])


def _run_capture(chain: Chain, out: Path, to: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "actors.cli", "capture", "--rpc", chain.anvil.url, "--config", str(chain.config),
           "--from", str(chain.first), "--to", str(to), "--out", str(out), "--chunk-blocks", "13", "--json"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_at_any_point_and_restarted_it_ends_with_the_same_data(chain, tmp_path):
    head = chain.w3.eth.block_number
    reference = _capture(chain, tmp_path / "whole", chunk_blocks=13)
    out, rng, kills = tmp_path / "killed", random.Random(15), 0
    while kills < 3:
        proc = _run_capture(chain, out, head)
        try:
            target = len(list(out.glob("headers-*"))) + rng.randint(1, 12)
            while proc.poll() is None and len(list(out.glob("headers-*"))) < target:
                time.sleep(rng.uniform(0, 0.02))
            if proc.poll() is not None:
                break
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
    assert kills == 3, "the capture finished before it could be killed three times: capture more blocks"
    assert load(out).last_block < head
    proc = _run_capture(chain, out, head)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    _same(reference, load(out))
    assert not list(out.glob("*.tmp"))

    # A crash between a chunk's logs and its headers leaves an orphan logs file and a temp file: both go.
    resumed = tmp_path / "orphans"
    _capture(chain, resumed, to=chain.first + 40, chunk_blocks=13)
    (resumed / f"logs-{chain.first + 41}-{chain.first + 53}.parquet").write_bytes(b"half a file")
    (resumed / f"headers-{chain.first + 41}-{chain.first + 53}.parquet.tmp").write_bytes(b"half a file")
    _same(reference, _capture(chain, resumed, chunk_blocks=13))


def test_resuming_with_other_arguments_is_refused(chain, tmp_path):
    _capture(chain, tmp_path / "c", to=chain.first + 5)
    client = ChainClient(chain.anvil.url)
    with pytest.raises(ConfigError, match="resume it with its --from"):
        capture(client, chain.dexes, chain.first + 1, chain.first + 9, str(tmp_path / "c"), progress=False)
    with pytest.raises(ConfigError, match="above the node's head"):
        capture(client, chain.dexes, chain.first, 10**9, str(tmp_path / "c"), progress=False)
    with pytest.raises(ConfigError, match="no capture"):
        load(tmp_path / "nothing")


def test_capture_help_says_how_to_use_it():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = sub.choices["capture"].format_help()  # type: ignore[union-attr]
    for words in ("--rpc", "--from", "--to", "--out", "--config", "resumes", "finalized", "load(DIR)"):
        assert words in text


def test_one_writer_per_store(tmp_path):
    with Store(tmp_path / "c"):
        with pytest.raises(ConfigError, match="another capture is writing"):
            Store(tmp_path / "c")
    with Store(tmp_path / "c"):  # released with its holder
        pass
