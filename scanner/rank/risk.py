"""The LSTM as a risk model: per-pool next-block predictions -> per-opportunity P(success), slippage.

Why the mapping is exact rather than learned: a route sent with a fixed input x returns
O(δ) = x·e^g·e^(Σ b_i·Δ_i) (to first order in the log price moves Δ_i that land ahead of it),
where g = log(output/input) at the ranked state and b_i = d log O / d log(mid price of hop i's
pool), computed from the route's own amounts and reserves (`route_sensitivity`). The executor
reverts unless O > x, so the trade survives iff g + Σ b_i·Δ_i > 0. Each pool's move is zero
unless someone trades it first (probability p_trade) and, if so, Gaussian with the moments
that the LSTM's marginal (mu, sigma) imply given p_trade. Summing over which hops get traded
(at most 2^3 cases) gives the success probability and the expected profit given success in
closed form (`success_and_slippage`). A monotone calibration map, fitted on training
recordings, corrects what the independence and Gaussian assumptions get wrong.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any, cast

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression

from scanner.dex.pool import Pool
from scanner.dex.v2 import FEE_DENOMINATOR
from scanner.model.lstm import Checkpoint
from scanner.rank.ranking import HeuristicRiskModel, RiskInputs, RiskModel
from scanner.route.graph import PAD, TokenGraph

P_MIN = 1e-4  # p_trade floor: keeps the implied move given a trade finite
VAR_MIN = 1e-12  # (1e-6 in log price)^2: a traded pool always moves a little


def route_sensitivity(amounts: np.ndarray, reserve_in: np.ndarray, fee_bps: np.ndarray,
                      zero_for_one: np.ndarray, hops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(b [n, 3], g [n]) for routes with input then per-hop outputs `amounts` [n, 4].

    A move Δ of log(reserve1/reserve0) along the pool's curve scales the hop's reserves in and out
    by e^(∓Δ/2), so d log(out)/dΔ = ±(1 + e)/2 with e = F·r_in / (F·r_in + γ·y) the hop's
    elasticity to its input y (γ = F − fee); later hops pass it on times their own elasticity.
    The sign is + when the hop sells token0 (a higher token1 price pays more). Hops past a
    route's end get b = 0.
    """
    n, width = reserve_in.shape
    present = np.arange(width)[None, :] < hops[:, None]
    y = amounts[:, :width]
    gamma = (FEE_DENOMINATOR - fee_bps) / FEE_DENOMINATOR
    with np.errstate(invalid="ignore", divide="ignore"):
        elasticity = np.where(present, reserve_in / (reserve_in + gamma * y), 1.0)
    after = np.ones((n, width))
    for h in range(width - 2, -1, -1):  # product of the elasticities of the hops after h
        after[:, h] = after[:, h + 1] * elasticity[:, h + 1]
    sign = np.where(zero_for_one, 1.0, -1.0)
    b = np.where(present, sign * 0.5 * (1.0 + elasticity) * after, 0.0)
    g = np.log(amounts[np.arange(n), hops] / amounts[:, 0])
    return b, g


