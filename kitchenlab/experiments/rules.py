"""Notebook 04's experiments: where weight decay helps (over seeds), where it does not, and
which knobs an L2 fine really hits under Adam.

The kitchen overfits on purpose: 100 practice cakes, a 32-wide book, an extra 20 % of the
practice bags with wrong tags (the guests' tags are as baked) and 200 full-batch Adam epochs
at a bold learning rate, enough to memorise every practice cake. Every claim is read over
seeds (``seed`` = starting knobs, dropout draws and which tags are wrong), and every
comparison is paired: two rules are compared seed by seed, on the same start and the same
wrong tags. Both fines are swept (AdamW's decoupled ``weight_decay`` and the ``l2`` penalty
in the loss), so each rule is judged at its own best lambda. The sweep and the
(dropout x weight decay) grid are padded to one size (``BATCH``), so the notebook compiles
the vmapped program once.
"""

from __future__ import annotations

import numpy as np

from kitchenlab.data import Pantry, flip_labels, pantry
from kitchenlab.regularize import RunConfig, Runs, grid, mean_se, run_many, run_one

FLIP = 0.2  # extra share of practice bags with a wrong tag (the guests' tags stay as baked)
LEARNING_RATE = 1e-2  # a bold apprentice, so that 100 practice cakes are memorised
# Curves recorded every 10 epochs (21 points): tasting the guests is a third of a small
# run's work, and halving it makes every run here (slider, grid, serial baseline) cheaper.
CONFIG = RunConfig(record_every=10)
SEEDS = tuple(range(10))  # the weight-decay sweep's seeds
DECAYS = (0.0, 0.1, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0)  # AdamW's lambdas (0: no rules)
SWEEP_WIDTHS = (32, 8)  # the overfitting book, and a narrower one (the counter-example)
L2S = (0.01, 0.02, 0.035, 0.05, 0.1, 0.14, 0.2)  # the L2 fine's lambdas (32 wide)
L2_VS_DECAY = 0.02  # the L2 lambda that shrinks the knobs as much as DECAY_VS_L2 ...
DECAY_VS_L2 = 8.0  # ... this AdamW lambda does (the same total shrink, different knobs)
DROPOUTS = (0.0, 0.2, 0.4, 0.6, 0.8)  # summary grid rows: share of burners randomly off
WEIGHT_DECAYS = (0.0, 2.0, 4.0, 8.0, 16.0)  # summary grid columns: the fine for big knobs
GRID_SEEDS = tuple(range(14))  # enough seeds that no cell sits on the 2-SE line
TIE_Z = 2.0  # a cell within this many paired standard errors of the best ties with it
BATCH = 350  # runs per compiled call: the sweep (with its L2 runs) and the grid both fit


def kitchen() -> Pantry:
    """100 practice cakes (5 % wrong labels, like every notebook), 400 guests, 400 judges."""
    return pantry(n_train=100, n_val=400, n_test=400, noise=0.05, seed=0)


def noisy_labels(pantry_: Pantry, seeds) -> np.ndarray:
    """The practice tags with ``FLIP`` more of them wrong, a different draw per seed. (K, N)"""
    return np.stack([flip_labels(pantry_.train.y, FLIP, seed=int(s) + 1) for s in seeds])


def rules_baseline(pantry_: Pantry, config: RunConfig = CONFIG, *, seed: int = 0) -> Runs:
    """The kitchen without house rules (the same wrong tags, start and learning rate)."""
    return run_one(pantry_, config, labels=noisy_labels(pantry_, [seed])[0], seed=seed,
                   learning_rate=LEARNING_RATE)


def rules_run(pantry_: Pantry, config: RunConfig = CONFIG, *, dropout: float = 0.0,
              weight_decay: float = 0.0, l2: float = 0.0, seed: int = 0) -> Runs:
    """One fresh run with these house rules: what a slider move trains."""
    return run_one(pantry_, config, labels=noisy_labels(pantry_, [seed])[0], seed=seed,
                   dropout=dropout, weight_decay=weight_decay, l2=l2,
                   learning_rate=LEARNING_RATE)


