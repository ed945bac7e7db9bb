"""The bodies of the model and measurement commands of `arbscan` (record, train, eval, bench,
gaps); the parser is `actors/cli.py`. Each imports what it needs when it runs and returns the
exit status."""
from __future__ import annotations

import argparse
import json

from scanner.errors import ArbscanError


def record(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scanner.sim.record import record

    print(json.dumps(record(args.blocks, args.seed, Path(args.out), policy=args.policy, v3=args.v3), default=str))
    return 0


def train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scanner.sim.evaluate import train_files

    if args.capture:  # a capture store (scanner/sim/history_eval.py)
        from scanner.sim.history_eval import train_capture

        overrides = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
        print(json.dumps(train_capture(args.capture, args.out, args.train_fraction, **overrides), default=str))
        return 0
    if not args.data:
        raise ArbscanError("arbscan train needs --data FILE... (recordings) or --capture DIR (a capture store)")
    print(json.dumps(train_files([Path(p) for p in args.data], Path(args.out)), default=str))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scanner.sim.evaluate import _jsonable, evaluate

    if args.capture:  # a capture store (scanner/sim/history_eval.py)
        from scanner.sim.history_eval import evaluate_capture

        if args.model is None or args.tip or args.seeds:
            raise ArbscanError("arbscan eval --capture DIR scores a checkpoint on the store's blocks: "
                               "give --model, not --tip or --seeds")
        result = evaluate_capture(args.capture, args.model, args.out)
        print(json.dumps(result) if args.json else "\n".join(f"{k:>36}: {v}" for k, v in result.items()))
        return 0
    if not args.seeds:
        raise ArbscanError("arbscan eval needs --seeds (market seeds), or --capture DIR with --model")
    if args.tip:
        from scanner.sim.tip_eval import evaluate_tips

        if not args.train_seeds or args.model:
            raise ArbscanError("arbscan eval --tip fits its own tip model: give --train-seeds, not --model")
        result = _jsonable(evaluate_tips(args.train_seeds, args.seeds, args.blocks, Path(args.out),
                                         train_blocks=args.train_blocks))
        (Path(args.out) / "tip_evaluation.json").write_text(json.dumps(result, indent=1))
    elif args.model is None:
        raise ArbscanError("arbscan eval needs --model (a checkpoint), or --tip with --train-seeds")
    else:
        result = evaluate(Path(args.model), args.seeds, args.blocks, Path(args.out))
    print(json.dumps(result, default=str) if args.json else "\n".join(f"{k:>36}: {v}" for k, v in result.items()))
    return 0


def bench(args: argparse.Namespace) -> int:
    if args.what == "scan" and args.sweep:
        from scanner.bench.scan import sweep

        result = sweep(seed=args.seed)
    elif args.what == "scan":
        from scanner.bench.scan import run

        result = run(pools=args.pools or 10_000, changed=args.changed, seed=args.seed, v3_share=args.v3_share)
    elif args.what == "replay":
        from actors.ray_session import use_private_token

        use_private_token()  # before actors.history imports ray
        from actors.history import bench_replay

        result = bench_replay(pools=args.pools or 1000, blocks=args.blocks or 200, seed=args.seed, window=args.window)
    elif args.what == "e2e":
        from actors.ray_session import use_private_token

        use_private_token()  # before actors.bench_e2e imports ray
        from actors.bench_e2e import run, run_chains

        if args.chains > 1:
            result = run_chains(pools=args.pools or 1000, blocks=args.blocks or 50, seed=args.seed, chains=args.chains)
        else:
            result = run(pools=args.pools or 1000, blocks=args.blocks or 50, seed=args.seed)
    elif args.what == "v3":
        from scanner.bench.v3 import run

        result = run()
    elif args.what == "sync":
        from scanner.bench.sync import run

        result = run(pools=args.pools or 10_000, seed=args.seed)
    elif args.what == "pending":
        from scanner.bench.pending import run

        result = run(pools=args.pools or 1000, rate=args.rate, seconds=args.seconds, seed=args.seed)
    elif args.what == "sizing":
        from scanner.bench.sizing import run

        result = run(cycles=args.cycles, seed=args.seed)
    else:
        from scanner.bench.inference import run

        result = run()
    print(json.dumps(result) if args.json else "\n".join(f"{k:>28}: {v}" for k, v in result.items()))
    return 0


def gaps(args: argparse.Namespace) -> int:
    from collections import Counter
    from pathlib import Path

    from scanner.route.gaps import cross_chain_gaps, inconsistent, load, quote_all
    from scanner.route.gaps import gaps as largest_gaps

    data = Path(args.data)
    if not (data / "initial_pool_states.json").is_file():
        raise ArbscanError(f"{data} has no initial_pool_states.json: name the l2-2024-11-01 folder of the recorded data")
    pools, skipped = load(data)
    made, failures = quote_all(pools)
    counts = Counter(p.version for p in pools)
    print(f"{data}: {counts['v3']} V3 and {counts['v2']} V2 pools loaded, {len(skipped)} without a usable state; "
          f"{made} quotes, {len(failures)} failed")
    for reason, count in Counter(skipped).most_common():
        print(f"  {count} {reason}")
    for line in failures:
        print(f"  {line}")
    odd = inconsistent(pools)
    if odd:
        print(f"{len(odd)} V3 pools have an in-range liquidity that is not their ticks' sum (quoted as recorded): "
              + ", ".join(f"{p.chain} {p.label} {'/'.join(p.symbols)}" for p in odd))
    for chain, kinds in sorted(largest_gaps(pools).items()):
        print(f"\n{chain}")
        for kind in ("V2/V3", "fee tiers"):
            lines = kinds.get(kind, [])
            print(f"  largest {kind} gaps:" + ("" if lines else " none (no pair has both)"))
            for line in lines:
                print(f"    {line}")
    print("\nacross chains (one asset pair on two chains; inventory trades, never atomic: gas and bridging not counted)")
    for gap in cross_chain_gaps(pools, args.top):
        print(f"    {gap.line()}")
    return 0
