"""Two chains at once on real parts: two anvils (the second an OP-stack one with the canonical fee
predeploys), two simulated markets, a local Ray with every chain's actors, one query server.

Each chain is ranked with its own fee rules, rows name their chain, `top` filters by chain, the
OP-stack chain's routes are charged the L1 data fee of their executor call; and when one chain's
node goes away only that chain degrades: the other keeps ranking and health names the stopped one.
"""
from __future__ import annotations

import time
from contextlib import ExitStack

import pytest
import ray

from actors.demo import chains_config, local_config, searcher_key_file, start_chain
from actors.launcher import launch
from scanner.gas.fees import OPTIMISM, next_base_fee
from scanner.gas.l1fee import TxEnvelope
from scanner.serve.client import QueryClient
from scanner.sim.market import Market, MarketSpec
from scanner.submit.calibrate import execute_calldata

pytestmark = pytest.mark.ray


def wait_ranked(client: QueryClient, chain: str, number: int, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        top = client.top(n=20, chain=chain)
        if (top.block is not None and top.block >= number) or time.monotonic() > deadline:
            return top
        time.sleep(0.02)


def test_two_chains_rank_apart_and_one_node_going_away_degrades_only_its_chain(local_ray, tmp_path):
    with ExitStack() as stack:
        (main_node, main_w3, _), (op_node, op_w3, oracle) = start_chain(stack, 0), start_chain(stack, 1)
        assert oracle is not None
        markets = {"main": Market(main_w3, MarketSpec(seed=5)), "op": Market(op_w3, MarketSpec(seed=6))}
        deployments = {name: m.deploy() for name, m in markets.items()}
        configs = [local_config(node, deployments[name], tmp_path / f"{name}.sqlite", searcher_key_file(tmp_path))
                   for node, name in ((main_node, "main"), (op_node, "op"))]
        config = chains_config(configs, ["main", "op"])
        pipeline = launch(config, progress=False)
        stack.callback(pipeline.stop)
        assert {"aggregator@main", "aggregator@op", "gas-oracle@op", "watcher-0@op", "inference"} <= set(pipeline.actors)
        client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
        rows = {"main": [], "op": []}
        for _ in range(5):
            for name, market in markets.items():
                number = market.step().number
                top = wait_ranked(client, name, number)
                assert top.block == number, (name, number, top.block)
                assert all(o["chain"] == name for o in top.opportunities)
                rows[name] += [(number, o) for o in top.opportunities]
        assert rows["main"] and rows["op"]
        merged = client.top(n=50)
        assert set(merged.blocks) == {"main", "op"} and {o["chain"] for o in merged.opportunities} == {"main", "op"}
        assert [o["ev"] for o in merged.opportunities] == sorted((o["ev"] for o in merged.opportunities), reverse=True)

        # Ethereum rules on one, no L1 fee; OP's rules on the other, and each route's L1 data fee is
        # exactly what the canonical oracle answers for its call to that chain's executor (gas price = next
        # base fee + tip).
        for _, o in rows["main"]:
            assert o["l1_fee"] == 0 and o["gas_cost"] == o["gas_units"] * o["gas_price"]
        for number, o in rows["op"]:
            header = op_w3.eth.get_block(number)
            tip = o["gas_price"] - next_base_fee(header["baseFeePerGas"], header["gasUsed"], header["gasLimit"], OPTIMISM)
            assert tip >= 0
            envelope = TxEnvelope(31338, bytes.fromhex(config.chains[1].executor[2:]), o["gas_units"], o["gas_price"], tip)
            v3 = [d.factory for d in config.chains[1].dexes if d.kind == "uniswap-v3"]
            assert o["l1_fee"] > 0 and o["l1_fee"] == oracle.l1_fee(envelope.unsigned(execute_calldata(o, v3_factories=v3)))
            assert o["gas_cost"] == o["gas_units"] * o["gas_price"] + o["l1_fee"]  # WETH: 1 wei per wei
            assert o["net_profit"] == o["gross_profit"] - o["gas_cost"]

        # The OP node goes away: the main chain keeps ranking, health names the stopped chain.
        op_node.stop()
        last = None
        for _ in range(3):
            last = markets["main"].step().number
            assert wait_ranked(client, "main", last).block == last
        deadline = time.monotonic() + 30
        health = client.health()
        while health.chains.get("op", "ok") == "ok" and time.monotonic() < deadline:
            time.sleep(0.5)
            health = client.health()
        assert health.status == "degraded" and health.chains["main"] == "ok" and health.chains["op"] != "ok", health
        assert any("@op" in r for r in health.reasons) and not any("@main" in r for r in health.reasons), health.reasons
        number = markets["main"].step().number
        assert wait_ranked(client, "main", number).block == number
        assert ray.get(pipeline.actors["aggregator@main"].stats.remote())["chain"] == "main"
