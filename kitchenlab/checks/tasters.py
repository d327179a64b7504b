"""Checks for notebook 03 (guest tasters): reading the gap grid, early stopping by hand."""

from __future__ import annotations

from typing import Callable

import numpy as np

from kitchenlab.checks import Feedback


def check_largest_gap(runs, answer) -> bool:
    """``answer`` = (width, n_train) of the grid cell with the largest generalization gap."""
    fb = Feedback("Largest gap")
    k = int(np.argmax(runs.gap))
    want = (int(runs.values["width"][k]), int(runs.values["n_train"][k]))
    if not fb.expect(isinstance(answer, (tuple, list)) and len(answer) == 2,
                     "answer is a (width, n_train) pair",
                     "answer should be a pair like (32, 50): (width, practice cakes)"):
        return fb.done()
    got = tuple(int(a) for a in answer)
    fb.expect(got == want, f"({want[0]}, {want[1]}) has the largest gap, "
              f"{runs.gap[k]:.2f}: a big recipe book with few practice cakes",
              "not the largest: try np.argmax(runs.gap), then read runs.values['width'] "
              "and runs.values['n_train'] at that index")
    return fb.done()


def _reference_stop(val_loss, patience: int) -> tuple[int, int | None]:
    best, best_loss, since = 0, np.inf, 0
    for epoch, loss in enumerate(val_loss):
        if loss < best_loss:
            best, best_loss, since = epoch, loss, 0
        else:
            since += 1
            if since >= patience:
                return best, epoch
    return best, None


def check_stop_epoch(fn: Callable | None) -> bool:
    """``fn(val_loss, patience) -> (best_epoch, stopped_epoch or None)`` like ``fit``."""
    fb = Feedback("Early stopping by hand")
    if not fb.expect(callable(fn), "stop_epoch is a function",
                     "define stop_epoch(val_loss, patience) and pass it in"):
        return fb.done()
    rng = np.random.default_rng(3)
    cases = [([1.0, 0.8, 0.7, 0.75, 0.8, 0.9], 2), ([1.0, 0.9, 0.8, 0.7], 2),
             ([0.5, 0.6, 0.4, 0.45, 0.5, 0.55, 0.6], 3), ([1.0, 1.0, 1.0], 1)]
    cases += [(list(np.cumsum(rng.normal(0, 0.1, 20)) + 1.0), p) for p in (1, 3, 5)]
    for curve, patience in cases:
        want = _reference_stop(curve, patience)
        try:
            got = fn(np.asarray(curve), patience)
            if got is None:
                fb.expect(False, "", "stop_epoch returned None: return (best_epoch, "
                          "stopped_epoch), with stopped_epoch None if patience never ran out")
                return fb.done()
            got = (int(got[0]), None if got[1] is None else int(got[1]))
        except Exception as err:  # noqa: BLE001 - feedback, not a crash
            fb.expect(False, "", f"stop_epoch raised {type(err).__name__}: {err}")
            return fb.done()
        if not fb.expect(got == want, f"curve {np.round(curve[:6], 2).tolist()}..., patience "
                         f"{patience}: best {want[0]}, stopped {want[1]}",
                         f"for {np.round(curve, 2).tolist()} with patience {patience} expected "
                         f"(best, stopped) = {want}, got {got}. A tie is not a gain; stop at "
                         "the epoch where the count of epochs without gain reaches patience"):
            break
    return fb.done()
