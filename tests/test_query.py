"""The query protocol in-process: validation codes, top ordering and filters, big ints, the store."""
from __future__ import annotations

import msgpack
import pytest

from scanner.wire.query import (
    ERROR_CODES,
    Health,
    Limits,
    QueryError,
    QueryHandler,
    RankingStore,
    pack,
    request,
    result_of,
    unpack,
)

A, B, C, WETH = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20, "0x" + "ee" * 20


def opp(oid: str, ev: float, tokens: list[str], block: int = 7, **extra) -> dict:
    return {"id": oid, "ev": ev, "block": block, "tokens": tokens, **extra}


RANKING = [
    opp("low", 1.0, [WETH, A, WETH]),
    opp("high", 9.0, [WETH, B, C, WETH], symbols=["WETH", "BBB", "CCC"]),
    opp("mid", 5.0, [WETH, A, B, WETH], amount_in=2**200, profit_wei=-(2**70)),
]


@pytest.fixture
def handler() -> QueryHandler:
    store = RankingStore()
    store.replace(7, RANKING)
    return QueryHandler(store, stats=lambda: {"blocks": 3}, health=lambda: Health("degraded", ["2 blocks behind"]))


def ask(handler: QueryHandler, frame: bytes):
    return unpack(handler.handle(frame))


def raw(obj) -> bytes:
    return msgpack.packb(obj)


BAD = [
    (b"\xc1", "bad_frame"),  # never-used msgpack byte
    (b"", "bad_frame"),
    (raw({"v": 1, "op": "top"})[:-2], "bad_frame"),  # truncated
    (raw({"v": 1, "op": "health"}) + b"\x00", "bad_frame"),  # trailing bytes
    (raw([1, "top"]), "bad_frame"),
    (raw(3), "bad_frame"),
    (raw({1: 1}), "bad_frame"),
    (msgpack.packb({"v": 1, "op": "health", "x": msgpack.ExtType(5, b"1")}), "bad_frame"),
    (msgpack.packb({"v": 1, "op": "health", "x": msgpack.ExtType(1, b"1e9")}), "bad_frame"),
    (raw({"op": "top"}), "bad_version"),
    (raw({"v": 2, "op": "top"}), "bad_version"),
    (raw({"v": "1", "op": "top"}), "bad_version"),
    (raw({"v": True, "op": "top"}), "bad_version"),
    (raw({"v": 1.0, "op": "top"}), "bad_version"),
    (raw({"v": 1}), "bad_field"),
    (raw({"v": 1, "op": 5}), "bad_field"),
    (raw({"v": 1, "op": "delete"}), "unknown_op"),
    (raw({"v": 1, "op": "top", "n": 0}), "bad_field"),
    (raw({"v": 1, "op": "top", "n": 1001}), "bad_field"),
    (raw({"v": 1, "op": "top", "n": 2**64 - 1}), "bad_field"),
    (pack({"v": 1, "op": "top", "n": 2**300}), "bad_field"),
    (raw({"v": 1, "op": "top", "n": 5.0}), "bad_field"),
    (raw({"v": 1, "op": "top", "n": True}), "bad_field"),
    (raw({"v": 1, "op": "top", "n": "5"}), "bad_field"),
    (raw({"v": 1, "op": "top", "min_ev": "1"}), "bad_field"),
    (raw({"v": 1, "op": "top", "min_ev": float("nan")}), "bad_field"),
    (raw({"v": 1, "op": "top", "min_ev": float("inf")}), "bad_field"),
    (raw({"v": 1, "op": "top", "min_ev": False}), "bad_field"),
    (raw({"v": 1, "op": "top", "token": 12}), "bad_field"),
    (raw({"v": 1, "op": "top", "token": ""}), "bad_field"),
    (raw({"v": 1, "op": "top", "limit": 5}), "bad_field"),
    (raw({"v": 1, "op": "get"}), "bad_field"),
    (raw({"v": 1, "op": "get", "id": 3}), "bad_field"),
    (raw({"v": 1, "op": "health", "id": "x"}), "bad_field"),
    (raw({"v": 1, "op": "get", "id": "nope"}), "not_found"),
    (raw({"v": 1, "op": "top", "x": [[[[[1]]]]]}), "too_large"),
    (b"\x91" * 5000 + b"\x00", "too_large"),
    (raw({"v": 1, "op": "top", "token": "x" * 2000}), "too_large"),
    (raw({"v": 1, "op": "top", "x": list(range(100))}), "too_large"),
    (raw({"v": 1, "op": "top", **{f"k{i}": i for i in range(40)}}), "too_large"),
    (b"\xdd\xff\xff\xff\xff", "too_large"),  # array header claiming 4 G items
    (b"\xa5" * 70_000, "too_large"),
]


