"""`arbscan demo`: a local chain, the simulated market, a local Ray and every actor, live.

Everything it starts it stops again (anvil by PID, Ray with `ray.shutdown()`), also on Ctrl-C.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from web3 import HTTPProvider, Web3

from actors.ray_session import attach_ray, token_hint
from scanner.chain.anvil import Anvil, searcher_key_file
from scanner.config import LOCAL_CHAIN_ID, ChainConfig, Config, DexConfig, SocketsConfig, SubmitterConfig, TokensConfig, dump
from scanner.rank.display import ranking_table
from scanner.serve.client import QueryClient
from scanner.sim.market import Market
from scanner.sim.spec import Deployment, MarketSpec
from scanner.submit.journal import BundleRecord, Journal


def local_config(node: Anvil, dep: Deployment, journal: Path, key_file: Path,
                 sockets: SocketsConfig | None = None) -> Config:
    """The configuration `arbscan run` would read for this local market (ports the OS picks by default):
    every V2 DEX, and the V3 factory with the fee tiers its pools use when the market has V3 pools."""
    return Config(
        chain=ChainConfig(rpc_url=node.url, ws_url=node.ws_url, chain_id=LOCAL_CHAIN_ID, poll_interval_s=0.1),
        dexes=[DexConfig(name, factory, fee) for name, (factory, fee) in dep.factories.items()]
        + ([DexConfig("uniswap-v3", dep.v3_factory, kind="uniswap-v3", fees=dep.v3_fees)] if dep.v3_factory else []),
        tokens=TokensConfig(base=[dep.base], price_oracle=dep.price_oracle),
        sockets=sockets or SocketsConfig(query="tcp://127.0.0.1:*", publish="tcp://127.0.0.1:*"),
        submitter=SubmitterConfig(executor=dep.executor, journal=str(journal), private_key_file=str(key_file)),
    )


def wait_for_block(client: QueryClient, number: int, timeout_s: float = 3.0):
    """The served ranking once it has reached block `number` (or the latest after the timeout)."""
    deadline = time.monotonic() + timeout_s
    top = client.top(n=10)
    while (top.block is None or top.block < number) and time.monotonic() < deadline:
        time.sleep(0.02)
        top = client.top(n=10)
    return top


def backrun_line(block: int, backruns: list[dict], bundles: list[BundleRecord]) -> str:
    """One demo line per block: backruns found on the pending transactions of the block just mined (ranked
    on the state of `block`), and the bundles journaled for the block before it (outcome known) with their tips."""
    found = "none found on pending transactions"
    if backruns:
        best = max(backruns, key=lambda o: o["ev"])
        found = (f"{len(backruns)} on {len({o['trigger'] for o in backruns})} pending txs, best EV "
                 f"{best['ev'] / 1e18:.5f} ETH behind {best['trigger'][:10]}…")
    sent = ", ".join(f"{b.trigger[:10]}… tip {b.tip / 10**9:.2f} gwei (max fee {b.max_fee / 10**9:.2f})" for b in bundles)
    return f"backruns: {found}" + (f"\n  bundles sent on block {block - 1}: {sent}" if sent else "")


def outcome_counts(sub: dict) -> str:
    """Won / beaten / reverted of the sent transactions, mined-state and pending-state apart."""
    pending = {k: sub.get(f"backruns_{k}", 0) for k in ("sent", "landed", "beaten", "reverted")}
    mined = {k: sub.get(k, 0) - pending[k] for k in pending}
    return "; ".join(f"{name}: {c['sent']} sent, {c['landed']} won, {c['beaten']} beaten, {c['reverted']} reverted"
                     for name, c in (("mined-state", mined), ("pending-state (backruns)", pending)))


def run_demo(blocks: int | None, seed: int, interval_s: float, out_dir: Path, mempool: bool = True) -> int:
    """The demo; with `mempool` the market's transactions wait in the pool and the scanner backruns them."""
    import ray

    from actors.launcher import launch

    out_dir = out_dir / time.strftime("%Y%m%d-%H%M%S")  # a fresh journal per run: chains restart at block 0
    out_dir.mkdir(parents=True, exist_ok=True)
    node = Anvil.start()
    pipeline = None
    try:
        print(f"local chain {node.url} (anvil, chain id {LOCAL_CHAIN_ID}); deploying the market, seed {seed} ...", file=sys.stderr)
        market = Market(Web3(HTTPProvider(node.url)), MarketSpec.with_v3(
            seed=seed, mempool=mempool, mempool_window_s=min(0.5, interval_s / 2)))
        dep = market.deploy()
        print("starting a local Ray ...", file=sys.stderr)
        ctx = attach_ray(None, Config())
        config = local_config(node, dep, out_dir / "journal.sqlite", searcher_key_file(out_dir))
        (out_dir / "config.toml").write_text(dump(config))
        symbols = {addr: sym for sym, addr in dep.tokens.items()}
        pipeline = launch(config, symbols=symbols, pending=mempool)
        print(f"Ray dashboard: http://{ctx.dashboard_url}  (token auth: {token_hint()})")
        print(f"query API: {pipeline.endpoints['query']}   top-N stream: {pipeline.endpoints['publish']}")
        print(f"actors: {', '.join(pipeline.actors)}   pools: {len(pipeline.pools)}   run folder: {out_dir}")
        for note in pipeline.notes:
            print(f"note: {note}")
        client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
        total = blocks if blocks is not None else 10**9

        seen: dict[str, dict] = {}  # backruns served while their triggers were pending, by id

        def watch_pending() -> None:
            deadline = time.monotonic() + market.spec.mempool_window_s * 0.9
            while time.monotonic() < deadline:
                seen.update((o["id"], o) for o in client.top(n=100).opportunities if o.get("trigger"))
                time.sleep(0.05)

        def show(summary) -> None:
            top = wait_for_block(client, summary.number)
            print(f"\n{summary.line()}\n{ranking_table(top.block, top.opportunities)}", flush=True)
            if mempool:
                ranked_on = summary.number - 1  # the pending txs of this block were backrun on the state before it
                with Journal(config.submitter.journal) as journal:
                    bundles = journal.bundles(ranked_on - 1)
                print(backrun_line(ranked_on, [o for o in seen.values() if o["block"] == ranked_on], bundles))
                seen.clear()

        summaries = market.run(total, interval_s=interval_s, on_block=show, on_pending=watch_pending if mempool else None)
        stats = pipeline.stats()
        agg = stats.get("aggregator", {})
        sub = stats.get("submitter", {})
        print(f"\ndone: {agg.get('blocks_ranked', 0)} blocks ranked, {agg.get('shard_timeouts', 0)} shard timeouts, "
              f"inference model: {stats.get('inference', {}).get('model')}")
        print(f"submitter: {sub.get('simulated', 0)} simulated ({sub.get('exact', 0)} exact to the wei), "
              f"{sub.get('sent', 0)} sent: {sub.get('landed', 0)} landed, {sub.get('beaten', 0)} beaten, "
              f"{sub.get('reverted', 0)} reverted; journal {sub.get('journal')}")
        if mempool:
            print(f"won / beaten: {outcome_counts(sub)}")
            bids = out_dir / "competitor_bids.jsonl"  # what a tip-bidding model learns P(win | tip, size) from
            bids.write_text("".join(json.dumps(asdict(b)) + "\n" for s in summaries for b in s.bids))
            print(f"competitor bids (tip, opportunity size, won): {bids}")
        return 0
    finally:
        if pipeline is not None:
            pipeline.stop()
        if ray.is_initialized():
            ray.shutdown()
        node.stop()
