"""kl.finetune: the fused night shift equals a plain optax loop; frozen layers, replay,
the laminated parent untouched; the promotion gate; bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import kitchenlab as kl
from kitchenlab import finetune as ft

CONFIG = ft.FinetuneConfig(learning_rate=3e-3, epochs=3, batch_size=16, replay_batch=8)


@pytest.fixture(scope="module")
def laminated(tmp_path_factory):
    kitchen = kl.data.kitchen(400, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig(width=8, depth=2), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val, kl.config.TrainConfig.tiny())
    folder = kl.serve.laminate(model, tmp_path_factory.mktemp("shelf") / "chef",
                               normalizer=kitchen.normalizer)
    return folder, kitchen


@pytest.fixture(scope="module")
def parent(laminated):
    return ft.load_parent(laminated[0])


@pytest.fixture(scope="module")
def tables(parent, laminated):
    _, kitchen = laminated
    reviews = parent.measure(kl.data.drifted_cakes(100, "fan_oven", 1.0, seed=11))
    checks = {"old guests": parent.measure(kl.data.make_cakes(200, seed=101)),
              "new guests": parent.measure(kl.data.drifted_cakes(200, "fan_oven", 1.0, seed=102))}
    return reviews, kitchen.train, checks


def _files(folder):
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                                p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the reference: a plain loop
def _reference(model, reviews, old, config, *, seed, replay, freeze):
    """The night shift written as a readable optax loop with the same batches."""
    graphdef, params = nnx.split(model)
    if freeze:
        tx = optax.multi_transform({"tune": optax.adam(config.learning_rate),
                                    "frozen": optax.set_to_zero()},
                                   ft.frozen_labels(params, freeze))
    else:
        tx = optax.adam(config.learning_rate)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y, x_old, y_old):  # jitted only to keep the test fast
        grads = jax.grad(ft.replay_loss)(params, graphdef, x, y, x_old, y_old, replay)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    order, old_order = ft.draws(seed, len(reviews), len(old), config)  # the same cakes
    for epoch in range(config.epochs):
        for idx, old_idx in zip(order[epoch], old_order[epoch]):
            params, opt_state = step(params, opt_state, reviews.x[idx], reviews.y[idx],
                                     old.x[old_idx], old.y[old_idx])
    return params


def test_draws_shuffle_every_epoch_and_pick_old_cakes_in_range():
    order, old = ft.draws(4, 100, 37, CONFIG)
    assert order.shape == (CONFIG.epochs, 100 // 16, 16) and old.shape == (CONFIG.epochs, 6, 8)
    for epoch in order:
        assert len(np.unique(epoch)) == epoch.size  # each review at most once per epoch
    assert not np.array_equal(order[0], order[1])
    assert old.min() >= 0 and old.max() < 37
    np.testing.assert_array_equal(order, ft.draws(4, 100, 37, CONFIG)[0])


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


@pytest.mark.parametrize("replay, freeze", [(0.0, 0), (1.0, 0), (1.0, 1), (0.0, 2)])
def test_night_shift_equals_a_plain_optax_loop(parent, tables, replay, freeze):
    reviews, old, checks = tables
    shift = ft.night_shift(parent.model, reviews, replay=old, config=CONFIG, seeds=(3,),
                           replay_on=(replay,), freeze=(freeze,), checks=checks)
    got = nnx.split(shift.model(0))[1]
    want = _reference(parent.model, reviews, old, CONFIG, seed=3, replay=replay, freeze=freeze)
    for a, b in zip(_leaves(got), _leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_frozen_layers_stay_bit_for_bit_and_the_rest_moves(parent, tables):
    reviews, old, checks = tables
    shift = ft.night_shift(parent.model, reviews, replay=old, config=CONFIG, seeds=(0,),
                           freeze=(0, 1, 2), checks=checks)
    for k, run in enumerate(shift.runs):
        child = shift.model(k)
        for i in range(parent.model.config.depth):
            same = np.array_equal(child.hidden[i].kernel[...], parent.model.hidden[i].kernel[...])
            assert same == (i < run["freeze"]), (run, i)
        assert not np.array_equal(child.head.kernel[...], parent.model.head.kernel[...])


def test_freeze_mask_equals_multi_transform_labels(parent):
    _, params = nnx.split(parent.model)
    for freeze in range(parent.model.config.depth + 1):
        labels = jax.tree.leaves(ft.frozen_labels(params, freeze))
        mask = _leaves(ft.freeze_mask(params, freeze))
        assert [m == 0 for m in mask] == [l == "frozen" for l in labels]
    index = jax.tree.leaves(ft.layer_index(params))
    assert sorted(set(index)) == [0, 1, 2]  # two hidden stations and the head


def test_runs_in_one_call_equal_runs_alone(parent, tables):
    reviews, old, checks = tables
    many = ft.night_shift(parent.model, reviews, replay=old, config=CONFIG, checks=checks,
                          seeds=(0, 5), replay_on=(0.0, 1.0))
    assert [(r["seed"], r["replay"]) for r in many.runs] == [(0, 0.0), (5, 0.0), (0, 1.0), (5, 1.0)]
    k = int(many.select(seed=5, replay=1.0)[0])
    alone = ft.night_shift(parent.model, reviews, replay=old, config=CONFIG, checks=checks,
                           seeds=(5,), replay_on=(1.0,))
    for a, b in zip(_leaves(nnx.split(many.model(k))[1]), _leaves(nnx.split(alone.model(0))[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(many.scores["new guests"][k], alone.scores["new guests"][0],
                               atol=1e-6)


def test_scores_progress_and_parent_scores(parent, tables):
    reviews, old, checks = tables
    seen = []
    shift = ft.night_shift(parent.model, reviews, replay=old, config=CONFIG, checks=checks,
                           freeze=(0, 1, 2), on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == list(range(CONFIG.epochs))
    assert all(m["loss"].shape == (3,) and set(m) == {"loss", *checks} for _, m in seen)
    np.testing.assert_allclose(seen[-1][1]["new guests"], shift.final("new guests"))
    assert shift.scores["old guests"].shape == shift.loss.shape == (3, CONFIG.epochs)
    assert shift.parent_scores == pytest.approx(ft.scores(parent.model, checks), abs=1e-6)
    child = shift.model(0)
    assert ft.scores(child, checks)["new guests"] == pytest.approx(
        float(shift.final("new guests")[0]), abs=1e-6)


def test_replay_loss_weights_old_cakes(parent, tables):
    reviews, old, _ = tables
    graphdef, params = nnx.split(parent.model)
    x, y, xo, yo = reviews.x[:8], reviews.y[:8], old.x[:4], old.y[:4]
    logits = kl.evaluate.predict_logits(parent.model, np.r_[x, xo])  # (12, C)
    new_only = kl.train.cross_entropy(logits[:8], y)
    both = kl.train.cross_entropy(logits, np.r_[y, yo])
    loss = jax.jit(ft.replay_loss, static_argnums=1)
    assert loss(params, graphdef, x, y, xo, yo, 0.0) == pytest.approx(float(new_only), rel=1e-5)
    assert loss(params, graphdef, x, y, xo, yo, 1.0) == pytest.approx(float(both), rel=1e-5)


def test_the_laminated_parent_is_untouched_byte_for_byte(laminated, tables, tmp_path):
    folder, kitchen = laminated
    before = _files(folder)
    parent = ft.load_parent(folder)
    model_before = _leaves(nnx.split(parent.model)[1])
    reviews, old, checks = tables
    child, shift = ft.finetune(parent.model, reviews, replay=old, config=CONFIG, checks=checks)
    menu = kl.serve.Registry(tmp_path / "menu")
    menu.publish(child, normalizer=parent.normalizer, data={"reviews": len(reviews)})
    assert _files(folder) == before  # contents, modification times and permissions
    for a, b in zip(model_before, _leaves(nnx.split(parent.model)[1])):
        np.testing.assert_array_equal(a, b)  # the trainable copy itself is not trained either
    assert not np.array_equal(_leaves(nnx.split(child)[1])[0], model_before[0])


def test_load_parent_reads_the_laminated_chef(laminated, parent):
    folder, kitchen = laminated
    service = kl.serve.open_restaurant(folder)
    x = kitchen.raw.test.x[:20]
    np.testing.assert_array_equal(service.predict(x).logits,
                                  kl.evaluate.predict_logits(parent.model, parent.normalizer(x)))
    np.testing.assert_array_equal(parent.normalizer.mean, kitchen.normalizer.mean)


# ---------------------------------------------------------------- the gate
def test_decide_promotes_only_a_child_no_worse_anywhere():
    parent = {"old": 0.91, "new": 0.77}
    assert ft.decide(parent, {"old": 0.90, "new": 0.87}).promote
    no = ft.decide(parent, {"old": 0.87, "new": 0.88})
    assert not no.promote and no.reason.startswith("worse on old: 0.87 vs the parent's 0.91")
    assert not ft.decide(parent, {"old": 0.91, "new": 0.77}).promote  # no gain at all
    assert not ft.decide(parent, {"old": 0.90, "new": 0.87}, tolerance=0.005).promote
    with pytest.raises(ValueError, match="same checks"):
        ft.decide(parent, {"old": 0.9})
    with pytest.raises(ValueError, match="tolerance must be >= 0.0"):
        ft.decide(parent, parent, tolerance=-1)


# ---------------------------------------------------------------- bad input
def _table(n, n_features=8, y=None):
    return kl.data.CakeData(np.zeros((n, n_features), np.float32),
                            np.zeros(n, np.int32) if y is None else y)


@pytest.mark.parametrize("reviews, err, match", [
    (_table(0), ValueError, r"reviews is empty or too small: 0 cakes"),
    (_table(5), ValueError, r"reviews is empty or too small: 5 cakes; need at least 16"),
    (_table(40, 7), ValueError, r"reviews.x has 7 features per cake, but the model expects 8"),
    (_table(40, y=np.full(40, 3, np.int32)), ValueError, r"reviews.y labels must be in \[0, 2\)"),
    ((np.zeros((40, 8)), np.zeros(40)), TypeError, r"reviews must be a CakeData table"),
])
def test_bad_reviews_are_refused_and_nothing_changes(parent, tables, reviews, err, match):
    _, old, _ = tables
    before = _leaves(nnx.split(parent.model)[1])
    with pytest.raises(err, match=match):
        ft.night_shift(parent.model, reviews, replay=old, config=CONFIG)
    for a, b in zip(before, _leaves(nnx.split(parent.model)[1])):
        np.testing.assert_array_equal(a, b)


def test_other_bad_arguments(parent, tables, laminated):
    reviews, old, _ = tables
    with pytest.raises(ValueError, match=r"replay_on asks for replay, but there is nothing"):
        ft.night_shift(parent.model, reviews, replay=None, config=CONFIG, replay_on=(1.0,))
    with pytest.raises(ValueError, match=r"freeze must list ints in \[0, 2\]"):
        ft.night_shift(parent.model, reviews, replay=old, config=CONFIG, freeze=(3,))
    with pytest.raises(ValueError, match=r"replay_on must list weights in \[0, 1\]"):
        ft.night_shift(parent.model, reviews, replay=old, config=CONFIG, replay_on=(2.0,))
    with pytest.raises(TypeError, match=r"laminated Service: it refuses to be trained"):
        ft.night_shift(kl.serve.open_restaurant(laminated[0]), reviews, config=CONFIG)
    with pytest.raises(TypeError, match=r"config must be a FinetuneConfig"):
        ft.night_shift(parent.model, reviews, replay=old, config=kl.config.TrainConfig())
    with pytest.raises(ValueError, match=r"learning_rate must be > 0.0"):
        ft.FinetuneConfig(learning_rate=0.0)
    _, _, checks = tables
    with pytest.raises(ValueError, match=r"k must be a run index in \[0, 1\)"):
        ft.night_shift(parent.model, reviews, replay=old, config=CONFIG, checks=checks).model(1)
    no_replay = ft.night_shift(parent.model, reviews, replay=None,
                               config=CONFIG.replace(replay_batch=0))
    assert no_replay.runs == [{"seed": 0, "replay": 0.0, "freeze": 0}]
    assert ft.night_shift(parent.model, reviews, replay=None, config=CONFIG).runs[0]["replay"] == 0.0
