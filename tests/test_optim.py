import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kitchenlab import optim
from kitchenlab.config import TrainConfig


@pytest.mark.parametrize("name,reference", [
    ("sgd", lambda lr: optax.sgd(lr)),
    ("momentum", lambda lr: optax.sgd(lr, momentum=0.9)),
    ("adam", lambda lr: optax.adam(lr)),
    ("adamw", lambda lr: optax.adamw(lr, weight_decay=1e-4)),
])
def test_composed_optimizers_equal_optax(name, reference):
    hp = optim.hyper(TrainConfig(optimizer=name, learning_rate=0.1))
    ours, ref = optim.make_optimizer(name, hp), reference(0.1)
    params = {"kernel": jnp.array([[1.0, -2.0, 3.0]])}  # 2-D, a kernel: weight decay applies
    s1, s2 = ours.init(params), ref.init(params)
    for g in ([0.5, 0.1, -0.3], [0.2, -0.4, 0.1], [1.0, 1.0, 1.0]):
        grads = {"kernel": jnp.array([g])}
        u1, s1 = ours.update(grads, s1, params)
        u2, s2 = ref.update(grads, s2, params)
        np.testing.assert_allclose(u1["kernel"], u2["kernel"], rtol=1e-5, atol=1e-7)


def test_weight_decay_spares_the_biases():
    hp = optim.hyper(TrainConfig(optimizer="sgd", learning_rate=1.0, weight_decay=0.5))
    tx = optim.make_optimizer("sgd", hp)
    params = {"kernel": jnp.ones((2, 1)), "bias": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], [[-0.5], [-0.5]])
    np.testing.assert_allclose(updates["bias"], [0.0, 0.0])


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
def test_fused_switchable_optimizer_equals_the_named_one(name):
    hp = optim.hyper(TrainConfig(optimizer=name, learning_rate=0.1, clip_norm=1.0))
    ours, ref = optim.make_fused_optimizer(hp), optim.make_optimizer(name, hp)
    params = {"kernel": jnp.array([[1.0, -2.0, 3.0]]), "bias": jnp.array([0.5])}
    s1, s2 = ours.init(params), ref.init(params)
    for g in ([0.5, 0.1, -0.3], [0.2, -0.4, 0.1], [3.0, 1.0, 1.0]):
        grads = {"kernel": jnp.array([g]), "bias": jnp.array([0.1])}
        u1, s1 = ours.update(grads, s1, params)
        u2, s2 = ref.update(grads, s2, params)
        for name in params:
            np.testing.assert_allclose(u1[name], u2[name], rtol=1e-6, atol=1e-8)
        params = optax.apply_updates(params, u1)


def test_clipping_caps_the_global_norm():
    hp = optim.hyper(TrainConfig(optimizer="sgd", learning_rate=1.0, clip_norm=1.0))
    tx = optim.make_optimizer("sgd", hp)
    params = {"w": jnp.zeros(2)}
    updates, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup_cosine", "exponential"])
def test_schedules(schedule):
    cfg = TrainConfig(epochs=10, schedule=schedule, warmup_epochs=2)
    lr = optim.lr_schedule(cfg, 0.1, steps_per_epoch=10)
    first, last = float(lr(0)), float(lr(99))
    if schedule == "constant":
        assert first == last == pytest.approx(0.1)
    elif schedule == "warmup_cosine":
        assert first == 0.0 and float(lr(20)) == pytest.approx(0.1) and last < 0.01
    else:
        assert first == pytest.approx(0.1) and last < 0.01


def test_decay_and_l2_choose_kernels_by_structure_not_name():
    """Any >= 2-D weight is fined (whatever it is called); 1-D offsets and scales go free."""
    params = {"attn": {"w_qkv": jnp.ones((2, 3)), "scale": jnp.ones(3)},
              "embed": jnp.ones((4, 2)), "kernel_bias": jnp.ones(2)}
    assert optim.kernels_only(params) == {"attn": {"w_qkv": True, "scale": False},
                                          "embed": True, "kernel_bias": False}
    assert float(optim.l2_penalty(params)) == pytest.approx(0.5 * (6 + 8))


def test_plain_sgd_l2_in_the_loss_equals_decoupled_weight_decay():
    """Exact reference: with plain SGD, L2 lambda/2 |w|^2 in the loss and decoupled decay
    lambda give the same step, -lr (g + lambda w) (they differ under Adam: notebook 04)."""
    lam, lr = 0.3, 0.05
    params = {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "bias": jnp.array([0.7, -0.2])}
    data_grads = {"kernel": jnp.array([[0.1, 0.2], [-0.3, 0.4]]), "bias": jnp.array([0.5, 0.1])}
    hp_l2 = optim.hyper(TrainConfig(optimizer="sgd", learning_rate=lr, l2=lam))
    hp_wd = optim.hyper(TrainConfig(optimizer="sgd", learning_rate=lr, weight_decay=lam))
    l2_grads = jax.tree.map(jnp.add, data_grads, jax.grad(
        lambda p: lam * optim.l2_penalty(p))(params))
    tx_l2, tx_wd = optim.make_optimizer("sgd", hp_l2), optim.make_optimizer("sgd", hp_wd)
    u_l2, _ = tx_l2.update(l2_grads, tx_l2.init(params), params)
    u_wd, _ = tx_wd.update(data_grads, tx_wd.init(params), params)
    for name in params:
        np.testing.assert_allclose(u_l2[name], u_wd[name], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(u_wd["kernel"], -lr * (data_grads["kernel"] + lam * params["kernel"]),
                               rtol=1e-6)
