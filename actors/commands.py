"""The bodies of the config, chain and pipeline commands of `arbscan` (config check, market, demo,
run, top, stream); the parser is `actors/cli.py`, the model and measurement commands are
`actors/analysis.py`. Each imports what it needs when it runs (a command that starts Ray sets its
token first) and returns the exit status."""
from __future__ import annotations

import argparse
import json
import sys


def config_check(args: argparse.Namespace) -> int:
    """Each file through the loader and its validation, nothing more: no node is contacted (a chain id
    and a node are checked against each other when `run` starts)."""
    from scanner.config import load, summary
    from scanner.errors import ConfigError

    failed = 0
    for path in args.files:
        try:
            print(f"{path}: ok: {summary(load(path))}")
        except ConfigError as e:
            print(f"{path}: error: {e}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def market(args: argparse.Namespace) -> int:
    from web3 import HTTPProvider, Web3

    from scanner.chain.anvil import Anvil
    from scanner.config import LOCAL_CHAIN_ID
    from scanner.sim.market import Market, MarketSpec

    with Anvil.start(port=args.port) as node:
        market = Market(Web3(HTTPProvider(node.url)), MarketSpec(seed=args.seed))
        print(f"local chain {node.url} (chain id {LOCAL_CHAIN_ID}); deploying the market (seed {args.seed}) ...", file=sys.stderr)
        dep = market.deploy()
        print(f"deployed {len(dep.tokens)} tokens, {len(dep.factories)} DEXes, {len(dep.pools)} pools", file=sys.stderr)
        if args.config_out:
            from pathlib import Path

            from actors.demo import local_config, searcher_key_file
            from scanner.config import SocketsConfig, dump

            out = Path(args.config_out)
            out.parent.mkdir(parents=True, exist_ok=True)
            config = local_config(node, dep, out.parent / "journal.sqlite", searcher_key_file(out.parent), SocketsConfig())
            out.write_text(dump(config))
            print(f"wrote {out}: `arbscan run --config {out}` scans this market while it runs", file=sys.stderr)
        summaries = market.run(args.blocks, interval_s=args.interval, on_block=lambda s: print(s.line(), flush=True))
    fees = [s.base_fee for s in summaries] or [0]
    totals = {
        "blocks": len(summaries),
        "noise_trades": sum(s.noise_trades for s in summaries),
        "arb_trades": sum(s.arb_trades for s in summaries),
        "arb_reverted": sum(s.arb_reverted for s in summaries),
        "blocks_with_profitable_gap": sum(1 for s in summaries if s.gaps),
        "base_fee_gwei_min": min(fees) / 1e9,
        "base_fee_gwei_max": max(fees) / 1e9,
    }
    print("summary " + json.dumps(totals))
    return 0


def demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from actors.ray_session import use_private_token
    from scanner.errors import ConfigError

    if args.chains < 1:
        raise ConfigError(f"--chains must be 1 or more, got {args.chains}")
    use_private_token()  # before anything imports ray: the demo's local Ray never touches ~/.ray
    from actors.demo import run_chains_demo, run_demo

    if args.chains > 1:
        return run_chains_demo(args.chains, args.blocks, args.seed, args.interval, Path(args.out))
    return run_demo(args.blocks, args.seed, args.interval, Path(args.out), mempool=not args.no_mempool)


def _endpoints(args: argparse.Namespace) -> tuple[str, str]:
    from scanner.config import SocketsConfig, load

    sockets = load(args.config).sockets if args.config else SocketsConfig()
    return args.endpoint or sockets.query, args.endpoint or sockets.publish


def run(args: argparse.Namespace) -> int:
    from actors.ray_session import attach_ray, token_hint
    from scanner.config import load

    config = load(args.config)
    ctx = attach_ray(args.address or config.ray.address or None, config)  # before anything imports ray
    from actors.launcher import launch
    from scanner.serve.client import QueryTimeout, Subscriber

    pipeline = launch(config)
    try:
        print(f"arbscan running: {len(pipeline.pools)} pools, actors {', '.join(pipeline.actors)}")
        print(f"query API: {pipeline.endpoints['query']}   top-N stream: {pipeline.endpoints['publish']}")
        if ctx.dashboard_url:
            print(f"Ray dashboard: http://{ctx.dashboard_url}  (token auth: {token_hint()})")
        for note in pipeline.notes:
            print(f"note: {note}")
        with Subscriber(pipeline.endpoints["publish"], timeout_s=60.0) as sub:
            ranked = 0
            while args.blocks is None or ranked < args.blocks:
                try:
                    top = sub.recv()
                except QueryTimeout as e:
                    print(f"warning: {e}", file=sys.stderr)
                    continue
                ranked += 1
                best = top.opportunities[0]["ev"] / 1e18 if top.opportunities else 0.0
                print(f"block {top.block}: {len(top.opportunities)} opportunities, best EV {best:+.6f} ETH", flush=True)
    finally:
        pipeline.stop()
    return 0


def top(args: argparse.Namespace) -> int:
    from scanner.rank.display import ranking_table
    from scanner.serve.client import QueryClient

    query, _ = _endpoints(args)
    with QueryClient(query, timeout_s=args.timeout) as client:
        top = client.top(n=args.n, min_ev=args.min_ev, token=args.token, chain=args.chain)
    if args.json:
        print(json.dumps({"block": top.block, "opportunities": top.opportunities}, default=str))
    else:
        print(ranking_table(top.block, top.opportunities, limit=args.n))
    return 0


def stream(args: argparse.Namespace) -> int:
    from scanner.rank.display import ranking_table
    from scanner.serve.client import Subscriber

    _, publish = _endpoints(args)
    with Subscriber(publish, timeout_s=args.timeout, chain=args.chain) as sub:
        for i, top in enumerate(sub):
            if args.json:
                print(json.dumps({"block": top.block, "opportunities": top.opportunities}, default=str), flush=True)
            else:
                print(ranking_table(top.block, top.opportunities, limit=args.n) + "\n", flush=True)
            if args.blocks is not None and i + 1 >= args.blocks:
                break
    return 0