@pytest.mark.parametrize(("frame", "code"), BAD, ids=[f"{i}-{c}" for i, (_, c) in enumerate(BAD)])
def test_bad_request_gets_its_error_code(handler, frame, code):
    reply = ask(handler, frame)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"]
    assert handler.counters[f"errors.{code}"] == 1


def test_every_code_is_documented():
    assert {code for _, code in BAD} <= set(ERROR_CODES)


def test_top_orders_by_ev_and_filters(handler):
    result = result_of(ask(handler, request("top")))
    assert result["block"] == 7
    assert [o["id"] for o in result["opportunities"]] == ["high", "mid", "low"]
    assert [o["id"] for o in result_of(ask(handler, request("top", n=2)))["opportunities"]] == ["high", "mid"]
    assert [o["id"] for o in result_of(ask(handler, request("top", min_ev=5)))["opportunities"]] == ["high", "mid"]
    assert [o["id"] for o in result_of(ask(handler, request("top", min_ev=5.5)))["opportunities"]] == ["high"]
    by_address = result_of(ask(handler, request("top", token=A.upper().replace("0X", "0x"))))
    assert [o["id"] for o in by_address["opportunities"]] == ["mid", "low"]
    by_symbol = result_of(ask(handler, request("top", token="bbb")))
    assert [o["id"] for o in by_symbol["opportunities"]] == ["high"]
    both = result_of(ask(handler, request("top", token=B, min_ev=6, n=1)))
    assert [o["id"] for o in both["opportunities"]] == ["high"]
    assert result_of(ask(handler, request("top", token="0x" + "00" * 20)))["opportunities"] == []


def test_get_returns_every_number_and_big_ints_exactly(handler):
    got = result_of(ask(handler, request("get", id="mid")))
    assert got["amount_in"] == 2**200 and type(got["amount_in"]) is int
    assert got["profit_wei"] == -(2**70)
    with pytest.raises(QueryError) as e:
        result_of(ask(handler, request("get", id="gone")))
    assert e.value.code == "not_found" and "block 7" in e.value.message


@pytest.mark.parametrize("value", [0, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 2**200, -(2**255), 10**77])
def test_ints_round_trip_exactly(value):
    assert unpack(pack({"x": [value]})) == {"x": [value]}
    assert unpack(pack(value), Limits()) == value


def test_big_int_rule_is_ext_1_with_decimal_payload():
    assert msgpack.unpackb(pack(2**64)) == msgpack.ExtType(1, b"18446744073709551616")
    assert msgpack.unpackb(pack(2**64 - 1)) == 2**64 - 1  # native range stays native


def test_stats_and_health_come_from_callbacks(handler):
    ask(handler, b"\xc1")
    stats = result_of(ask(handler, request("stats")))
    assert stats["scanner"] == {"blocks": 3}
    assert stats["server"]["errors.bad_frame"] == 1 and stats["server"]["requests"] == 2
    assert result_of(ask(handler, request("health"))) == {"status": "degraded", "reasons": ["2 blocks behind"]}


