"""The query server: a ROUTER socket answering `scanner.wire.query` requests, a PUB socket streaming top-N.

Hardening, in the order a hostile frame meets it:
- libzmq drops any frame over `Limits.max_frame_bytes` (ZMQ_MAXMSGSIZE) by disconnecting its peer;
  such drops show in stats as `disconnects` (with the ordinary ones: the app never sees the frame).
- Each peer may queue `RCVHWM` requests (100 x 64 KiB) in libzmq; past that libzmq stops reading it.
- A request with more frames than `Limits.max_frames` after the routing id is answered `too_large`;
  the surplus frames are read and discarded one by one, never kept.
- `scanner.wire.query.unpack` bounds string/array/map/ext lengths and nesting depth; every other
  malformed frame gets a structured error reply. A reply that cannot be delivered (peer gone, or it
  stopped reading and filled its SNDHWM) is dropped and counted as `replies_dropped`.
- Bound to loopback unless configured; a non-loopback bind needs `curve_secret_key_file` and
  `curve_authorized_keys_dir`, and then a ZAP authenticator admits only the listed client keys.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import cast

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from scanner.config import SocketsConfig, is_loopback
from scanner.errors import ConfigError
from scanner.serve import keys as curve
from scanner.wire.query import (
    Health,
    Limits,
    QueryHandler,
    RankingStore,
    Top,
    chain_topic,
    forwarded_ranking,
    forwarded_withdraw,
    pack,
    unpack,
)

log = logging.getLogger(__name__)

RECV_HWM = 100
SEND_HWM = 100
PUB_HWM = 1000
MAX_SUBSCRIPTION_BYTES = 256
BURST = 256  # requests answered between two looks at the stop event
_MONITORED = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
              | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class QueryServer:
    """Serves a `RankingStore` on `sockets.query` and publishes top-N on `sockets.publish`.

    `start()` binds in the caller's thread (so a bad endpoint raises there) and then answers queries
    on a background thread until `stop_event` is set; it polls every `poll_ms`, so it stops by itself.
    `update()` may be called from any thread. Endpoints may use port `*` (see `query_endpoint`).
    """

    def __init__(self, sockets: SocketsConfig, store: RankingStore, *, stats: Callable[[], dict],
                 health: Callable[[], Health], top_n: int = 10, limits: Limits = Limits(), poll_ms: int = 100,
                 stop_event: threading.Event | None = None):
        self.sockets = sockets
        self.store = store
        self.handler = QueryHandler(store, stats=stats, health=health, limits=limits)
        self.top_n = top_n
        self.poll_ms = poll_ms
        self.stop_event = stop_event or threading.Event()
        self.query_endpoint = ""
        self.publish_endpoint = ""
        self._context: zmq.Context | None = None
        self._auth: ThreadAuthenticator | None = None
        self._router: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._pub_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> QueryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def counters(self) -> Counter[str]:
        """What `stats` reports under "server": requests, ok, errors.<code>, disconnects, published, ..."""
        return self.handler.counters

    def start(self) -> QueryServer:
        exposed = [e for e in (self.sockets.query, self.sockets.publish) if not is_loopback(e)]
        curve_on = bool(self.sockets.curve_secret_key_file)
        if exposed and not curve_on:
            raise ConfigError(f"refusing to bind {exposed[0]!r} off loopback without CURVE: set "
                              "sockets.curve_secret_key_file and sockets.curve_authorized_keys_dir, or bind 127.0.0.1")
        self._context = zmq.Context()
        try:
            keys = self._start_auth() if curve_on else None
            self._router = self._bind(zmq.ROUTER, self.sockets.query, keys, "query")
            self._pub = self._bind(zmq.PUB, self.sockets.publish, keys, "publish")
        except BaseException:
            self._close()
            raise
        self.query_endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.publish_endpoint = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._monitor = self._router.get_monitor_socket(_MONITORED)
        self._thread = threading.Thread(target=self._serve, name="arbscan-query", daemon=True)
        self._thread.start()
        log.info("query server on %s, top-%d stream on %s%s", self.query_endpoint, self.top_n,
                 self.publish_endpoint, " (CURVE)" if curve_on else "")
        return self

    def _start_auth(self) -> curve.KeyPair:
        keys = curve.load_secret(self.sockets.curve_secret_key_file)
        directory = self.sockets.curve_authorized_keys_dir
        if not directory:
            raise ConfigError("sockets.curve_secret_key_file is set but curve_authorized_keys_dir is not: set it to a "
                              "directory of the public .key files of the clients to admit")
        admitted = curve.authorized_keys(directory)
        self._auth = ThreadAuthenticator(self._context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=directory)
        log.info("CURVE on: admitting %d client keys from %s", len(admitted), directory)
        return keys

    def _bind(self, kind: int, endpoint: str, keys: curve.KeyPair | None, name: str) -> zmq.Socket:
        sock = cast(zmq.Context, self._context).socket(kind)  # start() made the context first
        sock.linger = 0
        if kind == zmq.ROUTER:
            sock.setsockopt(zmq.MAXMSGSIZE, self.handler.limits.max_frame_bytes)
            sock.setsockopt(zmq.RCVHWM, RECV_HWM)
            sock.setsockopt(zmq.SNDHWM, SEND_HWM)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        else:
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
            sock.setsockopt(zmq.SNDHWM, PUB_HWM)
        if keys is not None:
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
            sock.curve_server = True
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            sock.close()
            raise ConfigError(f"cannot bind sockets.{name} = {endpoint!r} ({e}): pick a free port or another "
                              "address") from None
        return sock

    def update(self, block: int, ranking: list[dict], chain: str | None = None) -> Top:
        """Serve `ranking` for `block` of `chain` (default: the default chain) and publish that chain's
        top N; returns what was published."""
        chain = chain or self.store.chains[0]
        self.store.replace(block, ranking, chain)
        top = self.store.top(self.top_n, chain=chain)  # that chain's rows only: its topic's subscribers act on them
        message = pack(top.to_wire())
        with self._pub_lock:
            if self._pub is None:
                raise RuntimeError("QueryServer.update before start() or after stop()")
            # PUB never blocks: a slow subscriber misses blocks
            self._pub.send_multipart([chain_topic(chain), message])
            self.counters["published"] += 1
        return top

    def withdraw(self, block: int, chain: str | None = None) -> bool:
        """Stop serving `chain`'s ranking computed at `block` or later (see `RankingStore.withdraw`)."""
        return self.store.withdraw(block, chain)

    def forwarded(self, frame: bytes) -> None:
        """Serve what another chain's aggregator forwarded (`RankingForwarder`): a ranking or a withdrawal."""
        msg = unpack(frame)
        if "withdraw" in msg:
            self.withdraw(msg["withdraw"], msg["chain"])
            return
        held = self.store.block_of(msg["chain"])
        if held is not None and msg["block"] < held:
            self.withdraw(msg["block"], msg["chain"])  # a reorg's replacement: the newer blocks were orphaned
        self.update(msg["block"], msg["ranking"], msg["chain"])

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while not self.stop_event.is_set():
                ready = dict(poller.poll(self.poll_ms))
                if self._monitor in ready:
                    self._count_events()
                if self._router in ready:
                    for _ in range(BURST):
                        if not self._answer_one():
                            break
        except Exception:
            log.exception("query server thread failed; queries go unanswered until restart")
            raise

    def _count_events(self) -> None:
        monitor = cast(zmq.Socket, self._monitor)  # set by start() before the thread runs
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            self.counters["disconnects" if event == zmq.EVENT_DISCONNECTED else "handshake_failures"] += 1

    def _answer_one(self) -> bool:
        """Read one request (all its frames) and answer it; False when none is waiting."""
        router, limits = cast(zmq.Socket, self._router), self.handler.limits
        try:
            frames = [router.recv(zmq.NOBLOCK)]
        except zmq.Again:
            return False
        total = 0
        while router.getsockopt(zmq.RCVMORE):  # not `.rcvmore`: that lookup keeps a new str in a cache
            frame = router.recv()
            total += 1
            if total <= limits.max_frames:
                frames.append(frame)
        identity, body = frames[0], frames[1:]
        envelope = [identity, b""] if len(body) > 1 and body[0] == b"" else [identity]
        payload = body[len(envelope) - 1:]
        if total > limits.max_frames:
            reply = self.handler.error("too_large", f"request has {total} frames after the routing id; at most "
                                                    f"{limits.max_frames} (optional empty delimiter + one msgpack map)")
        elif len(payload) != 1:
            reply = self.handler.error("bad_frame", f"expected one msgpack frame per request, got {len(payload)}")
        else:
            reply = self.handler.handle(payload[0])
        try:
            router.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.ZMQError:  # EHOSTUNREACH: peer gone; EAGAIN: it does not read its replies
            self.counters["replies_dropped"] += 1
        return True

    def stop(self, timeout_s: float = 2.0) -> None:
        """Set the stop event, wait for the thread, close everything. Idempotent."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"query server thread did not stop within {timeout_s} s")
            self._thread = None
        self._close()

    def _close(self) -> None:
        """Close what start() opened; the serving thread has ended (or never started) by now."""
        if self._monitor is not None:
            cast(zmq.Socket, self._router).disable_monitor()  # the monitor belongs to the router
            self._monitor.close(linger=0)
            self._monitor = None
        if self._router is not None:
            self._router.close()
            self._router = None
        with self._pub_lock:
            if self._pub is not None:
                self._pub.close()
                self._pub = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None


class RankingForwarder(RankingStore):
    """The ranking store of a chain whose aggregator does not host the query server: every ranking
    and withdrawal is kept here (for the aggregator's own reads) and pushed to the host's
    `forwarded` socket, which serves it under this chain's name.

    Stands in for `QueryServer` too (`update`, `withdraw`, endpoints, `stop`), so the aggregator
    serves through either the same way.
    """

    def __init__(self, chain: str, endpoint: str, query_endpoint: str, publish_endpoint: str) -> None:
        super().__init__((chain,))
        self.store = self  # as QueryServer.store
        self.query_endpoint, self.publish_endpoint = query_endpoint, publish_endpoint
        self._context = zmq.Context()
        self._push = self._context.socket(zmq.PUSH)
        self._push.sndhwm = PUB_HWM
        self._push.linger = 0
        self._push.connect(endpoint)
        self.dropped = 0  # rankings the host was too far behind to take

    def _send(self, frame: bytes) -> None:
        try:
            self._push.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1

    def replace(self, block: int, ranking: list[dict], chain: str | None = None) -> None:
        super().replace(block, ranking, chain)
        self._send(forwarded_ranking(self.chains[0], block, ranking))

    def withdraw(self, block: int, chain: str | None = None) -> bool:
        self._send(forwarded_withdraw(self.chains[0], block))
        return super().withdraw(block, chain)

    def update(self, block: int, ranking: list[dict], chain: str | None = None) -> None:
        self.replace(block, ranking, chain)

    def stop(self) -> None:
        self._push.close()
        self._context.term()