def trade_moments(mu: np.ndarray, sigma: np.ndarray, p_trade: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of a pool's move given that it is traded, from its marginal moments.

    The move is 0 unless traded, so E[Δ] = p·m and E[Δ²] = p·(v + m²).
    """
    p = np.clip(p_trade, P_MIN, 1.0)
    mean = mu / p
    var = np.maximum((sigma**2 + mu**2) / p - mean**2, VAR_MIN)
    return mean, var


def _ndtr(z: np.ndarray) -> np.ndarray:
    return torch.special.ndtr(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float64))).numpy()


def success_and_slippage(b: np.ndarray, g: np.ndarray, amount_in: np.ndarray, mu: np.ndarray,
                         sigma: np.ndarray, p_trade: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(success), expected slippage in input-token wei) per route; see the module docstring.

    Per-hop arrays are [n, 3] (b = 0 past a route's end); slippage is the gross profit at the
    ranked state minus the expected gross profit given success (≥ 0).
    """
    mean, var = trade_moments(mu, sigma, p_trade)
    p = np.where(b != 0, np.clip(p_trade, 0.0, 1.0), 0.0)
    prob = np.zeros(len(g))
    profit = np.zeros(len(g))  # E[gross · 1{success}] / amount_in
    for case in product((False, True), repeat=b.shape[1]):
        traded = np.array(case)[None, :]
        weight = np.where(traded, p, 1.0 - p).prod(axis=1)
        m = (np.where(traded, b * mean, 0.0)).sum(axis=1)
        v = (np.where(traded, b * b * var, 0.0)).sum(axis=1)
        quiet = v <= 0  # nobody moves this route's pools: it returns exactly what was ranked
        sd = np.sqrt(np.where(quiet, 1.0, v))
        p_case = np.where(quiet, (g > 0).astype(float), _ndtr((g + m) / sd))
        with np.errstate(over="ignore"):
            gain = np.exp(g + m + v / 2) * _ndtr((g + m + v) / sd)
        e_case = np.where(quiet, np.where(g > 0, np.expm1(g), 0.0), gain - p_case)
        prob += weight * p_case
        profit += weight * e_case
    gross = np.expm1(g)
    with np.errstate(invalid="ignore", divide="ignore"):
        given_success = np.where(prob > 0, profit / prob, 0.0)
    slippage = np.maximum(gross - given_success, 0.0) * amount_in
    return np.clip(prob, 0.0, 1.0), slippage


@dataclass(frozen=True)
class Calibration:
    """Monotone map from the mapped probability to the observed success rate, and a slippage scale.

    Fitted on training recordings (`fit`) and stored in the checkpoint's metadata, so serving
    applies exactly what was fitted. Identity until fitted.
    """

    knots_x: tuple[float, ...] = (0.0, 1.0)
    knots_y: tuple[float, ...] = (0.0, 1.0)
    slippage_scale: float = 1.0

    def probability(self, p: np.ndarray) -> np.ndarray:
        return np.interp(p, self.knots_x, self.knots_y)

    def slippage(self, s: np.ndarray) -> np.ndarray:
        return self.slippage_scale * s

    @classmethod
    def fit(cls, p: np.ndarray, success: np.ndarray, slippage: np.ndarray, realized: np.ndarray,
            bins: int = 20) -> Calibration:
        """Isotonic regression of success on p (on quantile bins, so each knot rests on many rows), and
        the least-squares slippage scale on the rows that succeeded (ranking needs the mean, not the median)."""
        if len(p) < bins:
            raise ValueError(f"calibration needs at least {bins} labelled opportunities, got {len(p)}: record more blocks")
        order = np.argsort(p, kind="stable")
        groups = np.array_split(order, bins)
        xs, inverse = np.unique(np.array([p[g].mean() for g in groups]), return_inverse=True)  # ties: one knot
        sizes = np.bincount(inverse, weights=[len(g) for g in groups])
        hits = np.bincount(inverse, weights=[success[g].sum() for g in groups])
        ys = IsotonicRegression(increasing=True).fit(xs, hits / sizes, sample_weight=sizes).predict(xs)
        knots_x = np.concatenate([[0.0], xs, [1.0]])
        knots_y = np.concatenate([[ys[0]], ys, [ys[-1]]])
        ok = success.astype(bool)
        return cls(tuple(knots_x.tolist()), tuple(knots_y.tolist()), _best_scale(slippage[ok], realized[ok]))

    def to_dict(self) -> dict[str, Any]:
        return {"knots_x": list(self.knots_x), "knots_y": list(self.knots_y), "slippage_scale": self.slippage_scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(tuple(float(v) for v in d["knots_x"]), tuple(float(v) for v in d["knots_y"]),
                   float(d["slippage_scale"]))


def _best_scale(predicted: np.ndarray, realized: np.ndarray) -> float:
    """argmin_a Σ(realized − a·predicted)², at least 0 (slippage is never a gain in the ranking)."""
    denominator = float(np.sum(predicted * predicted))
    return max(float(np.sum(realized * predicted)) / denominator, 0.0) if denominator > 0 else 1.0


@dataclass
class LstmRiskModel:
    """`RiskModel` from the latest per-pool predictions; routes through any pool without one use
    `fallback`. `attach` the scanner's graph first (it resolves addresses to slots and fees)."""

    calibration: Calibration = field(default_factory=Calibration)
    fallback: RiskModel = field(default_factory=HeuristicRiskModel)

    def __post_init__(self) -> None:
        self._graph: TokenGraph | None = None
        self._table = np.full((0, 4), np.nan)  # per slot: mu, sigma, p_trade, fee_bps

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, fallback: RiskModel | None = None) -> LstmRiskModel:
        meta = checkpoint.metadata.get("risk")
        if meta is None:
            raise ValueError("checkpoint has no 'risk' calibration in its metadata: train it with "
                             "scanner.sim.evaluate.train_files, which fits one")
        return cls(Calibration.from_dict(meta["calibration"]), fallback or HeuristicRiskModel())

    def attach(self, graph: TokenGraph) -> None:
        self._graph = graph
        self._table = np.full((len(graph.pools), 4), np.nan)

    def update(self, address: str, mu: float, sigma: float, p_trade: float) -> None:
        """The latest prediction for `address` (it describes the block after the one it was made on)."""
        self.update_many([address], np.array([mu]), np.array([sigma]), np.array([p_trade]))

    def update_many(self, addresses: Sequence[str], mu: np.ndarray, sigma: np.ndarray, p_trade: np.ndarray) -> None:
        """`update` for a whole prediction frame in one table write (a pool listed twice: its last row)."""
        graph = self._graph
        if graph is None:
            raise RuntimeError("LstmRiskModel.update before attach(graph): attach the scanner's TokenGraph first")
        slots = np.fromiter((graph.slots.get(a, -1) for a in addresses), dtype=np.int64, count=len(addresses))
        if (slots < 0).any():
            missing = addresses[int(np.argmin(slots))]
            raise KeyError(f"pool {missing} is not in the scanner's graph: its prediction has no route to affect")
        if len(slots) and slots.max() >= len(self._table):
            grown = np.full((len(graph.pools), 4), np.nan)
            grown[: len(self._table)] = self._table
            self._table = grown
        fees = [cast(Pool, graph.pools[slot]).fee_bps for slot in slots.tolist()]
        self._table[slots] = np.column_stack((mu, sigma, p_trade, fees))

    def forget(self) -> None:
        """Drop every prediction (after a reorg, or when the inference stream stops)."""
        self._table[:] = np.nan

    def assess(self, batch: RiskInputs) -> tuple[np.ndarray, np.ndarray]:
        n, width = batch.pools.shape
        inside = (batch.pools != PAD) & (batch.pools < len(self._table))  # a pool added since: no prediction yet
        rows = np.full((n, width, 4), np.nan)
        rows[inside] = self._table[batch.pools[inside]]
        present = np.arange(width)[None, :] < batch.hops[:, None]
        known = (~present | np.isfinite(rows[..., 0])).all(axis=1)
        prob, slip = np.empty(n), np.empty(n)
        if known.any():
            r = np.where(present[known][..., None], rows[known], 0.0)
            b, g = route_sensitivity(batch.amounts[known], batch.reserve_in[known], r[..., 3],
                                     batch.zero_for_one[known], batch.hops[known])
            p_raw, s_raw = success_and_slippage(b, g, batch.amounts[known, 0], r[..., 0], r[..., 1], r[..., 2])
            prob[known], slip[known] = self.calibration.probability(p_raw), self.calibration.slippage(s_raw)
        if not known.all():
            u = ~known
            fb = RiskInputs(batch.pools[u], batch.zero_for_one[u], batch.hops[u], batch.amounts[u],
                            batch.reserve_in[u], batch.profit[u])
            prob[u], slip[u] = self.fallback.assess(fb)
        return prob, slip
