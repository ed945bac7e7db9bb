"""The bodies of `arbscan capture`, `replay` and `backtest` (the parser is `actors/cli.py`): a block range
of a node into a store, a store through the whole pipeline, a store against what really happened."""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray import ObjectRef

    from scanner.history.backtest import BacktestReport
    from scanner.history.store import Capture


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


@dataclass
class ReplayReport:
    first: int  # the state block: its ranking is the bootstrap snapshot's
    last: int
    blocks: int  # blocks released and ranked after the state block
    pools: int
    seconds: float  # from the first release to the last block served
    blocks_per_s: float
    shard_timeouts: int  # blocks ranked without every shard (0: every ranking was complete)
    served: list[dict] = field(default_factory=list)  # {"block", "opportunities"} per block, the state block first


def wait_served(client, number: int, timeout_s: float) -> dict:
    """The query API's top N once it serves block `number`."""
    from scanner.errors import ArbscanError

    deadline = time.monotonic() + timeout_s
    while True:
        top = client.top()
        if top.block is not None and top.block >= number:
            if top.block > number:
                raise ArbscanError(f"the pipeline served block {top.block} while the replay waited for {number}")
            return {"block": top.block, "opportunities": top.opportunities}
        if time.monotonic() > deadline:
            raise ArbscanError(f"block {number} was not ranked within {timeout_s:.0f} s of its release (served: {top.block}); "
                               "see the actors' health in the Ray dashboard")
        time.sleep(0.0002)


def run_replay(config, store: str, *, pace_s: float = 0.0, window: int = 1, lstm_risk: bool = True,
               progress: bool = True, block_timeout_s: float = 30.0, ready_timeout_s: float = 120.0) -> ReplayReport:
    """Launch the pipeline on the capture at `store` (Ray must be attached) and release its blocks to the
    watchers: at most `window` blocks ahead of the last one ranked (1: block N+1 only once block N's ranking
    is published), at most one block per `pace_s` seconds. Every block is ranked complete either way (the
    aggregator ranks in block order, each on its own updates); a window only overlaps the stages."""
    from pathlib import Path

    import zmq
    from tqdm import tqdm

    from actors.launcher import ReplayInput, launch
    from scanner.errors import ArbscanError
    from scanner.history.replay import gas_update, pool_infos, state_ref
    from scanner.history.store import Header, load
    from scanner.serve.client import QueryClient, QueryTimeout, Subscriber

    if window < 1:
        raise ArbscanError(f"--window must be at least 1 block, got {window}")
    capture = load(store)
    headers = [Header(**h) for h in capture.headers().to_pylist()]
    gas = zmq.Context.instance().socket(zmq.PUB)  # the gas oracle's stream, from the captured headers
    gas.linger = 0
    gas.bind("tcp://127.0.0.1:*")
    infos = pool_infos(capture)
    pipeline = launch(config, replay=ReplayInput(str(Path(store).resolve()), infos, gas.getsockopt_string(zmq.LAST_ENDPOINT)),
                      lstm_risk=lstm_risk, progress=False, ready_timeout_s=ready_timeout_s)
    try:
        watchers = [actor for name, actor in pipeline.actors.items() if name.startswith("watcher-")]
        with QueryClient(pipeline.endpoints["query"], timeout_s=5.0) as client, \
                Subscriber(pipeline.endpoints["publish"], timeout_s=block_timeout_s) as stream:
            served = [wait_served(client, state_ref(capture).number, ready_timeout_s)]
            time.sleep(0.3)  # PUB/SUB slow joiner: the subscription reaches the publisher; nothing is published meanwhile
            bar = tqdm(total=len(headers), unit="block", desc="replay", disable=not progress)
            started, released = time.monotonic(), 0
            while len(served) <= len(headers):
                while released < len(headers) and released < len(served) - 1 + window:
                    if pace_s:
                        time.sleep(max(0.0, started + released * pace_s - time.monotonic()))
                    gas.send(gas_update(headers[released]).encode())
                    for watcher in watchers:
                        watcher.release.remote(headers[released].number)
                    released += 1
                expected = served[-1]["block"] + 1
                try:
                    top = stream.recv()
                except QueryTimeout:
                    raise ArbscanError(f"block {expected} was not ranked within {block_timeout_s:.0f} s of its release; "
                                       "see the actors' health in the Ray dashboard") from None
                if top.block == expected - 1:
                    continue  # the block before, published again (the aggregator re-serves a block it ranked more on)
                if top.block != expected:
                    raise ArbscanError(f"the pipeline published block {top.block} where block {expected} was due")
                served.append({"block": top.block, "opportunities": top.opportunities})
                bar.update(1)
            seconds = time.monotonic() - started
            bar.close()
        timeouts = pipeline.stats().get("aggregator", {}).get("shard_timeouts", -1)
    finally:
        pipeline.stop()
        gas.close()
    return ReplayReport(capture.first_block - 1, capture.last_block, len(headers), len(infos), seconds,
                        len(headers) / seconds if seconds else 0.0, timeouts, served)


