import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from kitchenlab import models
from kitchenlab.config import MLPConfig


def test_shapes_and_param_count():
    model = models.make_mlp(MLPConfig(width=16, depth=2), seed=0)
    assert model(jnp.ones((5, 8))).shape == (5, 2)
    assert models.count_params(model) == (8 * 16 + 16) + (16 * 16 + 16) + (16 * 2 + 2)


def test_depth_zero_is_logistic_regression():
    model = models.make_mlp(MLPConfig(depth=0), seed=0)
    assert models.count_params(model) == 8 * 2 + 2


def test_same_seed_same_knobs():
    a, b = models.make_mlp(seed=1), models.make_mlp(seed=1)
    for u, v in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))):
        np.testing.assert_array_equal(u, v)


def test_wrong_feature_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8\).*got shape \(3, 5\)"):
        models.make_mlp(seed=0)(jnp.ones((3, 5)))


def test_dropout_only_with_a_key_and_keeps_the_mean():
    model = models.make_mlp(MLPConfig(dropout=0.5), seed=0)
    x = jnp.ones((4, 8))
    np.testing.assert_array_equal(model(x), model(x))  # eval mode: deterministic
    assert not np.allclose(model(x, dropout_key=jax.random.key(0)), model(x))
    h = jnp.ones((20000,))
    dropped = models.dropout(h, 0.3, jax.random.key(1))
    assert abs(float((dropped == 0).mean()) - 0.3) < 0.02
    assert abs(float(dropped.mean()) - 1.0) < 0.03  # rescaled: expected value unchanged


def test_dropout_rate_can_be_traced():
    f = jax.jit(lambda r: models.dropout(jnp.ones(1000), r, jax.random.key(0)))
    assert float((f(0.0) == 0).mean()) == 0.0
    assert float((f(0.9) == 0).mean()) > 0.8
