"""The query server on real sockets (127.0.0.1, ports chosen by the OS) with the real client."""
from __future__ import annotations

import dataclasses
import shutil
import time

import pytest
import zmq

from scanner.config import SocketsConfig
from scanner.errors import ConfigError
from scanner.serve import keys as curve
from scanner.serve.client import QueryClient, QueryTimeout, Subscriber
from scanner.serve.query_server import QueryServer, RankingForwarder
from scanner.wire.query import Health, QueryError, RankingStore, pack, unpack

LOCAL = SocketsConfig(query="tcp://127.0.0.1:*", publish="tcp://127.0.0.1:*")
WETH, USDC = "0x" + "ee" * 20, "0x" + "cc" * 20


def with_curve(secret_file, authorized_dir) -> SocketsConfig:
    return dataclasses.replace(LOCAL, curve_secret_key_file=str(secret_file),
                               curve_authorized_keys_dir=str(authorized_dir) if authorized_dir else "")


def ranking(block: int, count: int = 3) -> list[dict]:
    return [{"id": f"{block}-{i}", "ev": float(i), "block": block, "tokens": [WETH, USDC, WETH],
             "symbols": ["WETH", "USDC"], "amount_in": 2**200 + i} for i in range(count)]


@pytest.fixture
def serve():
    """Start QueryServers; each is stopped at teardown, also when the test fails."""
    started: list[QueryServer] = []

    def start(sockets: SocketsConfig = LOCAL, **kwargs) -> QueryServer:
        kwargs.setdefault("stats", lambda: {"blocks_seen": 42})
        kwargs.setdefault("health", lambda: Health("ok"))
        server = QueryServer(sockets, RankingStore(), **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def test_round_trips(serve):
    server = serve(top_n=2)
    server.update(5, ranking(5))
    with QueryClient(server.query_endpoint, timeout_s=2) as client:
        top = client.top()
        assert top.block == 5 and [o["id"] for o in top.opportunities] == ["5-2", "5-1", "5-0"]
        assert [o["id"] for o in client.top(n=1, min_ev=0.5, token="usdc").opportunities] == ["5-2"]
        got = client.get("5-1")
        assert got["amount_in"] == 2**200 + 1
        with pytest.raises(QueryError) as e:
            client.get("4-0")
        assert e.value.code == "not_found"
        with pytest.raises(QueryError) as e:
            client.top(n=0)
        assert e.value.code == "bad_field" and "'n'" in e.value.message
        stats = client.stats()
        assert stats["scanner"] == {"blocks_seen": 42}
        assert stats["server"]["published"] == 1 and stats["server"]["errors.not_found"] == 1
        assert client.health() == Health("ok", [])


def test_req_socket_envelope_and_too_many_frames(serve):
    server = serve()
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    dealer = ctx.socket(zmq.DEALER)
    try:
        req.connect(server.query_endpoint)
        req.send(pack({"v": 1, "op": "health"}))
        assert req.poll(2000)
        assert unpack(req.recv()) == {"ok": True, "result": {"status": "ok", "reasons": []}}
        dealer.connect(server.query_endpoint)
        dealer.send_multipart([b"a", b"b", b"c", b"d"])
        dealer.send_multipart([b"a", b"b"])
        replies = []
        for _ in range(2):
            assert dealer.poll(2000)
            replies.append(unpack(dealer.recv())["error"]["code"])
        assert replies == ["too_large", "bad_frame"]
    finally:
        req.close(linger=0)
        dealer.close(linger=0)


def test_pub_delivers_every_block_in_order(serve):
    server = serve(top_n=2)
    with Subscriber(server.publish_endpoint, timeout_s=2) as sub:
        deadline = time.monotonic() + 5  # slow joiner: publish block 0 until the subscription is in place
        while True:
            server.update(0, ranking(0))
            try:
                sub.recv(timeout_s=0.05)
                break
            except QueryTimeout:
                assert time.monotonic() < deadline, "subscriber never joined within 5 s"
        while True:  # drain the warm-up copies
            try:
                assert sub.recv(timeout_s=0.2).block == 0
            except QueryTimeout:
                break
        for block in range(1, 21):
            server.update(block, ranking(block))
        got = [sub.recv() for _ in range(20)]
    assert [t.block for t in got] == list(range(1, 21))
    assert all(len(t.opportunities) == 2 and t.opportunities[0]["ev"] == 2.0 for t in got)
    assert got[-1].opportunities[0]["amount_in"] == 2**200 + 2


def test_off_loopback_without_curve_is_refused(serve):
    for sockets in (SocketsConfig(query="tcp://0.0.0.0:*", publish="tcp://127.0.0.1:*"),
                    SocketsConfig(query="tcp://127.0.0.1:*", publish="tcp://*:*")):
        with pytest.raises(ConfigError, match="CURVE"):
            serve(sockets)


def test_curve_needs_an_authorized_keys_dir(serve, tmp_path):
    _, server_secret = curve.generate(tmp_path / "server", "server")
    with pytest.raises(ConfigError, match="curve_authorized_keys_dir"):
        serve(with_curve(server_secret, ""))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no \\*.key file"):
        serve(with_curve(server_secret, tmp_path / "empty"))
    with pytest.raises(ConfigError, match="cannot read CURVE key file"):
        serve(with_curve(tmp_path / "missing.key_secret", tmp_path))


def test_curve_admits_only_authorized_clients(serve, tmp_path):
    server_public, server_secret = curve.generate(tmp_path / "server", "server")
    _, good_secret = curve.generate(tmp_path / "good", "good")
    _, bad_secret = curve.generate(tmp_path / "bad", "bad")
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    shutil.copy(tmp_path / "good" / "good.key", authorized)
    assert oct(server_secret.stat().st_mode & 0o777) == "0o600"
    server_keys = curve.load_secret(server_secret)
    assert server_keys.secret.decode() not in repr(server_keys)

    server = serve(with_curve(server_secret, authorized))
    server.update(3, ranking(3))
    good = curve.client_keys(good_secret, server_public)
    with QueryClient(server.query_endpoint, timeout_s=3, curve=good) as client:
        assert client.top(n=1).opportunities[0]["id"] == "3-2"
    bad = curve.client_keys(bad_secret, server_public)
    with QueryClient(server.query_endpoint, timeout_s=0.5, retries=0, curve=bad) as client:
        t0 = time.monotonic()
        with pytest.raises(QueryTimeout, match="curve_authorized_keys_dir"):
            client.health()
        assert time.monotonic() - t0 < 1.5
    with QueryClient(server.query_endpoint, timeout_s=0.5, retries=0) as plain:
        with pytest.raises(QueryTimeout):
            plain.health()
    deadline = time.monotonic() + 2
    while server.counters["handshake_failures"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.counters["handshake_failures"] >= 1


def test_timeout_names_the_endpoint(tmp_path):
    endpoint = f"ipc://{tmp_path}/nobody"  # nobody listens there (no port to pick, so none to race for)
    with QueryClient(endpoint, timeout_s=0.2, retries=1) as client:
        t0 = time.monotonic()
        with pytest.raises(QueryTimeout, match=endpoint.replace(".", r"\.")):
            client.stats()
        assert 0.35 < time.monotonic() - t0 < 2


def test_stops_within_2s_of_the_stop_event(serve):
    server = serve()
    with QueryClient(server.query_endpoint, timeout_s=2) as client:
        assert client.health().status == "ok"
    server.stop_event.set()
    t0 = time.monotonic()
    server.stop(timeout_s=2.0)
    assert time.monotonic() - t0 < 2.0
    with pytest.raises(RuntimeError, match="after stop"):
        server.update(1, [])


def test_another_chains_rankings_are_forwarded_served_and_streamed_under_its_name():
    """The default chain's aggregator hosts the server; another chain's forwards its rankings (and
    reorg withdrawals) to it, and clients pick a chain by `top(chain=)` and by stream topic."""
    server = QueryServer(LOCAL, RankingStore(("main", "op")), stats=dict, health=lambda: Health("ok")).start()
    context = zmq.Context()
    inbox = context.socket(zmq.PULL)
    inbox.linger = 0
    inbox.bind("tcp://127.0.0.1:*")
    forwarder = RankingForwarder("op", inbox.getsockopt_string(zmq.LAST_ENDPOINT), server.query_endpoint,
                                 server.publish_endpoint)
    try:
        with Subscriber(server.publish_endpoint, timeout_s=2, chain="op") as op_only, \
                Subscriber(server.publish_endpoint, timeout_s=2, chain="main") as main_only, \
                QueryClient(server.query_endpoint, timeout_s=2) as client:
            time.sleep(0.3)  # PUB/SUB slow joiner
            server.update(5, ranking(5), "main")
            forwarder.update(70, [dict(o, chain="op") for o in ranking(70, 2)])
            assert inbox.poll(2000)
            server.forwarded(inbox.recv())
            assert op_only.recv().block == 70  # the main chain's block 5 is not on this topic
            assert client.top(chain="op").block == 70 and client.top(chain="main").block == 5
            assert client.top().blocks == {"main": 5, "op": 70}
            # the default chain's topic carries its own rows only (its submitter simulates them on its own
            # node), also when the host's aggregator names no chain
            server.update(6, ranking(6, 3))
            assert main_only.recv().block == 5
            streamed = main_only.recv()
            assert streamed.block == 6 and {o["id"] for o in streamed.opportunities} == {o["id"] for o in ranking(6, 3)}
            assert forwarder.withdraw(70) and inbox.poll(2000)
            server.forwarded(inbox.recv())
            assert client.top(chain="op").opportunities == [] and client.top(chain="main").block == 6
    finally:
        forwarder.stop()
        inbox.close()
        context.term()
        server.stop()
