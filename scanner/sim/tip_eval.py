"""Does bidding the EV-optimal tip beat the best fixed tip? Fitted and judged on the mempool market.

A `TipRun` is the market in mempool mode (competitors bid a share of each opportunity's profit per
gas) with the scanner's mined-block path and the submitter, in one process. After each block it
ranks the opportunities; the competitors' bids of the next block (`BlockSummary.bids`) on their
pools make the `Contest`s a `TipModel` learns from: size = gross profit, rival = highest competing tip.

`evaluate_tips` fits the model on the contests of training seeds (the submitter sending with a token tip
there, so that its own outcomes say how often a route lands behind a rival that outbid it), then runs
every evaluation seed once per policy, sending the best opportunity of each block: the EV policy, and
each fixed tip of a grid. Realized profit is what the searcher's account really made:
the executor's gain in the base token minus the ETH its transactions paid in gas, landed or not.
The best fixed tip is picked in hindsight on the evaluation seeds themselves, which favours it.
"""
from __future__ import annotations

import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from web3 import HTTPProvider, Web3

from scanner.chain import artifacts
from scanner.chain.anvil import Anvil, searcher_key_file
from scanner.chain.discovery import discover
from scanner.chain.gas import GasOracleCore
from scanner.chain.rpc import ChainClient
from scanner.chain.shard import PoolWatcherCore
from scanner.config import DexConfig
from scanner.rank.aggregate import AggregatorCore, opportunity_dict
from scanner.sim.evaluate import _ratio, _save
from scanner.sim.market import Market
from scanner.sim.spec import GWEI, BlockSummary, MarketSpec
from scanner.submit.journal import Journal
from scanner.submit.submitter import SubmitterCore, load_key
from scanner.submit.tip import Contest, TipModel

FIXED_TIPS_GWEI = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
TRAIN_TIP = 10**7  # 0.01 gwei: on training seeds the submitter's sends lose every contested auction
CONTESTS_PER_BLOCK = 3  # the best opportunities of each block that make contests (the submitter sends the first)


class TipRun:
    """One seed of the mempool market with the watcher, gas oracle, aggregator and submitter cores wired as
    the actors wire them; `contests` are keyed by (opportunity id, block ranked)."""

    def __init__(self, node: Anvil, seed: int, tmp: Path, *, send: bool, tip_wei: int = 2 * GWEI,
                 tip_model: TipModel | None = None) -> None:
        w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        self.market = Market(w3, MarketSpec(seed=seed, mempool=True, mempool_window_s=0.0))
        self.dep = self.market.deploy()
        self.client = ChainClient(node.url)
        self.client.rpc("anvil_setBlockTimestampInterval", 12)  # repeatable gas, as `arbscan record` runs it
        dexes = [DexConfig(name, factory, fee) for name, (factory, fee) in self.dep.factories.items()]
        registry = dict(enumerate(discover(self.client, dexes, progress=False)))
        self.watcher = PoolWatcherCore(self.client, registry, 0)
        self.gas = GasOracleCore(self.client, feeds=[self.dep.gas_feed])
        self.aggregator = AggregatorCore(registry, [self.dep.base], shards=1, top_n=CONTESTS_PER_BLOCK)
        self.aggregator.on_block(self.watcher.bootstrap())
        self.journal_path = tmp / "journal.sqlite"
        account = load_key(None, str(searcher_key_file(tmp)))
        self.submitter = SubmitterCore(self.client, self.dep.executor, account, Journal(self.journal_path), top_k=1,
                                       send=send, tip_wei=tip_wei, tip_model=tip_model)
        self.contests: dict[tuple[str, int], Contest] = {}
        self._ranked: list[dict] = []  # the last block's best opportunities, waiting for the next block's bids
        self._base = artifacts.at(w3, "TestToken", self.dep.base)
        self._start = self._wealth()

    def step(self) -> BlockSummary:
        """Mine a block, turn the bids in it against the last ranking into contests, rank it and submit."""
        summary = self.market.step()
        for opp in self._ranked:
            pools = {p.lower() for p in opp["pools"]}
            rival = max((b.tip for b in summary.bids if b.pool.lower() in pools), default=0)
            self.contests[opp["id"], opp["block"]] = Contest(opp["gross_profit"] * opp["eth_per_token"], rival)
        gas = self.gas.poll()
        if gas is not None:
            self.aggregator.on_gas(gas)
        ranked = [rb for m in self.watcher.poll().messages for rb in self.aggregator.on_block(m)]
        opportunities = [opportunity_dict(o) for o in ranked[-1].opportunities if not o.trigger]
        self._ranked = [o for o in opportunities if o["gross_profit"] > 0]
        self.submitter.handle(ranked[-1].number, opportunities)
        return summary

    def finish(self) -> None:
        """Mine one more block so that the last transaction sent has its outcome, and journal it."""
        self.market.step()
        self.submitter.check_pending()

    def contests_sent(self) -> list[Contest]:
        """Every contest, those we sent with our tip and whether it landed (from the journal)."""
        with Journal(self.journal_path) as journal:
            sent = {(t.id, t.block): (t.tip, o.status == "landed") for t, o in journal.tip_outcomes()
                    if o.status != "not_sent"}
        return [replace(c, tip=sent[k][0], landed=sent[k][1]) if k in sent else c for k, c in self.contests.items()]

    def realized_net(self) -> int:
        """ETH wei the searcher made so far: the executor's base-token gain minus the gas its sends paid."""
        return self._wealth() - self._start

    def _wealth(self) -> int:
        return int(self._base.functions.balanceOf(self.dep.executor).call()) + \
            int(self.client.w3.eth.get_balance(Web3.to_checksum_address(self.dep.searcher)))


