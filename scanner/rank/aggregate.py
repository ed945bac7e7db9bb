"""The aggregator's logic: assemble each block from every shard, rank it, roll back reorgs.

No sockets here (the actor has them): messages in, ranked blocks out, so the ordering and
completeness rules are tested in-process.
"""
from __future__ import annotations

import heapq
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from scanner.dex.kinds import make_pool
from scanner.dex.pool import PoolInfo
from scanner.errors import ConfigError
from scanner.gas.fees import ETHEREUM, BaseFeeRules, GasModel, next_base_fee
from scanner.rank.ranking import HeuristicRiskModel, Opportunity, Ranker, RiskModel
from scanner.rank.risk import LstmRiskModel
from scanner.route.graph import MAX_HOPS
from scanner.wire.frames import PredictionFrame, WireError
from scanner.wire.messages import BlockUpdate, GasUpdate, PendingUpdate, PendingWithdraw, Withdraw, decode_ingest


@dataclass
class RankedBlock:
    number: int
    hash: str
    opportunities: list[Opportunity]
    complete: bool  # every shard reported it (False: ranked at the shard timeout)
    gas_price: int
    received_at: float  # monotonic time the first shard's update arrived
    ranked_at: float


@dataclass
class _Pending:
    """One block number as the shards reported it so far: each shard's own update (its pools)."""

    number: int
    first_seen: float = 0.0
    updates: dict[int, BlockUpdate] = field(default_factory=dict)  # shard -> its update, newest last

    def add(self, update: BlockUpdate) -> None:
        self.updates.pop(update.shard, None)  # a shard reports a number again only on a new chain
        self.updates[update.shard] = update

    @property
    def header(self) -> BlockUpdate:
        return next(reversed(self.updates.values()))

    @property
    def agreed(self) -> bool:
        """Every shard that reported this number names the same block (no reorg half seen)."""
        return len({u.hash for u in self.updates.values()}) <= 1


STALE_AFTER_S = 30.0  # no ranked block for this long: health says degraded
REPORTED_WINDOW = 256  # block hashes remembered per shard, to tell orphaned reports after a reorg
ORPHANED_WINDOW = 1024  # orphaned block hashes remembered, to drop late reports built on them
PENDING_QUEUE = 5000  # pending updates waiting to be ranked; beyond it the oldest are shed (counted)
PENDING_BUDGET_S = 0.02  # ranking of pending updates per call of `rank_pending`: block updates come first
BACKRUNS_PER_TRIGGER = 3  # the best cycles kept per pending transaction (one of them is sent)


def base_rates(pools: Iterable[PoolInfo], base_tokens: list[str]) -> dict[str, Fraction]:
    """Base-token wei per ETH wei for each base token, the first being WETH (rate 1).

    Other base tokens are priced from their deepest pool against WETH at launch, so that gas
    (paid in ETH) can be charged in the token a cycle's profit is counted in.
    """
    bases = [b.lower() for b in base_tokens]
    weth, rates = bases[0], {bases[0]: Fraction(1)}
    for base in bases[1:]:
        best = None
        for p in pools:
            if {p.token0, p.token1} == {weth, base} and p.reserve0 > 0 and p.reserve1 > 0:
                r_weth, r_base = (p.reserve0, p.reserve1) if p.token0 == weth else (p.reserve1, p.reserve0)
                if best is None or r_weth > best[0]:
                    best = (r_weth, r_base)
        if best is None:
            raise ConfigError(f"base token {base} has no pool with {weth} (the first base token, WETH): "
                              "gas cannot be priced in it; drop it from tokens.base or add such a pool")
        rates[base] = Fraction(best[1], best[0])
    return rates


def opportunity_dict(opp: Opportunity, symbols: dict[str, str] | None = None) -> dict:
    """An opportunity as the query API serves it: every field, `ev` in ETH for ordering."""
    d = asdict(opp)
    d["tokens"] = list(opp.tokens)
    d["ev"] = opp.expected_value_eth
    if symbols:
        d["symbols"] = [symbols.get(t, t) for t in opp.tokens]
    return d


BACKRUNS_SERVED = 50  # the best backruns of pending transactions served (and published) beside a block's ranking


class ServedBackruns:
    """The rows of the best backruns served beside a block's ranking. A busy mempool ranks hundreds of
    pending transactions a second and most never make the best: each row is converted once, and the
    served set is replaced only when it changes."""

    def __init__(self, limit: int = BACKRUNS_SERVED) -> None:
        self.limit = limit
        self.block: int | None = None
        self.rows: dict[str, dict] = {}  # opportunity id -> its row, for `block`
        self.ids: list[str] = []  # served now, best first

    def update(self, core: AggregatorCore, block: int, row: Callable[[Opportunity], dict]) -> tuple[list[dict], bool]:
        """The rows to serve with `block`'s ranking (`row` converts an opportunity), and whether they changed."""
        best = core.backrun_opportunities(block, self.limit)
        ids = [o.id for o in best]
        if block == self.block and ids == self.ids:
            return [self.rows[i] for i in ids], False
        if block != self.block:
            self.rows.clear()
            self.block = block
        for o in best:
            if o.id not in self.rows:
                self.rows[o.id] = row(o)
        self.ids = ids
        return [self.rows[i] for i in ids], True