def decay_sweep(pantry_: Pantry, config: RunConfig = CONFIG, *, seeds=SEEDS) -> Runs:
    """Every (width, AdamW lambda, seed) of the sweep, then every (L2 lambda, seed) at width 32.

    Rows: ``len(SWEEP_WIDTHS) * len(DECAYS) * len(seeds)`` AdamW runs (width-major), then
    ``len(L2S) * len(seeds)`` L2 runs (lambda-major). One vmapped call, padded to ``BATCH``.
    """
    cells = grid(width=SWEEP_WIDTHS, weight_decay=DECAYS, seed=seeds)
    l2_cells = grid(l2=L2S, seed=seeds)
    n_l2 = l2_cells["seed"].size
    width = np.concatenate([cells["width"], np.full(n_l2, 32.0)])
    decay = np.concatenate([cells["weight_decay"], np.zeros(n_l2)])
    l2 = np.concatenate([np.zeros(cells["seed"].size), l2_cells["l2"]])
    seed = np.concatenate([cells["seed"], l2_cells["seed"]])
    return run_many(pantry_, config, labels=noisy_labels(pantry_, seed), width=width,
                    weight_decay=decay, l2=l2, seed=seed, learning_rate=LEARNING_RATE,
                    pad_to=max(BATCH, seed.size))


def _n_sweep(seeds) -> int:
    return len(SWEEP_WIDTHS) * len(DECAYS) * len(seeds)


def sweep_table(runs: Runs, values: np.ndarray, *, seeds=SEEDS) -> np.ndarray:
    """The AdamW runs' part of one number (or curve) per run: (widths, lambdas, seeds, ...)."""
    values = np.asarray(values)[:_n_sweep(seeds)]
    return values.reshape(len(SWEEP_WIDTHS), len(DECAYS), len(seeds), *values.shape[1:])


def sweep_l2(runs: Runs, values: np.ndarray, *, seeds=SEEDS) -> np.ndarray:
    """The L2 runs' part of one number (or curve) per run: (L2 lambdas, seeds, ...)."""
    n = _n_sweep(seeds)
    values = np.asarray(values)[n:n + len(L2S) * len(seeds)]
    return values.reshape(len(L2S), len(seeds), *values.shape[1:])


