"""`arbscan`: one command line for the market, the pipeline, the model and the benchmarks."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable

from scanner.errors import ArbscanError

Handler = Callable[[argparse.Namespace], int]


def _cmd_market(args: argparse.Namespace) -> int:
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from actors.ray_session import use_private_token

    use_private_token()  # before anything imports ray: the demo's local Ray never touches ~/.ray
    from actors.demo import run_demo

    return run_demo(args.blocks, args.seed, args.interval, Path(args.out))


def _endpoints(args: argparse.Namespace) -> tuple[str, str]:
    from scanner.config import SocketsConfig, load

    sockets = load(args.config).sockets if args.config else SocketsConfig()
    return args.endpoint or sockets.query, args.endpoint or sockets.publish


def _cmd_run(args: argparse.Namespace) -> int:
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


def _cmd_top(args: argparse.Namespace) -> int:
    from scanner.serve.client import QueryClient
    from scanner.rank.display import ranking_table

    query, _ = _endpoints(args)
    with QueryClient(query, timeout_s=args.timeout) as client:
        top = client.top(n=args.n, min_ev=args.min_ev, token=args.token)
    if args.json:
        print(json.dumps({"block": top.block, "opportunities": top.opportunities}, default=str))
    else:
        print(ranking_table(top.block, top.opportunities, limit=args.n))
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from scanner.serve.client import Subscriber
    from scanner.rank.display import ranking_table

    _, publish = _endpoints(args)
    with Subscriber(publish, timeout_s=args.timeout) as sub:
        for i, top in enumerate(sub):
            if args.json:
                print(json.dumps({"block": top.block, "opportunities": top.opportunities}, default=str), flush=True)
            else:
                print(ranking_table(top.block, top.opportunities, limit=args.n) + "\n", flush=True)
            if args.blocks is not None and i + 1 >= args.blocks:
                break
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scanner.sim.record import record

    print(json.dumps(record(args.blocks, args.seed, Path(args.out), policy=args.policy), default=str))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scanner.sim.evaluate import train_files

    print(json.dumps(train_files([Path(p) for p in args.data], Path(args.out)), default=str))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scanner.sim.evaluate import evaluate

    result = evaluate(Path(args.model), args.seeds, args.blocks, Path(args.out))
    print(json.dumps(result, default=str) if args.json else "\n".join(f"{k:>36}: {v}" for k, v in result.items()))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "scan":
        from scanner.bench.scan import run

        result = run(pools=args.pools or 10_000, changed=args.changed, seed=args.seed)
    elif args.what == "e2e":
        from actors.ray_session import use_private_token

        use_private_token()  # before actors.bench_e2e imports ray
        from actors.bench_e2e import run

        result = run(pools=args.pools or 1000, blocks=args.blocks, seed=args.seed)
    else:
        from scanner.bench.inference import run

        result = run()
    print(json.dumps(result) if args.json else "\n".join(f"{k:>28}: {v}" for k, v in result.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arbscan",
        description="Distributed on-chain DEX arbitrage scanner. Start with `arbscan demo`; see README.md.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("market", help="run the simulated market on a local anvil and print one line per block")
    p.add_argument("--blocks", type=int, default=100, help="blocks to mine (default 100)")
    p.add_argument("--seed", type=int, default=0, help="market seed; the same seed gives the same market (default 0)")
    p.add_argument("--interval", type=float, default=None, help="seconds between blocks (default: as fast as possible)")
    p.add_argument("--port", type=int, default=None, help="anvil port on 127.0.0.1 (default: a free one)")
    p.add_argument("--config-out", default=None, help="write an `arbscan run` config for this market to this file")
    p.set_defaults(handler=_cmd_market)

    p = sub.add_parser("demo", help="local chain + simulated market + local Ray + every actor, with a live ranking")
    p.add_argument("--blocks", type=int, default=None, help="stop by itself after N blocks (default: run until Ctrl-C)")
    p.add_argument("--seed", type=int, default=0, help="market seed (default 0)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between blocks (default 1.0)")
    p.add_argument("--out", default="runs/demo", help="folder for the journal and plots (default runs/demo)")
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("run", help="run the scanner against the chain a config names (local Ray or a cluster)")
    p.add_argument("--config", required=True, help="TOML config (see deploy/local.toml, deploy/mainnet.example.toml)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to attach to ('auto', or ray://…/host:port); default: RAY_ADDRESS, ray.address, else a new local Ray")
    p.add_argument("--blocks", type=int, default=None, help="stop after N ranked blocks (default: run until stopped)")
    p.set_defaults(handler=_cmd_run)

    for name, help_, handler in (("top", "print the current top opportunities from the query API", _cmd_top),
                                 ("watch", "follow the top-N stream, one ranking per block", _cmd_watch)):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--endpoint", default=None, help="ZMQ endpoint (default: from --config, else the default sockets)")
        p.add_argument("--config", default=None, help="TOML config whose [sockets] to use")
        p.add_argument("--n", type=int, default=10, help="opportunities to show (default 10)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--timeout", type=float, default=5.0 if name == "top" else 60.0, help="seconds to wait for an answer")
        if name == "top":
            p.add_argument("--min-ev", type=float, default=None, help="only opportunities with EV above this (wei)")
            p.add_argument("--token", default=None, help="only paths through this token (address or symbol)")
        else:
            p.add_argument("--blocks", type=int, default=None, help="stop after N blocks")
        p.set_defaults(handler=handler)

    p = sub.add_parser("record", help="run the market with scanner and submitter; record features and outcomes")
    p.add_argument("--blocks", type=int, required=True, help="blocks to record")
    p.add_argument("--seed", type=int, required=True, help="market seed")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--policy", choices=["ev", "profit"], default="ev", help="submit the top by EV or by raw profit")
    p.set_defaults(handler=_cmd_record)

    p = sub.add_parser("train", help="train the LSTM on recorded files (Adam, time-split validation, early stopping)")
    p.add_argument("--data", nargs="+", required=True, help="files written by `arbscan record`")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on unseen market seeds against baselines; writes PNG plots")
    p.add_argument("--model", required=True, help="checkpoint to evaluate")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="market seeds never used in training")
    p.add_argument("--blocks", type=int, default=300, help="blocks per seed (default 300)")
    p.add_argument("--out", default="runs/eval", help="folder for the plots (default runs/eval)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(handler=_cmd_eval)

    p = sub.add_parser("bench", help="benchmarks; each prints its figures (and the naive way's) as one JSON line")
    p.add_argument("what", choices=["scan", "inference", "e2e"],
                   help="scan: re-score + rank; inference: LSTM batching; e2e: block mined to ranking served")
    p.add_argument("--pools", type=int, default=None, help="pools (default: scan 10000, e2e 1000)")
    p.add_argument("--blocks", type=int, default=50, help="e2e: blocks to time (default 50)")
    p.add_argument("--changed", type=int, default=500, help="scan: pools changed per block (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except ArbscanError as e:
        print(f"arbscan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("arbscan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
