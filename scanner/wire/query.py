"""The query protocol: msgpack requests, validated field by field, answered from a `RankingStore`.

Request: a msgpack map `{"v": 1, "op": <op>, ...fields}`. Reply: `{"ok": true, "result": ...}` or
`{"ok": false, "error": {"code": <ERROR_CODES>, "message": <what is wrong and how to fix it>}}`.

Ops and their fields:
- `top`: `n` int 1..1000 (default 10), `min_ev` number (optional), `token` str (optional: an address,
  matched case-insensitively, or a symbol), `chain` str (optional: one chain's name; default every
  chain served, merged by ev). Result `{"block": int | None, "opportunities": [...]}`, plus
  `"blocks": {chain: block}` when the server serves several chains (each opportunity names its `chain`).
- `get`: `id` str. Result: the opportunity, with every number that went into it.
- `stats`: result `{"server": counters of this protocol, "scanner": what the stats callback returns}`.
- `health`: result `{"status": "ok" | "degraded" | "down", "reasons": [str, ...]}`, plus
  `"chains": {chain: status}` when the server serves several chains (one chain can degrade alone).

Error codes: `bad_frame` (not one msgpack value, not a map with string keys, an unknown ext type,
not exactly one payload frame), `bad_version` (`v` missing or not the int 1), `unknown_op`,
`bad_field` (missing, wrong type or range, or not a field of that op; the message names it),
`too_large` (over a `Limits` bound: bytes, frames, lengths, nesting), `not_found` (`get` of an id
not in the served ranking), `internal` (a callback failed; details only in the server log).

The PUB stream sends two frames per block: `TOPIC` and `pack(Top.to_wire())`.

Big integers (wei amounts pass 2**64): ints inside msgpack's native range (-2**63 .. 2**64-1) travel
as msgpack ints; every other int travels as ext type 1 (`BIGINT_EXT`) whose payload is its signed
decimal ASCII (`b"-123"`). `pack` and `unpack` apply this rule both ways, so ints round-trip exactly.

Pure: no sockets here, so every rule is testable in-process; `scanner.serve.query_server` adds transport.
"""
from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from scanner.errors import ArbscanError

log = logging.getLogger(__name__)

VERSION = 1
TOPIC = b"top"  # first frame of each PUB message; the second is a packed `Top`


def chain_topic(chain: str) -> bytes:
    """The PUB topic of one chain's top-N: `TOPIC` + "/name/" (a SUB on `TOPIC` gets every chain's)."""
    return TOPIC + b"/" + chain.encode() + b"/" if chain else TOPIC
BIGINT_EXT = 1
MAX_TOP_N = 1000
DEFAULT_TOP_N = 10
ERROR_CODES = ("bad_frame", "bad_version", "unknown_op", "bad_field", "too_large", "not_found", "internal")
HEALTH_STATUSES = ("ok", "degraded", "down")
FIELDS = {"top": ("n", "min_ev", "token", "chain"), "get": ("id",), "stats": (), "health": ()}
_DECIMAL = re.compile(rb"-?[0-9]+")


class QueryError(ArbscanError):
    """An error reply: `code` is one of `ERROR_CODES`, `message` says what to change."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Bounds on one request, so a hostile frame costs at most a few MB of transient memory.

    A valid request is a flat map of at most 5 short fields; these leave room for that and no more.
    `max_frame_bytes` is also the socket's ZMQ_MAXMSGSIZE (libzmq disconnects a peer that sends more).
    `max_frames` counts the frames after the routing id: an optional empty delimiter (REQ) + the payload.
    """

    max_frame_bytes: int = 64 * 1024
    max_frames: int = 2
    max_depth: int = 4
    max_str_len: int = 1024
    max_bin_len: int = 1024
    max_array_len: int = 64
    max_map_len: int = 32
    max_ext_len: int = 128


# --- codec ---------------------------------------------------------------------------------------

