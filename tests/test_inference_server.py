"""The server over real ZMQ sockets on 127.0.0.1; every wait has a deadline."""
import time
from collections.abc import Callable, Iterator

import msgpack
import numpy as np
import pytest
import torch
import zmq

from scanner.model.features import N_FEATURES, FeatureRow, Normalizer
from scanner.model.lstm import ArbLSTM
from scanner.serve.inference_server import InferenceServer, ServerConfig
from scanner.wire.frames import FeatureFrame, PredictionFrame, WireError

torch.set_num_threads(1)  # two shared cores: intra-op threads only contend with each other

# Typical scale of each feature (FEATURE_NAMES order: price change, volume, gas, liquidity,
# congestion, price gap, fee).
MEAN = np.array([0.0, 0.01, 3.0, 20.0, 0.5, 0.0, 0.003, 0.1])
STD = np.array([0.01, 0.02, 0.3, 2.0, 0.1, 0.005, 0.001, 0.3])


def test_feature_frame_round_trip():
    rows = [FeatureRow(3, 10, 0.001, 0.02, 3.4, 21.0, 0.6, 0.004, 0.003),
            FeatureRow(2**40, 11, -0.002, 0.0, 3.5, 19.0, 0.4, -0.012, 0.0005, 1.1)]
    frame = FeatureFrame.decode(FeatureFrame.from_rows(rows).encode())
    assert frame.pool.tolist() == [3, 2**40] and frame.block.tolist() == [10, 11]
    np.testing.assert_allclose(frame.x, np.array([r.values() for r in rows]), rtol=1e-6)
    assert len(FeatureFrame.decode(FeatureFrame.from_rows([]).encode())) == 0


def test_frames_that_cannot_be_read_are_refused():
    good = FeatureFrame.from_rows([FeatureRow(1, 1, 0, 0, 0, 0, 0, 0, 0)])
    with pytest.raises(WireError, match="expected a 'predictions' frame, got 'features'"):
        PredictionFrame.decode(good.encode())
    msg = msgpack.unpackb(good.encode())
    with pytest.raises(WireError, match="wire version 2"):
        FeatureFrame.decode(msgpack.packb({**msg, "v": 2}))
    msg["cols"]["x"][1] = [1, 4]
    msg["cols"]["x"][0] = msg["cols"]["x"][0][:16]
    with pytest.raises(WireError, match=rf"must be \[rows, {N_FEATURES}\]"):
        FeatureFrame.decode(msgpack.packb(msg))
    with pytest.raises(WireError, match="not a msgpack frame"):
        FeatureFrame.decode(b"\xc1garbage")


@pytest.fixture
def model() -> ArbLSTM:
    torch.manual_seed(2)
    m = ArbLSTM()
    m.set_normalizer(Normalizer(MEAN, STD))
    return m.eval()


@pytest.fixture
def sockets() -> Iterator[tuple[zmq.Context, zmq.Socket, str]]:
    """A bound PULL standing in for the aggregator, on a free port."""
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PULL)
    sink.linger = 0
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    yield ctx, sink, f"tcp://127.0.0.1:{port}"
    sink.close()
    ctx.term()


def start(model: ArbLSTM, sink_addr: str, **config) -> InferenceServer:
    server = InferenceServer(model, ServerConfig("tcp://127.0.0.1:*", sink_addr, **config))
    server.start()
    return server


def connect(ctx: zmq.Context, server: InferenceServer) -> zmq.Socket:
    push = ctx.socket(zmq.PUSH)
    push.linger = 0
    push.sndtimeo = 5000
    push.connect(server.features_endpoint)
    return push


def collect(sink: zmq.Socket, until: Callable[[list[PredictionFrame]], bool],
            timeout_s: float = 10.0) -> list[PredictionFrame]:
    frames: list[PredictionFrame] = []
    deadline = time.monotonic() + timeout_s
    while not until(frames) and time.monotonic() < deadline:
        if sink.poll(50):
            frames.append(PredictionFrame.decode(sink.recv()))
    return frames


