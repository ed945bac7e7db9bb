"""Hostile frames against a live query server: every frame libzmq lets through gets a structured reply.

5,000 generated frames (100 hypothesis examples x 50 frames, pipelined on one DEALER) plus a few
frames over the size limit on their own sockets (libzmq drops those by disconnecting the peer).
Memory bounds, replaying the same frames after the fuzz (hypothesis itself grows the process, so
the fuzz pass is only reported): process RSS grows by less than 16 MiB over a replay, and with
tracemalloc on, what the server's code still holds (traces whose stack passes through
scanner/query*.py) grows by less than 64 KiB.
"""
from __future__ import annotations

import gc
import os
import time
import tracemalloc

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.config import SocketsConfig
from scanner.serve.query_server import QueryServer
from scanner.wire.query import ERROR_CODES, Health, Limits, RankingStore, pack, unpack

BATCH = 50
EXAMPLES = 100
RETAINED_BOUND = 64 * 1024
RSS_BOUND = 16 * 2**20
LIMITS = Limits()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**300), max_value=2**300), st.floats(),
    st.text(max_size=40), st.binary(max_size=40),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6)
                      | st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=6),
                      max_leaves=30)
field_names = st.sampled_from(["v", "op", "n", "min_ev", "token", "id", "x", ""])
ops = st.one_of(st.sampled_from(["top", "get", "stats", "health"]), st.text(max_size=12), values)


def _deep(depth: int, kind: int) -> bytes:
    if kind == 0:
        return b"\x91" * depth + b"\x00"  # [[[...]]]
    return b"\x81\xa1a" * depth + b"\x00"  # {"a": {"a": ...}}


def _huge_array(claimed: int, present: int) -> bytes:
    return b"\xdd" + claimed.to_bytes(4, "big") + b"\x00" * present


# (category, frame); the category decides which replies are acceptable
frames = st.one_of(
    st.tuples(st.just("value"), values.map(pack)),
    st.tuples(st.just("request"), st.dictionaries(field_names, st.one_of(values, ops), max_size=5)
              .map(lambda d: {"v": 1, **d}).map(pack)),
    st.tuples(st.just("version"), st.tuples(values, ops).map(lambda t: pack({"v": t[0], "op": t[1]}))),
    st.tuples(st.just("absurd_n"), st.integers(min_value=-(2**300), max_value=2**300)
              .filter(lambda n: not 1 <= n <= 1000).map(lambda n: pack({"v": 1, "op": "top", "n": n}))),
    st.tuples(st.just("deep"), st.builds(_deep, st.integers(5, 20_000), st.integers(0, 1))),
    st.tuples(st.just("huge_array"), st.builds(_huge_array, st.integers(65, 2**32 - 1), st.integers(0, 200))),
    st.tuples(st.just("big_array"), st.integers(65, 5000).map(lambda k: msgpack.packb(list(range(k))))),
    st.tuples(st.just("raw"), st.binary(min_size=0, max_size=2000)),
    st.tuples(st.just("truncated"), st.tuples(st.sampled_from([
        {"v": 1, "op": "top", "n": 10, "min_ev": 0.5, "token": "WETH"}, {"v": 1, "op": "get", "id": "x" * 100},
        {"v": 1, "op": "health"}]), st.floats(0, 0.999)).map(lambda t: pack(t[0])[:int(len(pack(t[0])) * t[1])])),
)


def _check(category: str, frame: bytes, reply: dict) -> None:
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), (category, frame[:80], reply)
    if reply["ok"]:
        assert category in ("request", "version"), (category, frame[:80], reply)  # only these can be valid
        return
    error = reply["error"]
    assert error["code"] in ERROR_CODES and isinstance(error["message"], str) and error["message"]
    if category in ("deep", "huge_array", "big_array"):
        assert error["code"] == "too_large", (category, frame[:80], error)
    if category == "absurd_n":
        assert error["code"] == "bad_field", (category, error)


def _retained(snapshot: tracemalloc.Snapshot) -> int:
    server_code = snapshot.filter_traces([tracemalloc.Filter(True, "*scanner/query*.py", all_frames=True)])
    return sum(stat.size for stat in server_code.statistics("filename"))


