"""kl.prune: exact masks (layer and global), masks kept through fine-tuning, CSR sizes,
structured pruning against the full forward pass, and clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import kitchenlab as kl
from kitchenlab import prune as P
from kitchenlab import quantize as Q
from kitchenlab.serve.artifact import flat_params

TINY = P.FinetuneConfig(epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def chef():
    kitchen = kl.data.kitchen(600, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig(width=16), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val, kl.config.TrainConfig(epochs=10))
    return model, kitchen


def _kernels(tree, like=None):
    """The kernel leaves of ``tree`` (found in ``like``'s structure when ``tree`` holds masks)."""
    names = [n for n, a in Q.named_leaves(like if like is not None else tree) if Q.is_kernel(a)]
    leaves = dict(Q.named_leaves(tree))
    assert names, "no kernels found"
    return [np.asarray(leaves[n]) for n in names]


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.95])
def test_layer_masks_remove_exactly_the_smallest(chef, sparsity):
    model, _ = chef
    params = nnx.split(model)[1]
    masks = P.magnitude_masks(params, sparsity, scope="layer")
    for w, m in zip(_kernels(params), _kernels(masks, params)):
        assert int((~m).sum()) == int(np.floor(sparsity * w.size))
        if (~m).any():
            assert np.abs(w[~m]).max() <= np.abs(w[m]).min()
    for name, m in Q.named_leaves(masks):  # biases are never pruned
        if name.endswith("bias"):
            assert np.all(np.asarray(m))


def test_global_masks_rank_all_kernels_together(chef):
    model, _ = chef
    params = nnx.split(model)[1]
    masks = P.magnitude_masks(params, 0.7, scope="global")
    w = np.concatenate([k.ravel() for k in _kernels(params)])
    m = np.concatenate([k.ravel() for k in _kernels(masks, params)])
    assert int((~m).sum()) == int(np.floor(0.7 * w.size))
    assert np.abs(w[~m]).max() <= np.abs(w[m]).min()
    per_layer = [1 - k.mean() for k in _kernels(masks, params)]
    assert max(per_layer) - min(per_layer) > 0.05  # layers lose different shares


def test_ties_still_give_the_exact_count():
    w = np.ones((10, 10), np.float32)
    m = np.asarray(P.magnitude_masks({"w": w}, 0.37)["w"])
    assert int((~m).sum()) == 37


def test_traced_masks_equal_host_masks(chef):
    """The vmapped sweep (traced sparsity) picks the same weights as magnitude_masks."""
    model, kitchen = chef
    params = nnx.split(model)[1]
    for scope in P.SCOPES:
        s = P.sparsity_sweep(model, kitchen.train, kitchen.test, sparsities=(0.3, 0.6, 0.9),
                             scope=scope, finetune_config=None)
        for i, sparsity in enumerate((0.3, 0.6, 0.9)):
            host = P.magnitude_masks(params, sparsity, scope=scope)
            swept = jax.tree.map(lambda a: np.asarray(a[i]), s["masks"])
            for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(swept)):
                np.testing.assert_array_equal(np.asarray(a), b)
            pruned = nnx.merge(nnx.split(model)[0], P.prune(params, sparsity, scope=scope))
            assert s["accuracy"][i] == pytest.approx(kl.evaluate.evaluate(pruned, kitchen.test)["accuracy"])


def test_prune_is_params_to_params_on_any_tree(chef):
    model, _ = chef
    flat = P.prune(flat_params(model), 0.5)
    assert set(flat) == set(flat_params(model))
    assert P.sparsity_of(flat) == pytest.approx(0.5, abs=0.01)
    np.testing.assert_array_equal(np.asarray(flat["head.bias"]), flat_params(model)["head.bias"])


