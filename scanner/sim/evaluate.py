"""Does the LSTM beat simple baselines on market seeds it was never trained or tuned on?

Offline scoring replays a recording's features through the checkpoint (from a zero state,
as the streaming server does from its first block) and maps the per-pool predictions onto
every labelled candidate with the serving code (`scanner.rank.risk`). The baselines are fitted on
the training recordings by `scanner.sim.evaluate.train_files` and stored in the checkpoint, so
nothing here is fitted on evaluation seeds:

- logistic regression (scikit-learn, L2) on the same inputs the LSTM sees at the
  ranked block (each hop pool's normalised features, and its price change and price gap
  signed by the hop's direction) plus the route's log margin and hop count; its slippage is a
  linear model on the same inputs;
- constant impact: slippage = a fixed fraction of the gross profit.

`evaluate` records each seed twice (candidates ranked by net profit, and by the LSTM's
expected value, both sending their best under competition), scores the profit-policy
candidates (their selection does not depend on the model, as in training) and compares the
realized profit of the two policies. The two live runs drift apart after their first different
trade (one trade can be worth several ETH), so the report also pairs the rules on the same
blocks: on the profit runs every candidate is labelled, so what each rule would have sent there
is known (`_paired`), and so is the best any rule could do (perfect foresight).
"""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from scanner.model.features import FEATURE_NAMES, Normalizer
from scanner.model.lstm import ArbLSTM, Checkpoint
from scanner.model.train import TrainConfig, recorded_dataset, train, validation_start
from scanner.rank.ranking import expected_value
from scanner.rank.risk import Calibration, route_sensitivity, success_and_slippage
from scanner.sim.record import Recording, record, summary

ECE_BINS = 10
TARGETS = {"model_brier_skill": 0.3, "model_ece": 0.02, "model_auc": 0.85, "brier_vs_logistic": 0.15,
           "slippage_mae_vs_constant": 0.30, "ev_over_profit": 1.3}  # ECE at most, the others at least


# -- offline scoring ----------------------------------------------------------------------------


@torch.inference_mode()
def pool_predictions(model: ArbLSTM, rec: Recording) -> np.ndarray:
    """[T, P, 3]: mu, sigma, p_trade after each recorded block, every pool streamed from a zero state."""
    x = torch.from_numpy(np.ascontiguousarray(rec.features.transpose(1, 0, 2))).to(model.in_mean.device)
    pred, _ = model.sequence(x)
    return torch.stack([pred.mu, pred.sigma, pred.p_trade], dim=-1).transpose(0, 1).cpu().double().numpy()


def route_risk(rec: Recording, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(success), expected slippage) of every candidate before calibration, as serving computes them."""
    present = rec.cand_pools >= 0
    hop = preds[rec.cand_t[:, None], np.where(present, rec.cand_pools, 0)]  # [n, 3, 3]
    hop = np.where(present[..., None], hop, 0.0)
    b, g = route_sensitivity(rec.cand_amounts, rec.cand_reserve_in, rec.cand_fee_bps, rec.cand_zero_for_one,
                             rec.cand_hops)
    return success_and_slippage(b, g, rec.cand_amounts[:, 0], hop[..., 0], hop[..., 1], hop[..., 2])


def realized_slippage(rec: Recording) -> np.ndarray:
    """Gross profit ranked minus gross profit at our slot (meaningful where the candidate succeeded)."""
    return rec.cand_gross - rec.cand_realized_gross


def candidate_inputs(rec: Recording, normalizer: Normalizer) -> np.ndarray:
    """The baselines' inputs per candidate: what the LSTM sees at the ranked block, without history."""
    present = rec.cand_pools >= 0
    x = rec.features[rec.cand_t[:, None], np.where(present, rec.cand_pools, 0)]  # [n, 3, F]
    z = np.where(present[..., None], (x - normalizer.mean) / normalizer.std, 0.0)
    direction = np.where(rec.cand_zero_for_one, 1.0, -1.0)[..., None]
    price = [FEATURE_NAMES.index(name) for name in ("log_price_change", "log_price_gap")]
    signed = np.where(present[..., None], direction * z[..., price], 0.0)  # [n, 3, 2]
    n = len(rec.cand_t)
    g = np.log(rec.cand_amounts[np.arange(n), rec.cand_hops] / rec.cand_amounts[:, 0])
    route = np.stack([np.log(g), rec.cand_hops == 3], axis=1)
    return np.concatenate([z.reshape(n, -1), signed.reshape(n, -1), route], axis=1)


