"""Clients of the query server: `QueryClient` for requests, `Subscriber` for the top-N stream.

`QueryClient` is a lazy pirate: a DEALER that, when no reply comes within `timeout_s`, drops its
socket (and any late reply with it) and resends on a fresh one, `retries` times, then raises
`QueryTimeout`. Every op only reads, so a resend never does anything twice.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import zmq

from scanner.errors import ArbscanError
from scanner.serve.keys import ClientKeys
from scanner.wire.query import TOPIC, Health, QueryError, Top, chain_topic, request, result_of, unpack

__all__ = ["QueryClient", "QueryError", "QueryTimeout", "Subscriber"]


class QueryTimeout(ArbscanError):
    """Nothing answered in time."""


def _hint(curve: ClientKeys | None) -> str:
    if curve is None:
        return "is the scanner running there, and does it serve without CURVE (loopback)?"
    return "is the scanner running there, and is this client's public .key in its curve_authorized_keys_dir?"


def _socket(context: zmq.Context, kind: int, endpoint: str, curve: ClientKeys | None) -> zmq.Socket:
    sock = context.socket(kind)
    sock.linger = 0
    if curve is not None:
        sock.curve_serverkey = curve.server_public
        sock.curve_publickey = curve.client.public
        sock.curve_secretkey = curve.client.secret
    sock.connect(endpoint)
    return sock


class QueryClient:
    def __init__(self, endpoint: str, timeout_s: float = 2.0, retries: int = 1, curve: ClientKeys | None = None,
                 context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self._curve = curve
        self._context = context or zmq.Context.instance()
        self._sock = _socket(self._context, zmq.DEALER, endpoint, curve)

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def call(self, op: str, **fields: Any) -> Any:
        """Send one request and return its result; raises QueryError on an error reply."""
        payload = request(op, **fields)
        for _ in range(self.retries + 1):
            self._sock.send(payload)
            if self._sock.poll(int(self.timeout_s * 1000), zmq.POLLIN):
                return result_of(unpack(self._sock.recv()))
            self._sock.close()
            self._sock = _socket(self._context, zmq.DEALER, self.endpoint, self._curve)
        raise QueryTimeout(f"no reply from {self.endpoint} to {op!r} within {self.timeout_s} s "
                           f"({self.retries + 1} tries): {_hint(self._curve)}")

    def top(self, n: int | None = None, min_ev: float | None = None, token: str | None = None,
            chain: str | None = None) -> Top:
        """The best `n` opportunities; `chain` keeps one chain's (default: every chain served, by ev)."""
        return Top.from_wire(self.call("top", n=n, min_ev=min_ev, token=token, chain=chain))

    def get(self, id: str) -> dict:
        return self.call("get", id=id)

    def stats(self) -> dict:
        return self.call("stats")

    def health(self) -> Health:
        return Health.from_wire(self.call("health"))


class Subscriber:
    """The top-N of each block as the server publishes it; misses what was sent before it joined.
    `chain` keeps one chain's (the server filters by topic); default: every chain's."""

    def __init__(self, endpoint: str, timeout_s: float = 30.0, curve: ClientKeys | None = None,
                 context: zmq.Context | None = None, chain: str | None = None):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._curve = curve
        self._sock = _socket(context or zmq.Context.instance(), zmq.SUB, endpoint, curve)
        self._sock.subscribe(chain_topic(chain) if chain else TOPIC)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def recv(self, timeout_s: float | None = None) -> Top:
        """The next block's top N; QueryTimeout when none comes within `timeout_s` (default: the instance's)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if not self._sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise QueryTimeout(f"no block published on {self.endpoint} within {timeout_s} s: {_hint(self._curve)}")
        frames = self._sock.recv_multipart()
        if len(frames) != 2:
            raise QueryError("bad_frame", f"expected [topic, msgpack] from {self.endpoint}, got {len(frames)} frames")
        return Top.from_wire(unpack(frames[1]))

    def __iter__(self) -> Iterator[Top]:
        """Blocks forever, one Top per block; raises QueryTimeout after `timeout_s` without one."""
        while True:
            yield self.recv()
