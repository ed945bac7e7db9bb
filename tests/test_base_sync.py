"""A real day of Base Uniswap-V2 reserves through the watchers' reserve tracker (issue 15, item 5b).

`fixtures/base_sync_2024_11_01.json.gz` (written by `fixtures/convert_base_sync.py` from
`../shared/data/l2-2024-11-01/`) holds all 9,363 Sync events of 5 Base pairs on 2024-11-01, blocks
21,814,938-21,858,126, each with the exact reserves after it, and the pairs' reserves at 00:00 UTC.

Each event is encoded as the raw JSON-RPC log the pair emitted (Sync topic, two ABI-encoded uint112)
and fed to the code the watchers run:
- event by event through `ShardState.apply_logs` (what `PoolWatcherCore` applies a block's logs
  with), so every intermediate state is compared, several Syncs of one pair in one transaction too;
- block by block through a capture store, `StoreSource` and `PoolWatcherCore.poll()`, as `arbscan
  replay` and `backtest` run it: all 43,189 blocks, each block's update message against the last
  recorded reserves of every pair the block touched. The source has no headers: hashes are made up.
Then the tracked states meet the pairs' math: every swap between two consecutive states paid out at
most what `scanner.dex.v2` quotes for its input at the state before (the pair's K check at 30 bps).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.chain.follow import SYNC_TOPIC, ShardState, _uints
from scanner.chain.shard import PoolWatcherCore
from scanner.dex.v2 import V2Pool
from scanner.history.replay import StoreSource, pool_infos
from scanner.history.syncs import read_sync_fixture, sync_fixture_store
from scanner.wire.messages import BlockUpdate

FIXTURE = Path(__file__).resolve().parent / "fixtures/base_sync_2024_11_01.json.gz"
FIRST_BLOCK, LAST_BLOCK = 21_814_938, 21_858_126
Reserves = tuple[int, int]


@dataclass(frozen=True)
class Sync:
    pool: str
    block: int
    tx_index: int
    log_index: int
    reserves: Reserves

    @property
    def key(self) -> tuple[int, int, int]:
        return self.block, self.tx_index, self.log_index

    def log(self) -> dict:
        """The log as `eth_getLogs` returns it (the fields the watcher reads)."""
        return {"address": self.pool, "topics": [SYNC_TOPIC], "data": "0x" + abi_encode(["uint112", "uint112"], self.reserves).hex(),
                "blockNumber": hex(self.block), "transactionIndex": hex(self.tx_index), "logIndex": hex(self.log_index)}


@cache
def _day() -> tuple[dict, tuple[Sync, ...]]:
    data, events = read_sync_fixture(FIXTURE)
    return data, tuple(Sync(e.pool, e.block, e.tx_index, e.log_index, (e.reserve0, e.reserve1)) for e in events)


def _start() -> dict[str, Reserves]:
    return {p["address"]: (p["reserve0"], p["reserve1"]) for p in _day()[0]["pools"]}


def _first_out_of_order(keys: list[tuple[int, int, int]]) -> int | None:
    """The first index whose (block, tx index, log index) is not above the one before it."""
    return next((i for i in range(1, len(keys)) if keys[i] <= keys[i - 1]), None)


def _replay_events(syncs: tuple[Sync, ...] | list[Sync], logs: list[dict]) -> tuple[list[int], dict[str, Reserves]]:
    """Each log through the tracker alone: (indices where the tracked state is not the recorded one, end state)."""
    state = ShardState(reserves=_start())
    recorded = _start()
    wrong = []
    for i, (sync, log) in enumerate(zip(syncs, logs, strict=True)):
        changed = state.apply_logs(sync.block, [log])
        recorded[sync.pool] = sync.reserves
        if state.reserves != recorded or set(changed) != {sync.pool}:
            wrong.append(i)
    return wrong, state.reserves


def _by_block(syncs: tuple[Sync, ...] | list[Sync]) -> dict[int, list[Sync]]:
    blocks: dict[int, list[Sync]] = {}
    for sync in syncs:
        blocks.setdefault(sync.block, []).append(sync)
    return blocks


def _block_ends(syncs: tuple[Sync, ...] | list[Sync]) -> dict[int, dict[str, Reserves]]:
    """Per block, the last recorded reserves of every pair it touched."""
    return {block: {s.pool: s.reserves for s in mine} for block, mine in _by_block(syncs).items()}


def _replay_blocks(blocks: dict[int, list[dict]], recorded: dict[int, dict[str, Reserves]]) -> list[int]:
    """Each block's logs through the tracker at once (in the order given): the blocks that end off the record."""
    state = ShardState(reserves=_start())
    wrong = []
    for block, logs in blocks.items():
        changed = state.apply_logs(block, logs)
        if {p: (c.reserve0, c.reserve1) for p, c in changed.items()} != recorded[block]:
            wrong.append(block)
    return wrong