@dataclass(frozen=True)
class Baselines:
    """Logistic success model, linear slippage fraction, and a constant impact fraction."""

    weights: tuple[float, ...]  # logistic: bias first
    slip_weights: tuple[float, ...]  # linear model of slippage / gross: bias first
    impact: float  # constant slippage / gross

    @classmethod
    def fit(cls, x: np.ndarray, success: np.ndarray, gross: np.ndarray, slippage: np.ndarray, l2: float = 1.0) -> Baselines:
        """Success on every row; slippage on rows that succeeded (the only ones that have one)."""
        # L2-penalised log loss, bias unpenalised: Σ loss + l2/2·|w|² is sklearn's C = 1/l2
        logistic = LogisticRegression(C=1.0 / l2, tol=1e-10, max_iter=10_000).fit(x, success.astype(int))
        w = np.concatenate([logistic.intercept_, logistic.coef_[0]])
        ok = success.astype(bool)
        fraction = slippage[ok] / gross[ok]
        slip_w = np.linalg.lstsq(_design(x[ok]), fraction, rcond=None)[0]
        impact = _weighted_median(fraction, gross[ok])
        return cls(tuple(w.tolist()), tuple(slip_w.tolist()), impact)

    def success(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(_design(x) @ np.asarray(self.weights))

    def slippage(self, x: np.ndarray, gross: np.ndarray) -> np.ndarray:
        return np.maximum(_design(x) @ np.asarray(self.slip_weights), 0.0) * gross

    def constant(self, gross: np.ndarray) -> np.ndarray:
        return max(self.impact, 0.0) * gross

    def to_dict(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "slip_weights": list(self.slip_weights), "impact": self.impact}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Baselines:
        return cls(tuple(d["weights"]), tuple(d["slip_weights"]), float(d["impact"]))


def _design(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones((len(x), 1)), x], axis=1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """argmin_c Σ w·|v − c|."""
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


def fit_risk(checkpoint: Checkpoint, recs: list[Recording], calibrate_from: list[int]) -> dict[str, Any]:
    """The checkpoint's calibration (on candidates ranked at or after `calibrate_from[i]` in recording i,
    blocks the LSTM did not train on) and the baselines (on every training candidate)."""
    model = checkpoint.build("cpu")
    late, p_raw, s_raw = [], [], []
    for rec, start in zip(recs, calibrate_from):
        p, s = route_risk(rec, pool_predictions(model, rec))
        late.append(rec.cand_t >= start)
        p_raw.append(p[late[-1]])
        s_raw.append(s[late[-1]])
    success = np.concatenate([r.cand_success for r in recs])
    slippage = np.concatenate([realized_slippage(r) for r in recs])
    late_rows = np.concatenate(late)
    calibration = Calibration.fit(np.concatenate(p_raw), success[late_rows], np.concatenate(s_raw), slippage[late_rows])
    baselines = Baselines.fit(np.concatenate([candidate_inputs(r, checkpoint.normalizer) for r in recs]),
                              success.astype(float), np.concatenate([r.cand_gross for r in recs]), slippage)
    return {"calibration": calibration.to_dict(), "baselines": baselines.to_dict(),
            "calibration_rows": int(late_rows.sum()), "baseline_rows": int(len(success))}


# -- metrics ------------------------------------------------------------------------------------


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def ece(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-width probability bins, weighted by rows."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / len(p))


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    y = y.astype(bool)
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    order_ranks = np.cumsum(counts) - (counts - 1) / 2  # average rank of each distinct score
    ranks = order_ranks[inverse]
    pos, neg = y.sum(), (~y).sum()
    if not pos or not neg:
        return math.nan
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def classification(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    base = brier(np.full_like(p, y.mean()), y)
    b = brier(p, y)
    return {"brier": b, "brier_skill": 1 - b / base if base > 0 else math.nan, "ece": ece(p, y), "auc": auc(p, y)}


# -- the evaluation ----------------------------------------------------------------------------


def evaluate(model: Path, seeds: list[int], blocks: int, out_dir: Path, workers: int = 2) -> dict:
    """Record `seeds` under both policies, score the checkpoint against the baselines, plot, report.

    The runs use the market the checkpoint was trained on (its `train_market`: "v2", or "v3" for the
    demo's market with V3 pools). `workers` runs record at once, each on its own anvil."""
    torch.set_num_threads(1)
    checkpoint = Checkpoint.load(model)
    risk = checkpoint.metadata.get("risk")
    if risk is None:
        raise ValueError(f"{model} has no fitted calibration and baselines: train it with `arbscan train`")
    trained_on = set(checkpoint.metadata.get("train_seeds", []))
    if trained_on & set(seeds):
        raise ValueError(f"seeds {sorted(trained_on & set(seeds))} were used to train {model}: evaluate on others")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    v3 = checkpoint.metadata.get("train_market", "v2") == "v3"
    def path(seed: int, policy: str) -> Path:
        return out_dir / f"seed{seed}-{policy}.npz"

    policies = ("profit", "ev")
    with ProcessPoolExecutor(workers) as pool:
        done = [pool.submit(record, blocks, seed, path(seed, policy), progress=False, policy=policy, model=model, v3=v3)
                for seed in seeds for policy in policies]
        for future in tqdm(as_completed(done), total=len(done), desc="evaluation runs", unit="run"):
            future.result()
    runs = {policy: [Recording.load(path(seed, policy)) for seed in seeds] for policy in policies}
    result = score(checkpoint, runs)
    result |= {"model": str(model), "seeds": list(seeds), "blocks": blocks, "market": "v3" if v3 else "v2", "plots": plot(result.pop("_series"), out_dir)}
    result = _jsonable(result)
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=1))
    return result


def score(checkpoint: Checkpoint, runs: dict[str, list[Recording]]) -> dict:
    """Every figure of the report from recordings of the same seeds under both policies."""
    net = checkpoint.build("cpu")
    calibration = Calibration.from_dict(checkpoint.metadata["risk"]["calibration"])
    baselines = Baselines.from_dict(checkpoint.metadata["risk"]["baselines"])
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("y", "p", "p_log", "slip", "slip_log", "slip_const", "real")}
    paired = np.zeros(3)
    for rec in runs["profit"]:
        p_raw, s_raw = route_risk(rec, pool_predictions(net, rec))
        x = candidate_inputs(rec, checkpoint.normalizer)
        cols["y"].append(rec.cand_success.astype(float))
        cols["p"].append(calibration.probability(p_raw))
        cols["p_log"].append(baselines.success(x))
        cols["slip"].append(calibration.slippage(s_raw))
        cols["slip_log"].append(baselines.slippage(x, rec.cand_gross))
        cols["slip_const"].append(baselines.constant(rec.cand_gross))
        cols["real"].append(realized_slippage(rec))
        ev = expected_value(cols["p"][-1], rec.cand_net, np.rint(cols["slip"][-1]), rec.cand_gas_cost)
        paired += _paired(rec, ev)
    c = {k: np.concatenate(v) for k, v in cols.items()}
    y, ok = c["y"], c["y"].astype(bool)
    model_cls, logistic_cls = classification(c["p"], y), classification(c["p_log"], y)
    mae = {k: float(np.mean(np.abs(c[k][ok] - c["real"][ok]))) / 1e18 for k in ("slip", "slip_log", "slip_const")}
    realized = {policy: [_realized_net(r) for r in recs] for policy, recs in runs.items()}
    totals = {policy: float(sum(v.sum() for v in series)) / 1e18 for policy, series in realized.items()}
    ratio = _ratio(totals["ev"], totals["profit"])
    figures: dict[str, Any] = {
        "candidates": int(len(y)), "success_rate": float(y.mean()),
        **{f"model_{k}": v for k, v in model_cls.items()}, **{f"logistic_{k}": v for k, v in logistic_cls.items()},
        "brier_vs_logistic": 1 - model_cls["brier"] / logistic_cls["brier"],
        "slippage_rows": int(ok.sum()), "slippage_mae_model_eth": mae["slip"], "slippage_mae_logistic_eth": mae["slip_log"],
        "slippage_mae_constant_eth": mae["slip_const"], "slippage_mae_vs_constant": 1 - mae["slip"] / mae["slip_const"],
        "realized_net_ev_eth": totals["ev"], "realized_net_profit_eth": totals["profit"], "ev_over_profit": ratio,
        "ev_over_profit_per_seed": [_ratio(e.sum(), p.sum()) for e, p in zip(realized["ev"], realized["profit"])],
        "paired_net_eth": dict(zip(("ev", "profit", "hindsight"), (paired / 1e18).tolist())),
        "paired_ev_over_profit": _ratio(paired[0], paired[1]), "perfect_foresight_over_profit": _ratio(paired[2], paired[1]),
        "runs": {policy: [summary(r) for r in recs] for policy, recs in runs.items()},
    }
    figures["targets"] = {name: _verdict(name, figures[name], goal) for name, goal in TARGETS.items()}
    figures["_series"] = {"y": y, "p": c["p"], "p_log": c["p_log"], "slip": c["slip"][ok], "real": c["real"][ok],
                          "realized": realized, "paired": figures["paired_ev_over_profit"]}
    return figures


