"""The body of `arbscan capture` (the parser is `actors/cli.py`): a block range of a node into a store."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace


def capture(args: argparse.Namespace) -> int:
    from scanner.chain.rpc import connect
    from scanner.config import load
    from scanner.history.capture import capture

    config = load(args.config)
    if args.rpc:
        config = replace(config, chain=replace(config.chain, rpc_url=args.rpc, rpc_url_env=""))
    report = capture(connect(config), config.dexes, args.from_block, args.to_block, args.out,
                     chunk_blocks=args.chunk_blocks, progress=not args.json)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        rate = report.blocks / report.seconds if report.seconds else 0.0
        print(f"captured blocks {report.first}..{report.last} into {args.out}: {report.blocks} new blocks, "
              f"{report.logs} logs, {report.chunks} chunks in {report.seconds:.1f} s ({rate:.0f} blocks/s); "
              f"{report.requests} eth_getLogs requests, {report.refusals} ranges refused and split")
    return 0
