"""Notebook 04's experiments: dropout and weight decay, one run and the summary grid."""

from __future__ import annotations

import numpy as np

from kitchenlab.data import Pantry
from kitchenlab.regularize import RunConfig, Runs, grid, run_many, run_one

DROPOUTS = (0.0, 0.2, 0.4, 0.6, 0.8)  # summary grid rows: share of burners randomly off
WEIGHT_DECAYS = (0.0, 0.3, 1.0, 3.0, 10.0)  # summary grid columns: the fine for big knobs
LEARNING_RATE = 1e-2  # a bold apprentice, so that 100 practice cakes are memorised
# Curves recorded every 10 epochs (21 points): tasting the guests is a third of a small
# run's work, and halving it makes every run here (slider, grid, serial baseline) cheaper.
CONFIG = RunConfig(record_every=10)


def rules_baseline(pantry: Pantry, config: RunConfig = CONFIG) -> Runs:
    """The kitchen without house rules (same data, same start, same learning rate)."""
    return run_one(pantry, config, learning_rate=LEARNING_RATE)


def rules_grid(pantry: Pantry, config: RunConfig = CONFIG) -> Runs:
    """Every (dropout, weight decay) pair of the summary grid in ONE vmapped call."""
    return run_many(pantry, config, learning_rate=LEARNING_RATE,
                    **grid(dropout=DROPOUTS, weight_decay=WEIGHT_DECAYS))


def best_cell(runs: Runs) -> tuple[float, float]:
    """(dropout, weight decay) with the highest final validation accuracy."""
    k = int(np.argmax(runs.val_accuracy[:, -1]))
    return float(runs.values["dropout"][k]), float(runs.values["weight_decay"][k])
