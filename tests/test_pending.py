"""Pending swaps without a chain: decoding, exact post-states, replacement, the wire, and backruns ranked
beside the mined state without changing it."""
from __future__ import annotations

import copy
from fractions import Fraction

import pytest
from eth_abi import encode as abi_encode

from scanner.chain.pending_swaps import (
    HARNESS_SWAP,
    ROUTER_SWAP,
    PendingBook,
    PendingTx,
    SwapReverts,
    Undecodable,
    decode_swap,
    v2_after,
    v3_after,
)
from scanner.dex.pool import PoolInfo, V3State
from scanner.dex.v2 import V2Pool, amount_out
from scanner.dex.v3 import V3Pool
from scanner.rank.aggregate import PENDING_QUEUE, AggregatorCore, ServedBackruns, opportunity_dict
from scanner.rank.ranking import Ranker
from scanner.wire.messages import BlockUpdate, PendingUpdate, PendingWithdraw, decode

WETH, USDC, DAI = "0x" + "e" * 40, "0x" + "c" * 40, "0x" + "d" * 40
PAIR, OTHER, POOL3 = "0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40
ME = "0x" + "9" * 40


def router_call(pool: str, zero_for_one: bool, amount: int, min_out: int = 0, fee: int = 30) -> bytes:
    return ROUTER_SWAP + abi_encode(["address", "bool", "uint16", "uint256", "uint256", "address"],
                                    [pool, zero_for_one, fee, amount, min_out, ME])


def v3_pool() -> V3Pool:
    pool = V3Pool(POOL3, WETH, USDC, 3000, 60, 2**96, 0, 0)
    pool.mint(-6000, 6000, 10**21)
    return pool


def test_router_and_harness_swaps_decode_and_everything_else_is_skipped():
    watched = {PAIR: 0, POOL3: 1}
    swap = decode_swap(router_call(PAIR, True, 10**18, 5, fee=25), watched)
    assert swap is not None and (swap.pool, swap.v3, swap.zero_for_one, swap.amount, swap.min_out, swap.fee_bps) == \
        (PAIR, False, True, 10**18, 5, 25)
    harness = HARNESS_SWAP + abi_encode(["address", "bool", "int256", "uint160"], [POOL3, False, -7, 0])
    swap = decode_swap(harness, watched)
    assert swap is not None and (swap.v3, swap.zero_for_one, swap.amount, swap.limit) == (True, False, -7, 0)
    assert decode_swap(router_call(OTHER, True, 1), watched) is None  # not a watched pool
    assert decode_swap(b"\xa9\x05\x9c\xbb" + b"\x00" * 64, watched) is None  # a transfer: no swap
    assert decode_swap(b"", watched) is None
    with pytest.raises(Undecodable):
        decode_swap(ROUTER_SWAP + b"\x01\x02garbage", watched)
    tx = PendingTx.from_rpc({"hash": "0xab", "from": ME.upper(), "nonce": "0x7", "to": PAIR, "input": "0xzz",
                             "maxPriorityFeePerGas": "0x5", "maxFeePerGas": "0x9"})
    assert (tx.sender, tx.nonce, tx.input, tx.tip, tx.max_fee) == (ME, 7, b"", 5, 9)  # not hex: nothing known


def test_post_states_are_the_exact_pool_math_and_failing_swaps_revert():
    reserves = (5 * 10**21, 15 * 10**12)
    (swap,) = [decode_swap(router_call(PAIR, True, 10**19), {PAIR: 0})]
    assert swap is not None
    out = amount_out(10**19, *reserves, 30)
    assert v2_after(swap, reserves, 30) == (reserves[0] + 10**19, reserves[1] - out)
    back = decode_swap(router_call(PAIR, False, 10**9, fee=25), {PAIR: 0})
    assert back is not None
    with pytest.raises(SwapReverts, match="K check"):  # the router charges 25 bps, the pair wants 30
        v2_after(back, reserves, 30)
    greedy = decode_swap(router_call(PAIR, True, 10**19, min_out=out + 1), {PAIR: 0})
    assert greedy is not None
    with pytest.raises(SwapReverts, match="below the minimum"):
        v2_after(greedy, reserves, 30)

    pool = v3_pool()
    before = pool.state()
    swap3 = decode_swap(HARNESS_SWAP + abi_encode(["address", "bool", "int256", "uint160"], [POOL3, True, 10**18, 0]),
                        {POOL3: 1})
    assert swap3 is not None
    result = pool.swap(True, 10**18)
    assert v3_after(swap3, pool) == V3State(result.sqrt_price_x96, result.tick, result.liquidity, {})
    assert pool.state() == before  # simulated on the state, never applied to it
    past = decode_swap(HARNESS_SWAP + abi_encode(["address", "bool", "int256", "uint160"],
                                                 [POOL3, True, 10**18, 2**97]), {POOL3: 1})
    assert past is not None
    with pytest.raises(SwapReverts, match="SPL"):  # a limit above the price for a zero-for-one swap
        v3_after(past, pool)


def test_a_replacement_withdraws_what_it_replaces_and_the_book_stays_bounded():
    book = PendingBook(capacity=3)

    def tx(h: str, nonce: int, sender: str = ME) -> PendingTx:
        return PendingTx(h, sender, nonce, PAIR, b"", 1, 2)

    assert book.add(tx("0xa", 0)) == []
    assert book.replaced_by(tx("0xb", 0)) == "0xa" and book.replaced_by(tx("0xa", 0)) is None
    assert book.add(tx("0xb", 0)) == ["0xa"] and "0xa" not in book and "0xb" in book
    assert book.add(tx("0xc", 1)) == [] and book.add(tx("0xd", 0, OTHER)) == []
    assert book.add(tx("0xe", 2)) == ["0xb"] and len(book) == 3  # over capacity: the oldest goes
    assert book.remove("0xc") is not None and book.replaced_by(tx("0xf", 1)) is None