def run_seed(seed: int, blocks: int, tip_wei: int, tip_model: dict | None = None) -> dict:
    """One seed on a fresh anvil, sending (picklable in and out, for a process pool): contests, realized
    net, the submitter's counts and its journal's (tip, P(win), outcome) rows of the transactions sent."""
    started = time.monotonic()
    with Anvil.start() as node, tempfile.TemporaryDirectory(prefix="arbscan-tip-") as tmp:
        with warnings.catch_warnings():  # web3 warns for every other contract's log in a receipt it decodes
            warnings.filterwarnings("ignore", "The log with transaction hash", UserWarning)
            run = TipRun(node, seed, Path(tmp), send=True, tip_wei=tip_wei,
                         tip_model=TipModel.from_dict(tip_model) if tip_model else None)
            for _ in range(blocks):
                run.step()
            run.finish()
        with Journal(run.journal_path) as journal:
            sends = [(t.tip, t.p_win, o.status, t.expected_value) for t, o in journal.tip_outcomes() if o.status != "not_sent"]
        stats = asdict(run.submitter.stats)
        stats.pop("last_bundle")
        return {"seed": seed, "contests": run.contests_sent(), "net": run.realized_net(),
                "stats": stats, "sends": sends, "seconds": round(time.monotonic() - started, 1)}


def fit(train_seeds: list[int], blocks: int, workers: int = 2) -> tuple[TipModel, int]:
    """The tip model fitted on the contests of `train_seeds` (the submitter sending with `TRAIN_TIP`)."""
    with ProcessPoolExecutor(workers) as pool:
        runs = list(pool.map(run_seed, train_seeds, [blocks] * len(train_seeds), [TRAIN_TIP] * len(train_seeds)))
    contests = [c for run in runs for c in run["contests"]]
    return TipModel.fit(contests), len(contests)