def test_the_fixture_holds_the_whole_day_in_chain_order():
    data, syncs = _day()
    symbols = {p["address"]: f"{p['symbol0']}/{p['symbol1']}" for p in data["pools"]}
    assert data["events"] == len(syncs) == 9_363
    assert Counter(symbols[s.pool] for s in syncs) == {"WETH/MIGGLES": 3_398, "WETH/USDC": 2_934, "VIRTUAL/WETH": 1_412,
                                                       "WETH/KEYCAT": 1_241, "WETH/$mfer": 378}
    assert {p["fee_bps"] for p in data["pools"]} == {30}
    assert (syncs[0].block, syncs[-1].block, len(_by_block(syncs))) == (FIRST_BLOCK, LAST_BLOCK, 6_984)
    assert _first_out_of_order([s.key for s in syncs]) is None  # strictly increasing (block, tx index, log index)
    assert all(0 < r < 2**112 for s in syncs for r in s.reserves)


def test_every_sync_moves_the_tracker_to_the_recorded_reserves():
    _, syncs = _day()
    wrong, end = _replay_events(syncs, [s.log() for s in syncs])
    assert wrong == []  # 9,363 of 9,363 intermediate states equal, every other pair untouched at each step
    assert end == {s.pool: s.reserves for s in syncs} != _start()


def test_the_watcher_replays_the_day_block_by_block(tmp_path):
    """All 43,189 blocks through a capture store and `PoolWatcherCore`, as a replay runs them."""
    _, syncs = _day()
    numbers = list(range(FIRST_BLOCK, LAST_BLOCK + 1))
    capture = sync_fixture_store(FIXTURE, tmp_path)  # what `convert_base_sync.py --store` writes
    infos = dict(enumerate(pool_infos(capture)))
    address = {i: p.address for i, p in infos.items()}
    source = StoreSource(capture)
    watcher = PoolWatcherCore(source, infos, shard=0)
    assert {address[i]: r for i, r in watcher.bootstrap().reserves.items()} == _start()
    updates: list[BlockUpdate] = []
    while source.released < LAST_BLOCK:
        source.release(source.released + watcher.backfill_max_blocks)
        updates += [m for m in watcher.poll().messages if isinstance(m, BlockUpdate)]
    assert [u.number for u in updates] == numbers
    recorded = _block_ends(syncs)
    got = {u.number: {address[i]: r for i, r in u.reserves.items()} for u in updates if u.reserves}
    assert got == recorded  # 6,984 blocks with Syncs, each pair's end-of-block reserves equal; 36,205 without, no update
    assert watcher.state.reserves == {s.pool: s.reserves for s in syncs}
    assert (watcher.blocks_seen, watcher.reorgs_seen) == (len(numbers), 0)