def _pack_default(obj: Any) -> Any:
    if isinstance(obj, int):  # msgpack calls this only for ints outside its native range
        return msgpack.ExtType(BIGINT_EXT, str(obj).encode())
    raise TypeError(f"cannot send {type(obj).__name__} in a query message: use str/int/float/bool/list/dict")


def _ext_hook(code: int, data: bytes) -> int:
    if code != BIGINT_EXT or not _DECIMAL.fullmatch(data):
        raise ValueError(f"unsupported msgpack ext type {code}: only {BIGINT_EXT} (big int as decimal ASCII)")
    return int(data)


def pack(obj: Any) -> bytes:
    """msgpack with the big-int rule of this module."""
    return msgpack.packb(obj, default=_pack_default, use_bin_type=True)


def unpack(data: bytes, limits: Limits | None = None) -> Any:
    """Inverse of `pack`. With `limits` (server side), hostile sizes and nesting raise QueryError."""
    if limits is None:
        try:
            return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        except Exception as e:  # msgpack raises several types for garbage
            raise QueryError("bad_frame", f"reply is not valid msgpack ({type(e).__name__}: {e})") from None
    if len(data) > limits.max_frame_bytes:
        raise QueryError("too_large", f"frame has {len(data)} bytes; at most {limits.max_frame_bytes} allowed")
    try:
        obj = msgpack.unpackb(
            data, ext_hook=_ext_hook, raw=False, strict_map_key=True,
            max_str_len=limits.max_str_len, max_bin_len=limits.max_bin_len, max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len, max_ext_len=limits.max_ext_len,
        )
    except msgpack.StackError:
        raise QueryError("too_large", f"frame nests deeper than {limits.max_depth} levels") from None
    except Exception as e:  # msgpack raises several types for garbage
        if isinstance(e, ValueError) and "exceeds max_" in str(e):  # msgpack's wording for a max_*_len limit
            raise QueryError("too_large", f"{e}: requests are small flat maps") from None
        raise QueryError("bad_frame", f"not one valid msgpack value ({type(e).__name__}: {e}); "
                                      "send a single msgpack map {'v': 1, 'op': ...}") from None
    if _depth_exceeds(obj, limits.max_depth):
        raise QueryError("too_large", f"frame nests deeper than {limits.max_depth} levels")
    return obj


