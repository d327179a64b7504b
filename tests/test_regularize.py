"""kl.regularize: masked widths and weighted data sizes are exact, vmapped = one by one,
bad settings give clear errors; plus the regularization options of config.py / train.py."""

import jax
import numpy as np
import pytest
from flax import nnx

import kitchenlab as kl
from kitchenlab import data
from kitchenlab import regularize as rg
from kitchenlab.config import MLPConfig, TrainConfig

CFG = rg.RunConfig(max_width=16, epochs=20, record_every=5)
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


@pytest.fixture(scope="module")
def pantry():
    return data.pantry(n_train=64, n_val=48, n_test=16, noise=0.1, seed=0)


def _same_curves(a, b, atol=1e-5):
    for name in CURVES:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=atol, err_msg=name)


def test_masked_width_equals_a_real_narrow_mlp(pantry):
    """Width 8 inside a 16-wide masked MLP == a real 8-wide MLP started from the same knobs."""
    r = rg._prepare(pantry, CFG, None, {"width": 8})
    p16, w, y, hp1, seed = jax.tree.map(lambda a: a[0], (r.params, r.weights, r.labels, r.hp, r.seed))
    _, _, rec16 = rg._run_one(r.graphdef, CFG, p16, 8.0, w, y, hp1, seed, *r.tables)
    start = rg.mask_width(p16, 8, 16)  # what the masked run starts from
    cfg8 = rg.RunConfig(max_width=8, epochs=20, record_every=5)
    g8, p8 = nnx.split(kl.models.make_mlp(MLPConfig(width=8, depth=2)))
    sub = jax.tree.map(lambda small, big: big[tuple(slice(0, s) for s in small.shape)], p8, start)
    _, _, rec8 = rg._run_one(g8, cfg8, sub, 8.0, w, y, hp1, seed, *r.tables)
    np.testing.assert_allclose(np.asarray(rec16), np.asarray(rec8), atol=1e-5)


def test_switched_off_units_stay_exactly_zero(pantry):
    r = rg.run_many(pantry, CFG, width=[3, 16], dropout=0.5, weight_decay=0.5, l2=0.01)
    params = jax.tree.map(lambda a: np.asarray(a[0]), r.params)
    assert np.all(params["hidden"][0]["kernel"][:, 3:] == 0)
    assert np.all(params["hidden"][0]["bias"][3:] == 0)
    assert np.all(params["hidden"][1]["kernel"][3:, :] == 0)
    assert np.all(params["hidden"][1]["kernel"][:, 3:] == 0)
    assert np.all(params["head"]["kernel"][3:, :] == 0)
    assert np.any(params["hidden"][1]["kernel"][:3, :3] != 0)
    assert r.kernels(0).size == 8 * 3 + 3 * 3 + 3 * 2
    assert r.kernels(1).size == 8 * 16 + 16 * 16 + 16 * 2


def test_example_weights_equal_training_on_the_first_rows(pantry):
    padded = rg.run_one(pantry, CFG, n_train=40)
    cut = data.Pantry(train=pantry.train.take(slice(0, 40)), val=pantry.val, test=pantry.test)
    _same_curves(padded, rg.run_one(cut, CFG))


