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


def _mean_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The reference judge in float64 numpy: mean of logsumexp(logits) - logits[label]."""
    z = np.asarray(logits, np.float64)
    top = z.max(axis=-1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=-1))
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


def check_cross_entropy(fn) -> bool:
    """``fn(logits (B, C), labels (B,)) -> ()``: mean softmax cross-entropy, written by hand.

    Tried on two trays (3 and 2 verdicts), so a formula that only fits one shape fails.
    """
    import jax.numpy as jnp

    fb = Feedback("The judge's score, by hand")
    rng = np.random.default_rng(1)
    trays = [(rng.normal(size=(6, 3)) * 3.0, np.array([0, 2, 1, 1, 0, 2])),
             (rng.normal(size=(4, 2)), np.array([1, 0, 0, 1]))]
    results = []
    for logits, labels in trays:
        logits = logits.astype(np.float32)
        try:
            got = fn(jnp.asarray(logits), jnp.asarray(labels))
        except Exception as err:
            fb.expect(False, "", f"calling it raised {type(err).__name__}: {err}")
            return fb.done()
        results.append((got, _mean_cross_entropy(logits, labels)))
    fb.expect(all(np.ndim(got) == 0 for got, _ in results), "returns one number for the batch",
              f"should return a scalar (the mean over cakes), got shape {np.shape(results[0][0])}")
    want = results[0][1]
    ok = all(close(got, ref, rtol=1e-4) for got, ref in results)
    fb.expect(ok, f"equals the reference on two trays: {want:.4f}, {results[1][1]:.4f}",
              f"expected {want:.4f} on the first tray: take log_softmax over the last axis, "
              "pick each cake's right verdict, negate, average")
    try:
        stable = bool(np.isfinite(fn(jnp.array([[1000.0, 0.0]]), jnp.array([1]))))
    except Exception:
        stable = False
    fb.expect(stable, "stays finite for huge logits (numerically stable)",
              "huge logits give inf/NaN: use jax.nn.log_softmax instead of log(softmax)")
    return fb.done()


def check_sgd_update(fn) -> bool:
    """``fn(params, grads, learning_rate) -> params``: one SGD step over any pytree."""
    import jax

    fb = Feedback("One sous-chef step, by hand")
    rng = np.random.default_rng(0)  # numpy leaves: nothing to compile for a quick answer
    params = {"hidden": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)},
              "head": [np.arange(4.0)]}
    grads = jax.tree.map(lambda p: rng.normal(size=p.shape) + p, params)
    ok_shape, ok_values = True, True
    for learning_rate in (0.1, 2.5):  # two rates, so a hard-coded step size fails
        want = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
        try:
            got = fn(params, grads, learning_rate)
        except Exception as err:
            fb.expect(False, "", f"calling it raised {type(err).__name__}: {err}")
            return fb.done()
        same_shape = jax.tree.structure(got) == jax.tree.structure(want)
        ok_shape &= same_shape
        ok_values &= same_shape and all(
            close(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
    fb.expect(ok_shape, "keeps the shape of the knob tree",
              "return a tree shaped like params: use jax.tree.map(fn, params, grads)")
    if ok_shape:
        fb.expect(ok_values, "θ ← θ − η·g on every leaf, for two learning rates",
                  "values are off: subtract learning_rate × gradient (mind the sign)")
    return fb.done()


def _tiny_loss(knobs, x, y):
    """The one-hidden-unit kitchen of notebook 01: x -> relu(w1 x + b1) -> 2 logits -> judge."""
    import jax

    h = jax.nn.relu(knobs["w1"] * x + knobs["b1"])  # one hidden unit
    logits = knobs["w2"] * h + knobs["b2"]  # (2,): burnt, good cake
    return -jax.nn.log_softmax(logits)[y]


# (x, label, knobs): the hidden unit on (z > 0) and off (z < 0), both labels
_BACKPROP_CASES = (
    (1.05, 0, {"w1": 0.8, "b1": 0.1, "w2": [-0.5, 0.7], "b2": [0.0, 0.0]}),
    (-0.6, 1, {"w1": -1.5, "b1": 0.3, "w2": [0.9, -0.4], "b2": [0.2, -0.1]}),
    (2.0, 1, {"w1": -0.7, "b1": 0.4, "w2": [0.3, 1.1], "b2": [-0.2, 0.5]}),  # z < 0: unit off
    (0.4, 0, {"w1": 2.0, "b1": -0.3, "w2": [-1.2, 0.6], "b2": [0.1, 0.3]}),
)


def check_backprop(fn) -> bool:
    """``fn(x, y, knobs) -> notes``: the judge's notes on the tiny kitchen, by the chain rule.

    ``knobs`` is ``{"w1", "b1", "w2", "b2"}`` (w2, b2: two entries, one per verdict); the
    notes must be a dict with the same keys. Graded against ``jax.grad`` on several cakes,
    with the hidden unit switched on and off and both labels.
    """
    import jax
    import jax.numpy as jnp

    fb = Feedback("The judge's notes, by the chain rule")
    wrong: dict[str, list[int]] = {}
    reference = jax.jit(jax.grad(_tiny_loss))  # one compile for every case
    for i, (x, y, knobs) in enumerate(_BACKPROP_CASES):
        knobs = {k: jnp.asarray(v, jnp.float32) for k, v in knobs.items()}
        want = reference(knobs, jnp.float32(x), y)
        try:
            got = fn(x, y, {k: np.asarray(v) for k, v in knobs.items()})
        except Exception as err:  # a learner's bug is feedback, not a crash
            fb.expect(False, "", f"calling it raised {type(err).__name__}: {err}")
            return fb.done()
        if not isinstance(got, dict) or set(got) != set(want):
            fb.expect(False, "", f"return a dict with keys {sorted(want)}, got "
                      f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
            return fb.done()
        for k in want:
            if not close(got[k], want[k], rtol=1e-4, atol=1e-5):
                wrong.setdefault(k, []).append(i)
    off = {i for i, (x, _, k) in enumerate(_BACKPROP_CASES) if k["w1"] * x + k["b1"] <= 0}
    if not wrong:
        fb.expect(True, f"all four notes equal jax.grad on {len(_BACKPROP_CASES)} cakes "
                  "(unit on and off, both labels)", "")
    elif set(wrong) <= {"w1", "b1"} and all(set(cases) <= off for cases in wrong.values()):
        fb.expect(False, "", "right while the hidden unit is on; when z = w1·x + b1 < 0 the "
                  "ReLU passes nothing back: its slope there is 0")
    elif set(wrong) <= {"w1", "b1"}:
        fb.expect(False, "", "the head's notes are right; for w1 and b1 chain further: "
                  "dL/dh = Σ_k dL/ds_k · w2_k, then × ReLU's slope (1 if z > 0 else 0), "
                  "then × x for w1 (× 1 for b1)")
    else:
        fb.expect(False, "", f"notes off for {sorted(wrong)}: start at the judge, "
                  "dL/ds = softmax(s) − onehot(y), then dL/dw2 = dL/ds · h, dL/db2 = dL/ds")
    return fb.done()