def _depth_exceeds(obj: Any, limit: int) -> bool:
    """Iterative, so a deep value cannot exhaust the Python stack."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def request(op: str, **fields: Any) -> bytes:
    """A packed request; fields that are None are left out (the server applies its defaults)."""
    return pack({"v": VERSION, "op": op, **{k: v for k, v in fields.items() if v is not None}})


def ok_reply(result: Any) -> bytes:
    return pack({"ok": True, "result": result})


def error_reply(code: str, message: str) -> bytes:
    return pack({"ok": False, "error": {"code": code, "message": message}})


def result_of(reply: Any) -> Any:
    """The result of a decoded reply, or the QueryError it carries (client side)."""
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise QueryError("bad_frame", f"reply is not a map with a bool 'ok': {reply!r:.200}")
    if reply["ok"]:
        return reply.get("result")
    error = reply.get("error")
    if not isinstance(error, dict):
        raise QueryError("bad_frame", f"error reply without an 'error' map: {reply!r:.200}")
    raise QueryError(str(error.get("code")), str(error.get("message")))


# --- messages ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TopQuery:
    n: int = DEFAULT_TOP_N
    min_ev: float | None = None
    token: str | None = None
    chain: str | None = None


@dataclass(frozen=True)
class GetQuery:
    id: str


@dataclass(frozen=True)
class StatsQuery:
    pass


@dataclass(frozen=True)
class HealthQuery:
    pass


Query = TopQuery | GetQuery | StatsQuery | HealthQuery


@dataclass(frozen=True)
class Top:
    """The best opportunities of one block: a `top` result and each PUB message."""

    block: int | None
    opportunities: list[dict]
    blocks: dict[str, int] = field(default_factory=dict)  # several chains: each one's block (else empty)

    def to_wire(self) -> dict:
        wire = {"block": self.block, "opportunities": self.opportunities}  # asdict would deep-copy each
        return wire | {"blocks": self.blocks} if self.blocks else wire

    @classmethod
    def from_wire(cls, obj: Any) -> Top:
        if not isinstance(obj, dict) or not isinstance(obj.get("opportunities"), list):
            raise QueryError("bad_frame", f"expected {{'block', 'opportunities'}}, got {obj!r:.200}")
        return cls(obj.get("block"), obj["opportunities"], obj.get("blocks") or {})


@dataclass(frozen=True)
class Health:
    """What the health callback reports; anything but "ok" should say why in `reasons`."""

    status: str
    reasons: list[str] = field(default_factory=list)
    chains: dict[str, str] = field(default_factory=dict)  # several chains: each one's status (else empty)

    def __post_init__(self) -> None:
        for status in (self.status, *self.chains.values()):
            if status not in HEALTH_STATUSES:
                raise ValueError(f"health status must be one of {HEALTH_STATUSES}, got {status!r}")

    def to_wire(self) -> dict:
        wire = {"status": self.status, "reasons": self.reasons}
        return wire | {"chains": self.chains} if self.chains else wire

    @classmethod
    def from_wire(cls, obj: dict) -> Health:
        return cls(obj["status"], obj["reasons"], obj.get("chains") or {})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad_field(name: str, expected: str, value: Any) -> QueryError:
    return QueryError("bad_field", f"{name!r} must be {expected}, got {value!r:.80}")


def parse_request(msg: Any) -> Query:
    """Check every field of a decoded request; raise QueryError naming the first one that is wrong."""
    if not isinstance(msg, dict):
        raise QueryError("bad_frame", f"request must be a msgpack map, got {type(msg).__name__}")
    if "v" not in msg:
        raise QueryError("bad_version", f"request has no 'v': send {{'v': {VERSION}, 'op': ...}}")
    if type(msg["v"]) is not int or msg["v"] != VERSION:
        raise QueryError("bad_version", f"protocol version {msg['v']!r:.40} is not served; this server speaks "
                                        f"v={VERSION}: upgrade the client")
    op = msg.get("op")
    if not isinstance(op, str):
        raise _bad_field("op", f"a string, one of {', '.join(FIELDS)}", op)
    if op not in FIELDS:
        raise QueryError("unknown_op", f"unknown op {op!r:.40}; known ops: {', '.join(FIELDS)}")
    extra = sorted(set(msg) - {"v", "op", *FIELDS[op]})
    if extra:
        allowed = ", ".join(FIELDS[op]) or "none"
        raise QueryError("bad_field", f"op {op!r} takes no field {extra[0]!r:.40}; its fields: {allowed}")
    if op == "top":
        n = msg.get("n", DEFAULT_TOP_N)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_TOP_N:
            raise _bad_field("n", f"an integer in 1..{MAX_TOP_N}", n)
        min_ev = msg.get("min_ev")
        if min_ev is not None and not (_is_number(min_ev) and math.isfinite(min_ev)):
            raise _bad_field("min_ev", "a finite number", min_ev)
        token = msg.get("token")
        if token is not None and not (isinstance(token, str) and token):
            raise _bad_field("token", "a non-empty string (token address or symbol)", token)
        chain = msg.get("chain")
        if chain is not None and not (isinstance(chain, str) and chain):
            raise _bad_field("chain", "a non-empty string (a chain's name)", chain)
        return TopQuery(n, min_ev, token, chain)
    if op == "get":
        oid = msg.get("id")
        if not (isinstance(oid, str) and oid):
            raise _bad_field("id", "a non-empty string (an id from `top`)", oid)
        return GetQuery(oid)
    return StatsQuery() if op == "stats" else HealthQuery()


# --- ranking -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ranking:
    block: int
    opportunities: list[dict]  # ev descending
    by_id: dict[str, dict]
    keys: list[frozenset[str]]  # per opportunity: lowercased token addresses and symbols, for `token`


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, str) for t in value)


def _check_opportunity(i: int, opp: Any) -> None:
    if not isinstance(opp, Mapping):
        raise ValueError(f"ranking[{i}] must be a dict, got {type(opp).__name__}")
    for key, ok, expected in (
        ("id", lambda v: isinstance(v, str) and v, "a non-empty str"),
        ("ev", _is_number, "a number"),
        ("block", lambda v: isinstance(v, int) and not isinstance(v, bool), "an int"),
        ("tokens", _is_str_list, "a list of str"),
        ("symbols", lambda v: v is None or _is_str_list(v), "a list of str when present"),
    ):
        if not ok(opp.get(key)):
            raise ValueError(f"ranking[{i}][{key!r}] must be {expected}, got {opp.get(key)!r:.80}")


class RankingStore:
    """The rankings being served, one per chain: each replaced whole once per block, read by the query thread.

    Readers take one snapshot per chain, so a `top` never mixes two blocks of a chain. The store keeps
    the caller's dicts: do not mutate them after `replace`. A ranking older than the one held is
    refused: after a reorg, `withdraw` the orphaned blocks first, then `replace`. `chains` names the
    chains served, the default first (a single-chain store needs none: its chain is "").
    """

    def __init__(self, chains: tuple[str, ...] = ("",)) -> None:
        self.chains = chains
        self._lock = threading.Lock()
        self._rankings: dict[str, _Ranking] = {}

    @property
    def block(self) -> int | None:
        """The block of the default chain's ranking."""
        return self.block_of(self.chains[0])

    def block_of(self, chain: str) -> int | None:
        current = self._rankings.get(chain)
        return current.block if current else None

    def blocks(self) -> dict[str, int]:
        """Each chain's ranked block (several chains only: a single chain's is `block`)."""
        return {c: r.block for c, r in self._rankings.items()} if len(self.chains) > 1 else {}

    def _chain(self, chain: str | None) -> str:
        if chain is None:
            return self.chains[0]
        if chain not in self.chains:
            raise QueryError("bad_field", f"'chain' {chain!r:.40} is not served here; the chains: "
                                          + ", ".join(c or "(the one chain)" for c in self.chains))
        return chain

    def replace(self, block: int, ranking: list[dict], chain: str | None = None) -> None:
        """Serve `ranking` (opportunity dicts with `id`, `ev`, `block`, `tokens`, optional `symbols`)
        as `chain`'s (default: the default chain's)."""
        chain = self._chain(chain)
        for i, opp in enumerate(ranking):
            _check_opportunity(i, opp)
        ordered = sorted(ranking, key=lambda o: o["ev"], reverse=True)
        by_id = {o["id"]: o for o in ordered}
        if len(by_id) != len(ordered):
            raise ValueError(f"ranking for block {block} repeats an opportunity id: ids must be unique per block")
        keys = [frozenset(t.lower() for t in [*o["tokens"], *(o.get("symbols") or ())]) for o in ordered]
        snapshot = _Ranking(block, ordered, by_id, keys)
        with self._lock:
            current = self._rankings.get(chain)
            if current is not None and block < current.block:
                raise ValueError(f"ranking for block {block} is older than the served block {current.block}; "
                                 f"call withdraw({block + 1}) first if a reorg orphaned the newer blocks")
            self._rankings[chain] = snapshot

    def withdraw(self, block: int, chain: str | None = None) -> bool:
        """Stop serving `chain`'s ranking if it was computed at `block` or later (a reorg orphaned them)."""
        chain = self._chain(chain)
        with self._lock:
            current = self._rankings.get(chain)
            if current is None or current.block < block:
                return False
            del self._rankings[chain]
            return True

    def top(self, n: int = DEFAULT_TOP_N, min_ev: float | None = None, token: str | None = None,
            chain: str | None = None) -> Top:
        """The best `n` of one chain, or of every chain merged by ev when `chain` is None."""
        rankings = dict(self._rankings)  # one snapshot per chain
        chosen_chains = self.chains if chain is None else (self._chain(chain),)
        wanted = token.lower() if token is not None else None
        chosen: list[dict] = []
        for name in chosen_chains:
            current = rankings.get(name)
            if current is None:
                continue
            taken = 0
            for opp, keys in zip(current.opportunities, current.keys):
                if taken == n or (min_ev is not None and opp["ev"] < min_ev):
                    break  # ev descending: nothing later passes min_ev either
                if wanted is None or wanted in keys:
                    chosen.append(opp)
                    taken += 1
        if len(chosen_chains) > 1:
            chosen = sorted(chosen, key=lambda o: o["ev"], reverse=True)[:n]
        first = rankings.get(chosen_chains[0])
        blocks = {c: r.block for c, r in rankings.items()} if len(self.chains) > 1 else {}
        return Top(first.block if first else None, chosen, blocks)

    def get(self, oid: str) -> dict:
        rankings = dict(self._rankings)
        for current in rankings.values():
            if oid in current.by_id:
                return current.by_id[oid]
        where = ", ".join(f"the ranking of block {r.block}" for r in rankings.values()) or "any ranking (none served yet)"
        raise QueryError("not_found", f"no opportunity {oid!r:.80} in {where}; ids live one block: ask `top`")


