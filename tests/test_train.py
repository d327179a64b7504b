import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from kitchenlab import data, models, train
from kitchenlab.config import MLPConfig, TrainConfig


@pytest.fixture(scope="module")
def kitchen():
    return data.kitchen(400, seed=0)


CFG = TrainConfig(epochs=8, batch_size=32, learning_rate=1e-2)


def test_cross_entropy_matches_the_formula():
    logits = jnp.array([[2.0, -1.0], [0.5, 0.5]])
    y = jnp.array([0, 1])
    by_hand = -np.mean([np.log(np.exp(2) / (np.exp(2) + np.exp(-1))), np.log(0.5)])
    np.testing.assert_allclose(train.cross_entropy(logits, y), by_hand, rtol=1e-6)
    assert float(train.accuracy(logits, y)) == 0.5


@pytest.mark.parametrize("name,reference", [
    ("sgd", lambda lr: optax.sgd(lr)),
    ("momentum", lambda lr: optax.sgd(lr, momentum=0.9)),
    ("adam", lambda lr: optax.adam(lr)),
    ("adamw", lambda lr: optax.adamw(lr, weight_decay=1e-4)),
])
def test_composed_optimizers_equal_optax(name, reference):
    hp = train.hyper(TrainConfig(optimizer=name, learning_rate=0.1))
    ours, ref = train.make_optimizer(name, hp), reference(0.1)
    params = {"kernel": jnp.array([1.0, -2.0, 3.0])}  # a kernel: weight decay applies
    s1, s2 = ours.init(params), ref.init(params)
    for g in ([0.5, 0.1, -0.3], [0.2, -0.4, 0.1], [1.0, 1.0, 1.0]):
        grads = {"kernel": jnp.array(g)}
        u1, s1 = ours.update(grads, s1, params)
        u2, s2 = ref.update(grads, s2, params)
        np.testing.assert_allclose(u1["kernel"], u2["kernel"], rtol=1e-5, atol=1e-7)


def test_weight_decay_spares_the_biases():
    hp = train.hyper(TrainConfig(optimizer="sgd", learning_rate=1.0, weight_decay=0.5))
    tx = train.make_optimizer("sgd", hp)
    params = {"kernel": jnp.ones(2), "bias": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], [-0.5, -0.5])
    np.testing.assert_allclose(updates["bias"], [0.0, 0.0])


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw"])
def test_fused_switchable_optimizer_equals_the_named_one(name):
    hp = train.hyper(TrainConfig(optimizer=name, learning_rate=0.1, clip_norm=1.0))
    ours, ref = train.make_fused_optimizer(hp), train.make_optimizer(name, hp)
    params = {"kernel": jnp.array([1.0, -2.0, 3.0]), "bias": jnp.array([0.5])}
    s1, s2 = ours.init(params), ref.init(params)
    for g in ([0.5, 0.1, -0.3], [0.2, -0.4, 0.1], [3.0, 1.0, 1.0]):
        grads = {"kernel": jnp.array(g), "bias": jnp.array([0.1])}
        u1, s1 = ours.update(grads, s1, params)
        u2, s2 = ref.update(grads, s2, params)
        for name in params:
            np.testing.assert_allclose(u1[name], u2[name], rtol=1e-6, atol=1e-8)
        params = optax.apply_updates(params, u1)


def test_clipping_caps_the_global_norm():
    hp = train.hyper(TrainConfig(optimizer="sgd", learning_rate=1.0, clip_norm=1.0))
    tx = train.make_optimizer("sgd", hp)
    params = {"w": jnp.zeros(2)}
    updates, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup_cosine", "exponential"])
