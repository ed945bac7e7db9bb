"""Simulated submission: prove the best opportunities with the executor, journal everything.

For each ranked block: `eth_call` and `eth_estimateGas` of `ArbExecutor.execute` at that block
(the call returns the realized profit, so it IS the simulation), the signed transaction and the
`eth_sendBundle` payload a relay would take. Only on the local chain (id 31337) may the best one
be sent, so that its outcome (landed, beaten by a competitor, reverted) becomes a label.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3.exceptions import ContractLogicError, Web3RPCError

from scanner import contracts
from scanner.chain import ChainClient
from scanner.errors import ArbscanError, ChainError
from scanner.gas import GasModel
from scanner.gascal import execute_fn, measure
from scanner.journal import Journal, OpportunityRecord, OutcomeRecord, PredictionRecord, SimulationRecord, scrub
from scanner.localchain import LOCAL_CHAIN_ID
from scanner.watch import SWAP_TOPIC

log = logging.getLogger(__name__)
GAS_HEADROOM = 1.2  # gas limit over the estimate: reserves moved by others cost a little more


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
    """Simulates the top `top_k` opportunities of each ranked block; may send the best on chain 31337."""

    def __init__(self, client: ChainClient, executor: str, account: LocalAccount, journal: Journal, *,
                 top_k: int = 3, send: bool = False, tip_wei: int = 2 * 10**9) -> None:
        self.client = client
        self.account = account
        self.journal = journal
        self.top_k = top_k
        self.tip_wei = tip_wei
        self.chain_id = client.chain_id()
        if send and self.chain_id != LOCAL_CHAIN_ID:
            raise BroadcastRefused(f"submitter.send_on_local_chain is set but the node is chain {self.chain_id}, "
                                   f"not the local chain {LOCAL_CHAIN_ID}: arbscan only simulates there")
        self.send = send
        self.executor = contracts.at(client.w3, "ArbExecutor", executor)
        self.stats = SubmitStats()
        self._nonce: int | None = None
        self._pending: dict[str, tuple[dict, int]] = {}  # tx hash -> (opportunity, block ranked)
        self._gas_samples: dict[int, int] = {}  # hops -> the first measured route's gas
        self.gas_model: GasModel | None = None  # calibrated once routes of two hop counts were measured

    # -- per ranked block -----------------------------------------------------------------------
    def handle(self, block: int, opportunities: list[dict]) -> None:
        self.check_pending()
        best = opportunities[: self.top_k]
        for rank, opp in enumerate(best):
            self.journal.write(
                OpportunityRecord(opp["id"], block, list(opp["tokens"]), list(opp["pools"]),
                                  [opp["amount_in"], *opp["amounts"]], opp["gas_cost"], opp["net_profit"], opp["ev"]),
                PredictionRecord(opp["id"], block, opp["success_probability"], opp["expected_slippage"]))
            sim = self.simulate(opp, block)
            self.journal.write(SimulationRecord(opp["id"], block, sim.ok, sim.profit, sim.gas_estimate, sim.error))
            if rank == 0 and sim.ok:
                self._submit(opp, block, sim)
            else:
                self.journal.write(OutcomeRecord(opp["id"], block, "not_sent"))

    def simulate(self, opp: dict, block: int) -> Simulation:
        """eth_call of the executor at `block` from the searcher, and its gas as the next block runs it."""
        fn = execute_fn(self.client.w3, self.executor.address, opp)
        self.stats.simulated += 1
        try:
            profit = int(self.client.call(fn.call, {"from": self.account.address}, block_identifier=block))
            ((_, gas),) = measure(self.client, self.executor.address, self.account.address, [opp], block)
        except ContractLogicError as e:
            return Simulation(False, None, None, scrub(contracts.describe_revert("ArbExecutor", e)))
        except (Web3RPCError, ValueError, ChainError) as e:
            return Simulation(False, None, None, scrub(str(e)))
        self.stats.simulation_ok += 1
        self.stats.exact += profit == opp["gross_profit"]
        self._gas_samples.setdefault(len(opp["pools"]), gas)
        if self.gas_model is None and len(self._gas_samples) >= 2:
            self.gas_model = GasModel.calibrate(self._gas_samples.items())
        return Simulation(True, profit, gas)

    def bundle(self, opp: dict, block: int, gas_limit: int, base_fee: int) -> tuple[str, dict]:
        """The signed transaction and the `eth_sendBundle` request that targets block + 1."""
        if self._nonce is None:
            self._nonce = self.client.call(self.client.w3.eth.get_transaction_count, self.account.address, "pending")
        fn = execute_fn(self.client.w3, self.executor.address, opp, min_profit=1)
        tx = fn.build_transaction({
            "from": self.account.address, "nonce": self._nonce, "gas": gas_limit, "chainId": self.chain_id,
            "maxPriorityFeePerGas": self.tip_wei, "maxFeePerGas": 2 * base_fee + self.tip_wei,
        })
        raw = self.account.sign_transaction(tx).raw_transaction.to_0x_hex()
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle",
                   "params": [{"txs": [raw], "blockNumber": hex(block + 1)}]}
        return raw, payload

    def _submit(self, opp: dict, block: int, sim: Simulation) -> None:
        head = self.client.get_block("latest")
        raw, payload = self.bundle(opp, block, int(sim.gas_estimate * GAS_HEADROOM), int(head["baseFeePerGas"]))
        self.stats.last_bundle = payload
        if not self.send:
            self.journal.write(OutcomeRecord(opp["id"], block, "not_sent"))
            return
        self.broadcast_guard()
        try:
            tx_hash = self.client.call(self.client.w3.eth.send_raw_transaction, raw).to_0x_hex()
        except (Web3RPCError, ValueError) as e:
            self._nonce = None  # re-read: the node may not have taken this nonce
            self.journal.write(OutcomeRecord(opp["id"], block, "not_sent", error=scrub(str(e))))
            return
        self._nonce += 1
        self.stats.sent += 1
        self._pending[tx_hash] = (opp, block)

    def broadcast_guard(self) -> None:
        """Refuse to send anything unless the node is (still) the local chain."""
        chain_id = self.client.chain_id()
        if chain_id != LOCAL_CHAIN_ID:
            raise BroadcastRefused(f"refusing to broadcast on chain {chain_id}: only the local chain "
                                   f"{LOCAL_CHAIN_ID} may receive transactions from arbscan")

    def check_pending(self) -> None:
        """Journal the outcome of every sent transaction that has been mined."""
        for tx_hash, (opp, block) in list(self._pending.items()):
            receipt = self.client.call(self.client.w3.eth.get_transaction_receipt, tx_hash) \
                if self._mined(tx_hash) else None
            if receipt is None:
                continue
            del self._pending[tx_hash]
            if receipt["status"] == 1:
                arb = self.executor.events.Arb().process_receipt(receipt)
                profit = int(arb[0]["args"]["profit"]) if arb else None
                self.stats.landed += 1
                self.stats.realized_profit += profit or 0
                self.journal.write(OutcomeRecord(opp["id"], block, "landed", profit, tx_hash))
            else:
                status = "beaten" if self._touched_first(opp, receipt) else "reverted"
                setattr(self.stats, status, getattr(self.stats, status) + 1)
                self.journal.write(OutcomeRecord(opp["id"], block, status, 0, tx_hash))

    def _mined(self, tx_hash: str) -> bool:
        reply = self.client.rpc("eth_getTransactionReceipt", tx_hash)
        return reply is not None

    def _touched_first(self, opp: dict, receipt) -> bool:
        """Did another transaction swap one of our pools earlier in the same block?"""
        logs = self.client.get_logs({"blockHash": receipt["blockHash"], "topics": [SWAP_TOPIC],
                                     "address": [to_checksum_address(p) for p in opp["pools"]]})
        return any(int(entry["transactionIndex"]) < int(receipt["transactionIndex"]) for entry in logs)
