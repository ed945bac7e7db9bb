import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.model.features import N_FEATURES, Normalizer
from scanner.model.lstm import WINDOW, ArbLSTM
from scanner.serve.batching import DynamicBatcher, StreamingBatcher, window_gap
from scanner.wire.frames import FeatureFrame

torch.set_num_threads(1)  # two shared cores: intra-op threads only contend with each other

# Typical scale of each feature (FEATURE_NAMES order: price change, volume, gas, liquidity,
# congestion, price gap, fee).
MEAN = np.array([0.0, 0.01, 3.0, 20.0, 0.5, 0.0, 0.003, 0.1])
STD = np.array([0.01, 0.02, 0.3, 2.0, 0.1, 0.005, 0.001, 0.3])


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(pools, block=0) -> FeatureFrame:
    pools = np.asarray(pools)
    x = np.tile(np.arange(len(pools), dtype=np.float32)[:, None], (1, N_FEATURES))
    return FeatureFrame(pools, np.broadcast_to(np.asarray(block), pools.shape), x)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_batch_waits_for_the_delay_then_runs(clock):
    b = DynamicBatcher(max_batch=8, max_delay_s=0.005, max_pending=64, clock=clock)
    assert b.wait_s() is None and not b.due()
    b.add(frame([1, 2, 3]))
    clock.now += 0.002
    b.add(frame([4]))
    assert not b.due() and b.wait_s() == pytest.approx(0.003)
    clock.now += 0.003  # the oldest row has now waited exactly max_delay
    assert b.due() and b.wait_s() == 0.0
    out = b.take()
    assert out.pool.tolist() == [1, 2, 3, 4] and len(b) == 0 and b.wait_s() is None


def test_full_batch_runs_at_once_and_leaves_the_rest_in_order(clock):
    b = DynamicBatcher(max_batch=4, max_delay_s=1.0, max_pending=64, clock=clock)
    b.add(frame([1, 2, 3]))
    assert not b.due()
    clock.now += 0.1
    b.add(frame([4, 5, 6]))
    assert b.due()
    assert b.take().pool.tolist() == [1, 2, 3, 4]
    # The remainder keeps its own arrival time (0.1 s after the first frame).
    assert len(b) == 2 and b.wait_s() == pytest.approx(1.0)
    clock.now += 1.0
    assert b.take().pool.tolist() == [5, 6]
    with pytest.raises(IndexError, match="empty"):
        b.take()


def test_zero_delay_runs_any_pending_row(clock):
    b = DynamicBatcher(max_batch=256, max_delay_s=0.0, max_pending=256, clock=clock)
    b.add(frame([9]))
    assert b.due()


def test_overflow_keeps_the_newest_row_of_each_pool(clock):
    b = DynamicBatcher(max_batch=4, max_delay_s=1.0, max_pending=5, clock=clock)
    assert b.add(frame([1, 2, 3], block=10)) == 0
    clock.now += 0.01
    assert b.add(frame([1, 2], block=11)) == 0  # 5 rows: at the bound, not over it
    clock.now += 0.01
    dropped = b.add(frame([1, 4], block=12))  # 7 rows > 5: superseded rows go
    assert dropped == 3 and b.dropped == 3 and len(b) == 4
    out = b.take()
    assert list(zip(out.pool.tolist(), out.block.tolist())) == [(3, 10), (2, 11), (1, 12), (4, 12)]


def test_overflow_never_drops_a_pools_only_row(clock):
    b = DynamicBatcher(max_batch=2, max_delay_s=1.0, max_pending=2, clock=clock)
    assert b.add(frame([1, 2, 3, 4])) == 0
    assert len(b) == 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 6), max_size=6), max_size=12), st.integers(1, 4), st.integers(0, 6))
def test_overflow_policy_properties(frames, max_batch, extra):
    """Whatever arrives: nothing is lost but superseded rows, every pool's newest row survives,
    arrival order is kept, and the queue stays within max(max_pending, pools)."""
    b = DynamicBatcher(max_batch=max_batch, max_delay_s=0.0, max_pending=max_batch + extra, clock=FakeClock())
    sent = []  # (pool, row id); the id rides in the block column, unique per row
    for pools in frames:
        ids = np.arange(len(sent), len(sent) + len(pools))
        b.add(FeatureFrame(np.asarray(pools, dtype=np.int64), ids, np.zeros((len(pools), N_FEATURES))))
        sent += list(zip(pools, ids.tolist()))
        assert len(b) <= max(b.max_pending, len({p for p, _ in sent}))
    out = []
    while len(b):
        f = b.take()
        out += list(zip(f.pool.tolist(), f.block.tolist()))
    assert len(out) + b.dropped == len(sent)
    assert out == [row for row in sent if row in set(out)]  # arrival order kept
    newest = {p: i for p, i in sent}
    assert {(p, i) for p, i in out if newest[p] == i} == set(newest.items())


def test_batcher_settings_are_checked():
    with pytest.raises(ValueError, match="max_pending >= max_batch"):
        DynamicBatcher(max_batch=10, max_pending=5)


@pytest.fixture
def model() -> ArbLSTM:
    torch.manual_seed(1)
    m = ArbLSTM()
    m.set_normalizer(Normalizer(MEAN, STD))
    return m.eval()