def test_keep_masked_zeroes_updates():
    masks = {"w": np.array([[True, False], [False, True]]), "b": np.array([True, True])}
    updates = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    tx = P.keep_masked(masks)
    out, _ = tx.update(updates, tx.init(updates))
    np.testing.assert_array_equal(np.asarray(out["w"]), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(np.asarray(out["b"]), [1, 1])


def test_masks_keep_sparsity_through_finetuning(chef):
    model, kitchen = chef
    params = nnx.split(model)[1]
    masks = P.magnitude_masks(params, 0.8, scope="global")
    tuned, losses = P.finetune(model, masks, kitchen.train, TINY)
    assert losses.shape == (TINY.epochs,) and np.all(np.isfinite(losses))
    for w, m, w0 in zip(_kernels(tuned), _kernels(masks, params), _kernels(params)):
        assert np.all(w[~m] == 0)  # removed pans stay removed
        assert not np.array_equal(w[m], w0[m])  # the kept knobs did move
    n = sum(w.size for w in _kernels(params))
    assert P.sparsity_of(tuned) >= np.floor(0.8 * n) / n
    # the model object itself is untouched
    assert P.sparsity_of(nnx.split(model)[1]) == 0.0


def test_finetune_matches_a_plain_optax_loop(chef):
    """The scanned fine-tune = a readable loop of masked Adam steps over the same batches."""
    model, kitchen = chef
    graphdef, params = nnx.split(model)
    masks = P.magnitude_masks(params, 0.5)
    config = P.FinetuneConfig(epochs=2, batch_size=64, learning_rate=1e-3, seed=3)
    tuned, _ = P.finetune(model, masks, kitchen.train, config)
    tx = optax.chain(optax.adam(1e-3), P.keep_masked(masks))
    p = P.apply_masks(params, masks)
    state = tx.init(p)
    x, y = jnp.asarray(kitchen.train.x), jnp.asarray(kitchen.train.y)
    n = x.shape[0] // 64
    for k in jax.random.split(jax.random.key(3), 2):
        perm = jax.random.permutation(k, x.shape[0])[: n * 64].reshape(n, 64)
        for idx in perm:
            grads = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(
                nnx.merge(graphdef, q)(x[idx]), y[idx]).mean())(p)
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
    for a, b in zip(jax.tree.leaves(tuned), jax.tree.leaves(p)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_sweep_finetune_recovers_and_keeps_masks(chef):
    model, kitchen = chef
    s = P.sparsity_sweep(model, kitchen.train, kitchen.test, sparsities=(0.0, 0.8),
                         finetune_config=P.FinetuneConfig(epochs=10))
    assert s["finetuned_accuracy"].shape == (2,)
    assert s["finetuned_accuracy"][1] > s["accuracy"][1]
    tuned = jax.tree.map(lambda a: np.asarray(a[1]), s["finetuned_params"])
    mask = jax.tree.map(lambda a: np.asarray(a[1]), s["masks"])
    for w, m in zip(_kernels(tuned), _kernels(mask, tuned)):
        assert np.all(w[~m] == 0)
    assert s["sparse_bytes"][1] < s["dense_bytes"] < s["sparse_bytes"][0]


def test_csr_round_trip_and_sizes():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 300)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0.0
    values, cols, row_ptr = P.to_csr(w)
    assert cols.dtype == np.uint16 and row_ptr.shape == (41,) and values.size == (w != 0).sum()
    np.testing.assert_array_equal(P.from_csr(values, cols, row_ptr, w.shape), w)
    assert P.to_csr(w[:, :200])[1].dtype == np.uint8
    params = {"kernel": w, "bias": np.ones(300, np.float32)}
    nnz = int((w != 0).sum())
    assert P.sparse_bytes(params) == 4 * nnz + 2 * nnz + 4 * 41 + 4 * 300
    assert P.dense_bytes(params) == 4 * w.size + 4 * 300
    with pytest.raises(ValueError, match="kernel must be 2-D"):
        P.to_csr(np.ones(3))