class AggregatorCore:
    """Ranks every block once all `shards` have reported it, or at `shard_timeout_s`."""

    def __init__(
        self,
        pools: dict[int, PoolInfo],
        base_tokens: list[str],
        shards: int,
        *,
        top_n: int = 10,
        shard_timeout_s: float = 2.0,
        stale_after_s: float = STALE_AFTER_S,  # the chain's: a few of its block times
        gas_model: GasModel = GasModel(),
        fee_rules: BaseFeeRules = ETHEREUM,  # the chain's: the next block's base fee from each header
        risk: RiskModel = HeuristicRiskModel(),
        clock: Callable[[], float] = time.monotonic,
        max_hops: int = MAX_HOPS,
    ) -> None:
        self.pools = pools
        self.shards = shards
        self.shard_timeout_s = shard_timeout_s
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.address = {i: p.address for i, p in pools.items()}
        self.ranker = Ranker([make_pool(p) for p in pools.values()], base_rates(pools.values(), base_tokens), gas_price=0,
                               gas_model=gas_model, risk=risk, top_n=top_n, max_hops=max_hops)
        self.tip = 0
        self.fee_rules = fee_rules
        self.last_reported: dict[int, int] = {}  # shard -> highest block it reported (on the chain it follows)
        self.first_reported: dict[int, int] = {}  # shard -> the block it bootstrapped at
        self.reported: dict[int, OrderedDict[int, str]] = {}  # shard -> block number -> hash it reported
        self.pending: dict[int, _Pending] = {}
        # Orphaned block hash -> the withdrawal (a counter) that orphaned it; a shard that has not
        # withdrawn since is still on that chain, and its reports built on those blocks are dropped.
        self.orphaned: OrderedDict[str, int] = OrderedDict()
        self.withdrawals = 0
        self.withdrawn_at: dict[int, int] = {}  # shard -> the counter at its last withdrawal
        self.orphaned_dropped = 0
        self.last_ranked = -1
        self.shard_timeouts = 0
        self.withdrawn_blocks = 0
        # After a restart this core starts from the pools' launch-time reserves: until a shard's full
        # snapshot arrives (see `expect_snapshot`), its updates would rank on stale pools and are dropped.
        self.awaiting: set[int] = set()
        self.snapshot_pools: dict[int, frozenset[int]] = {}
        self.unsynced_dropped = 0
        self.predictions = 0
        self.invalid_frames = 0
        self.last_ranked_at = 0.0
        # Backruns: pending post-states queue here and are ranked in what time the mined blocks leave
        # (`rank_pending`), each on a what-if of the mined state that is undone at once.
        self.pending_queue: deque[PendingUpdate | PendingWithdraw] = deque()
        self.backruns: dict[str, tuple[int, list[Opportunity]]] = {}  # trigger -> (mined block it is on, ranking)
        self.pending_counts: Counter[str] = Counter()

    def ingest(self, data: bytes) -> tuple[list[RankedBlock], int | None]:
        """One frame of the ingest socket: (blocks ranked now, the fork block when it was a withdrawal).

        A malformed frame is counted and dropped: one bad sender must not stop the ranking.
        """
        try:
            msg = decode_ingest(data)
        except WireError:
            self.invalid_frames += 1
            return [], None
        if isinstance(msg, PredictionFrame):
            self.on_predictions(msg)
        elif isinstance(msg, BlockUpdate):
            return self.on_block(msg), None
        elif isinstance(msg, Withdraw):
            return [], self.on_withdraw(msg)
        elif isinstance(msg, (PendingUpdate, PendingWithdraw)):
            self.on_pending(msg)
        return [], None

    def on_pending(self, msg: PendingUpdate | PendingWithdraw) -> None:
        """Queue a pending post-state or withdrawal for `rank_pending`; a full queue sheds its oldest."""
        if len(self.pending_queue) >= PENDING_QUEUE:
            self.pending_queue.popleft()
            self.pending_counts["shed"] += 1
        self.pending_queue.append(msg)
        self.pending_counts["received"] += 1

    def rank_pending(self, budget_s: float = PENDING_BUDGET_S) -> bool:
        """Rank queued pending post-states for at most `budget_s` (withdrawals apply at once); returns
        whether the backruns served changed. An update waits until its mined block is ranked (the
        pools here must be the ones it was simulated on) and is dropped once a later block is."""
        changed = False
        for trigger in [t for t, (block, _) in self.backruns.items() if block != self.last_ranked]:
            del self.backruns[trigger]  # an older (or orphaned) block's: the watcher re-sends it on the new head
            self.pending_counts["expired"] += 1
            changed = True
        deadline = self.clock() + budget_s
        while self.pending_queue and self.clock() < deadline:
            msg = self.pending_queue[0]
            if isinstance(msg, PendingUpdate) and msg.base_block > self.last_ranked:
                break
            self.pending_queue.popleft()
            if isinstance(msg, PendingWithdraw):
                for trigger in msg.triggers:
                    changed |= self.backruns.pop(trigger, None) is not None
                continue
            if msg.base_block < self.last_ranked:
                self.pending_counts["stale"] += 1
                continue
            try:
                updates = {self.address[i]: s for i, s in msg.states.items()}
                ranked = self.ranker.what_if(updates, msg.base_block, msg.trigger)
            except (KeyError, ValueError):  # a pool id not ours, or a state no pool takes: one bad message
                self.pending_counts["invalid"] += 1
                continue
            self.pending_counts["ranked"] += 1
            if ranked or msg.trigger in self.backruns:
                self.backruns[msg.trigger] = (msg.base_block, ranked[:BACKRUNS_PER_TRIGGER])
                changed = True
        return changed

    def backrun_opportunities(self, block: int, limit: int | None = None) -> list[Opportunity]:
        """The ranked backruns on the mined state of `block` (the best `limit` of them), best first."""
        found = (o for b, ranked in self.backruns.values() if b == block for o in ranked)
        if limit is not None:
            return heapq.nlargest(limit, found, key=lambda o: o.expected_value_eth)
        return sorted(found, key=lambda o: o.expected_value_eth, reverse=True)

    def on_predictions(self, frame: PredictionFrame) -> None:
        """The LSTM's newest per-pool predictions: an LSTM risk model prices the next ranking with them."""
        self.predictions += len(frame)
        risk = self.ranker.risk
        if isinstance(risk, LstmRiskModel):
            risk.update_many([self.address[pool] for pool in frame.pool.tolist()], frame.mu, frame.sigma, frame.p_trade)

    def health_reasons(self) -> list[str]:
        """Why the ranking is not current, if it is not (empty when it is)."""
        reasons = []
        if not self.last_ranked_at:
            reasons.append("no block ranked yet")
        elif self.clock() - self.last_ranked_at > self.stale_after_s:
            reasons.append(f"no block ranked for {self.clock() - self.last_ranked_at:.0f} s")
        if self.awaiting:
            reasons.append(f"waiting for the state of shards {sorted(self.awaiting)} after a restart")
        return reasons

    def resync_all(self) -> None:
        """Start over from snapshots: every shard must send its full state before it counts again."""
        self.awaiting = set(range(self.shards))
        self.first_reported.clear()
        self.last_reported.clear()

    def expect_snapshot(self, shard: int, pool_ids) -> None:
        """Shard `shard` owns `pool_ids`; its next update that covers all of them is its snapshot."""
        self.snapshot_pools[shard] = frozenset(pool_ids)

    def on_block(self, update: BlockUpdate) -> list[RankedBlock]:
        if update.shard in self.awaiting:
            pools = self.snapshot_pools.get(update.shard)
            if pools is None or not pools <= update.states.keys():
                self.unsynced_dropped += 1  # superseded by the snapshot the shard was asked for
                return []
            self.awaiting.discard(update.shard)
            self.first_reported[update.shard] = update.number
        orphaned_by = self.orphaned.get(update.hash, self.orphaned.get(update.parent_hash))
        if orphaned_by is not None and self.withdrawn_at.get(update.shard, -1) < orphaned_by:
            self._orphan({update.hash}, orphaned_by)  # a shard still on the old chain: its withdrawal follows
            self.orphaned_dropped += 1
            return []
        self.first_reported.setdefault(update.shard, update.number)
        self.last_reported[update.shard] = max(update.number, self.last_reported.get(update.shard, -1))
        seen = self.reported.setdefault(update.shard, OrderedDict())
        seen[update.number] = update.hash
        seen.move_to_end(update.number)
        while len(seen) > REPORTED_WINDOW:
            seen.popitem(last=False)
        if update.number <= self.last_ranked:
            # Late (its block was ranked at the shard timeout) or replayed by a restarted watcher:
            # its reserves are still the newest for its pools, so they count from the next block on.
            if update.states:
                self.ranker.apply_updates({self.address[i]: s for i, s in update.states.items()}, self.last_ranked)
            return []
        entry = self.pending.setdefault(update.number, _Pending(update.number, first_seen=self.clock()))
        entry.add(update)
        return self._rank_ready()

    def on_gas(self, update: GasUpdate) -> None:
        self.tip = update.tips[1]

    def on_withdraw(self, msg: Withdraw) -> int:
        """Roll back to the fork: restore reserves, forget pending orphaned blocks. Returns the fork.

        Shards see a reorg one after another. What this shard reported above the fork is orphaned,
        and so is every other shard's report of those same blocks: such a shard is still on the old
        chain (its own withdrawal is on its way), so it no longer counts as current above the fork.
        Reports of the new chain by shards that already switched stay pending.
        """
        if msg.shard in self.awaiting:
            return msg.fork_number  # the snapshot it was asked for comes after this
        fork = msg.fork_number
        self.withdrawals += 1
        self.withdrawn_at[msg.shard] = self.withdrawals
        seen = self.reported.get(msg.shard, OrderedDict())
        orphaned = {h for n, h in seen.items() if n > fork}
        for n in [n for n in seen if n > fork]:
            del seen[n]
        for number in sorted(n for n in self.pending if n > fork):
            entry = self.pending[number]
            for shard, update in list(entry.updates.items()):
                if shard == msg.shard or update.hash in orphaned or update.parent_hash in orphaned:
                    orphaned.add(update.hash)  # built on an orphaned block: orphaned too
                    del entry.updates[shard]
            if not entry.updates:
                del self.pending[number]
        for shard, hashes in self.reported.items():
            if shard != msg.shard and any(n > fork and h in orphaned for n, h in hashes.items()):
                self.last_reported[shard] = min(self.last_reported.get(shard, fork), fork)
        self._orphan(orphaned, self.withdrawals)
        if isinstance(self.ranker.risk, LstmRiskModel):
            self.ranker.risk.forget()  # its predictions were made on the orphaned branch
        if msg.states:
            self.ranker.apply_updates({self.address[i]: s for i, s in msg.states.items()}, msg.fork_number)
        if self.last_ranked > msg.fork_number:
            self.withdrawn_blocks += self.last_ranked - msg.fork_number
            self.last_ranked = msg.fork_number
        self.last_reported[msg.shard] = min(self.last_reported.get(msg.shard, msg.fork_number), msg.fork_number)
        return msg.fork_number

    def _orphan(self, hashes, withdrawal: int) -> None:
        for h in hashes:
            if h not in self.orphaned:  # the first withdrawal that orphaned it is the one that counts
                self.orphaned[h] = withdrawal
        while len(self.orphaned) > ORPHANED_WINDOW:
            self.orphaned.popitem(last=False)

    def tick(self) -> list[RankedBlock]:
        """Rank what the shard timeout allows even though a shard is silent (counted)."""
        return self._rank_ready()

    def _rank_ready(self) -> list[RankedBlock]:
        out = []
        now = self.clock()
        while self.pending:
            number = min(self.pending)
            entry = self.pending[number]
            complete = (len(self.last_reported) >= self.shards and min(self.last_reported.values()) >= number
                        and entry.agreed)
            if not complete and now - entry.first_seen < self.shard_timeout_s:
                break
            del self.pending[number]
            ranked = self._rank(entry, complete)
            if number < self.serving_from:
                continue  # a shard bootstrapped later (or not yet): its pools were not current at this block
            if not complete:
                self.shard_timeouts += 1
            self.last_ranked_at = ranked.ranked_at
            out.append(ranked)
        return out

    @property
    def serving_from(self) -> int:
        """The first block at which every shard's pools are current (all have bootstrapped)."""
        if len(self.first_reported) < self.shards:
            return 1 << 62
        return max(self.first_reported.values())

    def _rank(self, entry: _Pending, complete: bool) -> RankedBlock:
        header = entry.header  # at a timeout with a reorg half seen: the chain the newest report named
        gas_price = next_base_fee(header.base_fee, header.gas_used, header.gas_limit, self.fee_rules) + self.tip
        updates: dict[str, tuple] = {}
        other: dict[str, tuple] = {}
        for update in entry.updates.values():
            target = updates if update.hash == header.hash else other
            target.update({self.address[i]: s for i, s in update.states.items()})
        if updates:
            opportunities = self.ranker.apply_updates(updates, entry.number, gas_price=gas_price)
        else:
            self.ranker.gas_price = gas_price
            opportunities = self.ranker.ranking(entry.number)
        if other:
            # The other chain's reports still hold their shards' newest reserves (a withdrawal restores
            # them if that chain is the orphaned one), like a late update.
            self.ranker.apply_updates(other, entry.number)
        self.last_ranked = max(self.last_ranked, entry.number)
        return RankedBlock(entry.number, header.hash, opportunities, complete, gas_price, entry.first_seen, self.clock())