def test_pending_messages_round_trip_the_wire():
    update = PendingUpdate("0x" + "ab" * 32, ME, 12, 3 * 10**9, 2**70, 99, 1234.5, {0: (2**111, 5)},
                           {1: V3State(2**150, 7, 2**100, {})})
    assert decode(update.encode()) == update
    withdraw = PendingWithdraw(("0x01", "0x02"), "replaced")
    assert decode(withdraw.encode()) == withdraw


def _pools() -> dict[int, PoolInfo]:
    return {0: PoolInfo(PAIR, WETH, USDC, 10**21, 3 * 10**12, "a", 30),
            1: PoolInfo(OTHER, WETH, USDC, 10**20, 3 * 10**11, "b", 5),
            2: PoolInfo("0x" + "4" * 40, WETH, DAI, 10**21, 3 * 10**24, "a", 30),
            3: PoolInfo("0x" + "5" * 40, USDC, DAI, 10**13, 10**25, "a", 30)}


def test_what_if_ranks_the_post_state_exactly_and_leaves_the_mined_state_as_it_was():
    pools = _pools()
    ranker = Ranker([V2Pool(p.address, p.token0, p.token1, p.reserve0, p.reserve1, p.fee_bps) for p in pools.values()],
                    {WETH: Fraction(1)}, gas_price=10**9)
    mined = ranker.apply_updates({PAIR: (10**21, 3 * 10**12)}, 5)
    arrays = [a.copy() for a in (ranker._k, ranker._m, ranker._n, ranker._x, ranker._profit, ranker._bound)]
    post = (10**21 + 3 * 10**19, 3 * 10**12 - amount_out(3 * 10**19, 10**21, 3 * 10**12, 30))
    backruns = ranker.what_if({PAIR: post}, 5, "0xfeed")
    assert backruns and all(o.trigger == "0xfeed" and PAIR in o.pools for o in backruns)
    # The same cycles ranked on a scanner whose mined state is the post-state: identical trades.
    other = copy.deepcopy(ranker)
    truth = {(o.pools, o.amount_in, o.gross_profit) for o in other.apply_updates({PAIR: post}, 5) if PAIR in o.pools}
    assert {(o.pools, o.amount_in, o.gross_profit) for o in backruns} >= truth and truth
    # Nothing of the mined state changed; ids never collide with the mined ones.
    assert ranker.ranking(5) == mined and ranker.full_rescan(5) == mined
    assert all((a == b).all() for a, b in zip(arrays, (ranker._k, ranker._m, ranker._n, ranker._x, ranker._profit,
                                                        ranker._bound)))
    assert not {o.id for o in backruns} & {o.id for o in mined}
    assert {o.id for o in ranker.what_if({PAIR: post}, 5, "0xbeef")}.isdisjoint({o.id for o in backruns})


def test_the_aggregator_ranks_pending_updates_on_their_block_and_withdraws_them():
    core = AggregatorCore(_pools(), [WETH], shards=1, top_n=5)
    post = {0: (10**21 + 3 * 10**19, 3 * 10**12 - amount_out(3 * 10**19, 10**21, 3 * 10**12, 30))}
    early = PendingUpdate("0xa1", ME, 0, 10, 20, 7, 0.0, post)
    core.ingest(early.encode())  # its block is not ranked yet: it waits
    assert not core.rank_pending() and len(core.pending_queue) == 1
    core.ingest(BlockUpdate(0, 7, "0x07", "0x06", 10**9, 0, 30_000_000, 0, {}).encode())
    assert core.last_ranked == 7 and core.rank_pending()
    backruns = core.backrun_opportunities(7)
    assert backruns and {o.trigger for o in backruns} == {"0xa1"}
    served = ServedBackruns(limit=2)
    rows, changed = served.update(core, 7, opportunity_dict)
    assert changed and [r["id"] for r in rows] == [o.id for o in backruns[:2]]
    assert served.update(core, 7, opportunity_dict) == (rows, False)  # nothing new: nothing re-served
    core.ingest(PendingUpdate("0xa2", ME, 1, 10, 20, 6, 0.0, post).encode())  # simulated on an older block
    core.ingest(PendingUpdate("0xa3", ME, 2, 10, 20, 7, 0.0, {99: (1, 1)}).encode())  # not our pool
    core.ingest(PendingWithdraw(("0xa1",), "replaced").encode())
    assert core.rank_pending() and core.backrun_opportunities(7) == []
    assert core.pending_counts["stale"] == 1 and core.pending_counts["invalid"] == 1
    for i in range(PENDING_QUEUE + 10):  # a flood: the queue sheds its oldest, counted
        core.on_pending(PendingWithdraw((f"0x{i:x}",), "dropped"))
    assert len(core.pending_queue) == PENDING_QUEUE and core.pending_counts["shed"] == 10
    core.rank_pending(budget_s=10.0)
    core.ingest(PendingUpdate("0xa4", ME, 3, 10, 20, 7, 0.0, post).encode())
    assert core.rank_pending() and core.backrun_opportunities(7)
    core.ingest(BlockUpdate(0, 8, "0x08", "0x07", 10**9, 0, 30_000_000, 0, {}).encode())
    assert core.rank_pending() and core.backrun_opportunities(7) == core.backrun_opportunities(8) == []  # expired