def test_structured_pruning_slices_units_and_equals_the_masked_model(chef):
    model, kitchen = chef
    small = P.prune_units(model, 0.5)
    assert small.config.width == 8 and model.config.width == 16
    assert kl.models.count_params(small) < kl.models.count_params(model) / 2
    # reference: the full model with the dropped units' outgoing weights zeroed
    layers = [{k: np.asarray(v) for k, v in layer.items()} for layer in Q.mlp_layers(nnx.split(model)[1])]
    kept = []
    for i in range(len(layers) - 1):
        score = np.linalg.norm(layers[i]["kernel"], axis=0) * np.linalg.norm(layers[i + 1]["kernel"], axis=1)
        keep = np.zeros(score.size, bool)
        keep[np.argsort(-score, kind="stable")[:8]] = True
        kept.append(keep)
    masked = [dict(layer) for layer in layers]
    for i, keep in enumerate(kept):
        masked[i]["kernel"] = masked[i]["kernel"] * keep[None, :]
        masked[i]["bias"] = masked[i]["bias"] * keep
    ref = np.asarray(Q.mlp_forward(masked, jnp.asarray(kitchen.test.x)))
    np.testing.assert_allclose(kl.evaluate.predict_logits(small, kitchen.test.x), ref, rtol=1e-5, atol=1e-5)


def test_bad_inputs(chef):
    model, kitchen = chef
    params = nnx.split(model)[1]
    for bad in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
            P.prune(params, bad)
    with pytest.raises(TypeError, match="sparsity must be a number"):
        P.prune(params, "half")
    with pytest.raises(ValueError, match="scope must be one of"):
        P.magnitude_masks(params, 0.5, scope="row")
    with pytest.raises(ValueError, match="already quantized"):
        P.prune(Q.quantize_params(params), 0.5)
    bad = flat_params(model)
    bad["head.kernel"] = bad["head.kernel"] * np.nan
    with pytest.raises(ValueError, match="'head.kernel' contains"):
        P.prune(bad, 0.5)
    with pytest.raises(ValueError, match="no kernels"):
        P.prune({"b": np.ones(3, np.float32)}, 0.5)
    with pytest.raises(TypeError, match="model must be a kl.models.MLP"):
        P.prune_units(Q.quantize_model(model), 0.5)
    with pytest.raises(ValueError, match="sparsity must be in"):
        P.prune_units(model, 1.0)
    with pytest.raises(TypeError, match="config must be a kl.prune.FinetuneConfig"):
        P.finetune(model, P.magnitude_masks(params, 0.5), kitchen.train, {"epochs": 3})
    with pytest.raises(ValueError, match="same tree structure"):
        P.finetune(model, {"w": np.ones(3, bool)}, kitchen.train, TINY)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        P.FinetuneConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        P.sparsity_sweep(model, kitchen.train, kitchen.test, sparsities=(0.5, 1.0))


def test_pruning_speed_reports_both_kinds():
    r = P.pruning_speed(width=64, batch=8, budget_s=0.01)
    assert r["structured_width"] == 32 and r["unstructured_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert r["structured_bytes"] < r["dense_bytes"] and r["unstructured_sparse_bytes"] < r["dense_bytes"]
    assert r["dense_s"] > 0 and r["structured_speedup"] > 0 and r["unstructured_speedup"] > 0


def test_matching_sparsity_keeps_as_many_kernel_weights_as_prune_units(chef):
    model, _ = chef
    for units in (0.25, 0.5):
        small = P.prune_units(model, units)
        kept = sum(int(np.size(k)) for k in _kernels(nnx.split(small)[1]))
        total = sum(int(np.size(k)) for k in _kernels(nnx.split(model)[1]))
        s = P.matching_sparsity(model, units)
        assert s == pytest.approx(1 - kept / total) and 0 < s < 1


def test_finetune_without_masks_trains_every_weight(chef):
    model, kitchen = chef
    small = P.prune_units(model, 0.5)
    params, losses = P.finetune(small, None, kitchen.train, P.FinetuneConfig(epochs=2))
    before = _kernels(nnx.split(small)[1])
    after = _kernels(params)
    assert [a.shape for a in after] == [b.shape for b in before]
    assert all(np.any(a != b) for a, b in zip(after, before)) and np.all(np.isfinite(losses))
