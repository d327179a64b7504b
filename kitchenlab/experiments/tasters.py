"""Notebook 03's experiments: model size, data size and noisy labels against the gap, over seeds.

Every cell of a grid is trained once per seed, all in ONE vmapped call: ``seed`` picks the
starting knobs and ``data_seed`` (set equal to it) which practice cakes a run gets, so the
spread over seeds is the spread a learner would see by re-running the kitchen. A claim is
read as a *trend*: the mean over seeds moves the claimed way from one end of a row to the
other by more than its noise, and no single step goes the other way by more than noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kitchenlab.data import Pantry, flip_labels, pantry
from kitchenlab.regularize import RunConfig, Runs, grid, mean_se, run_many

WIDTHS = (1, 2, 4, 8, 16, 32)  # knobs per station (hidden units per layer), depth 2
SIZES = (25, 50, 100, 200, 400)  # practice cakes
SEEDS = (0, 1, 2, 3, 4)  # starting knobs + which practice cakes (data_seed = seed)
FLIPS = (0.0, 0.1, 0.2, 0.3, 0.4)  # extra share of practice bags given a wrong tag
NOISY_CAKES = 100  # practice cakes in the noisy-label experiment
LEARNING_RATE = 3e-3  # the grid's Adam step size (full batch, one knob turn per epoch)
NOISY_LEARNING_RATE = 1e-2  # a bolder apprentice, so every wide book memorises in 200 epochs
# Curves recorded every 10 epochs (21 points): tasting 800 cakes every 5 epochs would cost
# a quarter of the grid's time for points nobody can tell apart on a plot.
CONFIG = RunConfig(record_every=10)


def kitchen() -> Pantry:
    """The three tables of notebook 03: 400 practice cakes, 400 guests, 400 final judges."""
    return pantry(n_train=400, n_val=400, n_test=400, noise=0.05, seed=0)


def overfitting_grid(pantry_: Pantry, config: RunConfig = CONFIG, *,
                     seeds=SEEDS) -> Runs:
    """Every (width, n_train, seed) run in one vmapped call; rows ordered width, size, seed."""
    cells = grid(width=WIDTHS, n_train=SIZES, seed=seeds)
    return run_many(pantry_, config, learning_rate=LEARNING_RATE, data_seed=cells["seed"],
                    **cells)


def noisy_label_grid(pantry_: Pantry, config: RunConfig = CONFIG, *, seeds=SEEDS) -> Runs:
    """Every (width, flip, seed) on ``NOISY_CAKES`` cakes: ``flip`` more practice bags get a
    wrong tag (a different draw per seed); the guests' tags stay as baked.

    With the default seeds it has as many runs as ``overfitting_grid``, so it reuses that
    compiled program: labels are just another traced array.
    """
    cells = grid(width=WIDTHS, flip=FLIPS, seed=seeds)
    labels = np.stack([flip_labels(pantry_.train.y, f, seed=int(s) + 1)
                       for f, s in zip(cells["flip"], cells["seed"])])
    runs = run_many(pantry_, config, labels=labels, width=cells["width"], seed=cells["seed"],
                    data_seed=cells["seed"], n_train=NOISY_CAKES,
                    learning_rate=NOISY_LEARNING_RATE)
    runs.values["flip"] = cells["flip"]
    return runs


def per_seed(runs: Runs, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape one number per run (K,) or one curve per run (K, E) to ``shape + (seeds, ...)``."""
    values = np.asarray(values)
    n_seeds = len(np.unique(runs.values["seed"]))
    return values.reshape(*shape, n_seeds, *values.shape[1:])


def at_lowest_loss(runs: Runs, values: np.ndarray) -> np.ndarray:
    """Each run's value of a recorded curve (K, E+1) at its own lowest guests' loss. (K,)

    That is where early stopping would have kept the knobs; compare with ``values[:, -1]``
    (the end of training) to see what the later epochs did.
    """
    values = np.asarray(values)
    if values.shape != runs.val_loss.shape:
        raise ValueError(f"values must be one recorded curve per run, shape "
                         f"{runs.val_loss.shape}, got {values.shape}")
    best = np.argmin(runs.val_loss, axis=1)  # (K,)
    return values[np.arange(len(runs)), best]


def gap_table(runs: Runs) -> np.ndarray:
    """Mean generalization gap over seeds, (len(WIDTHS), len(SIZES))."""
    return gap_stats(runs)[0]


def gap_stats(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard error) of the gap over seeds, each (len(WIDTHS), len(SIZES))."""
    return mean_se(per_seed(runs, runs.gap, (len(WIDTHS), len(SIZES))))


@dataclasses.dataclass(frozen=True)
class Trend:
    """How a row of means moves, in units of its standard errors."""

    total_z: float  # (last - first) / its standard error, signed in the claimed direction
    worst_step_z: float  # largest step AGAINST the claimed direction, in standard errors

    def holds(self, *, total: float = 2.0, step: float = 2.0) -> bool:
        """The claim holds: the whole change beats ``total`` SE, no step goes back > ``step``."""
        return self.total_z > total and self.worst_step_z < step


def trend(mean, se, direction: str) -> Trend:
    """Read a row (1-D means and their standard errors) as "rises" or "falls"."""
    if direction not in ("rises", "falls"):
        raise ValueError(f"direction must be 'rises' or 'falls', got {direction!r}")
    mean, se = np.asarray(mean, np.float64), np.asarray(se, np.float64)
    sign = 1.0 if direction == "rises" else -1.0
    step_se = np.sqrt(se[1:] ** 2 + se[:-1] ** 2) + 1e-12
    total = sign * (mean[-1] - mean[0]) / (np.sqrt(se[0] ** 2 + se[-1] ** 2) + 1e-12)
    against = -sign * np.diff(mean) / step_se
    return Trend(total_z=float(total), worst_step_z=float(max(against.max(), 0.0)))
