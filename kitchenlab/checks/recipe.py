"""Checks for notebook 01 (the recipe and its knobs): parameter count, the judge, one step."""

from __future__ import annotations

import numpy as np

from kitchenlab.checks import Feedback, close


def _param_count(config) -> int:
    sizes = [config.n_features] + [config.width] * config.depth + [config.n_classes]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))  # kernel + bias per layer


def check_param_count(answer, config) -> bool:
    """``answer``: the number of knobs (parameters) of an MLP built from ``config``."""
    fb = Feedback(f"Knobs of an MLP with width {config.width}, depth {config.depth}")
    want = _param_count(config)
    if answer is None:
        fb.expect(False, "", "answer is still None: add up (inputs + 1) × outputs per layer")
        return fb.done()
    try:
        given = int(answer)
    except (TypeError, ValueError):
        fb.expect(False, "", f"answer should be a whole number, got {answer!r}")
        return fb.done()
    if given == want:
        fb.expect(True, f"{want} knobs", "")
    else:
        no_bias = want - (config.depth * config.width + config.n_classes)
        hint = ("you counted only the kernels: each unit also has a bias"
                if given == no_bias else
                "per layer: (inputs + 1) × outputs; layers go "
                f"{config.n_features} → {' → '.join([str(config.width)] * config.depth)} "
                f"→ {config.n_classes}")
        fb.expect(False, "", f"{given} is not it — {hint}")
    return fb.done()


def check_cross_entropy(fn) -> bool:
    """``fn(logits (B, C), labels (B,)) -> ()``: mean softmax cross-entropy, written by hand."""
    import jax
    import optax

    fb = Feedback("The judge's score, by hand")
    logits = jax.random.normal(jax.random.key(1), (6, 3)) * 3.0  # (B, C)
    labels = jax.numpy.array([0, 2, 1, 1, 0, 2])
    want = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    try:
        got = fn(logits, labels)
    except Exception as err:
        fb.expect(False, "", f"calling it raised {type(err).__name__}: {err}")
        return fb.done()
    fb.expect(np.ndim(got) == 0, "returns one number for the batch",
              f"should return a scalar (the mean over cakes), got shape {np.shape(got)}")
    ok = close(got, want, rtol=1e-4)
    fb.expect(ok, f"equals optax: {float(want):.4f}",
              f"expected {float(want):.4f}: take log_softmax over the last axis, pick each "
              "cake's right verdict, negate, average")
    big = jax.numpy.array([[1000.0, 0.0]])
    try:
        stable = bool(np.isfinite(fn(big, jax.numpy.array([1]))))
    except Exception:
        stable = False
    fb.expect(stable, "stays finite for huge logits (numerically stable)",
              "huge logits give inf/NaN: use jax.nn.log_softmax instead of log(softmax)")
    return fb.done()


def check_sgd_update(fn) -> bool:
    """``fn(params, grads, learning_rate) -> params``: one SGD step over any pytree."""
    import jax
    import jax.numpy as jnp

    fb = Feedback("One sous-chef step, by hand")
    params = {"hidden": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)},
              "head": [jnp.arange(4.0)]}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5) + p, params)
    want = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    try:
        got = fn(params, grads, 0.1)
    except Exception as err:
        fb.expect(False, "", f"calling it raised {type(err).__name__}: {err}")
        return fb.done()
    same_shape = jax.tree.structure(got) == jax.tree.structure(want)
    fb.expect(same_shape, "keeps the shape of the knob tree",
              "return a tree shaped like params: use jax.tree.map(fn, params, grads)")
    if same_shape:
        ok = all(close(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
        fb.expect(ok, "θ ← θ − η·g on every leaf",
                  "values are off: subtract learning_rate × gradient (mind the sign)")
    return fb.done()
