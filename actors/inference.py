"""LstmInference: the streaming LSTM behind the feature PULL socket, on CUDA when present.

Runs `scanner.serve.inference_server` in this actor; predictions go to the aggregator's ingest
socket. Without a checkpoint it serves an untrained model and says so (`model: untrained`),
and the aggregator keeps its heuristic risk model until real predictions exist.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import ray

from actors.loop import ActorLoop, Metrics
from actors.ray_session import bind_address, remember_address
from scanner.config import InferenceConfig
from scanner.model.lstm import ArbLSTM, Checkpoint, default_device, shipped_checkpoint
from scanner.serve.inference_server import InferenceServer, ServerConfig


def resolve_checkpoint(inference: InferenceConfig) -> Path | None:
    """The configured checkpoint, else the one shipped with the package, else None."""
    if inference.checkpoint:
        return Path(inference.checkpoint)
    return shipped_checkpoint()


@ray.remote
class LstmInference:
    def __init__(self, inference: InferenceConfig, bind: str, ingest_endpoint: str, key: str,
                 routes: dict[int, str] | None = None) -> None:
        """`routes`: with several chains, each chain id's aggregator ingest (`ingest_endpoint` is the default's)."""
        self.metrics = Metrics("inference")
        path = resolve_checkpoint(inference)
        device = None if inference.device == "auto" else inference.device
        if path is not None:
            model = Checkpoint.load(path).build(device)
            self.model_label = f"checkpoint {path.name}"
        else:
            model = ArbLSTM().to(device or default_device()).eval()
            self.model_label = "untrained"
        config = ServerConfig(bind_address(bind, key), ingest_endpoint, bind_features=True, bind_predictions=False,
                              max_batch=inference.max_batch, max_delay_s=inference.max_delay_ms / 1000,
                              routes=routes or {})
        self.server = InferenceServer(model, config)
        self.server.start()
        self.endpoint = remember_address(key, self.server.features_endpoint)
        self._seen = dataclasses.replace(self.server.stats)
        self.loop = ActorLoop("inference", self._report, 1.0)
        self.loop.start()

    def _report(self) -> None:
        """Turn the server's counters into metrics once a second."""
        if self.server.error is not None:
            raise RuntimeError(f"inference server failed: {self.server.error!r}")
        s, seen, tags = self.server.stats, self._seen, self.metrics.tags
        self.metrics.count(self.metrics.feature_rows, s.rows_in - seen.rows_in)
        self.metrics.count(self.metrics.dropped, s.rows_dropped - seen.rows_dropped + s.predictions_dropped - seen.predictions_dropped)
        if s.batches > seen.batches:
            self.metrics.batch_size.observe(s.last_batch_rows, tags)
            self.metrics.latency_ms.observe(s.last_batch_ms, tags)
        self.metrics.queue_depth.set(len(self.server.batcher), tags)
        self.metrics.pools_watched.set(s.pools, tags)
        self._seen = dataclasses.replace(s)

    def endpoints(self) -> dict[str, str]:
        return {"features": self.endpoint}

    def health(self) -> dict:
        return self.loop.health() | {"model": self.model_label}

    def stats(self) -> dict:
        s = dataclasses.asdict(self.server.stats)
        s["batch_mean"] = s["rows_in"] / s["batches"] if s["batches"] else 0.0
        return {"role": "inference", "model": self.model_label, "device": str(self.server.streamer.device)} | s

    def stop(self) -> None:
        self.loop.stop()
        self.server.stop()
