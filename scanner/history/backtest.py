"""Backtest: what the scanner ranked on each captured block, against the arbitrages that really happened.

It runs the pure cores in-process, fed by the store: a `PoolWatcherCore` on a `StoreSource` (the code
the live watchers run) and an `AggregatorCore` with one shard, ranking with the heuristic risk model
(a function of the state alone; the Ray replay test proves the pipeline serves the same rankings).
Gas is priced at the captured next base fee with no tip: a capture holds no fee history.

Realized arbitrages of block N are matched with the ranking of block N-1, the state they met:
- closed cycles (`label.label`: a transaction's swaps through known pools that come back to their first
  token) match a ranked cycle through the same pools in the same directions;
- with `arbitrageurs` (addresses), every swap they received the output of is a leg: the simulated
  market's competitors close one pool's gap to a fair price in one swap. A leg matches any ranked
  cycle that trades its pool in its direction.
Each realized arbitrage is also checked on its own: was some cycle of at most three hops from a base
token through it profitable net of gas at the block's start state? Enumerated here, independently of
the ranker's graph, and sized by a golden-section search over integer inputs with exact pool quotes.
Recall = matched / profitable-at-start.

Money: realized cycle revenue is exact (in its start token); a leg's profit is marked at its pool's mid
price at the end of the block (where the competitor closed it, near the fair price, which is off chain);
every figure is converted to ETH through the deepest pool of each token with the first base token.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from scanner.chain.shard import PoolWatcherCore
from scanner.dex.pool import Pool
from scanner.errors import ConfigError
from scanner.gas.fees import GasModel
from scanner.history.label import Trade, label, trades
from scanner.history.replay import StoreSource, pool_infos
from scanner.history.store import Capture
from scanner.rank.aggregate import AggregatorCore, RankedBlock
from scanner.rank.ranking import Opportunity

Hop = tuple[str, bool]  # (pool address, zero_for_one)


@dataclass
class Ranked:
    """One ranked opportunity, as the report lists it (with what the executor needs to send it)."""

    id: str
    tokens: list[str]
    pools: list[str]
    zero_for_one: list[bool]
    fees_bps: list[int]
    kinds: list[str]
    amount_in: int
    gross_profit: int  # in the base token (tokens[0])
    net_profit_eth: float
    expected_value_eth: float
    success_probability: float


@dataclass
class Realized:
    """One realized arbitrage and what the scanner had for it at the block's start state."""

    block: int
    tx_index: int
    kind: str  # "cycle" (closed, labelled) or "leg" (one swap of a known arbitrageur)
    hops: list[Hop]
    profit_eth: float  # what it made (see the module docstring for how a leg is marked)
    available_eth: float  # the best net profit of a cycle through it at the start state (0: none)
    matched: str = ""  # the id of the ranked opportunity that covers it
    ours_eth: float = 0.0  # that opportunity's net profit at the start state, at our size

    @property
    def profitable(self) -> bool:
        return self.available_eth > 0


@dataclass
class BlockReport:
    block: int
    ranked: list[Ranked]  # the top N ranked on this block (for the next block's transactions)
    realized: list[Realized]  # arbitrages of this block, matched with the previous block's ranking
    captured_eth: float  # Σ ours_eth over the opportunities that matched
    realized_eth: float  # Σ profit_eth


@dataclass
class BacktestReport:
    first: int
    last: int
    blocks: int
    pools: int
    top_n: int
    realized: int
    profitable: int
    matched: int  # of the profitable ones
    recall: float  # matched / profitable (1.0 when none was profitable)
    captured_eth: float
    realized_eth: float
    seconds: float
    per_block: list[BlockReport] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _ranked(o: Opportunity) -> Ranked:
    return Ranked(o.id, list(o.tokens), list(o.pools), list(o.zero_for_one), list(o.fees_bps), list(o.kinds), o.amount_in,
                  o.gross_profit, o.net_profit * o.eth_per_token, o.expected_value_eth, o.success_probability)


def _hops(o: Opportunity) -> list[Hop]:
    return list(zip(o.pools, o.zero_for_one, strict=True))