def sequences(pools: int, blocks: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(MEAN, STD, size=(pools, blocks, N_FEATURES)).astype(np.float32)


def expected(model: ArbLSTM, x: np.ndarray) -> np.ndarray:
    """[3, T]: (mu, sigma, p_trade) after each block of one pool's sequence, from a zero state."""
    with torch.no_grad():
        p, _ = model.sequence(torch.from_numpy(x)[None])
    return np.stack([p.mu[0].numpy(), p.sigma[0].numpy(), p.p_trade[0].numpy()])


def by_pool(frames: list[PredictionFrame]) -> dict[int, PredictionFrame]:
    out = PredictionFrame.concat(frames)
    return {int(p): out.take(out.pool == p) for p in np.unique(out.pool)}


def test_rows_in_predictions_out_equal_to_the_model(model, sockets):
    ctx, sink, sink_addr = sockets
    pools, blocks = np.array([11, 22, 33]), 30
    x = sequences(3, blocks)
    server = start(model, sink_addr, max_batch=8, max_delay_s=0.001)
    push = connect(ctx, server)
    try:
        for b in range(blocks):
            push.send(FeatureFrame(pools, np.full(3, b), x[:, b]).encode())
        poisoned = FeatureFrame([44, 55], [0, 0], np.where([[True] * N_FEATURES, [False] * N_FEATURES], np.nan, x[:2, 0]))
        push.send(poisoned.encode())
        push.send(b"not a frame")
        frames = collect(sink, lambda fs: sum(map(len, fs)) >= 3 * blocks + 1)
    finally:
        push.close()
        server.stop()
    got = by_pool(frames)
    assert sorted(got) == [11, 22, 33, 55]  # pool 44's row held NaN
    for i, pool in enumerate(pools.tolist()):
        assert got[pool].block.tolist() == list(range(blocks))  # one prediction per row, in block order
        np.testing.assert_allclose(np.stack([got[pool].mu, got[pool].sigma, got[pool].p_trade]),
                                   expected(model, x[i]), atol=1e-5, rtol=1e-5)
    s = server.stats
    assert (s.rows_in, s.rows_invalid, s.frames_invalid, s.predictions_out) == (3 * blocks + 2, 1, 1, 3 * blocks + 1)
    assert s.rows_dropped == 0 and s.pools == 4 and "NaN" not in s.last_error and "msgpack" in s.last_error


def test_burst_beyond_the_high_water_mark_keeps_the_newest_row_per_pool(model, sockets):
    """100 frames into a 4-frame HWM and an 8-row queue: superseded rows are dropped, counted,
    and never stepped; every pool's newest block is always predicted."""
    ctx, sink, sink_addr = sockets
    pools, blocks = np.array([1, 2, 3]), 100
    x = sequences(3, blocks)
    server = start(model, sink_addr, hwm=4, max_batch=8, max_pending=8, max_delay_s=0.05)
    push = connect(ctx, server)
    try:
        for b in range(blocks):
            push.send(FeatureFrame(pools, np.full(3, b), x[:, b]).encode())
        # Rows are served in arrival order, so the newest block's predictions come last.
        frames = collect(sink, lambda fs: sum(int((f.block == blocks - 1).sum()) for f in fs) == 3)
    finally:
        push.close()
        server.stop()
    s = server.stats
    assert s.rows_in == 3 * blocks and s.rows_dropped > 0
    assert s.predictions_out + s.rows_dropped + s.rows_stale == s.rows_in
    got = by_pool(frames)
    assert sum(map(len, got.values())) == s.predictions_out
    for i, pool in enumerate(pools.tolist()):
        applied = got[pool].block
        assert applied[-1] == blocks - 1 and (np.diff(applied) > 0).all()
        # The pool's state saw exactly the applied blocks, so the predictions match that history.
        np.testing.assert_allclose(got[pool].mu, expected(model, x[i, applied])[0], atol=1e-5, rtol=1e-5)


def test_one_frame_burst_is_coalesced_deterministically(model, sockets):
    ctx, sink, sink_addr = sockets
    blocks = 50
    x = sequences(3, blocks)
    rows = FeatureFrame(np.tile([7, 8, 9], blocks), np.repeat(np.arange(blocks), 3), x.transpose(1, 0, 2).reshape(-1, N_FEATURES))
    server = start(model, sink_addr, max_batch=8, max_pending=8)
    push = connect(ctx, server)
    try:
        push.send(rows.encode())
        frames = collect(sink, lambda fs: sum(map(len, fs)) >= 3)
    finally:
        push.close()
        server.stop()
    out = PredictionFrame.concat(frames)
    assert sorted(zip(out.pool.tolist(), out.block.tolist())) == [(7, 49), (8, 49), (9, 49)]
    assert server.stats.rows_dropped == 3 * blocks - 3
    np.testing.assert_allclose(out.mu[out.pool == 8], expected(model, x[1, -1:])[0], atol=1e-5)


def test_a_server_that_cannot_bind_says_so(model, sockets):
    _, _, taken = sockets
    server = InferenceServer(model, ServerConfig(taken, "tcp://127.0.0.1:1"))
    with pytest.raises(RuntimeError, match="did not start on tcp://127.0.0.1.*Address already in use"):
        server.start()
    assert isinstance(server.error, zmq.ZMQError)


@pytest.mark.parametrize("max_load_batch, batches", [(64, [50]), (20, [20, 20, 10]), (8, [8] * 6 + [2])])
def test_a_backlog_runs_in_batches_of_max_load_batch(model, sockets, max_load_batch, batches):
    ctx, sink, sink_addr = sockets
    x = sequences(50, 1)[:, 0]
    server = start(model, sink_addr, max_batch=8, max_load_batch=max_load_batch)
    push = connect(ctx, server)
    try:
        push.send(FeatureFrame(np.arange(50), np.zeros(50), x).encode())  # 50 rows waiting at once
        frames = collect(sink, lambda fs: sum(map(len, fs)) >= 50)
    finally:
        push.close()
        server.stop()
    assert [len(f) for f in frames] == batches and server.stats.batches == len(batches)
    assert PredictionFrame.concat(frames).pool.tolist() == list(range(50))
