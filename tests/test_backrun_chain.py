"""Backruns on a real anvil: the mempool market, the pending watcher, aggregator and submitter cores wired
as the actors wire them; then the bad input a mempool brings (garbage, reverts, replacements, drops,
a trigger that is not mined, a flood)."""
from __future__ import annotations

import logging
import time

import pytest
from eth_utils import keccak
from web3 import HTTPProvider, Web3

from scanner.chain.anvil import searcher_key_file
from scanner.chain.discovery import discover
from scanner.chain.gas import GasOracleCore
from scanner.chain.mempool import PendingWatcherCore
from scanner.chain.pending_swaps import ROUTER_SWAP
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.config import DexConfig
from scanner.rank.aggregate import AggregatorCore, opportunity_dict
from scanner.sim.market import Market
from scanner.sim.spec import GWEI, MarketSpec
from scanner.submit.journal import BundleRecord, Journal, OpportunityRecord, OutcomeRecord, SimulationRecord
from scanner.submit.submitter import SubmitterCore, load_key
from scanner.wire.messages import PendingUpdate, PendingWithdraw

pytestmark = pytest.mark.chain


class Scanner:
    """A mempool market with every core of the scanner in this process; `step()` backruns during the window."""

    def __init__(self, node, tmp_path, seed: int = 3) -> None:
        self.market = Market(Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30})),
                             MarketSpec(seed=seed, mempool=True, mempool_window_s=0.2))
        self.dep = self.market.deploy()
        self.client = ChainClient(node.url)
        dexes = [DexConfig(name, factory, fee) for name, (factory, fee) in self.dep.factories.items()]
        self.registry = dict(enumerate(discover(self.client, dexes, progress=False)))
        self.watcher = PoolWatcherCore(self.client, self.registry, 0)
        self.gas = GasOracleCore(self.client, feeds=[self.dep.gas_feed])
        self.aggregator = AggregatorCore(self.registry, [self.dep.base], shards=1, top_n=3)
        self.aggregator.on_block(self.watcher.bootstrap())
        self.pending = PendingWatcherCore(self.client, self.registry)
        self.pending.start()
        self.journal_path = tmp_path / "journal.sqlite"
        account = load_key(None, str(searcher_key_file(tmp_path)))
        self.submitter = SubmitterCore(self.client, self.dep.executor, account, Journal(self.journal_path), send=True)
        self.block = self.watcher.tracker.head.number if self.watcher.tracker.head else 0

    def backrun(self) -> list[dict]:
        """What the actors do while the block's transactions wait: pending -> aggregator -> submitter."""
        for message in self.pending.poll():
            self.aggregator.on_pending(message)
        self.aggregator.rank_pending(budget_s=5.0)
        backruns = [opportunity_dict(o) for o in self.aggregator.backrun_opportunities(self.block)]
        self.submitter.handle_backruns(self.block, backruns)
        return backruns

    def step(self):
        summary = self.market.step(on_pending=self.backrun)
        gas = self.gas.poll()
        if gas is not None:
            self.aggregator.on_gas(gas)
        ranked = [rb for m in self.watcher.poll().messages for rb in self.aggregator.on_block(m)]
        self.block = ranked[-1].number
        self.submitter.handle(self.block, [opportunity_dict(o) for o in ranked[-1].opportunities])
        return summary