@pytest.fixture
def server():
    store = RankingStore()
    store.replace(1, [{"id": "a", "ev": 1.0, "block": 1, "tokens": ["0x" + "aa" * 20]}])
    srv = QueryServer(SocketsConfig(query="tcp://127.0.0.1:*", publish="tcp://127.0.0.1:*"), store,
                      stats=dict, health=lambda: Health("ok"), limits=LIMITS).start()
    yield srv
    srv.stop()


def _replay(sock: zmq.Socket, sent: list[bytes]) -> None:
    for i in range(0, len(sent), BATCH):
        _exchange(sock, sent[i:i + BATCH])


def _exchange(sock: zmq.Socket, batch: list[bytes]) -> list[dict]:
    for frame in batch:
        sock.send(frame)
    replies = []
    for _ in batch:
        assert sock.poll(5000), "server stopped answering"
        replies.append(unpack(sock.recv()))
    return replies


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_hostile_frames(server):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server.query_endpoint)
    sent: list[bytes] = []
    rss_before = _rss()
    t0 = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(frames, min_size=BATCH, max_size=BATCH))
    def fuzz(batch):
        for (category, frame), reply in zip(batch, _exchange(sock, [f for _, f in batch])):
            _check(category, frame, reply)
        sent.extend(f for _, f in batch)

    try:
        fuzz()
        elapsed = time.monotonic() - t0
        rss_fuzz = _rss() - rss_before  # hypothesis and `sent` included: reported, not bounded
        rss_replay = _rss()
        _replay(sock, sent)
        rss_replay = _rss() - rss_replay
        tracemalloc.start(25)  # too slow to run during generation: replay under it instead
        try:
            _exchange(sock, sent[:500])  # warm up counters and caches
            gc.collect()
            before = _retained(tracemalloc.take_snapshot())
            _replay(sock, sent)
            gc.collect()
            after = _retained(tracemalloc.take_snapshot())
        finally:
            tracemalloc.stop()
        health = _exchange(sock, [pack({"v": 1, "op": "health"})])
    finally:
        sock.close()
    print(f"\nfuzzed {len(sent)} frames in {elapsed:.1f} s (process RSS {rss_fuzz / 2**20:+.1f} MiB with hypothesis); "
          f"replay: RSS {rss_replay / 2**20:+.1f} MiB (bound {RSS_BOUND / 2**20:.0f}); under tracemalloc the server "
          f"code holds {before} -> {after} bytes (bound {RETAINED_BOUND})")
    assert len(sent) >= EXAMPLES * BATCH
    assert rss_replay < RSS_BOUND
    assert after - before < RETAINED_BOUND
    assert health == [{"ok": True, "result": {"status": "ok", "reasons": []}}]
    assert server.counters["requests"] >= 2 * len(sent)


@pytest.mark.parametrize("size", [LIMITS.max_frame_bytes + 1, 100_000, 1 << 20, 4 << 20])
def test_oversized_frame_is_dropped_and_server_lives(server, size):
    ctx = zmq.Context.instance()
    hostile = ctx.socket(zmq.DEALER)
    hostile.linger = 0
    hostile.connect(server.query_endpoint)
    disconnects = server.counters["disconnects"]
    try:
        hostile.send(b"\xa5" * size)
        assert not hostile.poll(300), "an oversized frame must be dropped by libzmq, not answered"
    finally:
        hostile.close()
    deadline = time.monotonic() + 2
    while server.counters["disconnects"] == disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.counters["disconnects"] > disconnects  # the drop shows in stats
    good = ctx.socket(zmq.DEALER)
    good.linger = 0
    good.connect(server.query_endpoint)
    try:
        at_limit = b"\xda" + (LIMITS.max_frame_bytes - 3).to_bytes(2, "big") + b"a" * (LIMITS.max_frame_bytes - 3)
        assert len(at_limit) == LIMITS.max_frame_bytes
        replies = _exchange(good, [at_limit, pack({"v": 1, "op": "health"})])
        assert replies[0]["error"]["code"] == "too_large"  # at the limit: through libzmq, refused by unpack
        assert replies[1]["result"]["status"] == "ok"
    finally:
        good.close()
