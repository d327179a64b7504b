"""Notebooks 03-04: the overfitting panel's response time and the vmapped rules grid.

* ``tasters.slider_response_s``: median seconds of ``panel.render(width, n_train)`` for the
  overfitting panel over 9 slider positions, after the grid (30 runs, one vmapped call) has
  been computed. The panel answers from that grid, so this is a lookup plus a redraw.
* ``rules.grid_vmapped_vs_serial``: the 5 x 5 (dropout x weight decay) grid as ONE vmapped
  call vs the same 25 runs one compiled call at a time (both compiled before timing; same
  runs, same numbers).
"""

from __future__ import annotations

import statistics
import time

from timing import median_seconds, ratio


def measure() -> dict:
    import kitchenlab as kl
    from kitchenlab.experiments import rules, tasters
    from kitchenlab.data import pantry
    from kitchenlab.regularize import run_one
    from kitchenlab.widgets import tasters as tasters_panel

    kl.setup(seed=0, quiet=True)

    # 1) overfitting panel: one grid, then slider answers
    runs = tasters.overfitting_grid(pantry(n_train=400, n_val=400, n_test=400, noise=0.05))
    panel = tasters_panel.panel(runs)
    positions = [(w, n) for w in (1, 8, 32) for n in (25, 100, 400)]
    panel.render(width=32, n_train=50)  # warm matplotlib
    times = []
    for w, n in positions:
        t0 = time.perf_counter()
        panel.render(width=w, n_train=n)
        times.append(time.perf_counter() - t0)

    # 2) the rules grid: one vmapped call vs cell by cell
    kitchen = pantry(n_train=100, n_val=400, n_test=400, noise=0.1)
    cells = kl.regularize.grid(dropout=rules.DROPOUTS, weight_decay=rules.WEIGHT_DECAYS)

    def serial():
        for d, w in zip(cells["dropout"], cells["weight_decay"]):
            run_one(kitchen, rules.CONFIG, dropout=d, weight_decay=w,
                    learning_rate=rules.LEARNING_RATE)

    run_one(kitchen, rules.CONFIG, learning_rate=rules.LEARNING_RATE)  # compile the single run
    t_vmap = median_seconds(lambda: rules.rules_grid(kitchen), repeats=5, warmup=1)
    t_serial = median_seconds(serial, repeats=3, warmup=0)
    return {"tasters.slider_response_s": round(statistics.median(times), 3),
            "rules.grid_vmapped_vs_serial": ratio(t_serial, t_vmap)}
