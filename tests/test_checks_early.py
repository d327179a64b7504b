"""The exercise checks of notebooks 00-02: True for a right answer, False plus a hint (no raise)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import kitchenlab as kl
from kitchenlab.checks import apprenticeship, recipe, tour


def _ok(check, *args, capsys):
    assert check(*args) is True
    assert "well done" in capsys.readouterr().out


def _wrong(check, *args, capsys):
    assert check(*args) is False
    out = capsys.readouterr().out
    assert "not yet" in out and "✘" in out


def test_analogy(capsys):
    _ok(tour.check_analogy, {"safety cap on the gas valve": "Gradient clipping",
                             "pre-measured spice packets": "quantization"}, capsys=capsys)
    _wrong(tour.check_analogy, {"safety cap on the gas valve": "dropout"}, capsys=capsys)
    _wrong(tour.check_analogy, {"safety cap on the gas valve": None}, capsys=capsys)
    _wrong(tour.check_analogy, "gradient clipping", capsys=capsys)


def test_oven_converter(capsys):
    _ok(tour.check_oven_converter, jax.jit(lambda f: (f - 32) * 5 / 9), capsys=capsys)
    _wrong(tour.check_oven_converter, lambda f: (f - 32) * 5 / 9, capsys=capsys)  # not jitted
    _wrong(tour.check_oven_converter, jax.jit(lambda f: f - 32 * 5 / 9), capsys=capsys)
    _wrong(tour.check_oven_converter, jax.jit(lambda f: f.nope), capsys=capsys)  # raises inside
    _wrong(tour.check_oven_converter, 42, capsys=capsys)


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


@pytest.mark.parametrize("lr, right", [(0.5, True), (1e-3, False), (10.0, False)])
def test_learning_rate(lr, right, capsys):
    check = apprenticeship.check_learning_rate
    (_ok if right else _wrong)(check, lr, capsys=capsys)


def test_learning_rate_bad_input(capsys):
    _wrong(apprenticeship.check_learning_rate, None, capsys=capsys)
    _wrong(apprenticeship.check_learning_rate, -1.0, capsys=capsys)


def test_reexported():
    for name in ("check_analogy", "check_oven_converter", "check_param_count",
                 "check_cross_entropy", "check_sgd_update", "check_learning_rate",
                 "check_clip_by_global_norm", "check_best_learning_rate"):
        assert callable(getattr(kl.checks, name))
