"""`arbscan bench inference`: LSTM throughput three ways, and queueing latency through the server.

One "update" is one pool advanced by one block. The naive way recomputes the pool's
100-block window for every update; batching windows helps; streaming keeps each pool's
state and runs one LSTM step per update. The stream figure runs `StreamingBatcher.step` at the
batch the server takes under load (`ServerConfig.max_load_batch`); `raw_step_updates_per_s` is
the bare `ArbLSTM.step` at that batch (state and input already in place, predictions copied
out), so `efficiency` = stream / raw is what pool bookkeeping (slots, gather, scatter, frames)
leaves of the model's speed. The two take turns, so both see the same load; `*_per_cpu_s`
divide by the thread's CPU time instead of the wall clock: the rates with a core to itself. The latency figure sends feature frames as watchers would (one
frame per watcher per block, all pools every block) over ZMQ + msgpack into an
`InferenceServer` process and times each row until its prediction comes back.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zmq

from scanner.model.features import N_FEATURES
from scanner.model.lstm import WINDOW, ArbLSTM, Checkpoint, default_device
from scanner.serve.batching import StreamingBatcher
from scanner.serve.inference_server import ServerConfig
from scanner.wire.frames import FeatureFrame, PredictionFrame


def run(seconds: float = 1.0, batch: int = ServerConfig.max_load_batch, window_batch: int = 256,
        pools: int = 16384, watchers: int = 4, pools_per_watcher: int = 128, blocks: int = 150,
        block_interval_s: float = 0.02, torch_threads: int = 1, checkpoint: str | None = None,
        seed: int = 0) -> dict[str, Any]:
    """Measure everything in one run; `seconds` is the timed span of each throughput figure.

    `batch`: rows per streaming step (the server's batch under load); `window_batch`: windows
    per call of the batched window figure. The latency load: `watchers` senders with
    `pools_per_watcher` pools each, one frame each per block, a block every `block_interval_s`
    (every pool every block, like the watchers), into a server with `ServerConfig`'s defaults.
    One torch thread: on two cores the other one decodes frames and runs ZMQ.
    Weights do not change speed, so without `checkpoint` a seeded untrained model is used.
    """
    if pools < batch:
        raise ValueError(f"the stream figure steps {batch} distinct pools at once: pools ({pools}) must be at least batch")
    device = default_device()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        if checkpoint:
            model = Checkpoint.load(checkpoint).build(device)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = ArbLSTM().to(device).eval()
        rng = np.random.default_rng(seed)
        unbatched = _windows_per_s(model, 1, seconds, rng)
        batched = _windows_per_s(model, window_batch, seconds, rng)
        rates = _interleaved({"raw": _raw_step(model, batch, rng), "stream": _stream_step(model, batch, pools, rng)},
                             seconds)
        latency = _queue_latency(model, watchers, pools_per_watcher, blocks, block_interval_s, torch_threads, rng)
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "batched_updates_per_s": batched,
        "unbatched_updates_per_s": unbatched,
        "stream_updates_per_s": rates["stream"].per_s,
        "raw_step_updates_per_s": rates["raw"].per_s,
        "efficiency": rates["stream"].per_s / rates["raw"].per_s,
        "stream_updates_per_cpu_s": rates["stream"].per_cpu_s,
        "raw_step_updates_per_cpu_s": rates["raw"].per_cpu_s,
        "efficiency_cpu": rates["stream"].per_cpu_s / rates["raw"].per_cpu_s,
        "ratio": rates["stream"].per_s / unbatched,
        **latency,
        "config": {"device": str(device), "torch_threads": torch_threads, "batch": batch, "window_batch": window_batch,
                   "window": WINDOW, "server_max_batch": ServerConfig.max_batch,
                   "hidden": list(model.config.hidden), "stream_pools": pools, "watchers": watchers,
                   "pools_per_watcher": pools_per_watcher, "blocks": blocks, "block_interval_s": block_interval_s,
                   "torch": torch.__version__},
    }


def _timed(fn: Callable[[], int], seconds: float) -> float:
    """Items per second of repeated `fn()` (which returns items done), after a short warm-up."""
    for _ in range(3):
        fn()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed


def _windows_per_s(model: ArbLSTM, batch: int, seconds: float, rng: np.random.Generator) -> float:
    x = torch.as_tensor(rng.normal(size=(batch, WINDOW, N_FEATURES)), dtype=torch.float32, device=model.in_mean.device)

    @torch.inference_mode()
    def once() -> int:
        model(x).mu.cpu()
        return batch

    return _timed(once, seconds)


@dataclass(frozen=True)
class _Rate:
    per_s: float  # items per wall-clock second
    per_cpu_s: float  # items per second of this thread's CPU time: the rate with a core to itself


def _interleaved(fns: dict[str, Callable[[], int]], seconds: float) -> dict[str, _Rate]:
    """Rates of several `fn()`s (each returns items done) called in turn for `seconds` each.

    Taking turns, every function sees the same load from other processes on a shared machine,
    so ratios of the wall-clock rates hold even when the rates themselves swing.
    """
    for fn in fns.values():
        for _ in range(3):
            fn()
    done, wall, cpu = dict.fromkeys(fns, 0), dict.fromkeys(fns, 0.0), dict.fromkeys(fns, 0.0)
    while min(wall.values()) < seconds:
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.thread_time()
            done[name] += fn()
            wall[name] += time.perf_counter() - w
            cpu[name] += time.thread_time() - c
    return {name: _Rate(done[name] / wall[name], done[name] / max(cpu[name], 1e-9)) for name in fns}


def _raw_step(model: ArbLSTM, batch: int, rng: np.random.Generator) -> Callable[[], int]:
    """The bare LSTM step: `model.step` on `batch` rows whose state and input wait on the device."""
    device = model.in_mean.device
    x = torch.as_tensor(rng.normal(size=(batch, N_FEATURES)), dtype=torch.float32, device=device)
    state = model.zero_state(batch)

    @torch.inference_mode()
    def once() -> int:
        pred, _ = model.step(x, state)
        torch.stack([pred.mu, pred.sigma, pred.p_trade]).cpu().numpy()
        return batch

    return once


def _stream_step(model: ArbLSTM, batch: int, pools: int, rng: np.random.Generator) -> Callable[[], int]:
    """`StreamingBatcher.step` on `batch` rows of random pools out of `pools`, a new block each call,
    once every pool has its slot (the steady state after a deployment's first block)."""
    streamer = StreamingBatcher(model, capacity=pools)
    frames = [FeatureFrame(rng.permutation(pools)[:batch], np.zeros(batch, dtype=np.int64),
                           rng.normal(size=(batch, N_FEATURES))) for _ in range(64)]
    for start in range(0, pools, batch):
        ids = np.arange(start, min(pools, start + batch))
        streamer.step(FeatureFrame(ids, np.zeros(len(ids), dtype=np.int64), np.zeros((len(ids), N_FEATURES))))
    block = 0

    def once() -> int:
        nonlocal block
        block += 1
        frame = frames[block % len(frames)]
        streamer.step(FeatureFrame(frame.pool, np.full(batch, block), frame.x))
        return batch

    return once


def _queue_latency(model: ArbLSTM, watchers: int, pools_per_watcher: int, blocks: int, interval: float,
                   torch_threads: int, rng: np.random.Generator) -> dict[str, Any]:
    """Rows from `watchers` PUSH sockets through a server in its own process, as in the actor.

    A server thread in this process would share the GIL with the senders and the receiver,
    and a wake-up could wait out Python's 5 ms thread switch interval: a cost of the bench,
    not of the deployment, where the server is the only busy thread of the actor's process.
    """
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    sink.linger = 0
    sink_port = sink.bind_to_random_port("tcp://127.0.0.1")
    features = rng.normal(size=(watchers, pools_per_watcher, N_FEATURES))
    sent_at = np.full((watchers, blocks), np.nan)
    warmup = min(10, blocks // 5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.pt")
        Checkpoint.from_model(model).save(path)
        proc = subprocess.Popen(
            [sys.executable, "-m", "scanner.serve.inference_server", path, "--predictions", f"tcp://127.0.0.1:{sink_port}",
             "--torch-threads", str(torch_threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if proc.stdin is None or proc.stdout is None:  # cannot happen: both are pipes
            raise RuntimeError("bench inference server started without its stdin/stdout pipes")
        try:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"bench inference server exited with {proc.wait()} before serving (see stderr)")
            endpoint = json.loads(line)["features"]

            def send() -> None:
                socks = [ctx.socket(zmq.PUSH) for _ in range(watchers)]
                for s in socks:
                    s.linger = 0
                    s.connect(endpoint)
                start = time.perf_counter()
                for b in range(blocks):
                    time.sleep(max(0.0, start + b * interval - time.perf_counter()))
                    for w, s in enumerate(socks):
                        pools = np.arange(w * pools_per_watcher, (w + 1) * pools_per_watcher)
                        data = FeatureFrame(pools, np.full(pools_per_watcher, b), features[w]).encode()
                        sent_at[w, b] = time.perf_counter()
                        s.send(data)
                for s in socks:
                    s.close()

            sender = threading.Thread(target=send, name="bench-watchers", daemon=True)
            waits: list[np.ndarray] = []
            expected = watchers * pools_per_watcher * blocks
            received = 0
            sender.start()
            deadline = time.monotonic() + blocks * interval + 30
            while received < expected and time.monotonic() < deadline:
                if not sink.poll(200):
                    continue
                out = PredictionFrame.decode(sink.recv())
                now = time.perf_counter()
                received += len(out)
                keep = out.block >= warmup
                waits.append(now - sent_at[out.pool[keep] // pools_per_watcher, out.block[keep]])
            sender.join(5)
            proc.stdin.close()
            stats = json.loads(proc.stdout.readline())["stats"]
        finally:
            if not proc.stdin.closed:
                proc.stdin.close()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            sink.close()
            ctx.term()
    ms = np.concatenate(waits) * 1000 if waits else np.array([np.nan])
    return {
        "p50_queue_ms": float(np.percentile(ms, 50)), "p99_queue_ms": float(np.percentile(ms, 99)),
        "max_queue_ms": float(ms.max()), "latency_rows": int(expected), "latency_rows_received": received,
        "server_batches": stats["batches"], "server_rows_dropped": stats["rows_dropped"],
        "mean_batch_rows": stats["rows_in"] / max(stats["batches"], 1),
    }