def _realized_net(rec: Recording) -> np.ndarray:
    """Realized net profit (Arb profit − gas paid) of the transaction sent after each block, wei."""
    per_block = np.zeros(len(rec.blocks))
    sent = rec.cand_sent > 0
    np.add.at(per_block, rec.cand_t[sent], rec.cand_sent_profit[sent] - rec.cand_gas_paid[sent])
    return per_block


def _paired(rec: Recording, ev: np.ndarray) -> np.ndarray:
    """Counterfactual net profit (wei) over a run's blocks of the candidate each rule would send there:
    (best by EV, best by net profit, best in hindsight). Paired on the same blocks and pool states,
    unlike two live runs, whose markets drift apart after their first different trade."""
    outcome = np.where(rec.cand_success, rec.cand_realized_gross, 0.0) - rec.cand_gas_cost
    out = np.zeros(3)
    for i, score in enumerate((ev, rec.cand_net, outcome)):  # each sends its best only if that scores > 0
        order = np.lexsort((-score, rec.cand_t))
        first = np.r_[True, rec.cand_t[order][1:] != rec.cand_t[order][:-1]]
        chosen = order[first]
        out[i] = outcome[chosen[score[chosen] > 0]].sum()
    return out


def _ratio(a: float, b: float) -> float:
    """a / b for profits; +inf when only a is positive (the other rule lost money), nan when neither is."""
    if b > 0:
        return float(a / b)
    return math.inf if a > 0 else math.nan