def _mid(pool: Pool, zero_for_one: bool) -> float:
    """Units of the output token per unit of the input token at the pool's price (fee aside)."""
    return pool.reserve_in(not zero_for_one) / max(1, pool.reserve_in(zero_for_one))


def eth_prices(pools: Iterable[Pool], weth: str) -> dict[str, float]:
    """ETH per smallest unit of each token, from its deepest pool with WETH (by WETH reserve)."""
    best: dict[str, tuple[int, float]] = {}
    for pool in pools:
        for zero_for_one in (True, False):  # selling the token, for WETH
            token = pool.token0 if zero_for_one else pool.token1
            if pool.token_out(zero_for_one) != weth:
                continue
            depth = pool.reserve_in(not zero_for_one)
            if depth > best.get(token, (0, 0.0))[0]:
                best[token] = (depth, _mid(pool, zero_for_one))
    return {weth: 1.0} | {t: price for t, (_, price) in best.items()}


def _profit(path: list[tuple[Pool, bool]], amount: int) -> int:
    out = amount
    for pool, zero_for_one in path:
        if out <= 0:
            return -amount
        out = pool.quote_out(zero_for_one, out)
    return out - amount


def best_gross(path: list[tuple[Pool, bool]]) -> int:
    """The largest exact profit of `path` over integer inputs: golden-section search on [0, the first
    pool's reserve in] (the profit is unimodal up to floor rounding, a few wei)."""
    lo, hi = 0, max(1, int(path[0][0].reserve_in(path[0][1])))
    f: Callable[[int], int] = lambda x: _profit(path, x)  # noqa: E731
    while hi - lo > 3:
        a, b = lo + (hi - lo) * 382 // 1000, lo + (hi - lo) * 618 // 1000
        if f(a) < f(b):
            lo = a
        else:
            hi = b
    return max(f(x) for x in range(lo, hi + 1))


class CycleFinder:
    """Cycles of two or three hops through one directed pool hop, from a base token, on the pools as
    they are now: the independent check of what a realized arbitrage could have made."""

    def __init__(self, pools: list[Pool], rates: dict[str, float], gas_model: GasModel) -> None:
        self.pools = {p.address: p for p in pools}
        self.rates = rates  # base token -> ETH per unit
        self.gas_model = gas_model
        self.adjacent: dict[str, list[tuple[Pool, bool]]] = {}
        for pool in pools:
            for zero_for_one in (True, False):
                token_in = pool.token0 if zero_for_one else pool.token1
                self.adjacent.setdefault(token_in, []).append((pool, zero_for_one))

    def cycles(self, hop: Hop) -> list[list[tuple[Pool, bool]]]:
        """Every cycle through `hop` starting at a base token (one rotation per base token in it)."""
        first = (self.pools[hop[0]], hop[1])
        a = first[0].token0 if hop[1] else first[0].token1
        b = first[0].token_out(hop[1])
        rings = [[first, (q, zq)] for q, zq in self.adjacent.get(b, []) if q.address != hop[0] and q.token_out(zq) == a]
        for q, zq in self.adjacent.get(b, []):
            c = q.token_out(zq)
            if c in (a, b) or q.address == hop[0]:
                continue
            rings += [[first, (q, zq), (r, zr)] for r, zr in self.adjacent.get(c, [])
                      if r.token_out(zr) == a and r.address not in (hop[0], q.address)]
        out = []
        for ring in rings:
            for start in range(len(ring)):
                pool, zero_for_one = ring[start]
                if (pool.token0 if zero_for_one else pool.token1) in self.rates:
                    out.append(ring[start:] + ring[:start])
        return out

    def best_net_eth(self, hop: Hop, gas_price: int) -> float:
        """The best net profit in ETH of a cycle through `hop` (≤ 0: none pays its gas)."""
        best = 0.0
        for path in self.cycles(hop):
            start = path[0][0].token0 if path[0][1] else path[0][0].token1
            units = self.gas_model.units(len(path), sum(p.kind == "uniswap-v3" for p, _ in path))
            net = best_gross(path) * self.rates[start] - units * gas_price
            best = max(best, net)
        return best


