"""Checks for notebook 04 (house rules): inverted dropout, reading the rules grid."""

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


def check_best_rules(runs, answer) -> bool:
    """``answer`` = (dropout, weight_decay) of the grid cell with the best guest accuracy."""
    fb = Feedback("Best house rules")
    acc = runs.val_accuracy[:, -1]
    k = int(np.argmax(acc))
    want = (float(runs.values["dropout"][k]), float(runs.values["weight_decay"][k]))
    if not fb.expect(isinstance(answer, (tuple, list)) and len(answer) == 2,
                     "answer is a (dropout, weight_decay) pair",
                     "answer should be a pair like (0.2, 1.0)"):
        return fb.done()
    got = tuple(float(a) for a in answer)
    fb.expect(np.allclose(got, want), f"dropout {want[0]:g}, weight decay {want[1]:g}: guest "
              f"accuracy {acc[k]:.2f}",
              "not the best cell: np.argmax(runs.val_accuracy[:, -1]) gives its index, "
              "then read runs.values['dropout'] and runs.values['weight_decay'] there")
    return fb.done()
