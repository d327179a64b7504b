"""Notebook 03's experiments: model size and data size against the generalization gap."""

from __future__ import annotations

import numpy as np

from kitchenlab.data import Pantry
from kitchenlab.regularize import RunConfig, Runs, grid, run_many

WIDTHS = (1, 2, 4, 8, 16, 32)  # knobs per station (hidden units per layer), depth 2
SIZES = (25, 50, 100, 200, 400)  # practice cakes


def overfitting_grid(pantry: Pantry, config: RunConfig = RunConfig()) -> Runs:
    """All 30 (width, n_train) runs in one vmapped call; rows ordered width-major."""
    return run_many(pantry, config, **grid(width=WIDTHS, n_train=SIZES))


def gap_table(runs: Runs) -> np.ndarray:
    """Generalization gap (final train - val accuracy) as a (len(WIDTHS), len(SIZES)) table."""
    return runs.gap.reshape(len(WIDTHS), len(SIZES))
