"""SimSubmitter: proves the best opportunities of each block by simulation, journals everything.

It follows the aggregator's top-N stream like any client. When it falls behind it skips to the
newest block (an old ranking is worth nothing); a restart resumes after the last journaled block.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import ray

from actors.loop import ActorLoop, Metrics
from actors.ray_session import NAMESPACE
from scanner.chain.rpc import ChainClient
from scanner.config import LOCAL_CHAIN_ID, ChainConfig, SubmitterConfig
from scanner.serve.client import QueryTimeout, Subscriber
from scanner.submit.journal import Journal
from scanner.submit.submitter import SubmitterCore, load_key
from scanner.submit.tip import TipModel

log = logging.getLogger(__name__)


@ray.remote
class SimSubmitter:
    def __init__(self, chain: ChainConfig, rpc_url: str, submitter: SubmitterConfig, publish_endpoint: str,
                 v3_factories: list[str], aggregator: str = "aggregator", chain_name: str | None = None) -> None:
        self.aggregator = aggregator  # its chain's aggregator (the default chain's), which takes its gas calibration
        self.metrics = Metrics("submitter")
        self.client = ChainClient(rpc_url, timeout_s=chain.request_timeout_s, max_retries=chain.max_retries)
        self.config = submitter
        self.v3_factories = v3_factories
        self.account = load_key(os.environ.get(submitter.private_key_env), submitter.private_key_file)
        self.core: SubmitterCore | None = None  # built in the loop thread: SQLite connections stay on theirs
        self.subscriber = Subscriber(publish_endpoint, timeout_s=0.2, chain=chain_name)  # its own chain's blocks
        self.blocks = 0
        self.skipped = 0
        self.gas_model_sent = False
        self.loop = ActorLoop("submitter", self._step, 0.0)
        self.loop.start()

    def _open(self) -> None:
        cfg = self.config
        journal = Journal(cfg.journal)
        self.resume_after = journal.last_block() or -1
        # send_on_local_chain means what it says: anywhere but the local chain this only simulates
        # (SubmitterCore refuses, and its broadcast_guard checks again before every send).
        send = cfg.send_on_local_chain and self.client.chain_id() == LOCAL_CHAIN_ID
        tip_model = TipModel.load(cfg.tip_model) if cfg.tip_policy == "ev" else None
        self.core = SubmitterCore(self.client, cfg.executor, self.account, journal, top_k=cfg.top_k,
                                  send=send, tip_wei=int(cfg.tip_gwei * 10**9), tip_model=tip_model,
                                  on_calibrated=self._hand_over, v3_factories=self.v3_factories)
        self._seen = dataclasses.replace(self.core.stats)

    def _step(self) -> None:
        if self.core is None:
            self._open()
        latest = None
        try:
            latest = self.subscriber.recv()
            while True:  # behind? keep only the newest ranking
                latest, self.skipped = self.subscriber.recv(0.0), self.skipped + 1
        except QueryTimeout:
            pass
        if latest is not None and latest.block is not None and latest.block == self.resume_after:
            self.core.handle_backruns(latest.block, latest.opportunities)  # the block again, with new backruns
        if latest is None or latest.block is None or latest.block <= self.resume_after:
            self.core.check_pending()
            return
        self.resume_after = latest.block
        self.core.handle(latest.block, latest.opportunities)
        self.blocks += 1
        if self.core.gas_model is not None and not self.gas_model_sent:
            self._hand_over(self.core.gas_model)  # it did not get through when calibrated: again
        s, seen = self.core.stats, self._seen
        for result in ("landed", "beaten", "reverted"):
            self.metrics.count(self.metrics.simulations, getattr(s, result) - getattr(seen, result), result=result)
        self.metrics.count(self.metrics.simulations, s.simulation_ok - seen.simulation_ok, result="simulated_ok")
        self.metrics.count(self.metrics.simulations, (s.simulated - s.simulation_ok) - (seen.simulated - seen.simulation_ok),
                           result="simulated_failed")
        self._seen = dataclasses.replace(s)

    def _hand_over(self, model) -> None:
        """Calibration is control, not data: a Ray call to the aggregator, done once it has taken it
        (a restarted aggregator asks for it again through `stats`)."""
        try:
            ray.get(ray.get_actor(self.aggregator, namespace=NAMESPACE).set_gas_model.remote(model.base, model.per_hop),
                    timeout=5)
            self.gas_model_sent = True
        except Exception as e:  # the aggregator is restarting: again with the next block
            log.warning("submitter: gas calibration not handed over yet: %s", e)

    def health(self) -> dict:
        return self.loop.health()

    def stats(self) -> dict:
        base = {"role": "submitter", "blocks": self.blocks, "skipped": self.skipped, "journal": self.config.journal}
        if self.core is None:
            return base
        s = dataclasses.asdict(self.core.stats)
        s.pop("last_bundle")
        model = self.core.gas_model
        return base | {"sending": self.core.send, "chain_id": self.core.chain_id,
                       "gas_model": [model.base, model.per_hop] if model and self.gas_model_sent else None} | s

    def last_bundle(self) -> dict:
        return self.core.stats.last_bundle if self.core else {}

    def stop(self) -> None:
        self.loop.stop()