def evaluate_tips(train_seeds: list[int], seeds: list[int], blocks: int, out_dir: Path, *, train_blocks: int | None = None,
                  fixed_gwei: tuple[float, ...] = FIXED_TIPS_GWEI, workers: int = 2) -> dict:
    """Fit on `train_seeds`, then run `seeds` under the EV policy and each fixed tip; figures and plots."""
    if set(train_seeds) & set(seeds):
        raise ValueError(f"seeds {sorted(set(train_seeds) & set(seeds))} are training seeds: evaluate on others")
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, train_contests = fit(train_seeds, train_blocks or blocks, workers)
    model.save(out_dir / "tip_model.json")
    policies: list[tuple[str, int, dict | None]] = [("ev", 0, model.to_dict())] + [
        (f"fixed {g:g} gwei", int(g * GWEI), None) for g in fixed_gwei]
    jobs = [(name, seed, tip_wei, tip_dict) for name, tip_wei, tip_dict in policies for seed in seeds]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(run_seed, [j[1] for j in jobs], [blocks] * len(jobs), [j[2] for j in jobs],
                                [j[3] for j in jobs]))
    by_policy: dict[str, list[dict]] = {}
    for (name, *_), done in zip(jobs, results):
        by_policy.setdefault(name, []).append(done)
    net = {name: sum(r["net"] for r in runs) / 1e18 for name, runs in by_policy.items()}
    best_fixed = max((n for n in net if n != "ev"), key=lambda n: net[n])
    fixed_sends = [c for name, runs in by_policy.items() if name != "ev" for r in runs for c in r["contests"] if c.tip]
    sends = [s for r in by_policy["ev"] for s in r["sends"]]
    p = np.array([s[1] for s in sends], dtype=float)
    won = np.array([s[2] == "landed" for s in sends], dtype=float)
    result: dict[str, Any] = {
        "train_seeds": list(train_seeds), "train_blocks": train_blocks or blocks, "train_contests": train_contests,
        "seeds": list(seeds), "blocks": blocks, "fixed_tips_gwei": list(fixed_gwei),
        "realized_net_eth": net, "realized_net_eth_per_seed": {n: [r["net"] / 1e18 for r in runs] for n, runs in by_policy.items()},
        "best_fixed": best_fixed, "ev_over_best_fixed": _ratio(net["ev"], net[best_fixed]), "target_ev_over_best_fixed": 1.5,
        "ev_sends": len(sends), "ev_mean_p_win": float(p.mean()) if len(p) else None,
        "ev_landed_rate": float(won.mean()) if len(p) else None,
        "ev_brier": float(np.mean((p - won) ** 2)) if len(p) else None,
        "ev_predicted_net_eth": sum(s[3] for s in sends) / 1e18,  # what the model expected of the EV sends
        **{key: {n: sum(r["stats"][key] for r in runs) for n, runs in by_policy.items()}
           for key in ("sent", "landed", "beaten", "reverted")},
        "model": model.to_dict() | {"file": str(out_dir / "tip_model.json")},
        "plots": [plot_win_curves(model, fixed_sends, out_dir / "tip_win.png"), plot_profit(net, out_dir / "tip_profit.png")],
        "seconds": round(time.monotonic() - started, 1),
    }
    result["target_met"] = bool(result["ev_over_best_fixed"] >= 1.5)
    return result


def plot_win_curves(model: TipModel, sends: list[Contest], path: Path) -> str:
    """P(win) vs tip for three opportunity sizes (terciles of the sends of the fixed-tip runs on the
    evaluation seeds): the model's P(win) averaged over each tercile's sizes, and the share of its sends at
    each fixed tip that landed (with how many there were)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = np.array([c.size for c in sends])
    edges = np.quantile(sizes, [0, 1 / 3, 2 / 3, 1])
    tips = np.geomspace(1e7, 1e12, 120)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, color in enumerate(("tab:blue", "tab:orange", "tab:green")):
        group = [c for c in sends if edges[k] <= c.size <= edges[k + 1]]
        predicted = np.mean([model.p_win(tips, c.size) for c in group], axis=0)
        ax.plot(tips / GWEI, predicted, "-", color=color,
                label=f"predicted, {edges[k] / 1e18:.2g}–{edges[k + 1] / 1e18:.2g} ETH")
        levels = sorted({c.tip for c in group if c.tip})
        observed = [np.mean([c.landed for c in group if c.tip == t]) for t in levels]
        counts = [sum(c.tip == t for c in group) for t in levels]
        ax.plot(np.array(levels) / GWEI, observed, "o--", color=color, label="observed (landed share of sends)")
        for t, o, n in zip(levels, observed, counts):
            ax.annotate(str(n), (t / GWEI, o), fontsize=6, xytext=(3, 3), textcoords="offset points", color=color)
    ax.set(xscale="log", xlabel="our tip (gwei)", ylabel="P(win)", ylim=(0, 1.02),
           title="P(win) vs tip by opportunity size: fixed-tip sends on held-out seeds")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_profit(net: dict[str, float], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(net)
    ax.bar(names, [net[n] for n in names], color=["tab:red" if n == "ev" else "tab:gray" for n in names])
    ax.set(ylabel="realized net profit (ETH)", title="EV-optimal tip vs fixed tips, same seeds")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return _save(fig, path)