def forwarded_ranking(chain: str, block: int, ranking: list[dict]) -> bytes:
    """What a chain's aggregator sends the query server's host: its ranking of `block`."""
    return pack({"chain": chain, "block": block, "ranking": ranking})


def forwarded_withdraw(chain: str, block: int) -> bytes:
    """What a chain's aggregator sends the query server's host when a reorg orphans `block` and later."""
    return pack({"chain": chain, "withdraw": block})


# --- answering -----------------------------------------------------------------------------------

class QueryHandler:
    """Turns one request frame into one reply frame; counts requests and errors by code for `stats`.

    The callbacks run on the serving thread: they should only read state, never block.
    """

    def __init__(self, store: RankingStore, *, stats: Callable[[], dict], health: Callable[[], Health],
                 limits: Limits = Limits()):
        self.store = store
        self.limits = limits
        self._stats = stats
        self._health = health
        self.counters: Counter[str] = Counter()

    def handle(self, frame: bytes) -> bytes:
        self.counters["requests"] += 1
        try:
            query = parse_request(unpack(frame, self.limits))
            reply = self._reply(query)
        except QueryError as e:
            return self.error(e.code, e.message)
        self.counters["ok"] += 1
        return reply

    def error(self, code: str, message: str) -> bytes:
        """An error reply, counted under `errors.<code>`."""
        self.counters[f"errors.{code}"] += 1
        return error_reply(code, message)

    def _reply(self, query: Query) -> bytes:
        if isinstance(query, TopQuery):
            return ok_reply(self.store.top(query.n, query.min_ev, query.token, query.chain).to_wire())
        if isinstance(query, GetQuery):
            return ok_reply(self.store.get(query.id))
        name = "stats" if isinstance(query, StatsQuery) else "health"
        try:
            if isinstance(query, StatsQuery):
                return ok_reply({"server": dict(self.counters), "scanner": self._stats()})
            return ok_reply(self._health().to_wire())
        except Exception as e:  # a failing (or unpackable) callback result must not take the server down
            log.exception("%s callback failed", name)
            raise QueryError("internal", f"the {name} callback failed ({type(e).__name__}); see the server log") from e