def paired_gain(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each lambda minus lambda = 0 with the SAME seed: (mean, standard error) over seeds.

    Pairing by seed removes what the seeds share (start, wrong tags), so the error
    bars measure the effect of the fine alone. ``table``: (..., lambdas, seeds).
    """
    return mean_se(table - table[..., :1, :])


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``a - b`` seed by seed (two runs of the same seeds, (seeds,) each): (mean, standard error)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D with one value per seed, the same seeds; got "
                         f"shapes {a.shape} and {b.shape}")
    m, se = mean_se(a - b)
    return float(m), float(se)


def _rows(seeds) -> dict:
    """Row numbers: the no-rules runs (width 32) and every AdamW / L2 run, per seed."""
    n = np.arange(_n_sweep(seeds) + len(L2S) * len(seeds))
    table = sweep_table(None, n, seeds=seeds)
    w32 = SWEEP_WIDTHS.index(32)
    return {"free": table[w32, 0], "adamw": table[w32], "l2": sweep_l2(None, n, seeds=seeds)}


def share_kept(runs: Runs, *, seeds=SEEDS) -> dict[str, np.ndarray]:
    """Share of its size each 32-wide run's knobs kept: mean |kernel entry| with the fine,
    divided by the same seed's mean without rules (1: untouched, 0: every knob at zero).

    Returns {"adamw": (len(DECAYS), seeds), "l2": (len(L2S), seeds)}.
    """
    rows = _rows(seeds)
    free = np.array([np.abs(runs.kernels(int(k))).mean() for k in rows["free"]])

    def kept(table):
        return np.array([[np.abs(runs.kernels(int(k))).mean() for k in row] for row in table]) / free

    return {"adamw": kept(rows["adamw"]), "l2": kept(rows["l2"])}


def _quarters(runs: Runs, free_row: int, quartiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Quartile edges of the no-rules run's sqrt(v) and each kernel entry's quarter (0 = quietest)."""
    loud = runs.kernels(free_row, of="grad_rms")
    edges = np.quantile(loud, np.linspace(0, 1, quartiles + 1))
    return edges, np.clip(np.searchsorted(edges, loud, side="right") - 1, 0, quartiles - 1)


def loudness_shrink(runs: Runs, *, seeds=SEEDS, l2: float = L2_VS_DECAY,
                    decay: float = DECAY_VS_L2, quartiles: int = 4) -> dict[str, np.ndarray]:
    """How much of its size each quarter of the knobs keeps under L2-in-Adam and under AdamW.

    Knobs (kernel entries of the 32-wide book) are sorted by how large their data
    gradients ran in the run without rules (Adam's sqrt(v-hat)) into ``quartiles`` groups,
    quietest first. For each rule and seed: the group's mean |knob| with the rule divided
    by the same group's mean |knob| in the same seed's run without rules ("share of its
    size kept"). Returns {"l2": (seeds, q), "adamw": (seeds, q), "total_l2": (seeds,),
    "total_adamw": (seeds,), "rms_edges": (seeds, q + 1)}.
    """
    if l2 not in L2S or decay not in DECAYS:
        raise ValueError(f"l2 must be one of L2S {L2S} and decay one of DECAYS {DECAYS}, "
                         f"got l2={l2!r}, decay={decay!r}")
    rows = _rows(seeds)
    out = {"l2": [], "adamw": [], "total_l2": [], "total_adamw": [], "rms_edges": []}
    for s in range(len(seeds)):
        base = int(rows["free"][s])
        edges, group = _quarters(runs, base, quartiles)
        free = np.abs(runs.kernels(base))
        for name, k in (("l2", rows["l2"][L2S.index(l2), s]),
                        ("adamw", rows["adamw"][DECAYS.index(decay), s])):
            fined = np.abs(runs.kernels(int(k)))
            out[name].append([fined[group == g].mean() / free[group == g].mean()
                              for g in range(quartiles)])
            out[f"total_{name}"].append(fined.mean() / free.mean())
        out["rms_edges"].append(edges)
    return {k: np.asarray(v) for k, v in out.items()}


def rules_grid(pantry_: Pantry, config: RunConfig = CONFIG, *, seeds=GRID_SEEDS,
               pad_to: int | None = BATCH) -> Runs:
    """Every (dropout, weight decay, seed) of the summary grid in ONE vmapped call.

    Rows are dropout-major, then weight decay, then seed. ``pad_to=None`` runs exactly
    the grid's runs (no padding to share the sweep's compiled program).
    """
    cells = grid(dropout=DROPOUTS, weight_decay=WEIGHT_DECAYS, seed=seeds)
    k = cells["seed"].size
    return run_many(pantry_, config, labels=noisy_labels(pantry_, cells["seed"]),
                    learning_rate=LEARNING_RATE, pad_to=None if pad_to is None else max(pad_to, k),
                    **cells)


def grid_table(runs: Runs) -> np.ndarray:
    """Final guest accuracy of every grid run as (dropouts, weight decays, seeds)."""
    n_seeds = len(np.unique(runs.values["seed"]))
    return runs.val_accuracy[:, -1].reshape(len(DROPOUTS), len(WEIGHT_DECAYS), n_seeds)


def grid_stats(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """Final guest accuracy per grid cell: (mean, standard error) over seeds, (D, W) each."""
    return mean_se(grid_table(runs))


def tie_z(table: np.ndarray) -> np.ndarray:
    """How far each cell's mean is below the best cell's, in paired standard errors.

    ``table``: (..., seeds), every cell trained on the same seeds. For each cell the
    per-seed difference (best - cell) is averaged and divided by its standard error; the
    best cell (and any cell equal to it in every seed) gets 0. Shape ``table.shape[:-1]``.
    """
    table = np.asarray(table, np.float64)
    if table.ndim < 2 or table.shape[-1] < 2:
        raise ValueError(f"table must be (..., seeds) with at least 2 seeds, got shape {table.shape}")
    mean = mean_se(table)[0]
    best = np.unravel_index(int(np.argmax(mean)), mean.shape)
    diff, se = mean_se(table[best] - table)  # (...,): best - cell, seed by seed
    return np.where(diff <= 0, 0.0, diff / np.where(se > 0, se, 1e-12))


def near_best(table: np.ndarray, z: float = TIE_Z) -> np.ndarray:
    """Cells that cannot be told apart from the best: within ``z`` paired standard errors.

    ``table``: (..., seeds). Cells share their seeds (same starts, same wrong tags), so the
    honest error of "best minus this cell" is that of the per-seed differences, not of two
    independent means. True for every cell whose mean is below the best mean by at most
    ``z`` of those standard errors (the best cell included): with these seeds, the honest
    answer to "which cell is best?" is this set.
    """
    return tie_z(table) <= z