def test_run_many_rows_equal_run_one(pantry):
    cells = rg.grid(dropout=[0.0, 0.5], weight_decay=[0.0, 1.0])
    many = rg.run_many(pantry, CFG, **cells)
    assert len(many) == 4 and many.train_loss.shape == (4, CFG.epochs // CFG.record_every + 1)
    for k in (0, 3):
        one = rg.run_one(pantry, CFG, dropout=cells["dropout"][k],
                         weight_decay=cells["weight_decay"][k])
        for name in CURVES:
            np.testing.assert_allclose(getattr(one, name)[0], getattr(many, name)[k], atol=1e-4)
    assert many.index(dropout=0.5, weight_decay=1.0) == 3


def test_runs_learn_and_report(pantry):
    r = rg.run_one(pantry, CFG, learning_rate=1e-2)
    assert r.epochs[0] == 0 and r.epochs[-1] == CFG.epochs
    assert r.train_loss[0, -1] < r.train_loss[0, 0]
    assert np.isfinite(r.gap).all() and r.best_epoch.shape == (1,)


def test_labels_per_run_and_flip_labels(pantry):
    y = pantry.train.y
    flipped = data.flip_labels(y, 0.25, seed=1)
    assert (flipped != y).mean() == pytest.approx(0.25, abs=1 / len(y))
    r = rg.run_many(pantry, CFG, width=[16, 16], labels=np.stack([y, flipped]))
    assert not np.allclose(r.train_loss[0], r.train_loss[1])


def test_seed_axis_rows_equal_single_seeded_runs(pantry):
    """A vmapped seeds axis gives each run its own start, dropout draws and cakes."""
    many = rg.run_many(pantry, CFG, seed=[0, 3, 3], data_seed=[0, 0, 5], n_train=40,
                       dropout=0.3)
    for k, (s, d) in enumerate([(0, 0), (3, 0), (3, 5)]):
        one = rg.run_one(pantry, CFG, seed=s, data_seed=d, n_train=40, dropout=0.3)
        for name in CURVES:
            np.testing.assert_allclose(getattr(one, name)[0], getattr(many, name)[k],
                                       atol=1e-4, err_msg=f"{name}, run {k}")
    assert not np.allclose(many.train_loss[0], many.train_loss[1])  # another start
    assert not np.allclose(many.train_loss[1], many.train_loss[2])  # other cakes
    # seed s starts from make_mlp(seed=s): the untrained guests' loss says so
    model = kl.models.make_mlp(MLPConfig(width=16, depth=2), seed=3)
    untrained = kl.evaluate.evaluate(model, pantry.val)["loss"]
    assert many.val_loss[1, 0] == pytest.approx(untrained, abs=1e-5)


def test_data_seed_picks_nested_random_subsets(pantry):
    """data_seed s > 0: a seeded shuffle; n cakes = the first n of it (nested, distinct)."""
    np.testing.assert_array_equal(rg.data_order(0, 64), np.arange(64))
    a, b = rg.data_order(1, 64), rg.data_order(2, 64)
    assert sorted(a) == list(range(64)) and not np.array_equal(a, b)
    r = rg._prepare(pantry, CFG, None, {"n_train": [10, 30, 30], "data_seed": [1, 1, 2]})
    w = np.asarray(r.weights)
    assert w.sum(1).tolist() == [10, 30, 30]
    assert np.all(w[1] >= w[0])  # the 10 cakes of data seed 1 are among its 30
    assert not np.array_equal(w[1], w[2])
    # weighting the chosen cakes equals training on exactly those cakes
    chosen = np.flatnonzero(w[1])
    cut = data.Pantry(train=pantry.train.take(chosen), val=pantry.val, test=pantry.test)
    padded = rg.run_one(pantry, CFG, n_train=30, data_seed=1)
    _same_curves(padded, rg.run_one(cut, CFG))


def test_grad_rms_is_adams_bias_corrected_second_moment(pantry):
    """Runs.grad_rms equals sqrt(v-hat) of an optax.adam run on the same notes."""
    import optax

    cfg = rg.RunConfig(max_width=16, epochs=10, record_every=5)
    r = rg.run_one(pantry, cfg, learning_rate=1e-2)
    graphdef, params = rg._initial(cfg)
    x, y = jax.numpy.asarray(pantry.train.x), jax.numpy.asarray(pantry.train.y)
    tx = optax.adam(1e-2)
    state = tx.init(params)
    for _ in range(cfg.epochs):
        grads = jax.grad(lambda p: kl.train.cross_entropy(nnx.merge(graphdef, p)(x), y))(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    nu = state[0].nu
    want = jax.tree.map(lambda v: np.sqrt(np.asarray(v) / (1 - 0.999 ** cfg.epochs)), nu)
    got = jax.tree.map(lambda a: np.asarray(a[0]), r.grad_rms)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=1e-7)
    assert r.kernels(0, of="grad_rms").shape == r.kernels(0).shape
    with pytest.raises(ValueError, match="of must be 'params' or 'grad_rms'"):
        r.kernels(0, of="momentum")


def test_pad_to_runs_copies_and_drops_them(pantry):
    plain = rg.run_many(pantry, CFG, dropout=[0.0, 0.3])
    padded = rg.run_many(pantry, CFG, dropout=[0.0, 0.3], pad_to=5)
    assert len(padded) == 2
    _same_curves(plain, padded)
    with pytest.raises(ValueError, match="pad_to must be an int >= the number of runs"):
        rg.run_many(pantry, CFG, dropout=[0.0, 0.3], pad_to=1)


def test_mean_se():
    m, se = rg.mean_se(np.array([[1.0, 2.0, 3.0]]))
    assert m.tolist() == [2.0] and se[0] == pytest.approx(1 / np.sqrt(3))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        rg.mean_se(np.array([1.0]))


@pytest.mark.parametrize("settings,match", [
    ({"dropout": 1.0}, "dropout values must be in \\[0, 1\\)"),
    ({"dropout": -0.1}, "dropout"),
    ({"weight_decay": -1e-3}, "weight_decay values must be >= 0"),
    ({"l2": -1.0}, "l2 values must be >= 0"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"width": 0}, "width"), ({"width": 17}, "width"), ({"width": 2.5}, "width"),
    ({"n_train": 0}, "n_train"), ({"n_train": 65}, "n_train"),
    ({"width": [2, 4], "dropout": [0.1, 0.2, 0.3]}, "equal lengths"),
    ({"momentum": 0.5}, "unknown setting"),
    ({"dropout": []}, "at least one value"),
    ({"dropout": float("nan")}, "finite"),
    ({"seed": -1}, "seed values must be whole numbers >= 0"),
    ({"data_seed": 1.5}, "data_seed values must be whole numbers >= 0"),
])
def test_bad_settings_raise_clear_errors(pantry, settings, match):
    with pytest.raises(ValueError, match=match):
        rg.run_many(pantry, CFG, **settings)


