"""Complaints from the dining room: has the world the chef cooks for moved? (drift detection)

Two kinds of evidence, because drift comes in two kinds:

* **inputs** (covariate shift: guests order differently). Per ingredient, the orders of a
  recent window are compared with the reference orders the chef was trained on:

  - the **population stability index** (PSI), an *effect size*: how much of the orders moved
    between the reference's deciles. Rule of thumb (credit scoring, where it comes from):
    below 0.1 nothing to see, 0.1-0.25 watch, above 0.25 act;
  - the **Wasserstein-1 distance** in units of the reference's spread, also an effect size:
    how far the orders moved (0.5 = half a standard deviation, on average);
  - the **Kolmogorov-Smirnov two-sample test**, a *significance test*: its p-value says
    whether there is any difference at all. With enough orders every difference, however
    harmless, becomes "significant" — the p-value trap. Alarms here fire on effect sizes.

* **outcomes** (concept drift: the same orders now turn out differently). Only reviews
  can show it: the verdicts guests send back later, as labels do in real systems. The alarm
  compares the accuracy on recent reviews with the accuracy the chef had at launch.

Everything here is plain numpy on the host: monitoring must never slow the service down.
Shapes: R = reference orders, N = recent orders, F = features.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

EPS = 1e-4  # floor for a bin's share in PSI: an empty bin must not give log(0)


# ---------------------------------------------------------------- checks
def _table(x, name: str, n_features: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N,) or (N, F), got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 orders to describe a distribution, "
                         f"got {arr.shape[0]}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, the reference has {n_features}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _pair(reference, current):
    ref = _table(reference, "reference")
    return ref, _table(current, "current", ref.shape[1])


def _squeeze(values: np.ndarray, reference) -> np.ndarray | float:
    return float(values[0]) if np.ndim(reference) == 1 else values


# ---------------------------------------------------------------- effect sizes
def bin_edges(reference, bins: int = 10) -> list[np.ndarray]:
    """Per feature, the inner edges of ``bins`` equal-share bins of the reference (deciles
    by default); repeated edges (whole eggs) are merged. The outer bins are open, so an
    order beyond anything the reference saw still lands in a bin."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    ref = _table(reference, "reference")
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return [np.unique(np.quantile(ref[:, j], qs)) for j in range(ref.shape[1])]


def shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``x`` (N,) in each bin between ``edges`` (len(edges) + 1 bins), floored at EPS."""
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / len(x), EPS)


def psi(reference, current, *, bins: int = 10):
    """Population stability index per feature: sum over bins of (c - r) * ln(c / r).

    ``reference`` (R,) or (R, F), ``current`` (N,) or (N, F): a float, or (F,).
    0 for identical distributions; it grows as orders move between the reference's bins.
    """
    ref, cur = _pair(reference, current)
    out = np.empty(ref.shape[1])
    for j, edges in enumerate(bin_edges(ref, bins)):
        r, c = shares(ref[:, j], edges), shares(cur[:, j], edges)
        out[j] = np.sum((c - r) * np.log(c / r))
    return _squeeze(out, reference)


def wasserstein(reference, current, *, scaled: bool = True):
    """Wasserstein-1 (earth mover's) distance per feature: the area between the two
    empirical CDFs. ``scaled`` divides by the reference's standard deviation (unit-free)."""
    ref, cur = _pair(reference, current)
    out = np.empty(ref.shape[1])
    for j in range(ref.shape[1]):
        a, b = np.sort(ref[:, j]), np.sort(cur[:, j])
        grid = np.concatenate([a, b])
        grid.sort(kind="mergesort")
        fa = np.searchsorted(a, grid[:-1], side="right") / len(a)
        fb = np.searchsorted(b, grid[:-1], side="right") / len(b)
        out[j] = np.sum(np.abs(fa - fb) * np.diff(grid))
        if scaled:
            std = ref[:, j].std()
            out[j] /= std if std > 0 else 1.0
    return _squeeze(out, reference)


# ---------------------------------------------------------------- significance
def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for Kolmogorov's limiting distribution (two series, each where it is fast)."""
    if lam <= 0.0:
        return 1.0
    if lam < 1.0:  # 1 - sqrt(2 pi) / lam * sum_k exp(-(2k - 1)^2 pi^2 / (8 lam^2))
        s = sum(math.exp(-((2 * k - 1) ** 2) * math.pi ** 2 / (8.0 * lam * lam))
                for k in range(1, 8))
        return float(min(max(1.0 - math.sqrt(2.0 * math.pi) / lam * s, 0.0), 1.0))
    total = 0.0  # 2 sum_k (-1)^(k-1) exp(-2 k^2 lam^2)
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-300:
            break
    return float(min(max(2.0 * total, 0.0), 1.0))


def ks_test(reference, current):
    """Two-sample Kolmogorov-Smirnov test per feature: (statistic D, asymptotic p-value).

    D is the largest gap between the two empirical CDFs; the p-value is the chance of a gap
    at least that large if both samples came from one distribution, from Kolmogorov's
    limit with n = R N / (R + N) (valid for large samples).
    """
    ref, cur = _pair(reference, current)
    stats, pvalues = np.empty(ref.shape[1]), np.empty(ref.shape[1])
    en = ref.shape[0] * cur.shape[0] / (ref.shape[0] + cur.shape[0])
    for j in range(ref.shape[1]):
        a, b = np.sort(ref[:, j]), np.sort(cur[:, j])
        grid = np.concatenate([a, b])
        gap = np.abs(np.searchsorted(a, grid, side="right") / len(a)
                     - np.searchsorted(b, grid, side="right") / len(b))
        stats[j] = gap.max()
        pvalues[j] = kolmogorov_sf(math.sqrt(en) * stats[j])
    return _squeeze(stats, reference), _squeeze(pvalues, reference)


# ---------------------------------------------------------------- the alarm
@dataclasses.dataclass(frozen=True)
class AlarmConfig:
    """When the maître d' closes the restaurant for a night: thresholds on effect sizes."""

    psi: float = 0.25  # any ingredient's PSI above this: orders moved (the "act" level)
    accuracy_drop: float = 0.05  # reviews' accuracy this far below launch accuracy
    min_orders: int = 200  # fewer recent orders than this: too few to judge the inputs
    min_reviews: int = 100  # fewer reviews than this: too few to judge the outcomes
    bins: int = 10  # PSI bins (deciles of the reference)

    def __post_init__(self):
        for name in ("psi", "accuracy_drop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("min_orders", "min_reviews", "bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an int >= 2, got {value!r}")

    @classmethod
    def tiny(cls) -> "AlarmConfig":
        return cls(min_orders=20, min_reviews=20)


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """What the monitor knows: input statistics per feature and the outcome on reviews."""

    names: tuple[str, ...]  # features
    n_orders: int  # recent orders compared with the reference
    psi: np.ndarray  # (F,) effect size per feature
    wasserstein: np.ndarray  # (F,) in reference standard deviations
    ks_pvalue: np.ndarray  # (F,) significance per feature (not used by the alarm)
    n_reviews: int = 0  # reviews (late labels) in the window
    accuracy: float | None = None  # accuracy on those reviews
    launch_accuracy: float | None = None  # what the chef scored before opening
    fired: bool = False  # the alarm
    reasons: tuple[str, ...] = ()  # one sentence per reason it fired, or why it could not judge
    psi_threshold: float = AlarmConfig.psi  # the alarm's PSI threshold

    @property
    def worst(self) -> str | None:
        """The feature whose orders moved most (largest PSI), or None when no feature is
        above the threshold (then the largest is noise, and naming it a coin toss)."""
        j = int(np.argmax(self.psi))
        return self.names[j] if self.psi[j] > self.psi_threshold else None

    def __str__(self) -> str:
        # the ingredient is named only above the threshold: below it, several ingredients'
        # PSI are noise of similar size, and which is largest is a coin toss
        j = int(np.argmax(self.psi))
        text = f"{self.n_orders} orders: largest PSI {self.psi[j]:.2f}"
        if self.psi[j] > self.psi_threshold:
            text += f" ({self.names[j]})"
        if self.accuracy is not None:
            text += f"; {self.n_reviews} reviews: accuracy {self.accuracy:.2f}"
            if self.launch_accuracy is not None:
                text += f" (launch {self.launch_accuracy:.2f})"
        verdict = "ALARM: " + "; ".join(self.reasons) if self.fired else "no alarm"
        return f"{text} -> {verdict}"


def check_drift(reference, current, *, names: Sequence[str] | None = None,
                correct=None, launch_accuracy: float | None = None,
                config: AlarmConfig = AlarmConfig()) -> DriftReport:
    """Compare recent orders (N, F) with the reference (R, F) and, when reviews came back,
    their correctness (M,) bools with the launch accuracy; fire the alarm on effect sizes.

    The alarm fires when any feature's PSI exceeds ``config.psi`` (with at least
    ``min_orders`` orders) or when the reviews' accuracy is more than
    ``config.accuracy_drop`` below ``launch_accuracy`` (with at least ``min_reviews``).
    """
    if not isinstance(config, AlarmConfig):
        raise TypeError(f"config must be an AlarmConfig, got {type(config).__name__}")
    ref, cur = _pair(reference, current)
    names = tuple(names) if names is not None else tuple(f"x{j}" for j in range(ref.shape[1]))
    if len(names) != ref.shape[1]:
        raise ValueError(f"names lists {len(names)} features, the orders have {ref.shape[1]}")
    p = np.asarray(psi(ref, cur, bins=config.bins))
    w = np.asarray(wasserstein(ref, cur))
    _, pv = ks_test(ref, cur)
    reasons = []
    if cur.shape[0] < config.min_orders:
        reasons.append(f"only {cur.shape[0]} orders (< {config.min_orders}): inputs not judged")
        input_alarm = False
    else:
        moved = [f"{n} PSI {v:.2f}" for n, v in zip(names, p) if v > config.psi]
        input_alarm = bool(moved)
        if moved:
            reasons.append(f"orders moved ({', '.join(moved)} > {config.psi:g})")
    n_reviews, acc, outcome_alarm = 0, None, False
    if correct is not None:
        correct = np.asarray(correct)
        if correct.ndim != 1 or correct.dtype != bool:
            raise ValueError(f"correct must be a 1-D bool array (one per review), got "
                             f"dtype {correct.dtype}, shape {correct.shape}")
        n_reviews = int(correct.shape[0])
        acc = float(correct.mean()) if n_reviews else None
        if n_reviews < config.min_reviews:
            reasons.append(f"only {n_reviews} reviews (< {config.min_reviews}): outcomes not "
                           "judged")
        elif launch_accuracy is not None and acc < launch_accuracy - config.accuracy_drop:
            outcome_alarm = True
            reasons.append(f"reviews' accuracy {acc:.2f} is more than "
                           f"{config.accuracy_drop:.2f} below launch ({launch_accuracy:.2f})")
    fired = input_alarm or outcome_alarm
    if fired:  # keep only the reasons that fired
        reasons = [r for r in reasons if not r.startswith("only ")]
    return DriftReport(names=names, n_orders=int(cur.shape[0]), psi=p, wasserstein=w,
                       ks_pvalue=np.asarray(pv), n_reviews=n_reviews, accuracy=acc,
                       launch_accuracy=launch_accuracy, fired=fired, reasons=tuple(reasons),
                       psi_threshold=config.psi)