def _legs(logs: list[dict], tokens: dict[str, tuple[str, str]], arbitrageurs: set[str]) -> list[tuple[int, Trade]]:
    """(tx index, swap) of every swap whose output went to one of `arbitrageurs`."""
    by_tx: dict[int, list[dict]] = {}
    for log in logs:
        by_tx.setdefault(log["transactionIndex"], []).append(log)
    return [(tx, t) for tx, tx_logs in by_tx.items() for t in trades(tx_logs, tokens) if t.recipient in arbitrageurs]


def backtest(capture: Capture, base_tokens: list[str], *, top_n: int = 10, arbitrageurs: Iterable[str] = (),
             gas_model: GasModel = GasModel(), progress: bool = True, first: int | None = None,
             last: int | None = None) -> BacktestReport:
    """Rank every captured block (or blocks `first`..`last`) and match the realized arbitrages (see the
    module docstring). A range that starts later warms its pools from the capture's initial state through
    the blocks before it, and prices tokens at the initial state as the whole run does: the blocks of a
    range report exactly what they report in a run over the whole capture."""
    started = time.monotonic()
    first = capture.first_block if first is None else first
    last = capture.last_block if last is None else min(last, capture.last_block)
    infos = pool_infos(capture)
    pools = dict(enumerate(infos))
    source = StoreSource(capture, start=first)
    watcher = PoolWatcherCore(source, pools, shard=0)
    core = AggregatorCore(pools, base_tokens, 1, top_n=top_n, gas_model=gas_model)
    (previous,) = core.on_block(watcher.bootstrap())
    graph_pools = [p for p in core.ranker.graph.pools if p is not None]
    weth = base_tokens[0].lower()
    rates = {t: 1.0 / float(r) for t, r in zip(core.ranker.graph.base_tokens, core.ranker.token_per_eth, strict=True)}
    tokens = {p.address: (p.token0, p.token1) for p in infos}
    watch = {a.lower() for a in arbitrageurs}
    per_block: list[BlockReport] = []
    bar = tqdm(total=last - first + 1, unit="block", desc="backtest", disable=not progress)
    for block in capture.blocks(first):
        number = block.header.number
        if number > last:
            break
        finder = CycleFinder(graph_pools, rates, gas_model)
        start_prices = eth_prices(graph_pools, weth)
        ranked = {o.id: o for o in previous.opportunities}
        realized: list[Realized] = []
        for cycle in label(block.logs, tokens):
            hops = [(t.pool, t.zero_for_one) for t in cycle.trades]
            realized.append(Realized(number, cycle.tx_index, "cycle", hops, cycle.revenue * start_prices.get(cycle.token, 0.0),
                                     max(finder.best_net_eth(h, previous.gas_price) for h in hops)))
            match = [o for o in ranked.values() if set(_hops(o)) == set(hops)]
            if match:
                realized[-1].matched, realized[-1].ours_eth = match[0].id, match[0].net_profit * match[0].eth_per_token
        legs = _legs(block.logs, tokens, watch)
        for tx, leg in legs:
            hop = (leg.pool, leg.zero_for_one)
            realized.append(Realized(number, tx, "leg", [hop], 0.0, finder.best_net_eth(hop, previous.gas_price)))
            match = [o for o in ranked.values() if hop in _hops(o)]
            if match:
                realized[-1].matched, realized[-1].ours_eth = match[0].id, match[0].net_profit * match[0].eth_per_token
        source.release(number)
        out = watcher.poll()
        (previous,) = [r for m in out.messages for r in core.on_block(m)]
        if legs:  # marked at the end-of-block prices
            end_prices = eth_prices(graph_pools, weth)
            for r, (_, leg) in zip(realized[-len(legs):], legs, strict=True):
                pool = finder.pools[leg.pool]
                r.profit_eth = (leg.amount_out - leg.amount_in * _mid(pool, leg.zero_for_one)) * end_prices.get(leg.token_out, 0.0)
        per_block.append(_block_report(previous, realized))
        bar.update(1)
    bar.close()
    return _report(first, last, len(pools), top_n, per_block, time.monotonic() - started)


