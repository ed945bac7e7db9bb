"""`arbscan`: one command line for the market, the pipeline, the model and the benchmarks.

This file is the parser; `actors/commands.py` holds what each command does.
"""
from __future__ import annotations

import argparse
import logging
import sys

from actors import analysis, commands, history
from scanner.chain.artifacts import REPO_ROOT
from scanner.errors import ArbscanError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arbscan",
        description="Distributed on-chain DEX arbitrage scanner. Start with `arbscan demo`; see README.md.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="check config files without contacting any node")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    p = config_sub.add_parser("check", help="load and validate each file; one summary line each, or the error naming "
                                            "the table (exit 2 if any fails; nodes are checked when `run` starts)")
    p.add_argument("files", nargs="+", metavar="FILE", help="TOML configs, e.g. deploy/*.toml")
    p.set_defaults(handler=commands.config_check)

    p = sub.add_parser("market", help="run the simulated market on a local anvil and print one line per block")
    p.add_argument("--blocks", type=int, default=100, help="blocks to mine (default 100)")
    p.add_argument("--seed", type=int, default=0, help="market seed; the same seed gives the same market (default 0)")
    p.add_argument("--interval", type=float, default=None, help="seconds between blocks (default: as fast as possible)")
    p.add_argument("--port", type=int, default=None, help="anvil port on 127.0.0.1 (default: a free one)")
    p.add_argument("--config-out", default=None, help="write an `arbscan run` config for this market to this file")
    p.set_defaults(handler=commands.market)

    p = sub.add_parser("demo", help="local chain + simulated market + local Ray + every actor, with a live ranking")
    p.add_argument("--blocks", type=int, default=None, help="stop by itself after N blocks (default: run until Ctrl-C)")
    p.add_argument("--seed", type=int, default=0, help="market seed (default 0)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between blocks (default 1.0)")
    p.add_argument("--out", default="runs/demo", help="folder for the journal and plots (default runs/demo)")
    p.add_argument("--no-mempool", action="store_true",
                   help="mine each block's transactions at once, without the pending watcher and backruns")
    p.add_argument("--chains", type=int, default=1,
                   help="N local chains at once (default 1): the first with Ethereum's fee rules, the others OP-stack "
                        "chains with the canonical L1 fee oracle; one ranking, each row after its chain's own fees "
                        "(mined blocks only, no submitter)")
    p.set_defaults(handler=commands.demo)

    p = sub.add_parser("run", help="run the scanner against the chain a config names (local Ray or a cluster)")
    p.add_argument("--config", required=True, help="TOML config (see deploy/local.toml, deploy/mainnet.example.toml; several chains: deploy/l2.example.toml)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to attach to ('auto', or ray://…/host:port); default: RAY_ADDRESS, ray.address, else a new local Ray")
    p.add_argument("--blocks", type=int, default=None, help="stop after N ranked blocks (default: run until stopped)")
    p.set_defaults(handler=commands.run)

    for name, help_, handler in (("top", "print the current top opportunities from the query API", commands.top),
                                 ("stream", "follow the top-N stream, one ranking per block", commands.stream)):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--endpoint", default=None, help="ZMQ endpoint (default: from --config, else the default sockets)")
        p.add_argument("--config", default=None, help="TOML config whose [sockets] to use")
        p.add_argument("--n", type=int, default=10, help="opportunities to show (default 10)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--timeout", type=float, default=5.0 if name == "top" else 60.0, help="seconds to wait for an answer")
        p.add_argument("--chain", default=None, metavar="NAME",
                       help="only this chain's opportunities (a [[chains]] name; default: every chain the server serves)")
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
    p.add_argument("--v3", action="store_true",
                   help="record the demo's market (V2 pools and canonical V3 pools) instead of the V2 market")
    p.set_defaults(handler=analysis.record)

    p = sub.add_parser("train", help="train the LSTM on recorded files (Adam, time-split validation, early stopping)")
    p.add_argument("--data", nargs="+", default=None, help="files written by `arbscan record`")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--capture", metavar="DIR", default=None,
                   help="train on a capture store instead (`arbscan capture`, or tests/fixtures/convert_base_sync.py "
                        "--store DIR for the Base Sync day): the features the watchers compute over its blocks, the "
                        "first --train-fraction of them (early stopping validates on the latest part of those)")
    p.add_argument("--train-fraction", type=float, default=0.8,
                   help="with --capture: the share of the blocks to train on, the earliest (default 0.8)")
    p.add_argument("--max-epochs", type=int, default=None, help="with --capture: at most N epochs (default TrainConfig's)")
    p.set_defaults(handler=analysis.train)

    p = sub.add_parser("eval", help="evaluate a checkpoint (or, with --tip, the EV-optimal tip) on unseen market seeds "
                                    "against baselines; writes PNG plots")
    p.add_argument("--model", help="checkpoint to evaluate (not with --tip)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="market seeds never used in training")
    p.add_argument("--capture", metavar="DIR", default=None,
                   help="evaluate a checkpoint of `arbscan train --capture` on the blocks of this store after its "
                        "training part instead: Brier skill of the success head vs base rate and logistic "
                        "regression, CRPS of the price-move head vs a rolling std (writes OUT/capture_evaluation.json "
                        "and OUT/capture_reliability.png)")
    p.add_argument("--blocks", type=int, default=300, help="blocks per seed (default 300)")
    p.add_argument("--tip", action="store_true", help="evaluate tip bidding instead: fit the tip model on --train-seeds "
                   "(mempool market), then run --seeds with the EV-optimal tip and with each fixed tip of a grid")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[], help="with --tip: seeds to fit the tip model on")
    p.add_argument("--train-blocks", type=int, default=None, help="with --tip: blocks per training seed (default --blocks)")
    p.add_argument("--out", default="runs/eval", help="folder for the plots (default runs/eval)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(handler=analysis.evaluate)

    p = sub.add_parser(
        "capture", help="record a block range of a node (headers, the DEXes' pool logs, pool states) into a Parquet store",
        description="Fetch blocks FROM..TO: headers, every Sync/Swap (V2) and Initialize/Swap/Mint/Burn (V3) log of the "
                    "config's DEXes' pools, their PairCreated/PoolCreated logs, and the pools' state at the end of block "
                    "FROM-1, into DIR (one Parquet file pair per chunk; see scanner/history/store.py). Killed and run "
                    "again with the same arguments, it resumes after the last committed chunk. Capture only finalized "
                    "blocks: a reorg under the capture stops it. Read a store with scanner.history.store.load(DIR). "
                    "Example, the local market: arbscan capture --rpc http://127.0.0.1:8545 --from 40 --to 2000 --out runs/capture")
    p.add_argument("--rpc", default=None, help="node URL (default: the config's chain.rpc_url); its chain id must match the config's")
    p.add_argument("--config", default=str(REPO_ROOT / "deploy/local.toml"),
                   help="TOML whose [[dexes]] name the factories (default deploy/local.toml: the local market)")
    p.add_argument("--from", dest="from_block", metavar="BLOCK", type=int, required=True, help="first block (>= 1)")
    p.add_argument("--to", dest="to_block", metavar="BLOCK", type=int, required=True, help="last block (inclusive, at most the node's head)")
    p.add_argument("--out", metavar="DIR", required=True, help="store directory (created; an existing store is resumed)")
    p.add_argument("--chunk-blocks", metavar="N", type=int, default=500, help="blocks per committed chunk (default 500)")
    p.add_argument("--json", action="store_true", help="no progress bar; print the report as one JSON line")
    p.set_defaults(handler=history.capture)

    p = sub.add_parser(
        "replay", help="drive the whole pipeline (watchers, inference, aggregator, query server) from a capture",
        description="Launch every actor of `arbscan run` on the pools of the capture in DIR (their state at its first "
                    "block) and feed the watchers its blocks instead of a node's: the same watcher code applies the "
                    "same logs. Block N+1 is released only once block N's ranking is published (--window N: N blocks "
                    "ahead), so no shard times out; --pace slows it to one block per S seconds (the query API and the top-N stream serve "
                    "meanwhile, as live). Gas is priced at each block's next base fee without a tip (a capture holds "
                    "no fee history) and no price oracle is read. Example: arbscan replay runs/capture --out ranked.jsonl")
    p.add_argument("dir", metavar="DIR", help="a store written by `arbscan capture`")
    p.add_argument("--config", default=str(REPO_ROOT / "deploy/local.toml"),
                   help="TOML for tokens.base, [aggregator], [inference], [watchers], [sockets] (default deploy/local.toml)")
    p.add_argument("--address", default=None, help="Ray cluster to attach to (default: a new private local Ray); "
                                                   "the watchers read DIR, so it must be on their node's disk")
    p.add_argument("--pace", metavar="S", type=float, default=0.0, help="seconds per block (default 0: as fast as it ranks)")
    p.add_argument("--window", metavar="N", type=int, default=1,
                   help="blocks released ahead of the last one ranked (default 1: each block once the previous is "
                        "ranked; more overlaps watchers, inference and aggregator; every block is still ranked complete)")
    p.add_argument("--heuristic-risk", action="store_true",
                   help="rank with the heuristic risk model instead of the LSTM's predictions: rankings then depend on "
                        "the chain alone, not on when predictions arrive (what the determinism test compares)")
    p.add_argument("--out", metavar="FILE", default=None, help="write each block's served ranking as one JSON line")
    p.add_argument("--json", action="store_true", help="no progress bar; print the summary as one JSON line")
    p.set_defaults(handler=history.replay)

    p = sub.add_parser(
        "backtest", help="rank every block of a capture and match the arbitrages that really happened",
        description="Run the watcher and aggregator cores in-process (with --ray: as Ray tasks over chunks of blocks) "
                    "over the capture in DIR (heuristic risk model, "
                    "gas at the next base fee) and report per block the top-N ranked (sizes, net profit, P(success)). "
                    "Realized arbitrages of block N (closed cycles through known pools in one transaction, and with "
                    "--arbitrageurs every swap paying out to those addresses) are matched with block N-1's ranking: "
                    "recall over those profitable at the block's start state, profit captured at our size vs "
                    "realized. Writes OUT/backtest.json and OUT/profit.png. Example (the simulated market's "
                    "competitors): arbscan backtest runs/capture --arbitrageurs 0xabc...,0xdef...")
    p.add_argument("dir", metavar="DIR", help="a store written by `arbscan capture`")
    p.add_argument("--config", default=str(REPO_ROOT / "deploy/local.toml"),
                   help="TOML whose tokens.base names the base tokens (default deploy/local.toml)")
    p.add_argument("--top", type=int, default=10, help="opportunities ranked per block (default 10)")
    p.add_argument("--arbitrageurs", metavar="ADDRS", default=None,
                   help="comma-separated addresses whose received swaps count as arbitrage legs")
    p.add_argument("--out", metavar="DIR", default="runs/backtest", help="folder for backtest.json and profit.png")
    p.add_argument("--rows", type=int, default=40, help="table rows to print (default 40)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run the blocks as Ray tasks, a chunk each, on the cluster at ADDRESS ('auto', host:port, "
                        "ray://host:port; 'local': a new private local Ray); each chunk warms its pools through the blocks "
                        "before it, and the store's files reach the nodes through Ray's object store (no shared disk). "
                        "The report is the single-process one")
    p.add_argument("--chunk-blocks", type=int, default=500, help="blocks per Ray task with --ray (default 500)")
    p.add_argument("--json", action="store_true", help="no progress bar or table; print the summary as one JSON line")
    p.set_defaults(handler=history.backtest)

    p = sub.add_parser("bench", help="benchmarks; each prints its figures (and the naive way's) as one JSON line")
    p.add_argument("what", choices=["scan", "inference", "e2e", "v3", "sizing", "sync", "pending", "replay"],
                   help="scan: re-score + rank; inference: LSTM batching; e2e: block mined to ranking served; "
                        "v3: exact Uniswap V3 quotes; sizing: exact integer optimum of random V2 cycles; "
                        "sync: cold start (discovery + state of V2 pools) from a local anvil; "
                        "replay: a capture of a 1,000-pool market through the whole pipeline vs the same blocks live")
    p.add_argument("--pools", type=int, default=None, help="pools (default: scan 10000, e2e 1000, sync 10000)")
    p.add_argument("--blocks", type=int, default=None,
                   help="e2e: blocks to time (default 50); replay: blocks to follow live, capture and replay (default 200)")
    p.add_argument("--chains", type=int, default=1,
                   help="e2e: chains at once (default 1); with N > 1, N anvils with a market of --pools pools each, "
                        "every chain's p50/p99 in one pipeline and its p50 alone (\"chains\" in the JSON)")
    p.add_argument("--changed", type=int, default=500, help="scan: pools changed per block (default 500)")
    p.add_argument("--v3-share", type=float, default=0.0,
                   help="scan: share of the pools that are Uniswap V3 pools, in [0, 1] (default 0)")
    p.add_argument("--sweep", action="store_true",
                   help="scan: median at 1k, 10k, 30k and 100k pools and the fitted cost exponent (minutes)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    p.add_argument("--cycles", type=int, default=200, help="sizing: random cycles (default 200)")
    p.add_argument("--window", type=int, default=8,
                   help="replay: also replay with up to N blocks released ahead of the last one ranked, the stages "
                        "overlapped (blocks_per_s_window; blocks_per_s stays one block at a time) (default 8)")
    p.add_argument("--rate", type=float, default=200.0, help="pending: pending swaps offered per second (default 200)")
    p.add_argument("--seconds", type=float, default=10.0, help="pending: seconds of offered swaps (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(handler=analysis.bench)

    p = sub.add_parser("gaps", help="largest V2/V3, fee-tier and cross-chain price gaps in recorded L2 pool states",
                       description="Per chain: the largest gaps between a V2 and a V3 pool, and between two V3 fee "
                                   "tiers, of one pair. Across chains: the same asset pair (matched by each chain's "
                                   "canonical address: native USDC, not USDC.e) on Arbitrum, Base and Optimism at the "
                                   "same instant, with the best exact round trip (buy on the cheap chain, sell on the "
                                   "dear one, pool fees in). Example: arbscan gaps --top 10")
    p.add_argument("data", nargs="?", default="../shared/data/l2-2024-11-01",
                   help="the recorded l2-2024-11-01 folder (pools.json, initial_pool_states.json)")
    p.add_argument("--top", type=int, default=5, help="cross-chain gaps to show (default 5)")
    p.set_defaults(handler=analysis.gaps)
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