def test_failing_callback_is_internal_error_without_details():
    def broken() -> dict:
        raise RuntimeError("rpc https://node/SECRET-API-KEY unreachable")

    h = QueryHandler(RankingStore(), stats=broken, health=lambda: {"not": "a Health"})
    for op in ("stats", "health"):
        reply = ask(h, request(op))
        assert reply["error"]["code"] == "internal"
        assert "SECRET" not in reply["error"]["message"]


def test_empty_store_serves_nothing():
    h = QueryHandler(RankingStore(), stats=dict, health=lambda: Health("ok"))
    assert result_of(ask(h, request("top"))) == {"block": None, "opportunities": []}
    assert ask(h, request("get", id="x"))["error"]["code"] == "not_found"


def test_withdraw_drops_orphaned_ranking_and_refuses_stale_replace():
    store = RankingStore()
    store.replace(10, [opp("a", 1.0, [WETH], block=10)])
    assert store.withdraw(11) is False and store.block == 10
    with pytest.raises(ValueError, match="withdraw"):
        store.replace(9, [])
    assert store.withdraw(10) is True
    assert store.top().opportunities == [] and store.block is None
    store.replace(9, [opp("b", 2.0, [WETH], block=9)])  # the new branch after the reorg
    assert store.get("b")["block"] == 9


@pytest.mark.parametrize(("bad", "key"), [
    ({"ev": 1.0, "block": 1, "tokens": []}, "id"),
    ({"id": "x", "ev": "1", "block": 1, "tokens": []}, "ev"),
    ({"id": "x", "ev": 1.0, "block": True, "tokens": []}, "block"),
    ({"id": "x", "ev": 1.0, "block": 1, "tokens": "0xaa"}, "tokens"),
    ({"id": "x", "ev": 1.0, "block": 1, "tokens": [], "symbols": [1]}, "symbols"),
])
def test_replace_checks_each_opportunity(bad, key):
    with pytest.raises(ValueError, match=rf"ranking\[0\]\['{key}'\]"):
        RankingStore().replace(1, [bad])


def test_replace_refuses_repeated_ids():
    with pytest.raises(ValueError, match="unique"):
        RankingStore().replace(1, [opp("x", 1.0, [WETH], block=1), opp("x", 2.0, [A], block=1)])


def test_health_status_is_checked():
    with pytest.raises(ValueError, match="health status"):
        Health("fine")


def test_a_store_of_several_chains_serves_each_apart_and_all_merged_by_ev():
    store = RankingStore(("base", "op"))
    store.replace(10, [opp("b1", 1.0, [WETH], block=10, chain="base"), opp("b9", 9.0, [WETH, A], block=10, chain="base")])
    store.replace(500, [opp("o5", 5.0, [WETH, A], block=500, chain="op")], "op")
    h = QueryHandler(store, stats=dict, health=lambda: Health("degraded", ["watcher-0@op: down"], {"base": "ok", "op": "down"}))
    merged = result_of(ask(h, request("top", n=2)))
    assert [o["id"] for o in merged["opportunities"]] == ["b9", "o5"] and merged["blocks"] == {"base": 10, "op": 500}
    only_op = result_of(ask(h, request("top", chain="op", token=A.upper())))
    assert only_op["block"] == 500 and [o["id"] for o in only_op["opportunities"]] == ["o5"]
    reply = ask(h, request("top", chain="arb"))
    assert reply["error"]["code"] == "bad_field" and "'arb'" in reply["error"]["message"] and "base, op" in reply["error"]["message"]
    assert ask(h, request("top", chain=""))["error"]["code"] == "bad_field"
    assert store.get("o5")["chain"] == "op"
    assert store.withdraw(500, "op") and store.block == 10 and store.top(chain="op").opportunities == []
    assert result_of(ask(h, request("health"))) == {"status": "degraded", "reasons": ["watcher-0@op: down"],
                                                    "chains": {"base": "ok", "op": "down"}}
    with pytest.raises(ValueError, match="health status"):
        Health("ok", [], {"op": "gone"})