def _report(first: int, last: int, pools: int, top_n: int, per_block: list[BlockReport], seconds: float) -> BacktestReport:
    every = [r for b in per_block for r in b.realized]
    profitable = [r for r in every if r.profitable]
    matched = sum(1 for r in profitable if r.matched)
    return BacktestReport(first, last, len(per_block), pools, top_n, len(every), len(profitable), matched,
                          matched / len(profitable) if profitable else 1.0, sum(b.captured_eth for b in per_block),
                          sum(b.realized_eth for b in per_block), seconds, per_block)


def chunk_ranges(first: int, last: int, blocks: int) -> list[tuple[int, int]]:
    """`first`..`last` cut into consecutive ranges of at most `blocks` blocks."""
    if blocks < 1:
        raise ConfigError(f"a chunk holds at least 1 block, got {blocks}: pass --chunk-blocks 1 or more")
    return [(a, min(a + blocks - 1, last)) for a in range(first, last + 1, blocks)]


def merge(parts: list[BacktestReport], seconds: float) -> BacktestReport:
    """The report of consecutive ranges' reports, as one run over their union reports it (`seconds`: the
    wall time of the whole)."""
    if not parts or any(b.first != a.last + 1 for a, b in zip(parts, parts[1:])):
        raise ConfigError("backtest chunks to merge must be consecutive ranges, in order")
    return _report(parts[0].first, parts[-1].last, parts[0].pools, parts[0].top_n, [b for p in parts for b in p.per_block],
                   seconds)


def _block_report(ranked: RankedBlock, realized: list[Realized]) -> BlockReport:
    """Captured counts each matched opportunity once (two legs can be one cycle's)."""
    ours = {r.matched: r.ours_eth for r in realized if r.matched}
    return BlockReport(ranked.number, [_ranked(o) for o in ranked.opportunities], realized, sum(ours.values()),
                       sum(r.profit_eth for r in realized))


def table(report: BacktestReport, rows: int = 40) -> str:
    """The per-block summary as plain text: ranked count and best, realized, profitable, matched, ETH."""
    lines = ["ranked: opportunities ranked on the block (for the next one), the best's net profit and P(success); "
             "realized: arbitrages in the block, matched with the previous block's ranking",
             f"{'block':>8} {'ranked':>6} {'best net ETH':>13} {'P':>5} {'realized':>8} {'profitable':>10} "
             f"{'matched':>7} {'captured ETH':>13} {'realized ETH':>13}"]
    shown = [b for b in report.per_block if b.realized or b.ranked][:rows]
    for b in shown:
        best = b.ranked[0] if b.ranked else None
        profitable = [r for r in b.realized if r.profitable]
        lines.append(f"{b.block:>8} {len(b.ranked):>6} {best.net_profit_eth / 1e18 if best else 0:>13.6f} "
                     f"{best.success_probability if best else 0:>5.2f} {len(b.realized):>8} {len(profitable):>10} "
                     f"{sum(1 for r in profitable if r.matched):>7} {b.captured_eth / 1e18:>13.6f} {b.realized_eth / 1e18:>13.6f}")
    lines.append(f"blocks {report.first}..{report.last} ({report.blocks}), {report.pools} pools, top {report.top_n}: "
                 f"{report.realized} realized arbitrages, {report.profitable} profitable at their block's start state, "
                 f"{report.matched} matched by a ranked cycle: recall {report.recall:.1%}; captured "
                 f"{report.captured_eth / 1e18:.6f} ETH vs realized {report.realized_eth / 1e18:.6f} ETH")
    return "\n".join(lines)


def plot(report: BacktestReport, path: str) -> None:
    """PNG of profit captured (our matched opportunities, at our size) vs realized, per block, in ETH."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = [b.block for b in report.per_block]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(blocks, [b.realized_eth / 1e18 for b in report.per_block], color="tab:gray", alpha=0.6, label="realized")
    ax.plot(blocks, [b.captured_eth / 1e18 for b in report.per_block], "o-", color="tab:blue", ms=3,
            label="captured (our size, same state)")
    ax.set_xlabel("block")
    ax.set_ylabel("ETH")
    ax.set_title(f"recall {report.recall:.1%} of {report.profitable} arbitrages profitable at their start state")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
