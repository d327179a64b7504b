"""The recipe in another kitchen's language: the MLP as an ONNX graph, run by ONNX Runtime.

The laminated weights (``kl.serve.artifact.flat_params`` / ``load_params``) become a graph
of a few nodes written with ``onnx.helper`` (MatMul -> Add -> Relu per layer). ONNX
Runtime then runs it in float32, or after ``quantize_dynamic`` in INT8 with kernels built
for it (on x86 with AVX-512 VNNI: ``vpdpbusd``, four int8 products per lane per cycle).
``jax2onnx`` would write the graph for us, but it pins an older orbax than ours.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17  # ONNX operator set: MatMul/Add/Relu are stable across all recent ones
IR_VERSION = 10  # ONNX file format version that ONNX Runtime 1.32 reads


def mlp_to_onnx(params: dict[str, Any], *, name: str = "kitchenlab_mlp"):
    """An ``onnx.ModelProto`` for the MLP whose flat params are ``params`` (checked valid).

    ``params`` is the dict of ``flat_params(model)`` (``"hidden.0.kernel"`` ...), e.g. read
    back from a laminated folder. Input ``x: float32[b, F]`` (normalized), output
    ``logits: float32[b, C]``; the batch size ``b`` is symbolic.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from kitchenlab.quantize import check_float_params, mlp_layers

    check_float_params(params)
    layers = mlp_layers({k: np.asarray(v) for k, v in params.items()})
    nodes, weights, x = [], [], "x"
    for i, layer in enumerate(layers):
        kernel = np.asarray(layer["kernel"], np.float32)  # (K, N)
        bias = np.asarray(layer["bias"], np.float32)  # (N,)
        if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
            raise ValueError(f"layer {i}: kernel (K, N) and bias (N,) expected, got "
                             f"{kernel.shape} and {bias.shape}")
        weights += [numpy_helper.from_array(kernel, f"W{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"W{i}"], [f"matmul{i}"]),
                  helper.make_node("Add", [f"matmul{i}", f"b{i}"], [f"linear{i}"])]
        x = f"linear{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"relu{i}"]))
            x = f"relu{i}"
    nodes.append(helper.make_node("Identity", [x], ["logits"]))
    n_in, n_out = layers[0]["kernel"].shape[0], layers[-1]["kernel"].shape[1]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", n_out])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kitchenlab")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def save(model, path) -> Path:
    """Write an ``onnx.ModelProto`` to ``path``; returns the path."""
    import onnx

    path = Path(path)
    onnx.save(model, str(path))
    return path


def quantize_file(src, dst, *, per_channel: bool = True) -> Path:
    """ONNX Runtime's post-training dynamic quantization: INT8 kernels (QInt8), activations
    quantized per call (``DynamicQuantizeLinear`` + ``MatMulInteger``-style kernels)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()  # quantize_dynamic logs a pre-processing hint to the root
    level = root.level  # logger (stderr); silence it for this call only
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return Path(dst)


class Runner:
    """An ONNX Runtime session on one thread: ``runner(x) -> logits`` (numpy in, numpy out)."""

    def __init__(self, path, *, threads: int = 1):
        import onnxruntime as ort

        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one cook: speeds compare like with like
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @property
    def nbytes(self) -> int:
        """Size of the model file on disk."""
        return os.path.getsize(self.path)

    def __call__(self, x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input: x})[0]


def export_pair(params: dict[str, Any], folder) -> tuple[Runner, Runner]:
    """Write ``float32.onnx`` and ``int8.onnx`` for ``params`` into ``folder``; their runners."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    f32 = save(mlp_to_onnx(params), folder / "float32.onnx")
    int8 = quantize_file(f32, folder / "int8.onnx")
    return Runner(f32), Runner(int8)