def test_bad_tables_and_configs(pantry):
    with pytest.raises(ValueError, match="n_val must be an int >= 1"):
        data.pantry(n_train=64, n_val=0)
    with pytest.raises(ValueError, match="validation split has 0 cakes"):
        data.Pantry(train=pantry.train, val=pantry.val.take(slice(0, 0)), test=pantry.test)
    with pytest.raises(ValueError, match="labels must be 0/1"):
        rg.run_many(pantry, CFG, labels=np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="record_every"):
        rg.RunConfig(epochs=10, record_every=3)
    with pytest.raises(TypeError, match="pantry must be a Pantry"):
        rg.run_one(pantry.train, CFG)
    with pytest.raises(ValueError, match="run_one takes single values"):
        rg.run_one(pantry, CFG, dropout=[0.1, 0.2])
    with pytest.raises(ValueError, match="fraction"):
        data.flip_labels(pantry.train.y, 1.5)


# ---------------------------------------------------------------- config.py / train.py options
@pytest.mark.parametrize("make,match", [
    (lambda: MLPConfig(dropout=1.0), "dropout must be < 1.0"),
    (lambda: MLPConfig(dropout=-0.2), "dropout must be >= 0.0"),
    (lambda: TrainConfig(dropout=1.0), "dropout must be < 1.0"),
    (lambda: TrainConfig(weight_decay=-1e-4), "weight_decay must be >= 0.0"),
    (lambda: TrainConfig(l2=-1.0), "l2 must be >= 0.0"),
    (lambda: TrainConfig(patience=0), "patience must be >= 1"),
    (lambda: TrainConfig(patience=2.5), "patience must be an int"),
])
def test_regularization_options_are_validated(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.fixture(scope="module")
def kitchen():
    return kl.data.kitchen(300, seed=0)


def test_fit_rejects_an_empty_validation_split(kitchen):
    empty = kl.data.kitchen(300, seed=0, val_fraction=0.0)
    model = kl.models.make_mlp(MLPConfig(width=8, depth=1))
    with pytest.raises(ValueError, match="validation split has 0 cakes"):
        kl.train.fit(model, empty.train, empty.val, TrainConfig(epochs=2))
    with pytest.raises(ValueError, match="patience .* needs a validation set"):
        kl.train.fit(model, kitchen.train, None, TrainConfig(epochs=2, patience=2))


def test_fit_early_stopping_restores_the_best_weights(kitchen):
    small = kitchen.train.take(slice(0, 60))
    model = kl.models.make_mlp(MLPConfig(width=32, depth=2))
    config = TrainConfig(learning_rate=1e-2, epochs=60, batch_size=20, patience=5)
    history = kl.train.fit(model, small, kitchen.val, config)
    best = history.best_epoch
    assert best == int(np.argmin(history.val_loss))
    assert history.stopped_epoch == best + config.patience
    assert history.epochs == history.stopped_epoch + 1 < config.epochs
    restored = kl.evaluate.evaluate(model, kitchen.val)["loss"]
    assert restored == pytest.approx(float(history.val_loss[best]), abs=1e-4)
    assert "early stop" in history.message


def test_fit_records_the_pure_validation_loss_with_l2(kitchen):
    model = kl.models.make_mlp(MLPConfig(width=16, depth=1))
    history = kl.train.fit(model, kitchen.train, kitchen.val,
                           TrainConfig(epochs=3, batch_size=32, l2=0.1))
    pure = kl.evaluate.evaluate(model, kitchen.val)["loss"]
    assert float(history.val_loss[-1]) == pytest.approx(pure, abs=1e-4)


def test_wrong_verdict_confidence_matches_a_forward_pass(pantry):
    """The last tasting's mean confidence of the guests' wrong verdicts, recomputed from the
    final knobs with a plain forward pass and jax.nn.softmax."""
    r = rg.run_one(pantry, CFG, learning_rate=1e-2)
    assert r.val_wrong_confidence.shape == r.val_loss.shape
    logits = np.asarray(rg.trained_model(r, 0, CFG)(jax.numpy.asarray(pantry.val.x)))
    prob = np.asarray(jax.nn.softmax(logits, -1))
    wrong = logits.argmax(-1) != pantry.val.y
    assert wrong.any() and not wrong.all()
    want = prob.max(-1)[wrong].mean()
    assert r.val_wrong_confidence[0, -1] == pytest.approx(want, abs=1e-5)
    assert r.val_accuracy[0, -1] == pytest.approx(1 - wrong.mean(), abs=1e-6)