def test_backruns_of_pending_swaps_are_proven_to_the_wei_and_land_right_behind_their_trigger(anvil, tmp_path):
    scanner = Scanner(anvil, tmp_path)
    bids = []
    for _ in range(8):
        bids += scanner.step().bids
    scanner.market.step()
    scanner.submitter.check_pending()
    stats = scanner.submitter.stats
    assert stats.backruns_simulated >= 5 and stats.backruns_exact >= 5 and stats.backruns_sent >= 3, stats
    assert stats.backruns_landed + stats.backruns_beaten + stats.backruns_reverted == stats.backruns_sent, stats

    client, journal = scanner.client, Journal(scanner.journal_path)
    bundles = [r for (stage, oid) in journal._db.execute("SELECT stage, id FROM journal WHERE stage = 'bundle'")
               for r in journal.records(oid) if isinstance(r, BundleRecord)]
    assert len(bundles) >= stats.backruns_sent
    landed = 0
    for bundle in bundles:
        records = journal.records(bundle.id)
        opp, sim, outcome = (next(r for r in records if isinstance(r, t))
                             for t in (OpportunityRecord, SimulationRecord, OutcomeRecord))
        # Proven to the wei: the simulated trigger-then-ours pays exactly the predicted gross profit.
        assert sim.ok and sim.profit == opp.amounts[-1] - opp.amounts[0], (sim, opp)
        # eth_sendBundle's shape: the trigger's signed bytes, then ours, for the next block.
        assert len(bundle.txs) == 2 and "0x" + keccak(hexstr=bundle.txs[0]).hex() == bundle.trigger
        assert bundle.target_block == bundle.block + 1
        trigger_tx = client.rpc("eth_getTransactionByHash", bundle.trigger)
        assert bundle.max_fee < int(trigger_tx["maxFeePerGas"], 16)  # the node's fee order puts it after
        if outcome.status == "landed":  # two ordered transactions: the trigger first, in the same block
            ours = client.rpc("eth_getTransactionReceipt", outcome.tx_hash)
            theirs = client.rpc("eth_getTransactionReceipt", bundle.trigger)
            assert ours["blockNumber"] == theirs["blockNumber"]
            assert int(theirs["transactionIndex"], 16) < int(ours["transactionIndex"], 16)
            assert outcome.realized_profit and outcome.realized_profit > 0
            landed += 1
    assert landed == stats.backruns_landed >= 1
    # The competitors' bids, with the opportunity size a bid model needs, both kinds, larger for larger sizes.
    assert {b.kind for b in bids} == {"mined", "backrun"}
    big = [b.tip for b in bids if b.profit_wei > 1e16]
    small = [b.tip for b in bids if b.profit_wei < 1e15]
    assert big and small and sorted(big)[len(big) // 2] > sorted(small)[len(small) // 2]
    backrun_bids = [b for b in bids if b.kind == "backrun"]
    assert all(b.trigger and b.tip > 0 for b in backrun_bids)


def _send(client: ChainClient, sender: str, to: str, data: bytes, tip_gwei: float, nonce: int | None = None,
          max_fee_gwei: float = 50.0) -> str:
    tx = {"from": sender, "to": to, "data": "0x" + data.hex(), "gas": hex(300_000),
          "maxPriorityFeePerGas": hex(int(tip_gwei * GWEI)), "maxFeePerGas": hex(int(max_fee_gwei * GWEI))}
    if nonce is not None:
        tx["nonce"] = hex(nonce)
    return client.rpc("eth_sendTransaction", tx)


def test_bad_pending_input_is_skipped_counted_and_shed_without_touching_the_mined_path(anvil, tmp_path, caplog):
    scanner = Scanner(anvil, tmp_path, seed=4)
    market, client, pending = scanner.market, scanner.client, scanner.pending
    router, pool = scanner.dep.router, scanner.dep.pools[0]
    trader = market.traders[0]
    swap = scanner.market._router.encode_abi("swap", [pool.address, True, pool.fee_bps, 10**20, 0, trader])
    reverting = scanner.market._router.encode_abi("swap", [pool.address, True, pool.fee_bps, 10**18, 2**200, trader])
    nonce = client.w3.eth.get_transaction_count(trader, "pending")
    first = _send(client, trader, router, bytes.fromhex(swap[2:]), 5, nonce)
    _send(client, market.traders[1], router, ROUTER_SWAP + b"garbage", 5)  # a swap selector, garbage arguments
    _send(client, market.traders[2], router, b"\xde\xad\xbe\xef", 5)  # unknown calldata
    _send(client, market.traders[3], router, bytes.fromhex(reverting[2:]), 5)  # reverts: min out unreachable
    out = pending.poll()
    assert [m.trigger for m in out if isinstance(m, PendingUpdate)] == [first]
    assert pending.counts["undecodable"] == 1 and pending.counts["not_swap"] == 1
    assert pending.counts["would_revert"] == 1  # it decodes, but the exact math says it reverts: no post-state
    second = _send(client, trader, router, bytes.fromhex(swap[2:]), 9, nonce, max_fee_gwei=80)  # same nonce, more fee
    out = pending.poll()
    assert PendingWithdraw((first,), "replaced") in out
    assert [m.trigger for m in out if isinstance(m, PendingUpdate)] == [second]
    client.rpc("anvil_dropTransaction", second)
    market._rpc("evm_mine")
    out = pending.poll()
    assert PendingWithdraw((second,), "dropped") in out and len(pending.book) == 0

    # A backrun whose trigger is not mined with it: sent behind a pending swap that the node then drops.
    third = _send(client, trader, router, bytes.fromhex(swap[2:]), 5, nonce + 0)
    for message in pending.poll():
        scanner.aggregator.on_pending(message)
    head = pending.head
    scanner.aggregator.on_block(scanner.watcher.poll().messages[-1])
    scanner.aggregator.rank_pending(budget_s=5.0)
    backruns = [opportunity_dict(o) for o in scanner.aggregator.backrun_opportunities(head)]
    assert backruns and backruns[0]["trigger"] == third
    scanner.submitter.handle_backruns(head, backruns[:1])
    assert scanner.submitter.stats.backruns_sent == 1
    client.rpc("anvil_dropTransaction", third)
    market._rpc("evm_mine")
    scanner.submitter.check_pending()
    (oid,) = [o["id"] for o in backruns[:1]]
    outcome = Journal(scanner.journal_path).records(oid)[-1]
    assert isinstance(outcome, OutcomeRecord) and outcome.status == "reverted" and "not mined" in outcome.error

    # A flood of 10,000 pending transactions in one block: one poll reads its budget, sheds the rest (counted,
    # logged) in bounded time, while the mined-block path reads the next block as fast as ever.
    pending.poll()
    spammer = market.spammers[0]
    start = client.w3.eth.get_transaction_count(spammer, "pending")
    for chunk in range(0, 10_000, 1000):
        client.rpc_batch([("eth_sendTransaction", [{"from": spammer, "to": router, "value": "0x0", "gas": hex(21_000),
                                                    "nonce": hex(start + i), "maxPriorityFeePerGas": hex(GWEI),
                                                    "maxFeePerGas": hex(50 * GWEI)}])
                          for i in range(chunk, chunk + 1000)])
    # anvil's pending filter buffers ~2k hashes (the rest never reach a filter): poll its pool instead, the
    # watcher's fallback, which sees all 10,000 at once.
    pending.filter_id = None
    with caplog.at_level(logging.WARNING, logger="scanner.chain.mempool"):
        t0 = time.monotonic()
        pending.poll()
        flood_s = time.monotonic() - t0
    assert pending.counts["shed"] >= 10_000 - pending.max_per_poll, dict(pending.counts)
    assert any("shed" in r.message for r in caplog.records)
    assert flood_s < 10.0, flood_s
    market._rpc("evm_mine")
    t0 = time.monotonic()
    messages = scanner.watcher.poll().messages
    assert messages and time.monotonic() - t0 < 1.0
