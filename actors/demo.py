"""`arbscan demo`: a local chain, the simulated market, a local Ray and every actor, live.

With `--chains N` it runs N local chains at once: the first with Ethereum's fee rules, the others
OP-stack chains (`anvil --optimism`, OP Mainnet's base-fee rules, the canonical `GasPriceOracle` and
`L1Block` installed so each route pays its exact L1 data fee), a market on each, one ranking
whose rows name their chain, and a submitter per chain that proves the best of its chain's rows on
that chain (sending only on the first: only chain id 31337 is the local chain). Everything it starts it stops again (anvil by PID, Ray with
`ray.shutdown()`), also on Ctrl-C.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

from web3 import HTTPProvider, Web3

from actors.ray_session import attach_ray, token_hint
from scanner.chain.anvil import Anvil, searcher_key_file
from scanner.chain.opstack import OpStackOracle
from scanner.config import (
    LOCAL_CHAIN_ID,
    ChainConfig,
    ChainSpec,
    Config,
    DexConfig,
    SocketsConfig,
    SubmitterConfig,
    TokensConfig,
    dump,
)
from scanner.gas.l1fee import FjordFeeParams
from scanner.rank.display import best_per_chain, ranking_table
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


L1_VALUES = FjordFeeParams(l1_base_fee=8_000_000_000, blob_base_fee=3, base_fee_scalar=1368, blob_base_fee_scalar=810_949)
"""What the OP-stack chains' `L1Block` holds: an 8 gwei L1 and OP Mainnet's Fjord scalars."""


def chains_config(configs: Sequence[Config], names: Sequence[str]) -> Config:
    """The first config's settings with every config's single chain as a [[chains]] entry named by
    `names`: the first keeps Ethereum's rules, the others are OP-stack chains (OP Mainnet's base-fee
    rules and the L1 data fee) with chain ids LOCAL_CHAIN_ID + i. Each chain keeps its market's
    executor, so each gets a submitter (one key: anvil's dev accounts are the same on every chain)."""
    chains = [replace(config.networks()[0], name=name) if i == 0 else
              ChainSpec(**{**vars(config.networks()[0]), "name": name, "chain_id": LOCAL_CHAIN_ID + i,
                           "eip1559": "optimism", "l1_fee": "op-stack"})
              for i, (config, name) in enumerate(zip(configs, names))]
    return replace(configs[0], chains=chains)


def start_chain(stack: ExitStack, index: int) -> tuple[Anvil, Web3, OpStackOracle | None]:
    """Chain `index` of a local multi-chain set-up, stopped with `stack`: 0 an Ethereum-rules anvil, any
    other an OP-stack one with the canonical fee oracle (returned) holding `L1_VALUES`."""
    node = stack.enter_context(Anvil.start(chain_id=LOCAL_CHAIN_ID + index, optimism=index > 0))
    w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    oracle = OpStackOracle.install(w3) if index else None
    if oracle is not None:
        oracle.set_l1_values(L1_VALUES)
    return node, w3, oracle


def wait_for_block(client: QueryClient, number: int, timeout_s: float = 3.0, chain: str | None = None):
    """The served ranking (of `chain`, when given) once it has reached block `number` (or the latest
    after the timeout)."""
    deadline = time.monotonic() + timeout_s
    top = client.top(n=10, chain=chain)
    while (top.block is None or top.block < number) and time.monotonic() < deadline:
        time.sleep(0.02)
        top = client.top(n=10, chain=chain)
    return top


def announce(ctx, pipeline, out_dir: Path) -> None:
    """Where to watch: the dashboard, the query API and stream, the actors, the run folder."""
    print(f"Ray dashboard: http://{ctx.dashboard_url}  (token auth: {token_hint()})")
    print(f"query API: {pipeline.endpoints['query']}   top-N stream: {pipeline.endpoints['publish']}")
    print(f"actors: {', '.join(pipeline.actors)}   pools: {len(pipeline.pools)}   run folder: {out_dir}")
    for note in pipeline.notes:
        print(f"note: {note}")


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


def submitter_line(name: str, sub: dict) -> str:
    """What a submitter did, from its stats."""
    return (f"{name}: {sub.get('simulated', 0)} simulated ({sub.get('exact', 0)} exact to the wei), "
            f"{sub.get('sent', 0)} sent: {sub.get('landed', 0)} landed, {sub.get('beaten', 0)} beaten, "
            f"{sub.get('reverted', 0)} reverted; journal {sub.get('journal')}")


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
        announce(ctx, pipeline, out_dir)
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
        print(submitter_line("submitter", sub))
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


def run_chains_demo(chains: int, blocks: int | None, seed: int, interval_s: float, out_dir: Path) -> int:
    """The demo on `chains` local chains at once (see the module): per block, each market mines one,
    then the ranking of every chain together, each row after its own chain's fees."""
    import ray

    from actors.launcher import launch

    if chains < 2:
        raise ValueError(f"run_chains_demo needs 2 or more chains, got {chains}: use run_demo for one")
    out_dir = out_dir / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ["main"] + [f"op{i}" if chains > 2 else "op" for i in range(1, chains)]
    with ExitStack() as stack:
        markets, configs, symbols = {}, [], {}
        for i, name in enumerate(names):
            node, w3, _ = start_chain(stack, i)
            rules = "Ethereum fee rules" if i == 0 else "OP-stack fee rules, canonical GasPriceOracle installed"
            print(f"chain {name}: {node.url} (anvil, chain id {LOCAL_CHAIN_ID + i}, {rules}); deploying the market, "
                  f"seed {seed + i} ...", file=sys.stderr)
            markets[name] = market = Market(w3, MarketSpec.with_v3(seed=seed + i))
            dep = market.deploy()
            configs.append(local_config(node, dep, out_dir / "journal.sqlite", searcher_key_file(out_dir)))
            symbols.update({addr: sym for sym, addr in dep.tokens.items()})
        config = chains_config(configs, names)
        (out_dir / "config.toml").write_text(dump(config))
        print("starting a local Ray ...", file=sys.stderr)
        ctx = attach_ray(None, Config())
        stack.callback(lambda: ray.shutdown() if ray.is_initialized() else None)
        pipeline = launch(config, symbols=symbols)
        stack.callback(pipeline.stop)
        announce(ctx, pipeline, out_dir)
        client = QueryClient(pipeline.endpoints["query"], timeout_s=5.0)
        total = blocks if blocks is not None else 10**9
        for _ in range(total):
            started = time.monotonic()
            for name, market in markets.items():
                summary = market.step()
                wait_for_block(client, summary.number, chain=name)
                print(f"\n{name}: {summary.line()}", flush=True)
            top = client.top(n=10)
            print(ranking_table(top.block, top.opportunities, blocks=top.blocks), flush=True)
            best = {name: next(iter(client.top(n=1, chain=name).opportunities), None) for name in markets}
            print(best_per_chain(best), flush=True)
            time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
        stats = pipeline.stats()
        agg = {name: s for name, s in stats.items() if name.startswith("aggregator")}
        print("\ndone: " + "; ".join(f"{name}: {s.get('blocks_ranked', 0)} blocks ranked, "
                                     f"{s.get('shard_timeouts', 0)} shard timeouts" for name, s in sorted(agg.items())))
        for name, sub in sorted((n, s) for n, s in stats.items() if n.startswith("submitter")):
            print(submitter_line(name, sub))
    return 0
