"""kl.onnx_export: the graph equals the JAX model; ONNX Runtime's int8 copy is smaller and close."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import kitchenlab as kl
from kitchenlab import onnx_export as X
from kitchenlab.serve.artifact import flat_params, load_params


@pytest.fixture(scope="module")
def chef():
    kitchen = kl.data.kitchen(400, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig(width=64, depth=3), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val, kl.config.TrainConfig(epochs=5))
    return model, kitchen


def test_graph_is_valid_and_has_the_expected_nodes(chef):
    model, _ = chef
    graph = X.mlp_to_onnx(flat_params(model))
    onnx.checker.check_model(graph)
    ops = [n.op_type for n in graph.graph.node]
    assert ops == ["MatMul", "Add", "Relu"] * 3 + ["MatMul", "Add", "Identity"]
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["b", 8]


def test_float_graph_equals_the_jax_model_from_laminated_weights(chef, tmp_path):
    model, kitchen = chef
    folder = kl.serve.laminate(model, tmp_path / "chef", normalizer=kitchen.normalizer)
    f32, int8 = X.export_pair(load_params(folder), tmp_path / "onnx")
    ref = kl.evaluate.predict_logits(model, kitchen.test.x)
    np.testing.assert_allclose(f32(kitchen.test.x), ref, rtol=1e-5, atol=1e-5)
    for b in (1, 7):  # the batch size is symbolic
        assert f32(kitchen.test.x[:b]).shape == (b, 2)
    out = int8(kitchen.test.x)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    assert f32.nbytes / int8.nbytes > 2.0  # (a width-16 model would not shrink: graph overhead)
    types = {n.op_type for n in onnx.load(str(int8.path)).graph.node}
    assert "DynamicQuantizeLinear" in types  # activations packed per call: end to end


def test_runner_is_one_thread_and_validates(chef, tmp_path):
    model, _ = chef
    path = X.save(X.mlp_to_onnx(flat_params(model)), tmp_path / "m.onnx")
    runner = X.Runner(path)
    assert runner.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        X.Runner(path, threads=0)


def test_bad_params_are_refused(chef):
    model, _ = chef
    bad = flat_params(model)
    bad["hidden.1.kernel"] = bad["hidden.1.kernel"] * np.nan
    with pytest.raises(ValueError, match="'hidden.1.kernel' contains"):
        X.mlp_to_onnx(bad)
    with pytest.raises(ValueError, match="already quantized"):
        X.mlp_to_onnx(kl.quantize.quantize_params(flat_params(model)))
    with pytest.raises(ValueError, match="params must be an MLP's"):
        X.mlp_to_onnx({"w": np.ones((2, 2), np.float32)})
