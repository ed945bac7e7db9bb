"""The submitter on a real anvil: a transaction it sent is never lost, even if it dies right after."""
from __future__ import annotations

import pytest
from web3 import HTTPProvider, Web3

from scanner.chain.anvil import searcher_key_file
from scanner.chain.discovery import discover
from scanner.chain.gas import GasOracleCore
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.config import DexConfig
from scanner.rank.aggregate import AggregatorCore, opportunity_dict
from scanner.sim.market import Market, MarketSpec
from scanner.submit.journal import Journal, OutcomeRecord
from scanner.submit.submitter import SubmitterCore, load_key

pytestmark = pytest.mark.chain


class Ranker:
    """The market with the watcher, gas oracle and aggregator cores wired as the actors wire them."""

    def __init__(self, node) -> None:
        self.market = Market(Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30})), MarketSpec(seed=3))
        self.dep = self.market.deploy()
        self.client = ChainClient(node.url)
        dexes = [DexConfig(name, factory, fee) for name, (factory, fee) in self.dep.factories.items()]
        registry = dict(enumerate(discover(self.client, dexes, progress=False)))
        self.watcher = PoolWatcherCore(self.client, registry, 0, price_oracle=self.dep.price_oracle)
        self.gas = GasOracleCore(self.client, feeds=[self.dep.gas_feed])
        self.aggregator = AggregatorCore(registry, [self.dep.base], shards=1, top_n=3)
        self.aggregator.on_block(self.watcher.bootstrap())

    def step(self) -> tuple[int, list[dict]]:
        """Mine a market block; its number and ranked opportunities (as the query API serves them)."""
        self.market.step()
        gas = self.gas.poll()
        if gas is not None:
            self.aggregator.on_gas(gas)
        ranked = [rb for m in self.watcher.poll().messages for rb in self.aggregator.on_block(m)]
        return ranked[-1].number, [opportunity_dict(o) for o in ranked[-1].opportunities]


def test_a_transaction_sent_just_before_the_submitter_dies_is_journaled_by_its_successor(anvil, tmp_path):
    scanner = Ranker(anvil)
    account = load_key(None, str(searcher_key_file(tmp_path)))
    path = tmp_path / "journal.sqlite"
    first = SubmitterCore(scanner.client, scanner.dep.executor, account, Journal(path), top_k=3, send=True)
    for _ in range(30):  # bounded: the market has a profitable route within a few blocks
        block, opportunities = scanner.step()
        first.handle(block, opportunities)
        if first.stats.sent:
            break
    assert first.stats.sent == 1, first.stats
    (tx_hash,) = first._pending
    sent_opp, sent_block, _ = first._pending[tx_hash]
    with Journal(path) as journal:  # nothing of that block is journaled yet: its outcome is unknown
        assert journal.records(sent_opp["id"]) == [] and [h for h, *_ in journal.held()] == [tx_hash]
    # The first submitter dies here (never checks its pending transaction); a new one opens the journal.
    second = SubmitterCore(scanner.client, scanner.dep.executor, account, Journal(path), top_k=3, send=True)
    assert list(second._pending) == [tx_hash]
    scanner.market.step()  # mines the transaction
    second.check_pending()
    with Journal(path) as journal:
        records = journal.records(sent_opp["id"])
        assert journal.held() == []
    outcome = records[-1]
    assert isinstance(outcome, OutcomeRecord) and outcome.tx_hash == tx_hash and outcome.block == sent_block
    receipt = scanner.client.w3.eth.get_transaction_receipt(tx_hash)
    assert (outcome.status == "landed") == (receipt["status"] == 1), (outcome, receipt["status"])
    assert outcome.status in ("landed", "beaten", "reverted"), outcome
    assert [type(r).__name__ for r in records] == ["OpportunityRecord", "PredictionRecord", "SimulationRecord",
                                                   "TipRecord", "OutcomeRecord"]
