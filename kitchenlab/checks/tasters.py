"""Checks for notebook 03 (guest tasters): a mean over seeds and its error, early stopping by hand."""

from __future__ import annotations

from typing import Callable

import numpy as np

from kitchenlab.checks import Feedback


def check_mean_se(fn: Callable | None) -> bool:
    """``fn(values) -> (mean, se)`` over the LAST axis (the seeds): mean and standard error."""
    fb = Feedback("Mean and standard error over seeds")
    if not fb.expect(callable(fn), "mean_se is a function",
                     "define mean_se(values) and pass it in"):
        return fb.done()
    rng = np.random.default_rng(5)
    cases = [np.array([0.20, 0.18, 0.25, 0.21, 0.16]), np.array([1.0, 3.0]),
             rng.normal(0.1, 0.03, (6, 5, 4)), rng.normal(0.8, 0.01, (3, 7))]
    for values in cases:
        want_m = values.mean(-1)
        want_se = values.std(-1, ddof=1) / np.sqrt(values.shape[-1])
        try:
            got = fn(values.copy())
            if got is None:
                fb.expect(False, "", "mean_se returned None: return (mean, se)")
                return fb.done()
            got_m, got_se = (np.asarray(g, np.float64) for g in got)
        except Exception as err:  # noqa: BLE001 - feedback, not a crash
            fb.expect(False, "", f"mean_se raised {type(err).__name__}: {err}")
            return fb.done()
        shape = values.shape[:-1]
        if not fb.expect(got_m.shape == shape and got_se.shape == shape,
                         f"shape {values.shape} -> two arrays of shape {shape}",
                         f"for values of shape {values.shape} expected mean and se of shape "
                         f"{shape} (average over the last axis, the seeds), got "
                         f"{got_m.shape} and {got_se.shape}"):
            break
        if not fb.expect(np.allclose(got_m, want_m, atol=1e-9), "mean over the seeds",
                         "the mean is values.mean(axis=-1)"):
            break
        n = values.shape[-1]
        hint = ("standard error = sample standard deviation / sqrt(number of seeds)")
        if np.allclose(got_se, values.std(-1, ddof=0) / np.sqrt(n)):
            hint = ("use the sample standard deviation (ddof=1): with a handful of seeds "
                    "the plain one underestimates the spread")
        elif np.allclose(got_se, values.std(-1, ddof=1)):
            hint = "that is the spread of one seed; divide by sqrt(number of seeds)"
        if not fb.expect(np.allclose(got_se, want_se, atol=1e-9),
                         f"standard error with {n} seeds", hint):
            break
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
