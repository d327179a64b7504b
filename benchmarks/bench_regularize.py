"""Notebooks 03-04: the overfitting panel's response time and the vmapped rules grid.

* ``tasters.slider_response_s``: median seconds of ``panel.render(width, n_train)`` for the
  overfitting panel over 9 slider positions, after the grid (6 widths x 5 sizes x 5 seeds,
  one vmapped call) has been computed. The panel answers from that grid, so this is a
  lookup plus a redraw.
* ``rules.grid_vmapped_vs_serial``: the 5 x 5 (dropout x weight decay) grid of one seed as
  ONE vmapped call vs the same 25 runs one compiled call at a time (both compiled before
  timing; same runs, same numbers; the notebook's grid adds seeds on the same vmapped axis).
"""

from __future__ import annotations

import statistics
import sys
import time

from timing import median_seconds, ratio


def measure() -> dict:
    import kitchenlab as kl
    from kitchenlab.experiments import rules, tasters
    from kitchenlab.widgets import tasters as tasters_panel

    kl.setup(seed=0, quiet=True)

    # 1) overfitting panel: one grid, then slider answers
    print("bench_regularize: training the 150-run overfitting grid ...", file=sys.stderr)
    runs = tasters.overfitting_grid(tasters.kitchen())
    panel = tasters_panel.panel(runs)
    positions = [(w, n) for w in (1, 8, 32) for n in (25, 100, 400)]
    panel.render(width=32, n_train=200)  # warm matplotlib
    times = []
    for w, n in positions:
        t0 = time.perf_counter()
        panel.render(width=w, n_train=n)
        times.append(time.perf_counter() - t0)

    # 2) the rules grid: one vmapped call vs cell by cell
    print("bench_regularize: the 5 x 5 rules grid, vmapped and cell by cell ...", file=sys.stderr)
    kitchen = rules.kitchen()
    cells = kl.regularize.grid(dropout=rules.DROPOUTS, weight_decay=rules.WEIGHT_DECAYS)

    def vmapped():
        return rules.rules_grid(kitchen, seeds=(0,), pad_to=None)

    def serial():
        for d, w in zip(cells["dropout"], cells["weight_decay"]):
            rules.rules_run(kitchen, dropout=d, weight_decay=w)

    rules.rules_run(kitchen)  # compile the single run
    t_vmap = median_seconds(vmapped, repeats=5, warmup=1)
    t_serial = median_seconds(serial, repeats=3, warmup=0)
    return {"tasters.slider_response_s": round(statistics.median(times), 3),
            "rules.grid_vmapped_vs_serial": ratio(t_serial, t_vmap)}
