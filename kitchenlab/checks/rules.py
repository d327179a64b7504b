"""Checks for notebook 04 (house rules): inverted dropout, the cells that tie with the best."""

from __future__ import annotations

from typing import Callable

import numpy as np

from kitchenlab.checks import Feedback


def check_dropout(fn: Callable | None) -> bool:
    """``fn(x, rate, key)``: zero each unit with probability ``rate``, rescale the rest."""
    import jax

    from kitchenlab.models import dropout

    fb = Feedback("Inverted dropout")
    if not fb.expect(callable(fn), "my_dropout is a function",
                     "define my_dropout(x, rate, key) and pass it in"):
        return fb.done()
    x = jax.numpy.ones((200, 50))
    key = jax.random.key(7)
    try:
        outs = {rate: fn(x, rate, key) for rate in (0.0, 0.3, 0.8)}
        if any(o is None for o in outs.values()):
            fb.expect(False, "", "my_dropout returned None: return the array with dropped units")
            return fb.done()
        outs = {rate: np.asarray(o) for rate, o in outs.items()}
    except Exception as err:  # noqa: BLE001 - feedback, not a crash
        fb.expect(False, "", f"my_dropout raised {type(err).__name__}: {err}")
        return fb.done()
    fb.expect(outs[0.0].shape == x.shape, "shape kept", f"output shape {outs[0.0].shape}, "
              f"expected {x.shape}")
    fb.expect(np.allclose(outs[0.0], 1.0), "rate 0 changes nothing (every burner on)",
              "with rate 0 the output should equal the input")
    off = float((outs[0.3] == 0).mean())
    fb.expect(abs(off - 0.3) < 0.02, f"about 30 % of units off at rate 0.3 ({off:.1%})",
              f"at rate 0.3, {off:.1%} of units were zero; expected about 30 %")
    kept = outs[0.8][outs[0.8] != 0]
    fb.expect(kept.size > 0 and np.allclose(kept, 1 / 0.2, rtol=1e-5),
              "survivors scaled by 1 / (1 - rate): the average stays the same",
              "scale the kept units by 1 / (1 - rate) so the expected value is unchanged")
    fb.expect(abs(float(outs[0.8].mean()) - 1.0) < 0.1, "mean preserved",
              f"mean of the output at rate 0.8 is {outs[0.8].mean():.2f}, expected about 1")
    fb.expect(np.allclose(outs[0.3], np.asarray(dropout(x, 0.3, key))),
              "identical to kl.models.dropout for the same key",
              "keep a unit where jax.random.uniform(key, x.shape) >= rate; then it "
              "matches kl.models.dropout exactly for the same key")
    return fb.done()


def check_near_best(fn: Callable | None) -> bool:
    """``fn(mean, se)`` -> boolean mask of the cells within one SE (of the difference) of the best."""
    from kitchenlab.experiments.rules import near_best

    fb = Feedback("Which rules are best?")
    if not fb.expect(callable(fn), "near_best is a function",
                     "define near_best(mean, se) and pass it in"):
        return fb.done()
    rng = np.random.default_rng(4)
    tables = [  # (mean, se): a clear winner, a crowd of ties, a 1-D row, random tables
        (np.array([[0.70, 0.71], [0.80, 0.72]]), np.full((2, 2), 0.01)),
        (np.array([[0.75, 0.76], [0.70, 0.77]]), np.full((2, 2), 0.01)),
        (np.array([0.60, 0.64, 0.65, 0.58]), np.array([0.02, 0.01, 0.01, 0.02])),
        (rng.uniform(0.6, 0.8, (5, 5)), rng.uniform(0.003, 0.02, (5, 5))),
        (rng.uniform(0.6, 0.8, (3, 4)), rng.uniform(0.003, 0.02, (3, 4))),
    ]
    for mean, se in tables:
        want = near_best(mean, se)
        try:
            got = fn(mean.copy(), se.copy())
            if got is None:
                fb.expect(False, "", "near_best returned None: return a True/False array "
                          "shaped like mean")
                return fb.done()
            got = np.asarray(got)
        except Exception as err:  # noqa: BLE001 - feedback, not a crash
            fb.expect(False, "", f"near_best raised {type(err).__name__}: {err}")
            return fb.done()
        if not fb.expect(got.shape == mean.shape, f"a mask of shape {mean.shape}",
                         f"return one True/False per cell: shape {mean.shape}, got {got.shape}"):
            break
        got = got.astype(bool)
        hint = ("keep every cell whose mean is below the best mean by at most "
                "sqrt(se_cell**2 + se_best**2), the standard error of that difference")
        if got.sum() == 1 and want.sum() > 1:
            hint = ("only one cell? cells closer to the best than their noise cannot be told "
                    "apart from it: keep them all. " + hint)
        if not fb.expect(np.array_equal(got, want), f"{int(want.sum())} of {mean.size} cells "
                         f"within one SE of the best (best {mean.max():.2f})", hint):
            break
    return fb.done()
