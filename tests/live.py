"""A deployed market with the whole pipeline on it, for tests that drive real parts end to end,
and a finder for the processes a test started (by a tag in their environment)."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import ray
from web3 import HTTPProvider, Web3

from actors.demo import local_config
from actors.launcher import launch
from scanner.chain import artifacts
from scanner.chain.anvil import searcher_key_file
from scanner.serve.client import QueryClient, QueryTimeout, Subscriber
from scanner.sim.market import Market, MarketSpec


class Live:
    """A deployed market, the whole pipeline on it, a query client and a subscriber to the top-N stream."""

    def __init__(self, node, tmp_path: Path, spec: MarketSpec | None = None, **chain) -> None:
        self.node = node
        self.w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        self.market = Market(self.w3, spec or MarketSpec(seed=5))
        self.dep = self.market.deploy()
        self.key_file = searcher_key_file(tmp_path)
        config = local_config(node, self.dep, tmp_path / "journal.sqlite", self.key_file)
        self.config = dataclasses.replace(config, chain=dataclasses.replace(config.chain, **chain))
        symbols = {addr: sym for sym, addr in self.dep.tokens.items()}
        self.pipeline = launch(self.config, symbols=symbols, progress=False)
        self.client = QueryClient(self.pipeline.endpoints["query"], timeout_s=5.0)
        self.sub = Subscriber(self.pipeline.endpoints["publish"], timeout_s=10.0)
        self.streamed: list = []  # every Top the stream delivered, in order
        self.executor = artifacts.at(self.w3, "ArbExecutor", self.dep.executor)
        time.sleep(0.5)  # PUB/SUB slow joiner

    @property
    def journal(self) -> Path:
        return Path(self.config.submitter.journal)

    def actor(self, name: str):
        return self.pipeline.actors[name]

    def drain(self) -> list:
        """Everything the stream has delivered since the last call."""
        new = []
        while True:
            try:
                new.append(self.sub.recv(0.0))
            except QueryTimeout:
                break
        self.streamed += new
        return new

    def served(self, number: int, timeout_s: float = 15.0):
        """Wait until the query API serves block `number` (or later); the Top, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                top = self.client.top(n=10)
            except QueryTimeout:
                top = None
            if top is not None and top.block is not None and top.block >= number:
                return top
            time.sleep(0.02)
        return None

    def step(self, wait: bool = True):
        summary = self.market.step()
        if wait:
            assert self.served(summary.number), f"block {summary.number} was not ranked in time"
        return summary

    def head(self) -> int:
        return self.w3.eth.block_number

    def canonical(self, number: int) -> str:
        return self.w3.eth.get_block(number)["hash"].to_0x_hex()

    def exact(self, block: int, opportunity: dict) -> bool:
        """The executor's eth_call at `block` makes exactly the predicted gross profit."""
        fn = self.executor.functions.execute([Web3.to_checksum_address(p) for p in opportunity["pools"]],
                                             opportunity["zero_for_one"], opportunity["fees_bps"],
                                             opportunity["amount_in"], 0)
        try:
            return fn.call({"from": self.market.searcher}, block_identifier=block) == opportunity["gross_profit"]
        except Exception:  # reverted: the pools were not what the ranking assumed
            return False

    def pools_match_chain(self) -> bool:
        """The aggregator ranks with exactly the chain's reserves of every pool (call with the chain idle)."""
        state = ray.get(self.actor("aggregator").pool_state.remote())
        chain = {p.address.lower(): tuple(r) for p, r in zip(self.dep.pools, self.market.reserves())}
        assert state["block"] == self.head()
        return {a.lower(): tuple(r) for a, r in state["reserves"].items()} == chain

    def close(self) -> None:
        self.sub.close()
        self.client.close()
        self.pipeline.stop()


def tagged_processes(tag: str) -> list[int]:
    """PIDs of the processes whose environment holds `tag`: what a test started, children included."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids
