"""Checks for notebook 02 (the apprenticeship): a learning rate, clipping by hand, a cap rule, the race."""

from __future__ import annotations

import numpy as np

from kitchenlab.checks import Feedback, close


def check_learning_rate(learning_rate, kitchen=None, *, target: float = 0.2) -> bool:
    """Does plain SGD at ``learning_rate`` reach train loss < ``target`` in 20 days unexploded?

    Uses notebook 02's plan (``kl.experiments.apprenticeship.default_config()``), so it reuses the
    compiled run the notebook already has.
    """
    from kitchenlab.experiments.apprenticeship import lr_curves

    fb = Feedback("A learning rate for plain SGD")
    try:
        lr = float(learning_rate)
    except (TypeError, ValueError):
        fb.expect(False, "", f"learning_rate should be a positive number, got {learning_rate!r}")
        return fb.done()
    if not np.isfinite(lr) or lr <= 0:
        fb.expect(False, "", f"learning_rate must be > 0 and finite, got {learning_rate!r}")
        return fb.done()
    r = lr_curves(lr, kitchen=kitchen)
    h = r.history
    if h.diverged:
        fb.expect(False, "", f"at {lr:.3g} the run exploded at step {h.diverged_at_step}: "
                  "too bold, try 10× smaller")
        return fb.done()
    final = float(h.train_loss[-1])
    fb.expect(final < target, f"train loss {final:.3f} < {target} after {h.epochs} epochs",
              f"train loss {final:.3f} is not below {target}"
              + (": too timid, try a bigger rate" if lr < 0.3 else ": too bold, it thrashes"))
    return fb.done()


def check_clip_by_global_norm(fn) -> bool:
    """``fn(grads, max_norm) -> grads``: scale the whole tree down when its global norm is too big."""
    import jax
    import jax.numpy as jnp
    import optax

    fb = Feedback("The gas-valve cap, by hand")
    grads = {"hidden": {"kernel": jnp.full((2, 3), 3.0), "bias": jnp.array([4.0, 0.0, -1.0])},
             "head": jnp.array([[-2.0], [1.0]])}
    ok_all = True
    for max_norm in (1.0, 100.0):  # one cap that bites, one that does not
        tx = optax.clip_by_global_norm(max_norm)
        want, _ = tx.update(grads, tx.init(grads))
        try:
            got = fn(grads, max_norm)
        except Exception as err:
            fb.expect(False, "", f"calling it raised {type(err).__name__}: {err}")
            return fb.done()
        if jax.tree.structure(got) != jax.tree.structure(want):
            fb.expect(False, "", "return a tree shaped like grads (jax.tree.map)")
            return fb.done()
        ok_all &= all(close(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
    fb.expect(ok_all, "matches optax.clip_by_global_norm, above and below the cap",
              "norm = sqrt(sum of every squared entry of every leaf); if norm > max_norm, "
              "multiply every leaf by max_norm / norm, else leave it alone")
    return fb.done()


def _number(fb: Feedback, answer, look_at: str) -> float | None:
    """``answer`` as a float, or None after telling the learner what is wrong with it."""
    if answer is None:
        fb.expect(False, "", f"answer is still None: look at {look_at}")
        return None
    try:
        return float(answer)
    except (TypeError, ValueError):
        fb.expect(False, "", f"answer should be a number, got {answer!r}")
        return None


def check_best_learning_rate(answer, sweep) -> bool:
    """``answer``: the swept learning rate with the lowest final validation loss."""
    fb = Feedback("The best of the 16 kitchens")
    lrs = np.asarray(sweep.values["learning_rate"])
    final = np.where(np.asarray(sweep.diverged_at_step) > 0, np.inf, sweep.val_loss[:, -1])
    want = float(lrs[int(np.argmin(final))])
    given = _number(fb, answer, "sweep.val_loss[:, -1]")
    if given is None:
        return fb.done()
    fb.expect(close(given, want, rtol=1e-3), f"learning rate {want:.3g}",
              f"{given:.3g} is not it: take np.argmin of the last epoch's validation loss, "
              "skipping runs that exploded, and index sweep.values['learning_rate']")
    return fb.done()


def _norm_traces(seed: int = 0):
    """Records of notes' sizes a cap rule must handle: (name, norms, is_spike), at scales from
    0.001 to 300 (a constant cap cannot fit them all), with and without rare spikes."""
    rng = np.random.default_rng(seed)
    traces = []
    for name, scale, spike_rate in (("ordinary days, notes near 1", 1.0, 0.0),
                                    ("4 % spiky turns, notes near 1", 1.0, 0.04),
                                    ("8 % spiky turns, notes near 0.001", 1e-3, 0.08),
                                    ("5 % spiky turns, notes near 300", 300.0, 0.05)):
        norms = scale * rng.lognormal(0.0, 0.3, 360)  # the ordinary band
        spike = rng.random(360) < spike_rate
        norms[spike] = scale * rng.uniform(50.0, 500.0, spike.sum())
        traces.append((name, norms, spike))
    return traces


def check_choose_cap(fn) -> bool:
    """``fn(grad_norms) -> cap``: a cap above (nearly) every ordinary note, below every spike.

    Tried on several records of notes at scales from 0.001 to 300, with and without rare
    spikes: the cap must trim at most 2 % of the ordinary turns and every spiky one.
    """
    fb = Feedback("A cap chosen from the notes")
    if not callable(fn):
        fb.expect(False, "", f"pass a function grad_norms -> cap, got {type(fn).__name__}")
        return fb.done()
    for name, norms, spike in _norm_traces():
        try:
            cap = float(fn(norms.copy()))
        except Exception as err:
            fb.expect(False, "", f"{name}: calling it raised {type(err).__name__}: {err}")
            return fb.done()
        if not np.isfinite(cap) or cap <= 0:
            fb.expect(False, "", f"{name}: the cap must be a finite number > 0, got {cap!r}")
            continue
        ordinary = float(np.mean(norms[~spike] > cap))
        missed = int(np.sum(norms[spike] <= cap))
        fb.expect(ordinary <= 0.02 and missed == 0,
                  f"{name}: cap {cap:.3g} trims {ordinary:.0%} of ordinary turns, every spike",
                  f"{name}: cap {cap:.3g} trims {ordinary:.0%} of the ordinary turns and lets "
                  f"{missed} of {int(spike.sum())} spikes through. Spikes are rare, so the "
                  "median note is an ordinary one: try a few times the median")
    return fb.done()


def check_best_rate(answer, race, optimizer: str = "adam") -> bool:
    """``answer``: a learning rate at which ``optimizer`` does best on the guests in ``race``.

    Any rate in ``race.good_band(optimizer)`` counts (near-ties are a set, not one winner).
    """
    from kitchenlab.experiments.apprenticeship import OPTIMIZER_NAMES, SOUS_CHEFS

    fb = Feedback(f"The best learning rate for {OPTIMIZER_NAMES.get(optimizer, optimizer)}")
    if optimizer not in SOUS_CHEFS:
        fb.expect(False, "", f"optimizer must be one of {SOUS_CHEFS}, got {optimizer!r}")
        return fb.done()
    given = _number(fb, answer, "race.mean_val_loss()")
    if given is None:
        return fb.done()
    band = race.good_band(optimizer)
    fb.expect(any(close(given, b, rtol=1e-3) for b in band),
              "among the best learning rates on the guests (within 0.01 of the best)",
              f"{given:.3g} is not it: average race.final_val_loss() over the seeds (axis 0), "
              f"take row {SOUS_CHEFS.index(optimizer)} ({optimizer}) and its np.argmin, and "
              "index race.learning_rates")
    return fb.done()