def replay(args: argparse.Namespace) -> int:
    from actors.ray_session import attach_ray
    from scanner.config import load

    config = load(args.config)
    attach_ray(args.address or config.ray.address or None, config)  # before anything imports ray
    report = run_replay(config, args.dir, pace_s=args.pace, window=args.window, lstm_risk=not args.heuristic_risk,
                        progress=not args.json)
    if args.out:
        with open(args.out, "w") as f:
            for top in report.served:
                f.write(json.dumps(top) + "\n")
    summary = {k: v for k, v in asdict(report).items() if k != "served"}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"replayed blocks {report.first + 1}..{report.last} of {args.dir} through the pipeline: {report.blocks} blocks, "
              f"{report.pools} pools, {report.seconds:.1f} s ({report.blocks_per_s:.0f} blocks/s), "
              f"{report.shard_timeouts} shard timeouts" + (f"; rankings in {args.out}" if args.out else ""))
    return 0


def backtest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scanner.config import load
    from scanner.history.backtest import backtest, plot, table
    from scanner.history.store import load as load_store

    config = load(args.config)
    arbitrageurs = [a for a in (args.arbitrageurs or "").split(",") if a]
    capture = load_store(args.dir)
    if args.ray:
        import ray

        from actors.ray_session import attach_ray

        if not ray.is_initialized():  # a caller in this process (a test) may have attached already
            attach_ray(None if args.ray == "local" else args.ray, config)
        report = backtest_on_ray(capture, config.tokens.base, chunk_blocks=args.chunk_blocks, top_n=args.top,
                                 arbitrageurs=arbitrageurs, progress=not args.json)
    else:
        report = backtest(capture, config.tokens.base, top_n=args.top, arbitrageurs=arbitrageurs, progress=not args.json)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtest.json").write_text(json.dumps(report.to_dict()))
    plot(report, str(out / "profit.png"))
    summary = {k: v for k, v in report.to_dict().items() if k != "per_block"}
    if args.json:
        print(json.dumps(summary))
    else:
        print(table(report, args.rows))
        print(f"report: {out / 'backtest.json'}   plot: {out / 'profit.png'}")
    return 0


def _backtest_chunk(files: dict[str, ObjectRef], base_tokens: list[str], first: int, last: int, top_n: int,
                    arbitrageurs: list[str]) -> BacktestReport:
    """One chunk, on any node: the store's files it needs come through the object store (no shared disk)."""
    import tempfile

    import ray

    from scanner.history.backtest import backtest
    from scanner.history.store import unpack

    with tempfile.TemporaryDirectory(prefix="arbscan-backtest-") as tmp:
        data = dict(zip(files, ray.get(list(files.values())), strict=True))
        return backtest(unpack(data, tmp), base_tokens, top_n=top_n, arbitrageurs=arbitrageurs, progress=False,
                        first=first, last=last)


