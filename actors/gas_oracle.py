"""GasOracle: the gas market after each block of one chain (its own fee rules, and on an L2 the
values its L1 fee is computed from), published over ZMQ PUB to every subscriber."""
from __future__ import annotations

import ray
import zmq

from actors.loop import ActorLoop, Metrics
from actors.pipeline import ChainRun
from actors.ray_session import bind_address, remember_address
from scanner.chain.gas import GasOracleCore
from scanner.chain.rpc import ChainClient
from scanner.config import ChainConfig, GasConfig


@ray.remote
class GasOracle:
    def __init__(self, chain: ChainConfig, rpc_url: str, gas: GasConfig, bind: str, key: str,
                 network: ChainRun = ChainRun()) -> None:
        self.role = network.actor("gas-oracle")
        self.metrics = Metrics(self.role)
        client = ChainClient(rpc_url, timeout_s=chain.request_timeout_s, max_retries=chain.max_retries)
        self.core = GasOracleCore(client, history_blocks=gas.history_blocks, percentiles=tuple(gas.percentiles),
                                  feeds=gas.feeds, rules=network.rules, l1_fee=network.l1_fee)
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.sndhwm = 100
        self.pub.linger = 0
        self.pub.bind(bind_address(bind, key))
        self.endpoint = remember_address(key, self.pub.getsockopt_string(zmq.LAST_ENDPOINT))
        self.last = None
        self.loop = ActorLoop(self.role, self._step, chain.poll_interval_s)
        self.loop.start()

    def _step(self) -> None:
        update = self.core.poll()
        if update is not None:
            self.pub.send(update.encode())
            self.last = update
            self.metrics.count(self.metrics.blocks, 1)

    def endpoints(self) -> dict[str, str]:
        return {"gas": self.endpoint}

    def health(self) -> dict:
        return self.loop.health()

    def stats(self) -> dict:
        u = self.last
        return {"role": self.role, "block": u.number if u else None, "base_fee": u.base_fee if u else None,
                "next_base_fee": u.next_base_fee if u else None, "tips": list(u.tips) if u else None}

    def stop(self) -> None:
        self.loop.stop()
