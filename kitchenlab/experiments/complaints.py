"""Notebook 09's experiments: the world drifts, the alarm, the p-value trap, the night shift.

Everything the notebook's panel draws and its checks grade is computed here from a
laminated ``Service`` (the restaurant as guests meet it) and the raw reference orders the
chef was trained on.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kitchenlab.data import DRIFTS, FEATURE_NAMES, CakeData, drifted_cakes, make_cakes
from kitchenlab.drift import AlarmConfig, check_drift, ks_test, psi
from kitchenlab.finetune import FinetuneConfig

DRIFT = "fan_oven"  # the notebook's main story: orders move where the chef never baked
SEVERITIES = tuple(np.round(np.linspace(0.0, 1.0, 21), 2).tolist())  # the slider's stops
GUESTS = 1000  # guests per severity: enough for PSI's noise to sit far below its threshold
GUEST_SEED = 7  # which guests come (fresh: the chef trained on seed 0's cakes)
ALARM = AlarmConfig()  # PSI > 0.25 or reviews 5 points below launch
NIGHT = FinetuneConfig(learning_rate=1e-3, epochs=40, batch_size=32, replay_batch=32)
N_REVIEWS = 400  # newly labelled orders from the changed world, one night's worth
REVIEW_SEEDS = (18, 19, 20, 21, 22)  # five nights of reviews; 09 re-laminates the median
CHECK_SEEDS = (101, 102)  # old / new guests tasted after every epoch of the night shift
HELD_OUT_SEEDS = (201, 202)  # old / new guests of the morning check before a promotion
TRAP_SIZES = (200, 2_000, 20_000, 200_000)  # orders per week in the p-value trap
TRAP_SEVERITY = 0.03  # "less_sugar" at 0.03: 2 % less sugar, harmless for the chef


def night_tables(parent, *, review_seed: int = REVIEW_SEEDS[0], n_check: int = 2000):
    """(reviews, checks, held-out checks) for a night shift, normalized for ``parent``
    (a ``kl.finetune.Parent``): the reviews of one night, the old and new guests tasted
    after every epoch, and fresh old and new guests for the morning check."""
    reviews = parent.measure(drifted_cakes(N_REVIEWS, DRIFT, 1.0, seed=review_seed))
    checks = {"old guests": parent.measure(make_cakes(n_check, seed=CHECK_SEEDS[0])),
              "new guests": parent.measure(drifted_cakes(n_check, DRIFT, 1.0,
                                                         seed=CHECK_SEEDS[1]))}
    held_out = {"old guests": parent.measure(make_cakes(n_check, seed=HELD_OUT_SEEDS[0])),
                "new guests": parent.measure(drifted_cakes(n_check, DRIFT, 1.0,
                                                           seed=HELD_OUT_SEEDS[1]))}
    return reviews, checks, held_out


def accuracy(service, data: CakeData) -> float:
    """Share of raw cakes the service judges right."""
    return float((service.predict(data.x).label_ids == data.y).mean())


@dataclasses.dataclass(frozen=True)
class Curve:
    """The chef and the alarm across severities of one drift."""

    kind: str
    severity: np.ndarray  # (S,)
    accuracy: np.ndarray  # (S,) on GUESTS fresh guests of the drifted world
    psi: np.ndarray  # (S, F) per ingredient, guests vs the reference orders
    fired: np.ndarray  # (S,) bool: the input alarm

    @property
    def psi_max(self) -> np.ndarray:
        return self.psi.max(axis=1)


def guests(kind: str, severity: float, *, n: int = GUESTS, seed: int = GUEST_SEED) -> CakeData:
    return drifted_cakes(n, kind, float(np.clip(severity, 0.0, 1.0)), seed=seed)


def look(service, reference, kind: str, severity: float, *, n: int = GUESTS,
         seed: int = GUEST_SEED, config: AlarmConfig = ALARM):
    """One evening of the drifted world: (accuracy, drift report of its orders)."""
    g = guests(kind, severity, n=n, seed=seed)
    report = check_drift(reference, g.x, names=FEATURE_NAMES, config=config)
    return accuracy(service, g), report


def severity_curve(service, reference, kind: str = DRIFT, *, severities=SEVERITIES,
                   n: int = GUESTS, seed: int = GUEST_SEED) -> Curve:
    """Accuracy and per-ingredient PSI at every severity (the same guests, moved further)."""
    acc, psis, fired = [], [], []
    for s in severities:
        a, report = look(service, reference, kind, s, n=n, seed=seed)
        acc.append(a)
        psis.append(report.psi)
        fired.append(report.fired)
    return Curve(kind, np.asarray(severities, float), np.asarray(acc), np.asarray(psis),
                 np.asarray(fired))


def drift_table(service, reference, *, severity: float = 1.0, n: int = GUESTS,
                seed: int = GUEST_SEED) -> list[dict]:
    """Every named drift at one severity: how far orders moved, how the chef fares."""
    base, _ = look(service, reference, DRIFT, 0.0, n=n, seed=seed)
    rows = []
    for kind in DRIFTS:
        acc, report = look(service, reference, kind, severity, n=n, seed=seed)
        rows.append({"kind": kind, "psi_max": float(report.psi.max()), "worst": report.worst,
                     "accuracy": acc, "change": acc - base, "input_alarm": report.fired})
    return rows


def pvalue_trap(service, *, sizes=TRAP_SIZES, severity: float = TRAP_SEVERITY,
                seed: int = 0) -> list[dict]:
    """Last week's orders vs this week's (sugar slightly lower), n of each: the KS test's
    p-value, PSI and the chef's accuracy on both weeks, for growing n."""
    j = FEATURE_NAMES.index("sugar")
    rows = []
    for n in sizes:
        last = make_cakes(n, seed=1000 + seed)
        this = drifted_cakes(n, "less_sugar", severity, seed=2000 + seed)
        _, p = ks_test(last.x[:, j], this.x[:, j])
        rows.append({"n": n, "p_value": float(p), "psi": float(psi(last.x[:, j], this.x[:, j])),
                     "accuracy_last": accuracy(service, last),
                     "accuracy_this": accuracy(service, this)})
    return rows


def input_blind_drifts(*, severity: float = 1.0, n: int = GUESTS, seed: int = GUEST_SEED,
                       reference_seed: int = 0, config: AlarmConfig = ALARM) -> list[str]:
    """Named drifts whose orders do not move enough for the input alarm (no model needed)."""
    reference = make_cakes(n, seed=reference_seed).x
    return [kind for kind in DRIFTS
            if not check_drift(reference, guests(kind, severity, n=n, seed=seed).x,
                               config=config).fired]
