"""Checks for notebook 10 (a chain of kitchens)."""

from __future__ import annotations

import numpy as np

from kitchenlab.checks import Feedback


def _reference_rows(process_id: int, processes: int, batch_size: int) -> np.ndarray:
    share = batch_size // processes
    return np.arange(process_id * share, (process_id + 1) * share)


def check_local_rows(fn) -> bool:
    """Exercise 1: ``fn(process_id, processes, batch_size)`` -> the tray rows one process
    feeds when every process drives one device on the "data" axis."""
    fb = Feedback("Exercise 1 (who feeds which cakes)")
    if not fb.expect(callable(fn), "you wrote a function",
                     "my_rows should be a function (process_id, processes, batch_size)"):
        return fb.done()
    cases = [(0, 2, 64), (1, 2, 64), (2, 4, 64), (3, 4, 64), (1, 3, 48), (5, 8, 16)]
    wrong = []
    for case in cases:
        try:
            got = np.asarray(fn(*case)).reshape(-1)
        except Exception as err:  # a learner's bug is feedback, not a crash
            wrong.append(f"{case}: raised {type(err).__name__}: {err}")
            continue
        want = _reference_rows(*case)
        if got.shape != want.shape or not np.array_equal(got, want):
            wrong.append(f"process {case[0]} of {case[1]}, tray of {case[2]}: got "
                         f"{got[:6].tolist()}{'...' if got.size > 6 else ''}, expected rows "
                         f"{want[0]}..{want[-1]}")
    fb.expect(not wrong, f"right rows for all {len(cases)} processes and trays",
              "; ".join(wrong[:2]) + (" (each process feeds batch_size / processes "
                                      "consecutive rows, in process order)" if wrong else ""))
    if not wrong:
        rows = [set(_reference_rows(p, 4, 64)) for p in range(4)]
        fb.expect(set().union(*rows) == set(range(64)), "together the 4 processes feed the "
                  "whole tray, each cake exactly once", "")
    return fb.done()


def check_weighted_notes(fn) -> bool:
    """Exercise 2: ``fn(notes, sizes)`` averages per-kitchen mean gradients (arrays) of
    kitchens that judged ``sizes`` cakes each into the whole tray's mean gradient."""
    fb = Feedback("Exercise 2 (uneven shares)")
    if not fb.expect(callable(fn), "you wrote a function",
                     "weighted_notes should be a function (notes, sizes)"):
        return fb.done()
    rng = np.random.default_rng(0)
    wrong = []
    for sizes in ([32, 32], [40, 24], [1, 63], [10, 20, 30]):
        per_cake = rng.normal(size=(sum(sizes), 3))  # one gradient row per cake
        bounds = np.cumsum([0] + sizes)
        notes = [per_cake[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]
        want = per_cake.mean(axis=0)
        try:
            got = np.asarray(fn(notes, sizes), dtype=float)
        except Exception as err:
            wrong.append(f"sizes {sizes}: raised {type(err).__name__}: {err}")
            continue
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-6, atol=1e-9):
            plain = np.mean(notes, axis=0)
            hint = (" — that is the plain average of the notes; weight each kitchen by "
                    "its share of the cakes" if np.allclose(got, plain) else "")
            wrong.append(f"sizes {sizes}: not the whole tray's mean gradient{hint}")
    fb.expect(not wrong, "equals the whole tray's gradient for even and uneven shares",
              "; ".join(wrong[:2]))
    return fb.done()
