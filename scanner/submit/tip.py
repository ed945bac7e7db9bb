"""Bidding the tip: P(win | tip, size) learned from the competitors' bids of past blocks, and the tip
that maximizes expected profit under it.

Why a small separate model and not an LSTM head: whether we win is decided by one number per
opportunity, the highest tip a competitor bids against it (anvil, like a builder, orders by fee), and
that number scales with the opportunity's size (bots bid a share of the profit per gas). A
two-part model fits it from a few hundred contests, is monotone in the tip by construction (a
higher bid never wins less) and is inspectable; the LSTM's features describe pools, not the
competitors' bid curve, and its head would have to be retrained with the scanner's model.

A `Contest` is one opportunity we ranked at block t (its gross profit in ETH wei) and the highest
competing tip on any of its pools in block t + 1 (0 when no competitor bid); where we sent it, also
our tip and whether our transaction landed. The model is

    P(outbid every rival | tip, size) = (1 − c(size)) + c(size) · F(log tip − a − b · log size)
    P(win | tip, size) = P(outbid) + (1 − P(outbid)) · q

with c the chance that anyone bids (logistic in log size), a + b · log size the typical highest rival
tip (least squares on contested rows), F the empirical distribution of the residuals around it, and q
the share of our own sends that landed although a rival bid more (a rival closes one pool of a cycle
to the fair price, which can leave the cycle profitable behind it).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from scanner.errors import ArbscanError

QUANTILES = 101  # residual quantiles kept: the model's whole empirical part
GRID_POINTS = 256  # tips tried per decision, log-spaced
MIN_TIP = 10**6  # 0.001 gwei: the grid's floor
FORMAT = "arbscan-tip-model"
SURE = 50.0  # the logit of "always" / "never" contested when every / no fitted contest had a bid


@dataclass(frozen=True)
class Contest:
    """One opportunity and the highest tip (wei per gas) a competitor bid on its pools in the next block."""

    size: float  # gross profit, ETH wei
    rival_tip: int  # 0: nobody bid
    tip: int | None = None  # ours, where we sent it
    landed: bool = False  # where we sent it: did it land


@dataclass(frozen=True)
class TipChoice:
    """The tip chosen for one opportunity, the P(win) the model gives it and the expected profit (ETH wei)."""

    tip: int
    p_win: float
    expected_value: float


@dataclass(frozen=True)
class TipModel:
    contested: tuple[float, float]  # logit of P(someone bids) = [0] + [1] · log size
    rival: tuple[float, float]  # log highest rival tip ≈ [0] + [1] · log size
    residuals: tuple[float, ...]  # QUANTILES ascending quantiles of the log rival tip around that line
    behind: float  # q: P(our route lands although a rival outbid it)
    contests: int  # rows it was fitted on

    @classmethod
    def fit(cls, contests: Sequence[Contest]) -> TipModel:
        """Fit on contests; sizes must be positive (an opportunity worth nothing has no tip to choose)."""
        size = np.array([c.size for c in contests], dtype=float)
        rival = np.array([c.rival_tip for c in contests], dtype=float)
        if len(size) == 0 or (size <= 0).any():
            raise ValueError("TipModel.fit needs contests with positive sizes (gross profit in ETH wei)")
        bid = rival > 0
        if bid.sum() < 2:
            raise ValueError(f"TipModel.fit needs at least 2 contested opportunities, got {int(bid.sum())} of {len(size)}: "
                             "run the market longer (mempool mode) to see competitors bid")
        x = np.log(size)
        if bid.all() or not bid.any():
            contested = (SURE if bid.all() else -SURE, 0.0)
        else:
            lr = LogisticRegression(C=1e4, max_iter=1000).fit(x[:, None], bid.astype(int))
            contested = (float(lr.intercept_[0]), float(lr.coef_[0, 0]))
        xs, ys = x[bid], np.log(rival[bid])
        slope = float(np.polyfit(xs, ys, 1)[0]) if np.ptp(xs) > 0 else 0.0
        intercept = float(np.mean(ys - slope * xs))
        residuals = np.quantile(ys - intercept - slope * xs, np.linspace(0, 1, QUANTILES))
        outbid = [c.landed for c in contests if c.tip is not None and c.tip <= c.rival_tip]
        behind = float(np.mean(outbid)) if outbid else 0.0
        return cls(contested, (intercept, slope), tuple(float(r) for r in residuals), behind, len(size))

    def p_contested(self, size: float) -> float:
        z = self.contested[0] + self.contested[1] * math.log(size)
        return float(0.5 * (1 + math.tanh(0.5 * z)))

    def p_win(self, tips: np.ndarray | Sequence[int] | int, size: float) -> np.ndarray:
        """P(our transaction lands on an opportunity of `size` ETH wei), for each tip (wei)."""
        return self.behind + (1 - self.behind) * self.p_outbid(tips, size)

    def p_outbid(self, tips: np.ndarray | Sequence[int] | int, size: float) -> np.ndarray:
        """P(our tip beats every competitor's on an opportunity of `size` ETH wei), for each tip (wei)."""
        t = np.atleast_1d(np.asarray(tips, dtype=float))
        if size <= 0:
            raise ValueError(f"opportunity size must be positive ETH wei, got {size}")
        z = np.log(np.maximum(t, 1.0)) - self.rival[0] - self.rival[1] * math.log(size)
        below = np.interp(z, self.residuals, np.linspace(0, 1, QUANTILES), left=0.0, right=1.0)
        below = np.where(t > 0, below, 0.0)
        c = self.p_contested(size)
        return (1 - c) + c * below

    def best_tip(self, size: float, gas: int, base_fee: int, fail_gas: int, ceiling: int | None = None) -> TipChoice:
        """The tip maximizing P(win)·(size − gas·(base fee + tip)) − P(lose)·fail_gas·(base fee + tip), over
        integer tips up to the break-even tip (size / gas) or `ceiling`: 0, log-spaced ones and the model's knots."""
        top = max(MIN_TIP, int(size // max(gas, 1)))
        if ceiling is not None:
            top = max(0, min(top, ceiling))
        # P(win) bends at the residual quantiles (its maximum sits there often): their tips are tried too.
        knots = np.ceil(np.exp(np.minimum(np.asarray(self.residuals) + self.rival[0] + self.rival[1] * math.log(size), 60)))
        grid = np.r_[0, np.rint(np.geomspace(MIN_TIP, max(top, MIN_TIP), GRID_POINTS)), knots, top]
        grid = np.unique(grid[grid <= top]).astype(np.int64)
        p = self.p_win(grid, size)
        ev = expected_profit(p, size, gas, base_fee, grid.astype(float), fail_gas)
        i = int(np.argmax(ev))
        return TipChoice(int(grid[i]), float(p[i]), float(ev[i]))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "contested": list(self.contested), "rival": list(self.rival),
                "residuals": list(self.residuals), "behind": self.behind, "contests": self.contests}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TipModel:
        if d.get("format") != FORMAT:
            raise ArbscanError(f"not a tip model (format {d.get('format')!r}): fit one with `arbscan eval --tip`")
        contested = tuple(float(v) for v in d["contested"])
        rival = tuple(float(v) for v in d["rival"])
        return cls((contested[0], contested[1]), (rival[0], rival[1]), tuple(float(r) for r in d["residuals"]),
                   float(d["behind"]), int(d["contests"]))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path | str) -> TipModel:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ArbscanError(f"cannot read the tip model {path} ({e}): fit one with `arbscan eval --tip`, "
                               "or set submitter.tip_policy = \"fixed\"") from None
        return cls.from_dict(data)


def expected_profit(p_win: np.ndarray, size: float, gas: int, base_fee: int, tip: np.ndarray,
                    fail_gas: int) -> np.ndarray:
    """P(win)·(size − gas·(base fee + tip)) − (1 − P(win))·fail_gas·(base fee + tip), ETH wei."""
    return p_win * (size - gas * (base_fee + tip)) - (1 - p_win) * fail_gas * (base_fee + tip)