def _jsonable(value: Any) -> Any:
    """Strict JSON: an infinite ratio becomes the string "inf", an undefined one null."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value == math.inf else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _verdict(name: str, value: float, goal: float) -> dict[str, Any]:
    met = value <= goal if name == "model_ece" else value >= goal
    return {"value": value, "target": goal, "met": bool(met)}


def plot(series: dict, out_dir: Path) -> list[str]:
    """Reliability diagram, predicted vs realized slippage, cumulative realized profit; PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for key, label in (("p", "LSTM (calibrated)"), ("p_log", "logistic baseline")):
        which = np.minimum((series[key] * ECE_BINS).astype(int), ECE_BINS - 1)
        bins = [b for b in range(ECE_BINS) if (which == b).any()]
        ax.plot([series[key][which == b].mean() for b in bins], [series["y"][which == b].mean() for b in bins],
                "o-", label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.set(xlabel="predicted success probability", ylabel="observed success rate", title="Reliability")
    ax.legend()
    paths.append(_save(fig, out_dir / "reliability.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(series["slip"] / 1e18, series["real"] / 1e18, s=4, alpha=0.4)
    hi = max(float(np.max(series["slip"], initial=0)), float(np.max(series["real"], initial=0))) / 1e18
    ax.plot([0, hi], [0, hi], "k--", lw=1)
    ax.set(xlabel="predicted slippage (ETH)", ylabel="realized slippage (ETH)", title="Slippage of successful routes")
    paths.append(_save(fig, out_dir / "slippage.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for policy, label in (("ev", "EV-ranked (LSTM)"), ("profit", "profit-ranked")):
        ax.plot(np.cumsum(np.concatenate(series["realized"][policy])) / 1e18, label=label)
    ax.set(xlabel="block (seeds back to back)", ylabel="cumulative realized net profit (ETH)",
           title=f"Submission under competition (paired on the same blocks: EV/profit = {series['paired']:.3f})")
    ax.legend()
    paths.append(_save(fig, out_dir / "profit.png"))
    return paths


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def train_files(paths: list[Path], out: Path, **overrides: Any) -> dict:
    """Train on recordings (`scanner.sim.record`), fit the risk calibration and the baselines, save to `out`.

    `overrides` are `TrainConfig` fields. The calibration is fitted on the candidates of the
    validation blocks (which the LSTM did not fit), the baselines on every candidate; both go
    into the checkpoint's metadata with the training seeds, which evaluation refuses to reuse.
    """
    config = TrainConfig.of(**overrides)
    torch.set_num_threads(1)
    started = time.monotonic()
    recordings = [Recording.load(Path(p)) for p in paths]
    markets = {r.meta.get("market", "v2") for r in recordings}
    if len(markets) > 1:
        raise ValueError(f"the recordings come from different markets {sorted(markets)}: train on one market's "
                         "recordings, so evaluation can run the market the model learned")
    dataset = recorded_dataset(recordings)
    checkpoint = train(dataset, config)
    split = validation_start(dataset.features.shape[1], config.val_fraction)
    risk = fit_risk(checkpoint, recordings, [split] * len(recordings))
    checkpoint.metadata |= {
        "risk": risk, "train_files": [Path(p).name for p in paths],
        "train_seeds": sorted({int(r.meta["seed"]) for r in recordings}), "train_market": markets.pop(),
        "train_seconds": round(time.monotonic() - started, 1),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(out)
    keys = ("val_loss", "val_nll", "val_bce", "base_bce", "best_epoch", "epochs_run", "pools", "blocks",
            "train_seeds", "train_market", "train_seconds")
    return {k: checkpoint.metadata[k] for k in keys} | {
        "calibration_rows": risk["calibration_rows"], "baseline_rows": risk["baseline_rows"], "out": str(out),
        "bytes": out.stat().st_size}
