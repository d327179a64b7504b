"""kl.quantize: round-trip bounds, the int8 matmul against float, the params transform, errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import kitchenlab as kl
from kitchenlab import quantize as Q
from kitchenlab.serve.artifact import flat_params


@pytest.fixture(scope="module")
def chef():
    kitchen = kl.data.kitchen(400, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig(width=16), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val, kl.config.TrainConfig(epochs=5))
    return model, kitchen


def _w(shape=(24, 10), seed=0, spread=1.0):
    return (spread * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# ---------------------------------------------------------------- one tensor
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_round_trip_within_half_a_step(bits, per_channel):
    w = _w()
    t = Q.quantize_tensor(w, bits=bits, per_channel=per_channel)
    qmax = 2 ** (bits - 1) - 1
    assert t.q.dtype == jnp.int8 and t.shape == w.shape and t.bits == bits
    assert int(jnp.abs(t.q).max()) == qmax  # the largest weight uses the last level
    expected_scale = (np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()) / qmax
    np.testing.assert_allclose(np.asarray(t.scale), expected_scale, rtol=1e-6)
    err = np.abs(np.asarray(Q.dequantize(t)) - w)
    assert np.all(err <= np.asarray(t.scale) / 2 + 1e-7)
    np.testing.assert_array_equal(np.asarray(Q.fake_quantize(w, bits, per_channel=per_channel)),
                                  np.asarray(Q.dequantize(t)))


def test_packets_and_the_traced_sweep_round_every_weight_alike():
    """quantize_tensor (bits fixed) and fake_quantize (bits traced) give identical weights."""
    for seed in range(3):
        w = _w((33, 12), seed=seed, spread=0.3 * (seed + 1))
        for bits in Q.BITS:
            for pc in (True, False):
                np.testing.assert_array_equal(
                    np.asarray(Q.dequantize(Q.quantize_tensor(w, bits=bits, per_channel=pc))),
                    np.asarray(Q.fake_quantize(w, jnp.float32(bits), per_channel=pc)))


def test_per_channel_scale_is_finer_than_per_tensor():
    w = _w((32, 8)) * np.linspace(0.05, 2.0, 8, dtype=np.float32)[None, :]  # unequal columns
    for bits in (8, 4):
        pc = np.abs(np.asarray(Q.fake_quantize(w, bits, per_channel=True)) - w).mean()
        pt = np.abs(np.asarray(Q.fake_quantize(w, bits, per_channel=False)) - w).mean()
        assert pc < pt


def test_zero_tensor_and_zero_channel_survive():
    w = np.zeros((4, 3), np.float32)
    w[:, 0] = [1.0, -2.0, 0.5, 0.0]
    t = Q.quantize_tensor(w)
    assert np.all(np.isfinite(np.asarray(t.scale)))
    np.testing.assert_allclose(np.asarray(Q.dequantize(t)), w, atol=2.0 / 127 / 2 + 1e-7)
    assert np.all(np.asarray(Q.dequantize(Q.quantize_tensor(np.zeros((3, 3), np.float32)))) == 0)


def test_numpy_answer_key_equals_the_package():
    from kitchenlab.checks.spice import reference_quantize

    for seed in range(5):
        w = _w((17, 9), seed=seed, spread=0.1 + seed)
        for bits in (2, 5, 8):
            q, scale = reference_quantize(w, bits)
            t = Q.quantize_tensor(w, bits=bits, per_channel=False)
            np.testing.assert_array_equal(q, np.asarray(t.q))
            assert scale == pytest.approx(float(t.scale), rel=1e-7)


def test_quantize_rows_one_scale_per_row():
    x = _w((5, 12), seed=3)
    xq, scale = Q.quantize_rows(x)
    assert xq.dtype == jnp.int8 and scale.shape == (5, 1)
    np.testing.assert_allclose(np.asarray(scale)[:, 0], np.abs(x).max(1) / 127, rtol=1e-6)
    assert np.all(np.abs(np.asarray(xq) * np.asarray(scale) - x) <= np.asarray(scale) / 2 + 1e-7)


@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_matmul_equals_float_within_the_quantization_bound(per_channel):
    x, w = _w((7, 40), seed=1), _w((40, 6), seed=2)
    t = Q.quantize_tensor(w, per_channel=per_channel)
    out = np.asarray(Q.int8_matmul(jnp.asarray(x), t))
    xq, x_scale = (np.asarray(a) for a in Q.quantize_rows(x))
    x_hat, w_hat = xq * x_scale, np.asarray(Q.dequantize(t))
    # the int32 sum is exact: the result is the float product of the opened packets
    np.testing.assert_allclose(out, x_hat @ w_hat, rtol=1e-5, atol=1e-5)
    # |x.w - x^.w^| <= sum|x - x^||w| + sum|x^||w - w^| <= x_scale/2 sum|w| + w_scale/2 sum|x^|
    bound = x_scale / 2 * np.abs(w).sum(0)[None, :] + np.asarray(t.scale) / 2 * np.abs(x_hat).sum(1, keepdims=True)
    assert np.all(np.abs(out - x @ w) <= bound + 1e-5)
    assert np.abs(out - x @ w).max() < 0.05 * np.abs(x @ w).max()


def test_int8_matmul_accumulates_in_int32():
    jaxpr = jax.make_jaxpr(Q.int8_matmul)(jnp.ones((2, 3)), Q.quantize_tensor(jnp.ones((3, 4))))
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 1
    assert [v.aval.dtype for v in dots[0].invars] == [jnp.int8, jnp.int8]
    assert dots[0].outvars[0].aval.dtype == jnp.int32


def test_int8_matmul_needs_a_2d_qtensor():
    with pytest.raises(TypeError, match="w must be a 2-D QTensor"):
        Q.int8_matmul(jnp.ones((2, 3)), jnp.ones((3, 4)))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bits", [1, 9, 0, -3, 16])
def test_bits_outside_2_to_8(bits):
    with pytest.raises(ValueError, match=rf"bits must be in 2\.\.8.*got {bits}"):
        Q.quantize_tensor(_w(), bits=bits)


@pytest.mark.parametrize("bits", [4.5, "8", True, None])
def test_bits_must_be_an_int(bits):
    with pytest.raises(TypeError, match="bits must be an int in 2..8"):
        Q.quantize_tensor(_w(), bits=bits)


def test_non_finite_weights_are_refused(chef):
    model, _ = chef
    bad = flat_params(model)
    bad["hidden.0.kernel"] = bad["hidden.0.kernel"].copy()
    bad["hidden.0.kernel"][1, 2] = np.inf
    with pytest.raises(ValueError, match=r"'hidden\.0\.kernel' contains 1 NaN/inf"):
        Q.quantize_params(bad)
    with pytest.raises(ValueError, match="w contains NaN/inf"):
        Q.quantize_tensor(np.array([[1.0, np.nan]], np.float32))


def test_quantizing_twice_is_refused(chef):
    model, _ = chef
    q = Q.quantize_model(model)
    with pytest.raises(ValueError, match="model is already quantized"):
        Q.quantize_model(q)
    with pytest.raises(ValueError, match=r"already quantized \('head\.kernel' is a 8-bit QTensor\)"):
        Q.quantize_params(q.params)
    with pytest.raises(ValueError, match="already a QTensor"):
        Q.quantize_tensor(Q.quantize_tensor(_w()))


def test_other_bad_inputs(chef):
    model, _ = chef
    with pytest.raises(TypeError, match="model must be a flax nnx.Module"):
        Q.quantize_model({"kernel": np.ones((2, 2))})
    with pytest.raises(TypeError, match="w must be a float array"):
        Q.quantize_tensor(np.ones((3, 3), np.int32))
    with pytest.raises(TypeError, match="per_channel must be True or False"):
        Q.quantize_params(nnx.split(model)[1], per_channel="yes")
    with pytest.raises(ValueError, match="has no arrays"):
        Q.quantize_params({})
    with pytest.raises(ValueError, match="params must be an MLP's"):
        Q.mlp_layers({"encoder": {}})


# ---------------------------------------------------------------- whole models
def test_kernels_are_chosen_by_structure_not_name():
    params = {"attn": {"w_qkv": _w((8, 24)), "scale": np.ones(8, np.float32)},
              "embed": _w((50, 8)), "conv": _w((3, 3, 4, 6)), "steps": np.arange(4)[None]}
    q = Q.quantize_params(params, bits=8)
    assert isinstance(q["attn"]["w_qkv"], Q.QTensor) and isinstance(q["embed"], Q.QTensor)
    assert isinstance(q["conv"], Q.QTensor) and q["conv"].scale.shape == (1, 1, 1, 6)
    assert not isinstance(q["attn"]["scale"], Q.QTensor)  # 1-D: a norm/bias stays float
    assert not isinstance(q["steps"], Q.QTensor)  # integers are not weights
    back = Q.dequantize_params(q)
    assert np.abs(np.asarray(back["conv"]) - params["conv"]).max() <= float(q["conv"].scale.max())


def test_params_transform_on_state_nested_and_flat_dicts(chef):
    model, kitchen = chef
    graphdef, state = nnx.split(model)
    x = jnp.asarray(kitchen.test.x)
    expected = np.asarray(Q.Quantized(graphdef, Q.quantize_params(state))(x))
    flat = Q.quantize_params(flat_params(model))
    nested = Q.quantize_params(nnx.to_pure_dict(state))
    for params in (flat, nested):
        np.testing.assert_allclose(np.asarray(Q.mlp_forward(Q.mlp_layers(params), x)), expected,
                                   rtol=1e-5, atol=1e-5)
    assert Q.is_quantized(flat) and not Q.is_quantized(flat_params(model))


def test_weights_only_wrapper_equals_the_model_with_opened_packets(chef):
    model, kitchen = chef
    q = Q.quantize_model(model, bits=6)
    graphdef, _ = nnx.split(model)
    opened = nnx.merge(graphdef, Q.dequantize_params(q.params))
    x = kitchen.test.x
    np.testing.assert_allclose(np.asarray(q(x)), kl.evaluate.predict_logits(opened, x),
                               rtol=1e-6, atol=1e-6)
    assert q.bits == 6 and not q.activations
    # the original model is untouched
    assert not Q.is_quantized(nnx.split(model)[1])


def test_w8a8_wrapper_runs_int8_matmuls_and_stays_close(chef):
    model, kitchen = chef
    q = Q.quantize_model(model, activations=True)
    x = jnp.asarray(kitchen.test.x)
    ref = kl.evaluate.predict_logits(model, kitchen.test.x)
    out = np.asarray(q(x))
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    jaxpr = jax.make_jaxpr(lambda p, x: Q.mlp_forward(Q.mlp_layers(p), x, activations=True))(q.params, x)
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == model.config.depth + 1
    assert all(d.outvars[0].aval.dtype == jnp.int32 for d in dots)


def test_mlp_forward_equals_the_full_model(chef):
    model, kitchen = chef
    layers = Q.mlp_layers(nnx.split(model)[1])
    np.testing.assert_allclose(np.asarray(Q.mlp_forward(layers, jnp.asarray(kitchen.test.x))),
                               kl.evaluate.predict_logits(model, kitchen.test.x), rtol=1e-5, atol=1e-6)
    rebuilt = Q.mlp_from_layers(model.config, layers)
    np.testing.assert_array_equal(kl.evaluate.predict_logits(rebuilt, kitchen.test.x),
                                  kl.evaluate.predict_logits(model, kitchen.test.x))
    with pytest.raises(ValueError, match="layers do not fit config"):
        Q.mlp_from_layers(kl.config.MLPConfig(width=8), layers)


def test_sizes(chef):
    model, _ = chef
    params = nnx.split(model)[1]
    kernels = [a for _, a in Q.named_leaves(params) if Q.is_kernel(a)]
    n = sum(a.size for a in kernels)
    for bits in (8, 4, 3, 2):
        for pc in (True, False):
            q = Q.quantize_params(params, bits=bits, per_channel=pc)
            scales = sum(a.shape[-1] if pc else 1 for a in kernels)
            assert Q.nbytes(q, kernels_only=True, scales=False) == sum(
                math.ceil(a.size * bits / 8) for a in kernels)
            assert Q.nbytes(q, kernels_only=True) == Q.packed_bytes(params, bits, per_channel=pc)
            assert Q.packed_bytes(params, bits, per_channel=pc) == sum(
                math.ceil(a.size * bits / 8) for a in kernels) + 4 * scales
    assert Q.nbytes(params, kernels_only=True) == 4 * n
    assert Q.nbytes(Q.quantize_params(params), kernels_only=True, scales=False) * 4 == 4 * n


def test_bits_sweep_equals_one_model_at_a_time(chef):
    model, kitchen = chef
    both = Q.bits_sweep(model, kitchen.test, bits=(8, 4, 2), per_channel=(True, False))
    for pc in (True, False):
        s = both[pc]
        assert list(s["bits"]) == [8, 4, 2]
        for i, bits in enumerate((8, 4, 2)):
            q = Q.quantize_model(model, bits=bits, per_channel=pc)
            logits = np.asarray(q(kitchen.test.x))
            ref = kl.evaluate.predict_logits(model, kitchen.test.x)
            assert s["accuracy"][i] == pytest.approx((logits.argmax(1) == kitchen.test.y).mean())
            assert s["max_error"][i] == pytest.approx(np.abs(logits - ref).max(), rel=1e-4, abs=1e-5)
        assert s["float_accuracy"] == pytest.approx(kl.evaluate.evaluate(model, kitchen.test)["accuracy"])
        assert s["mean_error"][0] < s["mean_error"][1] < s["mean_error"][2]
    single = Q.bits_sweep(model, kitchen.test, bits=(8, 4, 2), per_channel=True)
    np.testing.assert_allclose(single["accuracy"], both[True]["accuracy"])
    with pytest.raises(ValueError, match="bits must be in 2..8"):
        Q.bits_sweep(model, kitchen.test, bits=(8, 1))
    with pytest.raises(TypeError, match="per_channel must be True, False or a tuple"):
        Q.bits_sweep(model, kitchen.test, per_channel="both")


def test_banquet_is_the_wide_mlp():
    m = kl.quant_speed.banquet(32, seed=1)
    assert m.config == kl.config.MLPConfig(width=32, depth=3)
    again = kl.quant_speed.banquet(32, seed=1)
    np.testing.assert_array_equal(np.asarray(m.hidden[1].kernel[...]), np.asarray(again.hidden[1].kernel[...]))


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_pack_codes_round_trip_in_ceil_size_bits_over_8_bytes(bits):
    m = 2 ** (bits - 1) - 1
    q = np.random.default_rng(bits).integers(-m, m + 1, size=(7, 5)).astype(np.int8)
    q[0, :2] = (-m, m)  # both ends of the range
    packed = Q.pack_codes(q, bits)
    assert packed.dtype == np.uint8 and packed.size == math.ceil(q.size * bits / 8)
    np.testing.assert_array_equal(Q.unpack_codes(packed, bits, q.shape), q)
    # the stored size a QTensor reports is the packed one plus its float32 scales
    t = Q.quantize_tensor(_w((24, 10)), bits=bits, per_channel=True)
    assert t.nbytes == Q.pack_codes(t.q, bits).size + 4 * 10


def test_pack_codes_bad_input():
    with pytest.raises(ValueError, match=r"q must lie in \[-7, 7\] for 4 bits"):
        Q.pack_codes(np.array([8], np.int8), 4)
    with pytest.raises(TypeError, match="q must hold integer codes"):
        Q.pack_codes(np.array([0.5]), 4)
    with pytest.raises(ValueError, match="packed must hold"):
        Q.unpack_codes(np.zeros(3, np.uint8), 4, (7,))