def test_schedules(schedule):
    cfg = TrainConfig(epochs=10, schedule=schedule, warmup_epochs=2)
    lr = train.lr_schedule(cfg, 0.1, steps_per_epoch=10)
    first, last = float(lr(0)), float(lr(99))
    if schedule == "constant":
        assert first == last == pytest.approx(0.1)
    elif schedule == "warmup_cosine":
        assert first == 0.0 and float(lr(20)) == pytest.approx(0.1) and last < 0.01
    else:
        assert first == pytest.approx(0.1) and last < 0.01


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_learns_and_fused_equals_loop(kitchen, optimizer):
    cfg = CFG.replace(optimizer=optimizer, learning_rate=1e-2 if optimizer == "adam" else 0.3)
    a, b = models.make_mlp(MLPConfig.tiny(), seed=0), models.make_mlp(MLPConfig.tiny(), seed=0)
    ha = train.fit(a, kitchen.train, kitchen.val, cfg, fused=True)
    seen = []
    hb = train.fit(b, kitchen.train, kitchen.val, cfg, fused=False,
                   on_epoch=lambda e, m: seen.append(e))
    assert seen == list(range(CFG.epochs))
    assert ha.epochs == CFG.epochs and not ha.diverged and ha.message == "trained 8 epochs"
    assert ha.train_loss[-1] < ha.train_loss[0]
    assert ha.val_accuracy[-1] > 0.7
    np.testing.assert_allclose(ha.train_loss, hb.train_loss, rtol=1e-4)
    np.testing.assert_allclose(ha.val_accuracy, hb.val_accuracy, atol=1e-6)
    for u, v in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)


def test_fit_is_deterministic(kitchen):
    runs = [train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                      CFG.replace(dropout=0.3)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].train_loss, runs[1].train_loss)


def test_divergence_is_reported_not_raised(kitchen):
    model = models.make_mlp(MLPConfig.tiny(), seed=0)
    before = [np.asarray(p) for p in jax.tree.leaves(nnx.state(model))]
    h = train.fit(model, kitchen.train, kitchen.val,
                  CFG.replace(optimizer="sgd", learning_rate=1e4))
    assert h.diverged and h.diverged_at_step >= 1
    assert "exploded" in h.message and f"step {h.diverged_at_step}" in h.message
    assert h.epochs == (h.diverged_at_step - 1) // (len(kitchen.train) // CFG.batch_size)
    after = jax.tree.leaves(nnx.state(model))
    assert all(np.all(np.isfinite(p)) for p in after)  # knobs kept their last finite values
    if h.epochs == 0:
        for u, v in zip(before, after):
            np.testing.assert_array_equal(u, v)


def test_unfused_divergence_matches(kitchen):
    cfg = CFG.replace(optimizer="sgd", learning_rate=1e4)
    h1 = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val, cfg)
    h2 = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val, cfg,
                   fused=False)
    assert h1.diverged_at_step == h2.diverged_at_step


def test_clipping_rescues_a_bold_rate(kitchen):
    cfg = CFG.replace(optimizer="sgd", learning_rate=30.0)
    wild = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val, cfg)
    capped = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                       cfg.replace(clip_norm=0.01))
    assert wild.diverged and not capped.diverged


def test_early_stopping_restores_best_weights(kitchen):
    from kitchenlab import evaluate

    model = models.make_mlp(MLPConfig(width=64, depth=2), seed=0)
    cfg = CFG.replace(epochs=60, learning_rate=3e-2, patience=3)
    h = train.fit(model, kitchen.train, kitchen.val, cfg)
    assert h.stopped_epoch is not None and h.stopped_epoch < 59
    assert h.epochs == h.stopped_epoch + 1
    assert h.best_epoch == int(np.argmin(h.val_loss)) == h.stopped_epoch - 3
    assert evaluate.evaluate(model, kitchen.val)["loss"] == pytest.approx(
        float(h.val_loss[h.best_epoch]), rel=1e-4)
    assert "early stop" in h.message


def test_sweep_equals_separate_runs(kitchen):
    rates = [1e-3, 1e-2, 1e-1]
    s = train.sweep(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val, CFG,
                    learning_rate=rates)
    assert s.val_loss.shape == (3, CFG.epochs)
    for i, lr in enumerate(rates):
        h = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                      CFG.replace(learning_rate=lr))
        np.testing.assert_allclose(s.val_loss[i], h.val_loss, rtol=2e-4, atol=1e-5)


def test_sweep_flags_exploded_runs(kitchen):
    s = train.sweep(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                    CFG.replace(optimizer="sgd"), learning_rate=[1e-2, 1e2, 1e-2])
    assert s.diverged_at_step[0] == -1 and s.diverged_at_step[1] >= 1


