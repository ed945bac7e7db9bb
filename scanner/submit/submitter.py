"""Simulated submission: prove the best opportunities with the executor, journal everything.

For each ranked block: `eth_call` and `eth_estimateGas` of `ArbExecutor.execute` at that block
(the call returns the realized profit, so it IS the simulation), the signed transaction and the
`eth_sendBundle` payload a relay would take. Only on the local chain (`LOCAL_CHAIN_ID`) may the best one
be sent, so that its outcome (landed, beaten by a competitor, reverted) becomes a label.

A backrun (an opportunity with a `trigger`: ranked on a pending transaction's post-state) is proven
by `eth_simulateV1` of the trigger, then ours, in one simulated block on the ranked block's state; its
bundle (trigger + ours) is journaled, and on the local chain ours is sent with fee caps below the
trigger's, so the node's fee-ordered block runs them in that order.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import TxParams

from scanner.chain import artifacts
from scanner.chain.follow import SWAP_TOPIC, V3_SWAP_TOPIC
from scanner.chain.rpc import ChainClient
from scanner.config import LOCAL_CHAIN_ID
from scanner.errors import ArbscanError, ChainError
from scanner.gas.fees import GasModel
from scanner.submit.calibrate import execute_args, execute_fn, measure
from scanner.submit.journal import (
    BundleRecord,
    Journal,
    OpportunityRecord,
    OutcomeRecord,
    PredictionRecord,
    SimulationRecord,
    TipRecord,
    scrub,
)
from scanner.submit.tip import TipModel

log = logging.getLogger(__name__)
GAS_HEADROOM = 1.2  # gas limit over the estimate: reserves moved by others cost a little more
# A backrun's gas comes from eth_simulateV1's gasUsed, which is net of the refunds (up to a fifth of
# the total) that the gas limit must still cover while the transaction runs.
BACKRUN_GAS_HEADROOM = 1.5
DROPPED_AFTER_BLOCKS = 5  # a sent transaction not mined this many blocks after its target: the node dropped it
BACKRUNS_REMEMBERED = 10_000  # triggers already handled (each pending transaction is backrun once)
GAS_SAMPLES = 32  # measured routes the gas model is fitted on (the first ones; then it is fixed)


class BroadcastRefused(ArbscanError):
    """A transaction was about to leave for a chain other than the local one."""


@dataclass
class Simulation:
    ok: bool
    profit: int | None
    gas_estimate: int | None
    error: str = ""


@dataclass
class SubmitStats:
    simulated: int = 0
    simulation_ok: int = 0
    exact: int = 0  # simulated profit == predicted gross profit, to the wei
    sent: int = 0
    landed: int = 0
    beaten: int = 0
    reverted: int = 0
    realized_profit: int = 0
    # Of the above, backruns of pending transactions (the rest were ranked on a mined block's state).
    backruns_simulated: int = 0
    backruns_exact: int = 0
    backruns_sent: int = 0
    backruns_landed: int = 0
    backruns_beaten: int = 0
    backruns_reverted: int = 0
    last_bundle: dict = field(default_factory=dict)


def load_key(env_value: str | None, file_path: str | None) -> LocalAccount:
    """The searcher's key from a file (preferred) or an environment variable; never printed."""
    if file_path:
        try:
            secret = open(file_path).read().strip()
        except OSError as e:
            raise ArbscanError(f"cannot read the private key file {file_path}: {e.strerror}") from None
    elif env_value:
        secret = env_value.strip()
    else:
        raise ArbscanError("no private key: set submitter.private_key_file, or the variable named by "
                           "submitter.private_key_env, to the searcher's key")
    try:
        return Account.from_key(secret)
    except Exception:
        raise ArbscanError("the configured private key is not a valid 32-byte hex key") from None