def backtest_on_ray(capture: Capture, base_tokens: list[str], *, chunk_blocks: int, top_n: int = 10,
                    arbitrageurs: Sequence[str] = (), progress: bool = True) -> BacktestReport:
    """`arbscan backtest --ray`: the capture's blocks cut into chunks of `chunk_blocks`, each a Ray task (one
    CPU, retried if its node dies: a chunk is a pure function of the store) that warms its pools through
    the blocks before it; the chunks' reports merged are the single-process report (a test checks)."""
    import ray
    from tqdm import tqdm

    from scanner.history.backtest import chunk_ranges, merge

    started = time.monotonic()
    ranges = chunk_ranges(capture.first_block, capture.last_block, chunk_blocks)
    files = {name: ray.put((capture.root / name).read_bytes()) for name in capture.file_names()}
    task = ray.remote(num_cpus=1, max_retries=2)(_backtest_chunk)
    pending = {task.options(name=f"backtest-{a}-{b}").remote({n: files[n] for n in capture.file_names(b)}, base_tokens, a, b,
                                                             top_n, list(arbitrageurs)): (a, b)
               for a, b in ranges}
    done: dict[tuple[int, int], BacktestReport] = {}
    with tqdm(total=len(ranges), unit="chunk", desc="backtest", disable=not progress) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            done[pending.pop(ready[0])] = ray.get(ready[0])
            bar.update(1)
    return merge([done[r] for r in ranges], time.monotonic() - started)


def bench_replay(pools: int = 1000, blocks: int = 200, seed: int = 0, window: int = 8) -> dict:
    """`arbscan bench replay`: a generated market's blocks followed live by the whole pipeline (block mined
    to its ranking served, per block), then captured and replayed through a fresh pipeline (blocks/s), one
    block at a time with the LSTM's risk model as live and again with the heuristic one, and with up to
    `window` blocks in flight (LSTM risk: the stages overlap, each block still ranked complete);
    `cores_blocks_per_s`: the watcher and aggregator cores alone, in-process."""
    import os
    import statistics
    import tempfile
    from pathlib import Path

    import ray

    from actors.demo import local_config
    from actors.launcher import launch
    from actors.ray_session import attach_ray
    from scanner.bench.replay import cores_blocks_per_s, logs_per_block, market
    from scanner.chain.anvil import Anvil, searcher_key_file
    from scanner.chain.rpc import ChainClient
    from scanner.history.capture import capture
    from scanner.history.store import load
    from scanner.serve.client import QueryClient

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="arbscan-bench-") as tmp, Anvil.start() as node:
        m = market(node, pools, seed)
        assert m.deployment is not None
        config = local_config(node, m.deployment, Path(tmp) / "journal.sqlite", searcher_key_file(Path(tmp)))
        config = replace(config, chain=replace(config.chain, poll_interval_s=0.01),
                         submitter=replace(config.submitter, enabled=False))
        started_ray = not ray.is_initialized()
        if started_ray:
            attach_ray(None, config)
        store = str(Path(tmp) / "capture")
        latencies: list[float] = []
        try:
            first = m.w3.eth.block_number + 1
            pipeline = launch(config, progress=False)
            try:
                with QueryClient(pipeline.endpoints["query"], timeout_s=5.0) as client:
                    wait_served(client, first - 1, 120.0)

                    def served(number: int) -> None:
                        wait_served(client, number, 30.0)
                        latencies.append((time.monotonic() - m.last_mined_at) * 1000)

                    for _ in range(blocks):
                        m.step(on_mined=served)
            finally:
                pipeline.stop()
            capture(ChainClient(node.url), config.dexes, first, m.w3.eth.block_number, store, progress=False)
            report = run_replay(config, store, progress=False)
            heuristic = run_replay(config, store, lstm_risk=False, progress=False)
            windowed = run_replay(config, store, window=window, progress=False)
        finally:
            if started_ray:
                ray.shutdown()
        stored = load(store)
        cores, logs = cores_blocks_per_s(stored, config.tokens.base, config.aggregator.max_hops), logs_per_block(stored)
    return {"blocks": report.blocks, "pools": report.pools, "logs_per_block": round(logs, 1),
            "blocks_per_s": round(report.blocks_per_s, 1), "replay_block_ms": round(1000 / report.blocks_per_s, 2),
            "blocks_per_s_heuristic_risk": round(heuristic.blocks_per_s, 1),
            "window": window, "blocks_per_s_window": round(windowed.blocks_per_s, 1),
            "live_block_ms": round(statistics.median(latencies), 2),
            "live_block_p99_ms": round(sorted(latencies)[int(0.99 * (len(latencies) - 1))], 2),
            "cores_blocks_per_s": round(cores, 1), "shard_timeouts": report.shard_timeouts, "cpus": os.cpu_count(),
            "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