@pytest.mark.parametrize("axes,match", [
    ({"learning_rate": [1e-3, -1.0]}, "learning_rate values must be > 0"),
    ({"learning_rate": [1e-3, math.nan]}, "must be finite"),
    ({"dropout": [0.1, 1.0]}, r"dropout values must be in \[0, 1\)"),
    ({"weight_decay": [-1e-3]}, "weight_decay values must be >= 0"),
    ({"learning_rate": [1e-3], "dropout": [0.1, 0.2]}, "equal lengths"),
    ({"temperature": [1.0]}, "unknown sweep axis"),
    ({}, "at least one axis"),
    ({"learning_rate": []}, "at least one value"),
])
def test_sweep_bad_axes(kitchen, axes, match):
    with pytest.raises(ValueError, match=match):
        train.sweep(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                    CFG, **axes)


def test_fit_bad_inputs(kitchen):
    model = models.make_mlp(MLPConfig.tiny(), seed=0)
    with pytest.raises(ValueError, match="batch_size .* larger than the dataset"):
        train.fit(model, kitchen.train.take(slice(0, 10)), kitchen.val, CFG)
    with pytest.raises(ValueError, match="train is empty"):
        train.fit(model, kitchen.train.take(slice(0, 0)), kitchen.val, CFG)
    with pytest.raises(ValueError, match="val is empty"):
        train.fit(model, kitchen.train, kitchen.val.take(slice(0, 0)), CFG)
    with pytest.raises(ValueError, match="patience .* needs a validation set"):
        train.fit(model, kitchen.train, None, CFG.replace(patience=2))
    bad = data.CakeData(kitchen.train.x[:, :5], kitchen.train.y)
    with pytest.raises(ValueError, match="train.x has 5 features per cake, but the model expects 8"):
        train.fit(model, bad, kitchen.val, CFG)
    x = kitchen.train.x.copy()
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match="train.x contains 1 non-finite"):
        train.fit(model, data.CakeData(x, kitchen.train.y), kitchen.val, CFG)
    with pytest.raises(ValueError, match=r"train.y labels must be in \[0, 2\)"):
        train.fit(model, data.CakeData(kitchen.train.x, kitchen.train.y + 1), kitchen.val, CFG)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train.fit(model, kitchen.train, kitchen.val, {"epochs": 3})


def test_nnx_train_step_decreases_loss(kitchen):
    model = models.make_mlp(MLPConfig.tiny(), seed=0)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    step = nnx.jit(train.nnx_train_step)
    x, y = jnp.asarray(kitchen.train.x[:64]), jnp.asarray(kitchen.train.y[:64])
    first = float(step(model, optimizer, x, y))
    for _ in range(20):
        last = float(step(model, optimizer, x, y))
    assert last < first


def test_l2_penalty_and_decoupled_decay_differ(kitchen):
    base = CFG.replace(optimizer="adam", learning_rate=1e-2)
    l2 = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                   base.replace(l2=1e-2))
    wd = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), kitchen.train, kitchen.val,
                   base.replace(weight_decay=1e-2))
    assert not np.allclose(l2.train_loss, wd.train_loss)


def test_sweep_spreads_runs_over_two_cpu_devices():
    """With two XLA CPU devices (as kl.setup() makes them) the runs are sharded, same results."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import jax, numpy as np
        jax.config.update("jax_num_cpu_devices", 2)
        from kitchenlab import data, models, train
        from kitchenlab.config import MLPConfig, TrainConfig
        k = data.kitchen(400, seed=0)
        cfg = TrainConfig(epochs=4, batch_size=32)
        rates = [1e-3, 3e-3, 1e-2]  # 3 runs: padded to 4, two per device
        hp, k_pad = train.shard_runs(train.hyper(cfg)._replace(
            learning_rate=jax.numpy.asarray(rates)), 3)
        assert k_pad == 4 and len(hp.learning_rate.sharding.device_set) == 2
        assert hp.momentum.ndim == 0  # shared settings stay scalars
        s = train.sweep(models.make_mlp(MLPConfig.tiny(), seed=0), k.train, k.val, cfg,
                        learning_rate=rates)
        for i, lr in enumerate(rates):
            h = train.fit(models.make_mlp(MLPConfig.tiny(), seed=0), k.train, k.val,
                          cfg.replace(learning_rate=lr))
            np.testing.assert_allclose(s.val_loss[i], h.val_loss, rtol=1e-4, atol=1e-5)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
