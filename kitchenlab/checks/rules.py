"""Checks for notebook 04 (house rules): inverted dropout, the cells that tie with the best
(paired by seed)."""

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


def _paired_tables(rng) -> list[np.ndarray]:
    """(..., seeds) accuracy tables in which pairing by seed matters: every seed shifts all
    cells together (a shared start and shared wrong tags), so the error of two separate
    means is large and that of the per-seed difference small. With ``default_rng(16)`` no
    cell sits within 0.3 SE of the 2-SE line (tested), so rounding cannot decide a cell."""
    tables = []
    for shape, n_seeds in (((2, 2), 6), ((2, 3), 8), ((4,), 5), ((5, 5), 10), ((3, 4), 12)):
        behind = rng.choice([0.0, 0.005, 0.01, 0.02, 0.04], size=shape)  # (...) below the top
        seed_shift = rng.normal(0, 0.03, n_seeds)  # (S,) what a seed does to every cell
        noise = rng.normal(0, 0.008, (*shape, n_seeds))  # (..., S) the cell's own noise
        tables.append(np.round(400 * (0.76 - behind[..., None] + seed_shift + noise)) / 400)
    # a hand-made one: the runner-up is 0.01 behind in every seed (a tiny paired error)
    tables.append(np.array([[0.70, 0.72, 0.74, 0.71], [0.69, 0.71, 0.73, 0.70]]))
    return tables


def check_near_best(fn: Callable | None) -> bool:
    """``fn(table)`` -> boolean mask of the cells within 2 paired SE of the best (``table``:
    (..., seeds), every cell trained on the same seeds)."""
    from kitchenlab.experiments.rules import mean_se, near_best

    fb = Feedback("Which rules are best?")
    if not fb.expect(callable(fn), "near_best is a function",
                     "define near_best(table) and pass it in"):
        return fb.done()
    for table in _paired_tables(np.random.default_rng(16)):
        want = near_best(table)
        shape = table.shape[:-1]
        try:
            got = fn(table.copy())
            if got is None:
                fb.expect(False, "", "near_best returned None: return a True/False array "
                          "with one value per cell (table.shape[:-1])")
                return fb.done()
            got = np.asarray(got)
        except Exception as err:  # noqa: BLE001 - feedback, not a crash
            fb.expect(False, "", f"near_best raised {type(err).__name__}: {err}")
            return fb.done()
        if not fb.expect(got.shape == shape, f"a mask of shape {shape}",
                         f"return one True/False per cell: shape {shape} (the table without "
                         f"its seeds axis), got {got.shape}"):
            break
        got = got.astype(bool)
        hint = ("find the best cell by its mean over the seeds; for every cell take the "
                "per-seed difference best - cell, its mean and its standard error "
                "(ddof=1, / sqrt(seeds)); keep the cells whose mean difference is at most "
                "2 of those standard errors")
        mean, se = mean_se(table)
        best = np.unravel_index(int(np.argmax(mean)), mean.shape)
        unpaired = mean[best] - mean <= 2 * np.sqrt(se ** 2 + se[best] ** 2)
        if got.sum() == 1 and want.sum() > 1:
            hint = ("only one cell? cells closer to the best than their noise cannot be told "
                    "apart from it: keep them all. " + hint)
        elif np.array_equal(got, unpaired) and not np.array_equal(unpaired, want):
            hint = ("those are the errors of two separate means; the cells share their seeds, "
                    "so use the standard error of the per-seed differences. " + hint)
        if not fb.expect(np.array_equal(got, want), f"{int(want.sum())} of {want.size} cells "
                         f"tie with the best ({table.shape[-1]} seeds)", hint):
            break
    return fb.done()
