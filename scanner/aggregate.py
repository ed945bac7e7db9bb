"""The aggregator's logic: assemble each block from every shard, rank it, roll back reorgs.

No sockets here (the actor has them): messages in, ranked blocks out, so the ordering and
completeness rules are tested in-process.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Callable, Iterable

from scanner.discovery import PoolInfo
from scanner.errors import ConfigError
from scanner.gas import GasModel, next_base_fee
from scanner.messages import BlockUpdate, GasUpdate, Withdraw
from scanner.pools import V2Pool
from scanner.ranking import HeuristicRiskModel, Opportunity, RiskModel, Scanner


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
    number: int
    hash: str = ""
    header: BlockUpdate | None = None
    reserves: dict[int, tuple[int, int]] = field(default_factory=dict)
    shards: set[int] = field(default_factory=set)
    first_seen: float = 0.0


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
        gas_model: GasModel = GasModel(),
        risk: RiskModel = HeuristicRiskModel(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pools = pools
        self.shards = shards
        self.shard_timeout_s = shard_timeout_s
        self.clock = clock
        self.address = {i: p.address for i, p in pools.items()}
        v2 = [V2Pool(p.address, p.token0, p.token1, p.reserve0, p.reserve1, p.fee_bps) for p in pools.values()]
        self.scanner = Scanner(v2, base_rates(pools.values(), base_tokens), gas_price=0,
                               gas_model=gas_model, risk=risk, top_n=top_n)
        self.tip = 0
        self.last_reported: dict[int, int] = {}  # shard -> highest block it reported
        self.first_reported: dict[int, int] = {}  # shard -> the block it bootstrapped at
        self.pending: dict[int, _Pending] = {}
        self.last_ranked = -1
        self.shard_timeouts = 0
        self.withdrawn_blocks = 0

    def on_block(self, update: BlockUpdate) -> list[RankedBlock]:
        self.first_reported.setdefault(update.shard, update.number)
        self.last_reported[update.shard] = max(update.number, self.last_reported.get(update.shard, -1))
        if update.number <= self.last_ranked:
            # Late (its block was ranked at the shard timeout) or replayed by a restarted watcher:
            # its reserves are still the newest for its pools, so they count from the next block on.
            if update.reserves:
                self.scanner.apply_updates({self.address[i]: r for i, r in update.reserves.items()}, self.last_ranked)
            return []
        entry = self.pending.setdefault(update.number, _Pending(update.number, first_seen=self.clock()))
        entry.hash = update.hash
        entry.header = update
        entry.reserves.update(update.reserves)
        entry.shards.add(update.shard)
        return self._rank_ready()

    def on_gas(self, update: GasUpdate) -> None:
        self.tip = update.tips[1]

    def on_withdraw(self, msg: Withdraw) -> int:
        """Roll back to the fork: restore reserves, forget pending orphaned blocks. Returns the fork."""
        for number in [n for n in self.pending if n > msg.fork_number]:
            del self.pending[number]
        if msg.reserves:
            self.scanner.apply_updates({self.address[i]: r for i, r in msg.reserves.items()}, msg.fork_number)
        if self.last_ranked > msg.fork_number:
            self.withdrawn_blocks += self.last_ranked - msg.fork_number
            self.last_ranked = msg.fork_number
        self.last_reported[msg.shard] = min(self.last_reported.get(msg.shard, msg.fork_number), msg.fork_number)
        return msg.fork_number

    def tick(self) -> list[RankedBlock]:
        """Rank what the shard timeout allows even though a shard is silent (counted)."""
        return self._rank_ready()

    def _rank_ready(self) -> list[RankedBlock]:
        out = []
        now = self.clock()
        while self.pending:
            number = min(self.pending)
            entry = self.pending[number]
            complete = len(self.last_reported) >= self.shards and min(self.last_reported.values()) >= number
            if not complete and now - entry.first_seen < self.shard_timeout_s:
                break
            del self.pending[number]
            ranked = self._rank(entry, complete)
            if complete and number < self.serving_from:
                continue  # a shard bootstrapped later: its pools were not current at this block
            if not complete:
                self.shard_timeouts += 1
            out.append(ranked)
        return out

    @property
    def serving_from(self) -> int:
        """The first block at which every shard's pools are current (all have bootstrapped)."""
        if len(self.first_reported) < self.shards:
            return 1 << 62
        return max(self.first_reported.values())

    def _rank(self, entry: _Pending, complete: bool) -> RankedBlock:
        header = entry.header
        gas_price = next_base_fee(header.base_fee, header.gas_used, header.gas_limit) + self.tip
        updates = {self.address[i]: r for i, r in entry.reserves.items()}
        if updates:
            opportunities = self.scanner.apply_updates(updates, entry.number, gas_price=gas_price)
        else:
            self.scanner.gas_price = gas_price
            opportunities = self.scanner.ranking(entry.number)
        self.last_ranked = max(self.last_ranked, entry.number)
        return RankedBlock(entry.number, entry.hash, opportunities, complete, gas_price, entry.first_seen, self.clock())
