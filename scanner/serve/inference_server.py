"""The inference data plane: feature frames in over ZMQ PULL, prediction frames out over PUSH.

No Ray here: the LstmInference actor runs `InferenceServer.start()` and reads `stats`.

Queues are bounded at every hop. The ZMQ sockets have high-water marks (`hwm` frames);
the server drains its PULL socket eagerly into the `DynamicBatcher`, whose overflow policy
keeps the newest row of each pool and counts what it drops (`rows_dropped`), so under
overload predictions come from each pool's freshest block rather than from a backlog.
Rows with NaN or infinity are dropped and counted (`rows_invalid`), undecodable frames
likewise (`frames_invalid`, with the reason in `last_error`). A prediction frame that finds
the PUSH queue full (no reader, or a slow one) is dropped and counted
(`predictions_dropped`) so that a stalled consumer never stalls inference.

Without Ray: `python -m scanner.serve.inference_server CHECKPOINT --predictions ADDR` serves until
its stdin closes, printing the bound endpoints as a JSON line first and the stats last.

Sockets: by default the server binds its PULL (watchers connect to it) and connects its
PUSH (the aggregator binds its PULL): sinks bind, so either side may start first.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import cast

import numpy as np
import torch
import zmq

from scanner.model.lstm import ArbLSTM, Checkpoint
from scanner.serve.batching import DynamicBatcher, StreamingBatcher
from scanner.wire.frames import FeatureFrame, PredictionFrame, WireError


@dataclass(frozen=True)
class ServerConfig:
    features_addr: str  # e.g. "tcp://127.0.0.1:5601", or "tcp://127.0.0.1:*" to bind a free port
    predictions_addr: str
    bind_features: bool = True
    bind_predictions: bool = False
    max_batch: int = 256  # rows that start a batch at once
    max_delay_s: float = 0.002
    max_load_batch: int = 4096  # rows one batch may take when more than max_batch wait (a backlog)
    max_pending: int = 16384  # rows queued before the overflow policy applies
    hwm: int = 1000  # ZMQ high-water mark, in frames, of both sockets
    capacity: int = 1024  # initial pool slots (grows by doubling)
    torch_threads: int | None = 1  # process-wide; 1 leaves the other core to ZMQ and decoding
    poll_ms: int = 50  # longest sleep between checks of the stop event
    # Several chains: predictions of a chain id listed here go to that chain's aggregator (connected
    # PUSH), the others to `predictions_addr`.
    routes: dict[int, str] = field(default_factory=dict)


@dataclass
class ServerStats:
    """Counters for the actor's metrics; written by the server thread only."""

    frames_in: int = 0
    frames_invalid: int = 0
    rows_in: int = 0
    rows_invalid: int = 0
    rows_dropped: int = 0  # superseded by a newer row of the same pool under overload
    rows_stale: int = 0  # not newer than the pool's last applied block
    predictions_out: int = 0
    predictions_dropped: int = 0
    batches: int = 0
    pools: int = 0
    last_batch_rows: int = 0
    last_batch_ms: float = 0.0
    busy_s: float = 0.0  # time spent running batches
    last_error: str = ""