def sequences(pools: int, blocks: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(MEAN, STD, size=(pools, blocks, N_FEATURES)).astype(np.float32)


def window(model: ArbLSTM, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        p = model(torch.from_numpy(x))
    return np.stack([p.mu.numpy(), p.sigma.numpy(), p.p_trade.numpy()])


def test_streaming_equals_window_over_the_same_blocks(model):
    """Pools update in random subsets per batch; each ends equal to its 100-block window."""
    x = sequences(20, WINDOW)
    rng = np.random.default_rng(3)
    streamer = StreamingBatcher(model, capacity=4)  # grows while pools arrive
    done = np.zeros(20, dtype=int)
    last = {}
    while (done < WINDOW).any():
        pools = rng.permutation(np.flatnonzero(done < WINDOW))[:7]
        out = streamer.step(FeatureFrame(pools + 1000, done[pools], x[pools, done[pools]]))
        assert out.pool.tolist() == (pools + 1000).tolist()
        for i, p in enumerate(pools):
            last[p] = (out.mu[i], out.sigma[i], out.p_trade[i])
        done[pools] += 1
    got = np.array([last[p] for p in range(20)]).T
    np.testing.assert_allclose(got, window(model, x), atol=1e-5, rtol=1e-5)
    assert len(streamer) == 20


def test_same_pool_twice_in_a_batch_is_applied_in_order(model):
    x = sequences(2, 3)
    streamer = StreamingBatcher(model)
    out = streamer.step(FeatureFrame([5, 6, 5, 5], [0, 0, 1, 2], [x[0, 0], x[1, 0], x[0, 1], x[0, 2]]))
    assert sorted(zip(out.pool.tolist(), out.block.tolist())) == [(5, 0), (5, 1), (5, 2), (6, 0)]
    final = out.block == 2
    np.testing.assert_allclose(out.mu[final], window(model, x[:1])[0], atol=1e-5, rtol=1e-5)


def test_stale_rows_are_skipped_and_counted(model):
    x = sequences(1, 2)
    streamer = StreamingBatcher(model)
    first = streamer.step(FeatureFrame([1], [7], x[0, :1]))
    replay = streamer.step(FeatureFrame([1, 1], [7, 6], x[0, :2]))
    assert len(replay) == 0 and streamer.stale == 2
    np.testing.assert_allclose(first.mu, window(model, x[:, :1])[0], atol=1e-6)


def test_released_pool_starts_again_from_zero_state(model):
    x = sequences(1, 3)
    streamer = StreamingBatcher(model)
    streamer.step(FeatureFrame([1, 1], [0, 1], x[0, :2]))
    streamer.release(1)
    again = streamer.step(FeatureFrame([1], [2], x[0, 2:3]))
    np.testing.assert_allclose(again.mu, window(model, x[:, 2:3])[0], atol=1e-6)
    assert len(streamer) == 1


def test_window_gap_is_zero_over_the_same_blocks_and_reported_beyond(model):
    x = sequences(8, 400)
    same = window_gap(model, x[:, :WINDOW])
    assert same["max_abs_mu_in_sigmas"] < 1e-4 and same["max_abs_p_trade"] < 1e-5
    longer = window_gap(model, x)
    short = window_gap(model, x, window=5)
    print(f"\nstreaming vs window (untrained model): 400 vs 100 blocks {longer}; 400 vs 5 blocks {short}")
    assert short["max_abs_p_trade"] >= longer["max_abs_p_trade"]


def test_take_under_load_runs_a_backlog_as_one_batch(clock):
    b = DynamicBatcher(max_batch=4, max_delay_s=1.0, max_pending=64, clock=clock)
    for start in range(0, 10, 2):
        b.add(frame([start, start + 1]))
    assert b.take(limit=7).pool.tolist() == list(range(7))  # the server's max_load_batch
    assert len(b) == 3 and b.take(limit=100).pool.tolist() == [7, 8, 9] and len(b) == 0
    with pytest.raises(ValueError, match="at least one row"):
        b.take(limit=0)


def test_any_int64_pool_ids_keep_their_own_state(model):
    """Ids far apart, negative or huge, many new at once (the tables grow past double), shuffled
    between blocks, one released: each pool's predictions are its own sequence's."""
    ids = np.array([-(2**62), -1, 0, 3, 2**40, 2**62, *range(100, 140)], dtype=np.int64)
    x = sequences(len(ids), 4, seed=5)
    rng = np.random.default_rng(9)
    streamer = StreamingBatcher(model, capacity=2)
    got = {}
    for t in range(4):
        order = rng.permutation(len(ids))
        if t == 2:
            streamer.release(int(ids[order[0]]))  # forgets its history: from here it restarts at zero
            restarted = order[0]
        out = streamer.step(FeatureFrame(ids[order], np.full(len(ids), t), x[order, t]))
        assert out.pool.tolist() == ids[order].tolist()
        got.update({(int(p), t): mu for p, mu in zip(out.pool, out.mu)})
    assert len(streamer) == len(ids)
    for i, pool in enumerate(ids.tolist()):
        start = 2 if i == restarted else 0
        want = [window(model, x[i:i + 1, start:t + 1])[0][0] for t in range(start, 4)]
        np.testing.assert_allclose([got[pool, t] for t in range(start, 4)], want, atol=1e-5, rtol=1e-5)
