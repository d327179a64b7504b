"""The exercise checks of notebooks 00-02: True for a right answer, False plus a hint (no raise)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import kitchenlab as kl
from kitchenlab.checks import apprenticeship, recipe, tour
from check_grading import ok as _ok, wrong as _wrong


def test_analogy(capsys):
    _ok(tour.check_analogy, {"safety cap on the gas valve": "Gradient clipping",
                             "guest tasters who give no notes": "validation",
                             "pre-measured spice packets": "quantisation",
                             "the judge's notes on every step": "backprop"}, capsys=capsys)
    assert tour.check_analogy({"pre-measured spice packets": "INT8 quantization"}, required=())
    _wrong(tour.check_analogy, {"safety cap on the gas valve": "dropout"}, capsys=capsys)
    _wrong(tour.check_analogy, {"safety cap on the gas valve": None}, capsys=capsys)
    _wrong(tour.check_analogy, "gradient clipping", capsys=capsys)
    # answering one phrase and deleting the other three is not the exercise
    _wrong(tour.check_analogy, {"safety cap on the gas valve": "gradient clipping"},
           capsys=capsys)


def test_oven_converter(capsys):
    _ok(tour.check_oven_converter, jax.jit(lambda f: (f - 32) * 5 / 9), capsys=capsys)
    _wrong(tour.check_oven_converter, lambda f: (f - 32) * 5 / 9, capsys=capsys)  # not jitted
    _wrong(tour.check_oven_converter, jax.jit(lambda f: f - 32 * 5 / 9), capsys=capsys)
    _wrong(tour.check_oven_converter, jax.jit(lambda f: f.nope), capsys=capsys)  # raises inside
    _wrong(tour.check_oven_converter, 42, capsys=capsys)
    fixed = jax.numpy.array([100.0, 180.0, 200.0, 220.0])  # a constant stub for the 4 ovens
    _wrong(tour.check_oven_converter, jax.jit(lambda f: fixed), capsys=capsys)


def test_param_count(capsys):
    config = kl.config.MLPConfig(width=16, depth=3)
    right = kl.models.count_params(kl.models.make_mlp(config))
    _ok(recipe.check_param_count, right, config, capsys=capsys)
    _wrong(recipe.check_param_count, right - 1, config, capsys=capsys)
    _wrong(recipe.check_param_count, None, config, capsys=capsys)
    _wrong(recipe.check_param_count, "many", config, capsys=capsys)


def test_cross_entropy(capsys):
    _ok(recipe.check_cross_entropy, kl.train.cross_entropy, capsys=capsys)
    unstable = lambda lg, y: -jnp.mean(jnp.log(jax.nn.softmax(lg))[jnp.arange(len(y)), y])
    _wrong(recipe.check_cross_entropy, unstable, capsys=capsys)
    _wrong(recipe.check_cross_entropy, lambda lg, y: jnp.float32(0.0), capsys=capsys)
    _wrong(recipe.check_cross_entropy, lambda lg: lg, capsys=capsys)  # wrong signature


def test_sgd_update(capsys):
    _ok(recipe.check_sgd_update,
        lambda p, g, lr: jax.tree.map(lambda a, b: a - lr * b, p, g), capsys=capsys)
    _wrong(recipe.check_sgd_update,
           lambda p, g, lr: jax.tree.map(lambda a, b: a + lr * b, p, g), capsys=capsys)
    _wrong(recipe.check_sgd_update, lambda p, g, lr: [1.0], capsys=capsys)


def test_clip_by_global_norm(capsys):
    _ok(apprenticeship.check_clip_by_global_norm,
        lambda g, m: optax.clip_by_global_norm(m).update(g, None)[0], capsys=capsys)
    _wrong(apprenticeship.check_clip_by_global_norm, lambda g, m: g, capsys=capsys)
    # clipping each leaf on its own is the classic mistake
    per_leaf = lambda g, m: jax.tree.map(
        lambda a: a * jnp.minimum(1.0, m / jnp.linalg.norm(a.ravel())), g)
    _wrong(apprenticeship.check_clip_by_global_norm, per_leaf, capsys=capsys)


def test_best_learning_rate(capsys):
    class FakeSweep:  # the check reads only these fields
        values = {"learning_rate": np.array([0.01, 0.1, 1.0, 10.0], np.float32)}
        val_loss = np.array([[0.5, 0.4], [0.4, 0.3], [0.3, 0.35], [0.2, 0.01]])
        diverged_at_step = np.array([-1, -1, -1, 6])

    _ok(apprenticeship.check_best_learning_rate, 0.1, FakeSweep, capsys=capsys)
    _wrong(apprenticeship.check_best_learning_rate, 10.0, FakeSweep, capsys=capsys)  # exploded
    _wrong(apprenticeship.check_best_learning_rate, None, FakeSweep, capsys=capsys)
    _wrong(apprenticeship.check_best_learning_rate, "fast", FakeSweep, capsys=capsys)  # not a number


@pytest.mark.parametrize("lr, right", [(0.5, True), (1e-3, False), (10.0, False)])
def test_learning_rate(lr, right, capsys):
    check = apprenticeship.check_learning_rate
    (_ok if right else _wrong)(check, lr, capsys=capsys)


def test_learning_rate_bad_input(capsys):
    _wrong(apprenticeship.check_learning_rate, None, capsys=capsys)
    _wrong(apprenticeship.check_learning_rate, -1.0, capsys=capsys)


def test_reexported():
    for name in ("check_analogy", "check_oven_converter", "check_param_count",
                 "check_cross_entropy", "check_sgd_update", "check_backprop", "check_learning_rate",
                 "check_clip_by_global_norm", "check_best_learning_rate"):
        assert callable(getattr(kl.checks, name))


def _notes_by_hand(x, y, knobs, *, relu_slope=True):
    """A reference chain rule for the tiny kitchen (numpy, float64)."""
    w2, b2 = np.asarray(knobs["w2"], float), np.asarray(knobs["b2"], float)
    z = float(knobs["w1"]) * x + float(knobs["b1"])
    h = max(z, 0.0)
    s = w2 * h + b2
    p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    dL_ds = p - np.eye(2)[y]
    slope = (1.0 if z > 0 else 0.0) if relu_slope else 1.0
    dL_dz = float(dL_ds @ w2) * slope
    return {"w1": dL_dz * x, "b1": dL_dz, "w2": dL_ds * h, "b2": dL_ds}


def test_backprop(capsys):
    _ok(recipe.check_backprop, _notes_by_hand, capsys=capsys)
    # a stub returning constant notes
    _wrong(recipe.check_backprop,
           lambda x, y, k: {"w1": 0.0, "b1": 0.0, "w2": [0.0, 0.0], "b2": [0.0, 0.0]},
           capsys=capsys)
    # forgetting that the ReLU passes nothing back when it is off
    assert recipe.check_backprop(
        lambda x, y, k: _notes_by_hand(x, y, k, relu_slope=False)) is False
    assert "slope there is 0" in capsys.readouterr().out
    # the head right, the hidden station's notes missing the factor x
    def no_x(x, y, k):
        notes = _notes_by_hand(x, y, k)
        return notes | {"w1": notes["b1"]}
    assert recipe.check_backprop(no_x) is False
    assert "× x for w1" in capsys.readouterr().out
    _wrong(recipe.check_backprop, lambda x, y, k: [0.0], capsys=capsys)  # not a dict
    _wrong(recipe.check_backprop, lambda x: x, capsys=capsys)  # wrong signature: no raise


def test_cross_entropy_needs_every_tray(capsys):
    # right on the first tray only (a constant): must not pass
    first = recipe._mean_cross_entropy(
        np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32) * 3.0,
        np.array([0, 2, 1, 1, 0, 2]))
    _wrong(recipe.check_cross_entropy, lambda lg, y: jnp.float32(first), capsys=capsys)
    # the reference equals optax
    logits = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 3, 2, 1, 1])
    want = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    assert recipe._mean_cross_entropy(logits, labels) == pytest.approx(float(want), rel=1e-6)


def test_sgd_update_needs_the_learning_rate(capsys):
    _wrong(recipe.check_sgd_update,
           lambda p, g, lr: jax.tree.map(lambda a, b: a - 0.1 * b, p, g), capsys=capsys)


def test_compiles_once(capsys):
    import functools

    @jax.jit
    def traced(knobs, notes, learning_rate):
        return knobs - learning_rate * notes

    @functools.partial(jax.jit, static_argnames="learning_rate")
    def baked(knobs, notes, learning_rate):
        return knobs - learning_rate * notes

    _ok(tour.check_compiles_once, traced, capsys=capsys)
    assert tour.check_compiles_once(baked) is False
    assert "4 compilations for 4 learning rates" in capsys.readouterr().out
    _wrong(tour.check_compiles_once, jax.jit(lambda k, n, lr: k), capsys=capsys)  # constant
    _wrong(tour.check_compiles_once, lambda k, n, lr: k - lr * n, capsys=capsys)  # not jitted
    _wrong(tour.check_compiles_once, jax.jit(lambda k: k), capsys=capsys)  # raises inside
    _wrong(tour.check_compiles_once, None, capsys=capsys)


def test_analogy_accepts_synonyms_and_spelling(capsys):
    _ok(tour.check_analogy, {"safety cap on the gas valve": "Gradient-Clipping",
                             "guest tasters who give no notes": "held-out set",
                             "pre-measured spice packets": "INT8 quantisation",
                             "the judge's notes on every step": "Back-propagation"},
        capsys=capsys)
    _wrong(tour.check_analogy, {"guest tasters who give no notes": "test set"}, capsys=capsys)
    _wrong(tour.check_analogy, {"the judge's notes on every step": "loss"}, capsys=capsys)
    _wrong(tour.check_analogy, {"unknown phrase": "loss"}, capsys=capsys)