class SubmitterCore:
    """Simulates the top `top_k` opportunities of each ranked block; may send the best on the local chain."""

    def __init__(self, client: ChainClient, executor: str, account: LocalAccount, journal: Journal, *,
                 top_k: int = 3, send: bool = False, tip_wei: int = 2 * 10**9, tip_model: TipModel | None = None,
                 on_calibrated: Callable[[GasModel], None] | None = None, v3_factories: Sequence[str] = ()) -> None:
        self.client = client
        self.v3_factories = tuple(v3_factories)  # the factories whose pools a V3 hop may use
        self.account = account
        self.journal = journal
        self.top_k = top_k
        self.tip_wei = tip_wei  # the fixed policy's tip
        self.tip_model = tip_model  # given: the "ev" policy, each opportunity's tip maximizes expected profit
        self.chain_id = client.chain_id()
        if send and self.chain_id != LOCAL_CHAIN_ID:
            raise BroadcastRefused(f"submitter.send_on_local_chain is set but the node is chain {self.chain_id}, "
                                   f"not the local chain {LOCAL_CHAIN_ID}: arbscan only simulates there")
        self.send = send
        self.executor = artifacts.at(client.w3, "ArbExecutor", executor)
        self.stats = SubmitStats()
        self._nonce: int | None = None
        # tx hash -> (opportunity, block ranked, that block's records): a block's records are journaled
        # in one transaction once its outcome is known, so a crash never leaves half a block behind;
        # they are held in the journal meanwhile, so a restart picks up what its predecessor sent
        self._pending: dict[str, tuple[dict, int, list]] = {
            tx_hash: (opp, block, records) for tx_hash, opp, block, records in journal.held()}
        # (hops, gas) of the first GAS_SAMPLES measured V2 routes: one route's gas alone can mislead (a
        # first write to a storage slot costs 20k more), so the fit uses all of them
        self._gas_samples: list[tuple[int, int]] = []
        self.gas_model: GasModel | None = None  # calibrated once routes of two hop counts fit a rising line
        self.on_calibrated = on_calibrated  # called with it then (the actor hands it to the aggregator)
        self._backrun_done: OrderedDict[str, None] = OrderedDict()  # triggers handled, oldest first
        # Target block -> the lowest maxFeePerGas we sent for it: a node drops a sender's later nonce that
        # bids more than its earlier one, so each further transaction for that block bids at most this.
        self._max_fee_at: dict[int, int] = {}

    # -- per ranked block -----------------------------------------------------------------------
    def handle(self, block: int, opportunities: list[dict]) -> None:
        """Simulate the block's best opportunities and journal them: every stage of every one of them
        in one SQLite transaction, when the outcome of the one sent (if any) is known."""
        self.check_pending()
        best = [o for o in opportunities if not o.get("trigger")][: self.top_k]
        records: list = []
        sent = None
        for rank, opp in enumerate(best):
            records += [
                OpportunityRecord(opp["id"], block, list(opp["tokens"]), list(opp["pools"]),
                                  [opp["amount_in"], *opp["amounts"]], opp["gas_cost"], opp["net_profit"], opp["ev"]),
                PredictionRecord(opp["id"], block, opp["success_probability"], opp["expected_slippage"])]
            sim = self.simulate(opp, block)
            records.append(SimulationRecord(opp["id"], block, sim.ok, sim.profit, sim.gas_estimate, sim.error))
            if rank == 0 and sim.ok:
                outcome = self._submit(opp, block, sim, records)
                if isinstance(outcome, OutcomeRecord):
                    records.append(outcome)
                else:
                    sent = outcome
            else:
                records.append(OutcomeRecord(opp["id"], block, "not_sent"))
        if sent is not None:
            self._pending[sent] = (best[0], block, records)
            if len(best) > 1:
                self.journal.hold(sent, block, best[0], records)  # now with the other candidates' rows
        elif records:
            self.journal.write(*records)
        self.handle_backruns(block, opportunities)

    def handle_backruns(self, block: int, opportunities: list[dict]) -> None:
        """Prove and journal the best backrun of each pending trigger not handled yet (at most `top_k`
        triggers a call); send it on the local chain, right behind its trigger."""
        done = 0
        for opp in opportunities:
            trigger = opp.get("trigger")
            if not trigger or trigger in self._backrun_done or done == self.top_k:
                continue
            self._backrun_done[trigger] = None
            while len(self._backrun_done) > BACKRUNS_REMEMBERED:
                self._backrun_done.popitem(last=False)
            done += 1
            records: list = [
                OpportunityRecord(opp["id"], block, list(opp["tokens"]), list(opp["pools"]),
                                  [opp["amount_in"], *opp["amounts"]], opp["gas_cost"], opp["net_profit"], opp["ev"]),
                PredictionRecord(opp["id"], block, opp["success_probability"], opp["expected_slippage"])]
            sim, trigger_tx = self.simulate_backrun(opp, block)
            records.append(SimulationRecord(opp["id"], block, sim.ok, sim.profit, sim.gas_estimate, sim.error))
            outcome = self._submit(opp, block, sim, records, trigger_tx) if sim.ok and trigger_tx else \
                OutcomeRecord(opp["id"], block, "not_sent")
            if isinstance(outcome, OutcomeRecord):
                self.journal.write(*records, outcome)
            else:
                self._pending[outcome] = (opp, block, records)

    def simulate_backrun(self, opp: dict, block: int) -> tuple[Simulation, dict | None]:
        """The trigger, then our executor call, in one `eth_simulateV1` block on the state of `block`:
        our call's profit (which must equal the predicted gross profit to the wei) and gas used, and
        the trigger transaction as the node has it (None when it is no longer pending)."""
        self.stats.backruns_simulated += 1
        trigger = self.client.rpc("eth_getTransactionByHash", opp["trigger"])
        if trigger is None or trigger.get("blockNumber") is not None:
            return Simulation(False, None, None, f"trigger {opp['trigger']} is no longer pending (mined or dropped)"), None
        data = self.executor.encode_abi("execute", execute_args(opp, v3_factories=self.v3_factories))
        calls = [{"from": trigger["from"], "to": trigger["to"], "input": trigger["input"], "gas": trigger["gas"],
                  "value": trigger.get("value", "0x0")},
                 {"from": self.account.address, "to": self.executor.address, "input": data}]
        try:
            (result,) = self.client.rpc("eth_simulateV1", {"blockStateCalls": [{"calls": calls}]}, hex(block))
        except ChainError as e:
            return Simulation(False, None, None, scrub(str(e))), trigger
        first, ours = result["calls"]
        if int(first["status"], 16) != 1:
            return Simulation(False, None, None, f"the trigger {opp['trigger']} reverts on the state of block {block}"), trigger
        if int(ours["status"], 16) != 1:
            reason = ours.get("error", {}).get("message", "reverted") if isinstance(ours.get("error"), dict) else "reverted"
            return Simulation(False, None, None, scrub(f"the backrun reverts after its trigger: {reason}")), trigger
        profit = int(ours["returnData"], 16)
        self.stats.backruns_exact += profit == opp["gross_profit"]
        self.stats.simulated += 1
        self.stats.simulation_ok += 1
        self.stats.exact += profit == opp["gross_profit"]
        return Simulation(True, profit, int(int(ours["gasUsed"], 16) * BACKRUN_GAS_HEADROOM / GAS_HEADROOM)), trigger

    def simulate(self, opp: dict, block: int) -> Simulation:
        """eth_call of the executor at `block` from the searcher, and its gas as the next block runs it."""
        sim = self._simulate(opp, block)
        # Counted once done (calibration handed over included), in an order that keeps
        # exact <= simulation_ok <= simulated for a reader on another thread at every moment.
        self.stats.simulated += 1
        self.stats.simulation_ok += sim.ok
        self.stats.exact += sim.ok and sim.profit == opp["gross_profit"]
        return sim

    def _simulate(self, opp: dict, block: int) -> Simulation:
        fn = execute_fn(self.client.w3, self.executor.address, opp, v3_factories=self.v3_factories)
        try:
            profit = self._profit_at(fn, block, opp["gross_profit"])
            gas = self._gas_at(opp, block)
        except ContractLogicError as e:
            return Simulation(False, None, None, scrub(artifacts.describe_revert("ArbExecutor", e)))
        except (Web3RPCError, ValueError, ChainError) as e:
            return Simulation(False, None, None, scrub(str(e)))
        if self.gas_model is None and len(self._gas_samples) < GAS_SAMPLES \
                and all(kind == "uniswap-v2" for kind in opp.get("kinds") or ()):  # the model prices V2 hops
            self._calibrate(len(opp["pools"]), gas)
        return Simulation(True, profit, gas)

    def _calibrate(self, hops: int, gas: int) -> None:
        """Add a measured route; fit the gas model once the samples span two hop counts. A fit that
        the samples refuse (gas falling with hops) waits for more samples; with GAS_SAMPLES and still
        no fit, the ranker keeps the default model (said once in the log)."""
        self._gas_samples.append((hops, gas))
        if len({h for h, _ in self._gas_samples}) < 2:
            return
        try:
            self.gas_model = GasModel.calibrate(self._gas_samples)
        except ValueError as e:
            if len(self._gas_samples) == GAS_SAMPLES:
                log.warning("submitter: no gas calibration from %d measured routes, the default model stays: %s",
                            GAS_SAMPLES, e)
            return
        if self.on_calibrated is not None:
            self.on_calibrated(self.gas_model)

    def _profit_at(self, fn, block: int, predicted: int) -> int:
        """The executor's profit in an eth_call at `block`.

        anvil answers a call at its head block from the state of the block it is mining, so a call
        that met a mining block can see the next block's pools: when the answer disagrees with the
        prediction (or reverts) and `block` is history by now (or becomes it within half a second on the
        local chain), the call is made again. On a node with consistent reads it answers the same.
        """
        call = lambda: int(self.client.call(fn.call, {"from": self.account.address}, block_identifier=block))  # noqa: E731
        try:
            profit = call()
        except ContractLogicError:
            if not self._became_history(block):
                raise
            return call()
        return call() if profit != predicted and self._became_history(block) else profit

    def _gas_at(self, opp: dict, block: int) -> int:
        """The route's gas as the block after `block` runs it, read again once `block` is history when
        the first estimate fails (the same head-block read as in `_profit_at`: competitors' trades of
        the block being mined can make it revert)."""
        estimate = lambda: measure(self.client, self.executor.address, self.account.address, [opp], block,  # noqa: E731
                                   self.v3_factories)[0][1]
        try:
            return estimate()
        except ChainError:
            if not self._became_history(block):
                raise
            return estimate()

    def _became_history(self, block: int) -> bool:
        """Whether a later block than `block` is the head (or, on the local chain, becomes it within 0.5 s)."""
        wait_s = 0.5 if self.chain_id == LOCAL_CHAIN_ID else 0.0
        deadline = time.monotonic() + wait_s
        while True:
            if self.client.block_number() > block:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def fee_caps(self, block: int, base_fee: int, trigger: dict | None = None, tip: int | None = None) -> tuple[int, int]:
        """(maxPriorityFeePerGas, maxFeePerGas) of our transaction for block + 1: `tip` (the fixed one when
        None), kept below a `trigger`'s fee cap (the node orders its pool by maxFeePerGas, ties by arrival) and
        at most what we already sent for that block (a sender's later nonce may not bid more than its earlier one)."""
        tip = self.tip_wei if tip is None else tip
        max_fee = 2 * base_fee + tip
        ceiling = self._max_fee_ceiling(block, trigger)
        if ceiling is not None:
            max_fee = min(max_fee, ceiling)
        return min(tip, max_fee), max_fee

    def _max_fee_ceiling(self, block: int, trigger: dict | None) -> int | None:
        """The highest maxFeePerGas we may bid for block + 1 (None: no limit), as `fee_caps` says why."""
        caps = [int(trigger.get("maxFeePerGas") or trigger["gasPrice"], 16) - 1] if trigger is not None else []
        caps += [self._max_fee_at[block + 1]] if block + 1 in self._max_fee_at else []
        return min(caps) if caps else None

    def choose_tip(self, opp: dict, block: int, sim: Simulation, base_fee: int, trigger: dict | None = None) -> TipRecord:
        """The tip to bid: the fixed one, or (with a tip model) the one maximizing P(win | tip, size)·(profit −
        gas·(base fee + tip)) − P(lose)·gas·(base fee + tip), a beaten route reverting at its final profit
        check after its swaps (so it burns about its whole gas). Size and costs in ETH wei."""
        if self.tip_model is None:
            return TipRecord(opp["id"], block, "fixed", self.tip_wei)
        gas = cast(int, sim.gas_estimate)
        ceiling = self._max_fee_ceiling(block, trigger)
        size = max(cast(int, sim.profit) * float(opp.get("eth_per_token", 1.0)), 1.0)
        choice = self.tip_model.best_tip(size, gas, base_fee, gas, None if ceiling is None else max(0, ceiling - base_fee))
        return TipRecord(opp["id"], block, "ev", choice.tip, choice.p_win, choice.expected_value)

    def bundle(self, opp: dict, block: int, gas_limit: int, base_fee: int,
               trigger: dict | None = None, tip: int | None = None) -> tuple[str, dict]:
        """The signed transaction and the `eth_sendBundle` request that targets block + 1; behind a pending
        `trigger` (its node transaction), the bundle is [trigger, ours] and our fee caps stay below its own."""
        tip, max_fee = self.fee_caps(block, base_fee, trigger, tip)
        before = [self.client.rpc("eth_getRawTransactionByHash", trigger["hash"])] if trigger is not None else []
        if self._nonce is None:
            self._nonce = self.client.call(self.client.w3.eth.get_transaction_count, self.account.address, "pending")
        fn = execute_fn(self.client.w3, self.executor.address, opp, min_profit=1, v3_factories=self.v3_factories)
        tx = fn.build_transaction(cast(TxParams, {
            "from": self.account.address, "nonce": self._nonce, "gas": gas_limit, "chainId": self.chain_id,
            "maxPriorityFeePerGas": tip, "maxFeePerGas": max_fee,
        }))
        raw = self.account.sign_transaction(cast(dict[str, Any], tx)).raw_transaction.to_0x_hex()
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle",
                   "params": [{"txs": [*before, raw], "blockNumber": hex(block + 1)}]}
        return raw, payload

    def _submit(self, opp: dict, block: int, sim: Simulation, records: list | tuple = (),
                trigger: dict | None = None) -> OutcomeRecord | str:
        """Build the bundle and, on the local chain, send it: the outcome if final, else the tx hash.

        The transaction is held in the journal before it leaves (write-ahead), so being killed right
        after the send cannot lose it: the restarted submitter finds and resolves it. A backrun's bundle
        is journaled too (appended to `records`), and so is the tip chosen; under the "ev" policy an opportunity
        whose expected profit is not positive at any tip is not sent."""
        head = self.client.get_block("latest")
        if sim.gas_estimate is None or sim.profit is None:  # only ok simulations (which have both) are submitted
            raise TypeError(f"simulation of {opp['id']} has no gas estimate or profit")
        base_fee = int(head["baseFeePerGas"])
        chosen = self.choose_tip(opp, block, sim, base_fee, trigger)
        raw, payload = self.bundle(opp, block, int(sim.gas_estimate * GAS_HEADROOM), base_fee, trigger, chosen.tip)
        self.stats.last_bundle = payload
        fees = self.fee_caps(block, base_fee, trigger, chosen.tip)
        chosen = replace(chosen, tip=fees[0])  # what is bid: a trigger's fee cap may hold a fixed tip lower
        if isinstance(records, list):
            if trigger is not None:
                records.append(BundleRecord(opp["id"], block, trigger["hash"], payload["params"][0]["txs"], block + 1, *fees))
            records.append(chosen)
        if chosen.expected_value is not None and chosen.expected_value <= 0:
            return OutcomeRecord(opp["id"], block, "not_sent", error=f"expected profit {chosen.expected_value / 1e18:.6f} ETH "
                                                                    "at the best tip: not worth a bid")
        if not self.send:
            return OutcomeRecord(opp["id"], block, "not_sent")
        self.broadcast_guard()
        tx_hash = "0x" + keccak(hexstr=raw).hex()
        self.journal.hold(tx_hash, block, opp, list(records))
        try:
            sent_hash = self.client.call(self.client.w3.eth.send_raw_transaction, raw).to_0x_hex()
        except (Web3RPCError, ValueError) as e:
            self._nonce = None  # re-read: the node may not have taken this nonce
            self.journal.release(tx_hash)
            return OutcomeRecord(opp["id"], block, "not_sent", error=scrub(str(e)))
        if sent_hash != tx_hash:
            raise RuntimeError(f"the node names the sent transaction {sent_hash}, its signed bytes hash to {tx_hash}")
        self._nonce = cast(int, self._nonce) + 1  # bundle() set it
        self._max_fee_at[block + 1] = fees[1]
        while len(self._max_fee_at) > DROPPED_AFTER_BLOCKS:
            del self._max_fee_at[min(self._max_fee_at)]
        self.stats.sent += 1
        self.stats.backruns_sent += trigger is not None
        return tx_hash

    def broadcast_guard(self) -> None:
        """Refuse to send anything unless the node is (still) the local chain."""
        chain_id = self.client.chain_id()
        if chain_id != LOCAL_CHAIN_ID:
            raise BroadcastRefused(f"refusing to broadcast on chain {chain_id}: only the local chain "
                                   f"{LOCAL_CHAIN_ID} may receive transactions from arbscan")

    def check_pending(self) -> None:
        """Journal the outcome of every sent transaction that has been mined (or that the node dropped)."""
        head = None
        for tx_hash, (opp, block, records) in list(self._pending.items()):
            receipt = self.client.call(self.client.w3.eth.get_transaction_receipt, tx_hash) \
                if self._mined(tx_hash) else None
            if receipt is None:
                head = self.client.block_number() if head is None else head
                if head - block > DROPPED_AFTER_BLOCKS:
                    # Gone from the node's pool (a restarted node forgets it): its nonce is free again.
                    del self._pending[tx_hash]
                    self._nonce = None
                    self.journal.write(*records, OutcomeRecord(opp["id"], block, "not_sent", None, tx_hash,
                                                               f"not mined within {DROPPED_AFTER_BLOCKS} blocks"),
                                       release=tx_hash)
                continue
            del self._pending[tx_hash]
            backrun = bool(opp.get("trigger"))
            if receipt["status"] == 1:
                arb = self.executor.events.Arb().process_receipt(receipt)
                profit = int(arb[0]["args"]["profit"]) if arb else None
                self.stats.landed += 1
                self.stats.backruns_landed += backrun
                self.stats.realized_profit += profit or 0
                self.journal.write(*records, OutcomeRecord(opp["id"], block, "landed", profit, tx_hash), release=tx_hash)
            else:
                missing = self._trigger_missing(opp, receipt) if backrun else ""
                status = "beaten" if not missing and self._touched_first(opp, receipt, opp.get("trigger")) else "reverted"
                setattr(self.stats, status, getattr(self.stats, status) + 1)
                if backrun:
                    setattr(self.stats, f"backruns_{status}", getattr(self.stats, f"backruns_{status}") + 1)
                self.journal.write(*records, OutcomeRecord(opp["id"], block, status, 0, tx_hash, missing), release=tx_hash)

    def _mined(self, tx_hash: str) -> bool:
        reply = self.client.rpc("eth_getTransactionReceipt", tx_hash)
        return reply is not None

    def _touched_first(self, opp: dict, receipt, trigger: str | None = None) -> bool:
        """Did another transaction (not our backrun's `trigger`) swap one of our pools earlier in the same block?"""
        logs = self.client.get_logs({"blockHash": receipt["blockHash"], "topics": [[SWAP_TOPIC, V3_SWAP_TOPIC]],
                                     "address": [to_checksum_address(p) for p in opp["pools"]]})
        return any(int(entry["transactionIndex"]) < int(receipt["transactionIndex"])
                   and _hex(entry["transactionHash"]) != trigger for entry in logs)

    def _trigger_missing(self, opp: dict, receipt) -> str:
        """Why a reverted backrun ran without its trigger before it ("" when the trigger did run first)."""
        trigger = self.client.rpc("eth_getTransactionReceipt", opp["trigger"])
        if trigger is None:
            return f"trigger {opp['trigger']} was not mined with it"
        if trigger["blockHash"] != _hex(receipt["blockHash"]):
            return f"trigger {opp['trigger']} was mined in block {int(trigger['blockNumber'], 16)}, not with it"
        if int(trigger["transactionIndex"], 16) > int(receipt["transactionIndex"]):
            return f"trigger {opp['trigger']} was mined after it"
        return ""


def _hex(value) -> str:
    return value.to_0x_hex() if hasattr(value, "to_0x_hex") else str(value)