class InferenceServer:
    """Streaming LSTM inference behind a PULL/PUSH pair, run in a thread until stopped."""

    def __init__(self, model: ArbLSTM, config: ServerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.stats = ServerStats()
        self.streamer = StreamingBatcher(model, config.capacity)
        self.batcher = DynamicBatcher(config.max_batch, config.max_delay_s, config.max_pending, clock)
        self.features_endpoint = ""  # resolved addresses (a wildcard port becomes the real one)
        self.predictions_endpoint = ""
        self.ready = threading.Event()
        self.error: Exception | None = None  # why the server thread ended, if it failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._routes: dict[int, zmq.Socket] = {}  # chain id -> PUSH to its aggregator (server thread only)

    def start(self, timeout_s: float = 10.0) -> threading.Thread:
        """Run in a daemon thread; returns once the sockets are bound or connected."""
        self._thread = threading.Thread(target=self._run_thread, name="inference-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.01):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"inference server did not start on {self.config.features_addr} / "
                                   f"{self.config.predictions_addr}: {self.error!r}")
        return self._thread

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"inference server thread still running {timeout_s}s after stop")

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set. Sockets live and die in this thread (ZMQ sockets are not thread-safe)."""
        cfg = self.config
        if cfg.torch_threads and self.streamer.device.type == "cpu":
            torch.set_num_threads(cfg.torch_threads)
        ctx = zmq.Context()
        pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
        try:
            pull.rcvhwm = push.sndhwm = cfg.hwm
            pull.linger = push.linger = 0
            self.features_endpoint = _attach(pull, cfg.features_addr, cfg.bind_features)
            self.predictions_endpoint = _attach(push, cfg.predictions_addr, cfg.bind_predictions)
            for chain, addr in cfg.routes.items():
                routed = self._routes[chain] = ctx.socket(zmq.PUSH)
                routed.sndhwm, routed.linger = cfg.hwm, 0
                routed.connect(addr)
            poller = zmq.Poller()
            poller.register(pull, zmq.POLLIN)
            self.ready.set()
            while not stop.is_set():
                wait = self.batcher.wait_s()
                timeout = cfg.poll_ms if wait is None else min(cfg.poll_ms, math.ceil(wait * 1000))
                if poller.poll(timeout):
                    self._drain(pull)
                while self.batcher.due():
                    self._run_batch(push)
        finally:
            pull.close()
            push.close()
            for routed in self._routes.values():
                routed.close()
            ctx.term()

    def _run_thread(self) -> None:
        try:
            self.run(self._stop)
        except Exception as e:  # kept for start() and the actor's health check instead of a thread traceback
            self.error = e

    def _drain(self, pull: zmq.Socket) -> None:
        """Read every waiting frame (up to `max_pending` rows) into the batcher."""
        rows = 0
        while rows < self.config.max_pending:
            try:
                data = pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.stats.frames_in += 1
            try:
                frame = FeatureFrame.decode(data)
            except WireError as e:
                self.stats.frames_invalid += 1
                self.stats.last_error = str(e)
                continue
            rows += len(frame)
            self.stats.rows_in += len(frame)
            finite = np.isfinite(frame.x).all(axis=1)
            if not finite.all():
                self.stats.rows_invalid += int((~finite).sum())
                self.stats.last_error = f"dropped {int((~finite).sum())} feature rows with NaN or infinity"
                frame = frame.take(finite)
            self.stats.rows_dropped += self.batcher.add(frame)

    def _run_batch(self, push: zmq.Socket) -> None:
        frame = self.batcher.take(max(self.config.max_batch, self.config.max_load_batch))
        t0 = time.perf_counter()
        out = self.streamer.step(frame)
        elapsed = time.perf_counter() - t0
        s = self.stats
        s.batches += 1
        s.last_batch_rows, s.last_batch_ms, s.busy_s = len(frame), elapsed * 1000, s.busy_s + elapsed
        s.rows_stale, s.pools = self.streamer.stale, len(self.streamer)
        if not len(out):
            return
        if not self._routes:
            self._send(push, out)
            return
        for chain in np.unique(out.chain).tolist():
            self._send(self._routes.get(chain, push), out.take(out.chain == chain))

    def _send(self, push: zmq.Socket, out: PredictionFrame) -> None:
        try:
            push.send(out.encode(), zmq.NOBLOCK)
            self.stats.predictions_out += len(out)
        except zmq.Again:
            self.stats.predictions_dropped += len(out)


def _attach(sock: zmq.Socket, addr: str, bind: bool) -> str:
    if bind:
        sock.bind(addr)
        return cast(bytes, sock.getsockopt(zmq.LAST_ENDPOINT)).decode()
    sock.connect(addr)
    return addr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scanner.serve.inference_server",
                                     description="Serve an LSTM checkpoint over ZMQ until stdin closes.")
    parser.add_argument("checkpoint")
    parser.add_argument("--features", default="tcp://127.0.0.1:*", help="address to bind the PULL socket to")
    parser.add_argument("--predictions", required=True, help="address to connect the PUSH socket to")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    parser.add_argument("--max-load-batch", type=int, default=ServerConfig.max_load_batch)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    config = ServerConfig(args.features, args.predictions, max_batch=args.max_batch,
                          max_delay_s=args.max_delay_ms / 1000, max_load_batch=args.max_load_batch,
                          torch_threads=args.torch_threads)
    server = InferenceServer(Checkpoint.load(args.checkpoint).build(), config)
    server.start()
    print(json.dumps({"features": server.features_endpoint, "predictions": server.predictions_endpoint}), flush=True)
    sys.stdin.read()
    server.stop()
    print(json.dumps({"stats": asdict(server.stats)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