def test_a_corrupted_or_reordered_stream_is_caught():
    _, syncs = _day()
    logs = [s.log() for s in syncs]
    # one wei off in one log's data: that event, and every later state of its pair until its next Sync, is off
    i = 5_000
    bad = replace(syncs[i], reserves=(syncs[i].reserves[0] + 1, syncs[i].reserves[1]))
    wrong, _ = _replay_events(syncs, logs[:i] + [bad.log()] + logs[i + 1:])
    nxt = next(j for j in range(i + 1, len(syncs)) if syncs[j].pool == syncs[i].pool)
    assert wrong == list(range(i, nxt))
    # two events swapped in the stream: the order check names the place
    keys = [s.key for s in syncs]
    assert _first_out_of_order(keys[:i] + [keys[i + 1], keys[i]] + keys[i + 2:]) == i + 1
    # the two last Syncs of a pair in a block with their log indices swapped: the block ends on the wrong reserves
    recorded = _block_ends(syncs)
    blocks = {b: [s.log() for s in mine] for b, mine in _by_block(syncs).items()}
    assert _replay_blocks(blocks, recorded) == []  # the true stream, a block at a time, ends every block on the record
    block, mine = max(_by_block(syncs).items(), key=lambda kv: len(kv[1]))  # 17 Syncs of one pair in one transaction
    a, b = mine[-2], mine[-1]
    assert a.pool == b.pool and a.reserves != b.reserves
    blocks[block] = [s.log() for s in mine[:-2]] + [replace(b, log_index=a.log_index).log(), replace(a, log_index=b.log_index).log()]
    assert _replay_blocks(blocks, recorded) == [block]


def test_every_swap_pays_out_at_most_the_pairs_quote():
    """Between two consecutive tracked states of a pair, one reserve up and the other down is a swap
    (a mint raises both, a burn lowers both): what left the pair is at most `amount_out` of what came
    in at the state before, exactly the pair's K check, and equal to it when a router quoted the swap.
    At 31 bps nearly every swap would have paid out more than allowed: the data pins the fee to 30."""
    data, syncs = _day()
    pools = {p["address"]: V2Pool(p["address"], p["token0"], p["token1"], p["reserve0"], p["reserve1"], p["fee_bps"])
             for p in data["pools"]}
    steps: Counter[str] = Counter()
    over_31 = 0
    for sync in syncs:
        pool = pools[sync.pool]
        before = pool.reserve0, pool.reserve1
        d0, d1 = sync.reserves[0] - before[0], sync.reserves[1] - before[1]
        if (d0 > 0) != (d1 > 0) and d0 and d1:
            zero_for_one = d0 > 0
            paid_in, paid_out = (d0, -d1) if zero_for_one else (d1, -d0)
            quote = pool.quote_out(zero_for_one, paid_in)
            steps["swap over the quote" if paid_out > quote else "swap at the quote" if paid_out == quote else "swap under the quote"] += 1
            over_31 += paid_out > V2Pool(pool.address, pool.token0, pool.token1, *before, fee_bps=31).quote_out(zero_for_one, paid_in)
        else:
            steps["both up" if d0 > 0 else "both down" if d0 < 0 else "unchanged"] += 1
        pool.update(*sync.reserves)
    assert steps == {"swap at the quote": 7_206, "swap under the quote": 2_143, "both down": 8, "both up": 1, "unchanged": 5}
    assert over_31 == 9_329


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 2**112 - 1, 2**112, 2**255, 2**256 - 1]) | st.integers(0, 2**256 - 1),
                min_size=0, max_size=5),
       st.sampled_from([(112, 112), (256, 256, 256, 256)]), st.integers(-40, 40))
def test_pair_log_words_decode_as_eth_abi_decodes_them(words, bits, trim):
    """The watchers' own reader of Sync and Swap data (`follow._uints`) gives eth_abi's values and refuses
    what eth_abi refuses (short data, a uint112 with non-zero padding), with eth_abi's error class."""
    data = b"".join(w.to_bytes(32, "big") for w in words)
    data = data[:len(data) + trim] if trim < 0 else data + bytes(trim)
    types = [f"uint{b}" for b in bits]
    try:
        expected: tuple | type = tuple(abi_decode(types, data))
    except DecodingError as error:
        expected = type(error)
    try:
        found: tuple | type = _uints(data, bits)
    except DecodingError as error:
        found = type(error)
    assert found == expected
