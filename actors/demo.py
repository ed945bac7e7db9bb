"""`arbscan demo`: a local chain, the simulated market, a local Ray and every actor, live.

Everything it starts it stops again (anvil by PID, Ray with `ray.shutdown()`), also on Ctrl-C.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from web3 import HTTPProvider, Web3

from scanner.serve.client import QueryClient
from scanner.config import ChainConfig, Config, dump, DexConfig, SocketsConfig, SubmitterConfig, TokensConfig
from scanner.rank.display import ranking_table
from scanner.errors import ArbscanError
from scanner.chain.anvil import Anvil, free_port, searcher_key_file
from scanner.sim.market import Deployment, Market, MarketSpec


def local_config(node: Anvil, dep: Deployment, journal: Path, key_file: Path,
                 sockets: SocketsConfig | None = None) -> Config:
    """The configuration `arbscan run` would read for this local market (free query ports by default)."""
    return Config(
        chain=ChainConfig(rpc_url=node.url, ws_url=node.ws_url, chain_id=31337, poll_interval_s=0.1),
        dexes=[DexConfig(name, factory, fee) for name, (factory, fee) in dep.factories.items()],
        tokens=TokensConfig(base=[dep.base], price_oracle=dep.price_oracle),
        sockets=sockets or SocketsConfig(query=f"tcp://127.0.0.1:{free_port()}", publish=f"tcp://127.0.0.1:{free_port()}"),
        submitter=SubmitterConfig(executor=dep.executor, journal=str(journal), private_key_file=str(key_file)),
    )


def attach_ray(address: str | None, config: Config):
    """Attach to the Ray cluster at `address` (or RAY_ADDRESS), else start a private local one.

    A local Ray keeps its dashboard on `ray.dashboard_host` (loopback by default) with Ray's
    token authentication on.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        from actors.launcher import check_ray_address

        check_ray_address(address)  # an address that answers nothing: a clear error now, not minutes of retries
        try:
            return ray.init(address=address, namespace="arbscan", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ArbscanError(f"no Ray cluster answers at {address!r}: {e}") from None
    # address="local": always a new private instance, never another Ray that happens to run here.
    return ray.init(address="local", num_cpus=config.ray.num_cpus or max(2, os.cpu_count() or 2), include_dashboard=True,
                    dashboard_host=config.ray.dashboard_host, dashboard_port=0, log_to_driver=False)


def wait_for_block(client: QueryClient, number: int, timeout_s: float = 3.0):
    """The served ranking once it has reached block `number` (or the latest after the timeout)."""
    deadline = time.monotonic() + timeout_s
    top = client.top(n=10)
    while (top.block is None or top.block < number) and time.monotonic() < deadline:
        time.sleep(0.02)
        top = client.top(n=10)
    return top


def run_demo(blocks: int | None, seed: int, interval_s: float, out_dir: Path) -> int:
    import ray

    from actors.launcher import launch

    out_dir = out_dir / time.strftime("%Y%m%d-%H%M%S")  # a fresh journal per run: chains restart at block 0
    out_dir.mkdir(parents=True, exist_ok=True)
    node = Anvil.start()
    pipeline = None
    try:
        print(f"local chain {node.url} (anvil, chain id 31337); deploying the market, seed {seed} ...", file=sys.stderr)
        market = Market(Web3(HTTPProvider(node.url)), MarketSpec(seed=seed))
        dep = market.deploy()
        print("starting a local Ray ...", file=sys.stderr)
        ctx = attach_ray(None, Config())
        # Ports are picked after Ray has started its own processes, so none of them can take ours first.
        config = local_config(node, dep, out_dir / "journal.sqlite", searcher_key_file(out_dir))
        (out_dir / "config.toml").write_text(dump(config))
        symbols = {addr: sym for sym, addr in dep.tokens.items()}
        pipeline = launch(config, symbols=symbols)
        print(f"Ray dashboard: http://{ctx.dashboard_url}  (token auth: the token is in ~/.ray/auth_token)")
        print(f"query API: {pipeline.endpoints['query']}   top-N stream: {pipeline.endpoints['publish']}")
        print(f"actors: {', '.join(pipeline.actors)}   pools: {len(pipeline.pools)}   run folder: {out_dir}")
        for note in pipeline.notes:
            print(f"note: {note}")
        client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
        total = blocks if blocks is not None else 10**9

        def show(summary) -> None:
            top = wait_for_block(client, summary.number)
            print(f"\n{summary.line()}\n{ranking_table(top.block, top.opportunities)}", flush=True)

        market.run(total, interval_s=interval_s, on_block=show)
        stats = pipeline.stats()
        agg = stats.get("aggregator", {})
        sub = stats.get("submitter", {})
        print(f"\ndone: {agg.get('blocks_ranked', 0)} blocks ranked, {agg.get('shard_timeouts', 0)} shard timeouts, "
              f"inference model: {stats.get('inference', {}).get('model')}")
        print(f"submitter: {sub.get('simulated', 0)} simulated ({sub.get('exact', 0)} exact to the wei), "
              f"{sub.get('sent', 0)} sent: {sub.get('landed', 0)} landed, {sub.get('beaten', 0)} beaten, "
              f"{sub.get('reverted', 0)} reverted; journal {sub.get('journal')}")
        return 0
    finally:
        if pipeline is not None:
            pipeline.stop()
        if ray.is_initialized():
            ray.shutdown()
        node.stop()
