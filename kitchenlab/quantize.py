"""Pre-measured spice packets: weights (and activations) stored as small integers plus a scale.

Symmetric quantization in a few lines: a tensor ``w`` becomes integers
``q = round(w / scale)`` in ``[-qmax, qmax]`` (``qmax = 2**(bits-1) - 1``, 127 for INT8)
and one float ``scale = max|w| / qmax`` per tensor, or one per output channel (the last
axis of a kernel). ``q * scale`` gives the weights back, each off by at most ``scale / 2``.

* ``quantize_tensor`` / ``dequantize`` / ``fake_quantize``: one tensor, any width 2..8 bits;
* ``quantize_rows`` + ``int8_matmul``: dynamic per-row activation quantization and the
  int8 x int8 matmul with exact int32 accumulation, then one float rescale;
* ``quantize_params``: the model-wide ``params -> params`` transform (every kernel, found
  by structure: float arrays with >= 2 dimensions); ``Quantized`` is the thin wrapper
  that runs the result (weights only, or weights + activations in int8).

Shapes: B = batch of cakes, K = input features of a layer, N = its output features.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kitchenlab.config import MLPConfig

BITS = (2, 3, 4, 5, 6, 7, 8)  # the widths the accuracy lesson sweeps (int8 in memory)


def check_bits(bits, name: str = "bits") -> int:
    """Validate a bit width: an int in 2..8 (1 bit leaves no room for a sign and a zero)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"{name} must be an int in 2..8, got {type(bits).__name__} {bits!r}")
    if not 2 <= bits <= 8:
        raise ValueError(f"{name} must be in 2..8 (int8 holds at most 8 bits; 1 bit has no "
                         f"zero), got {bits}")
    return int(bits)


def qmax(bits):
    """Largest integer a ``bits``-wide symmetric packet holds: 127 for 8 bits, 1 for 2."""
    return 2.0 ** (jnp.asarray(bits, jnp.float32) - 1.0) - 1.0


@dataclasses.dataclass(frozen=True)
class QTensor:
    """A spice packet: integers ``q`` and the scale that turns them back into grams."""

    q: jax.Array  # int8, the tensor's shape; values in [-qmax, qmax]
    scale: jax.Array  # float32: () per tensor, or (1, ..., 1, N) per output channel
    bits: int = 8  # 2..8 (static: part of the compiled program, not a traced value)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.q.shape)

    @property
    def ndim(self) -> int:
        return self.q.ndim

    @property
    def nbytes(self) -> int:
        """Stored bytes: the integers packed at ``bits`` each (``pack_codes``), plus the
        float32 scales. In memory ``q`` is int8 at every width: 1 byte per weight."""
        return math.ceil(self.q.size * self.bits / 8) + 4 * int(np.prod(self.scale.shape))


jax.tree_util.register_dataclass(QTensor, data_fields=["q", "scale"], meta_fields=["bits"])


def _is_qtensor(x) -> bool:
    return isinstance(x, QTensor)


def _scale(w: jax.Array, bits, per_channel: bool) -> jax.Array:
    """max|w| / qmax over the whole tensor, or per output channel (all axes but the last)."""
    axes = tuple(range(w.ndim - 1)) if per_channel else None
    amax = jnp.max(jnp.abs(w), axis=axes, keepdims=per_channel)  # () or (1, ..., 1, N)
    return jnp.where(amax > 0, amax / qmax(bits), 1.0)  # an all-zero channel: any scale works


def _levels(w, bits, per_channel: bool):
    """(integer levels as float32, scale). ``bits`` is traced on purpose: with a constant,
    XLA would turn ``/ qmax`` into ``* (1 / qmax)`` and the last bit could differ from the
    sweep's (traced) program, so packets and sweeps round every weight the same way."""
    scale = _scale(w, bits, per_channel)
    m = qmax(bits)
    return jnp.clip(jnp.round(w / scale), -m, m), scale


@functools.partial(jax.jit, static_argnames=("per_channel",))
def fake_quantize(w, bits=8, *, per_channel: bool = True) -> jax.Array:
    """Round trip ``w -> q -> q * scale`` in float: what the quantized model computes with.

    ``bits`` may be a traced array here (one compiled sweep over every width).
    """
    q, scale = _levels(jnp.asarray(w, jnp.float32), bits, per_channel)
    return q * scale


def quantize_tensor(w, *, bits: int = 8, per_channel: bool = True) -> QTensor:
    """Symmetric quantization of one tensor: ``q = round(w / scale)``, ``scale = max|w| / qmax``."""
    bits = check_bits(bits)
    if _is_qtensor(w):
        raise ValueError("w is already a QTensor (quantized); quantize the float tensor once")
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise TypeError(f"w must be a float array, got dtype {w.dtype}")
    if not isinstance(w, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(w))):
        raise ValueError(f"w contains NaN/inf (shape {tuple(w.shape)}): a diverged weight "
                         "cannot be packed; its max|w| would make every scale non-finite")
    q, scale = _quantize(w.astype(jnp.float32), jnp.float32(bits), per_channel)
    return QTensor(q=q, scale=scale, bits=bits)


@functools.partial(jax.jit, static_argnames=("per_channel",))
def _quantize(w, bits, per_channel: bool):
    """One compiled program per shape (eager, each little op would compile on its own)."""
    q, scale = _levels(w, bits, per_channel)
    return q.astype(jnp.int8), scale.astype(jnp.float32)


def pack_codes(q, bits: int) -> np.ndarray:
    """Pack integer codes ``bits`` to ``bits``: ``ceil(q.size * bits / 8)`` bytes (uint8).

    Each code's low ``bits`` bits (two's complement) are laid end to end, so two 4-bit
    packets share a byte and four 2-bit ones do. This is how the sizes below 8 bits are
    counted; ``unpack_codes`` gives the int8 codes back.
    """
    bits = check_bits(bits)
    q = np.asarray(q)
    if not np.issubdtype(q.dtype, np.integer):
        raise TypeError(f"q must hold integer codes, got dtype {q.dtype}")
    m = 2 ** (bits - 1) - 1
    if q.size and (q.min() < -m or q.max() > m):
        raise ValueError(f"q must lie in [-{m}, {m}] for {bits} bits, got values in "
                         f"[{q.min()}, {q.max()}]")
    low = np.unpackbits(q.astype(np.int8).reshape(-1, 1).view(np.uint8), axis=1,
                        bitorder="little")[:, :bits]  # (n, bits): each code's low bits
    return np.packbits(low.reshape(-1), bitorder="little")


def unpack_codes(packed, bits: int, shape) -> np.ndarray:
    """Inverse of ``pack_codes``: int8 codes of ``shape`` from the packed bytes."""
    bits = check_bits(bits)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)
    n = int(np.prod(shape))
    packed = np.asarray(packed, np.uint8).reshape(-1)
    if packed.size != math.ceil(n * bits / 8):
        raise ValueError(f"packed must hold ceil({n} * {bits} / 8) = "
                         f"{math.ceil(n * bits / 8)} bytes for shape {shape}, got {packed.size}")
    low = np.unpackbits(packed, bitorder="little")[: n * bits].reshape(n, bits)
    sign = np.repeat(low[:, bits - 1:], 8 - bits, axis=1)  # two's complement: extend the sign
    return np.packbits(np.concatenate([low, sign], axis=1), axis=1,
                       bitorder="little").view(np.int8).reshape(shape)


def dequantize(t: QTensor) -> jax.Array:
    """Open the packet: ``q * scale`` as float32 (each weight within ``scale / 2`` of the original)."""
    return t.q.astype(jnp.float32) * t.scale


def quantize_rows(x: jax.Array, bits: int = 8) -> tuple[jax.Array, jax.Array]:
    """Dynamic activation quantization, one scale per row: (B, K) -> int8 (B, K), scale (B, 1).

    Measured at serving time from the order itself (no calibration data needed).
    """
    x = jnp.asarray(x, jnp.float32)
    # reduced along each row in place: written as a per-channel scale of x.T, XLA copied
    # every layer's activations transposed first (the 1024-wide model ran 1.6x slower)
    amax = jnp.max(jnp.abs(x), axis=1, keepdims=True)  # (B, 1)
    scale = jnp.where(amax > 0, amax / qmax(bits), 1.0)  # (B, 1); an all-zero row: any scale
    m = 2 ** (bits - 1) - 1
    return jnp.clip(jnp.round(x / scale), -m, m).astype(jnp.int8), scale


def int8_matmul(x: jax.Array, w: QTensor, *, act_bits: int = 8) -> jax.Array:
    """``x @ w`` with both sides in int8: (B, K) float x QTensor (K, N) -> (B, N) float32.

    1) quantize each row of ``x`` (dynamic), 2) multiply int8 x int8 and add up in int32
    (exact: no rounding inside the sum), 3) rescale once by ``x_scale * w_scale``.
    """
    if not _is_qtensor(w) or w.ndim != 2:
        raise TypeError(f"w must be a 2-D QTensor (a quantized kernel), got {type(w).__name__}")
    xq, x_scale = quantize_rows(x, act_bits)  # (B, K) int8, (B, 1)
    acc = jax.lax.dot_general(xq, w.q, (((1,), (0,)), ((), ())),
                              preferred_element_type=jnp.int32)  # (B, N) exact integer sums
    return acc.astype(jnp.float32) * x_scale * w.scale  # (B, N)


# ---------------------------------------------------------------- whole models
def is_kernel(leaf) -> bool:
    """A weight matrix (or higher-order weight tensor): a float array with >= 2 dimensions.

    Chosen by structure, not by name: biases and norms (1-D) stay float; the same rule finds
    the kernels of an MLP, of a GPT's attention and embeddings, or of a flat laminated dict.
    """
    return (not _is_qtensor(leaf) and getattr(leaf, "ndim", 0) >= 2
            and jnp.issubdtype(leaf.dtype, jnp.floating))


def leaf_name(path) -> str:
    """``hidden.0.kernel`` for a tree path (nnx's ``.value`` wrapper left out)."""
    parts = []
    for k in path:
        key = getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))
        if key != "value":
            parts.append(str(key))
    return ".".join(parts)


def named_leaves(params) -> list[tuple[str, Any]]:
    """``[(name, leaf), ...]`` in tree order; a QTensor counts as one leaf."""
    return [(leaf_name(p), leaf) for p, leaf in
            jax.tree_util.tree_leaves_with_path(params, is_leaf=_is_qtensor)]


def is_quantized(params) -> bool:
    """Whether any leaf of ``params`` is already a spice packet (QTensor)."""
    return any(_is_qtensor(leaf) for _, leaf in named_leaves(params))


def check_float_params(params, what: str = "params") -> None:
    """Refuse params that are already quantized or hold NaN/inf (naming the first bad leaf)."""
    leaves = named_leaves(params)
    if not leaves:
        raise ValueError(f"{what} has no arrays: pass nnx.split(model)[1] or flat_params(model)")
    for name, leaf in leaves:
        if _is_qtensor(leaf):
            raise ValueError(f"{what} are already quantized ({name!r} is a {leaf.bits}-bit "
                             "QTensor): quantize the float params once, not a quantized copy")
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{what} leaf {name!r} contains {int((~np.isfinite(a)).sum())} "
                             "NaN/inf value(s): refusing to quantize a diverged model")


def quantize_params(params, *, bits: int = 8, per_channel: bool = True):
    """``params -> params``: every kernel becomes a QTensor; biases and other leaves stay.

    Works on ``nnx.split(model)[1]``, a nested dict, or ``kl.serve.artifact.flat_params``.
    """
    bits = check_bits(bits)
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    check_float_params(params)
    return jax.tree.map(
        lambda a: quantize_tensor(a, bits=bits, per_channel=per_channel) if is_kernel(a) else a,
        params)


def dequantize_params(params):
    """``params -> params``: every QTensor opened back to float32 (the other leaves as they are)."""
    return jax.tree.map(lambda a: dequantize(a) if _is_qtensor(a) else a, params,
                        is_leaf=_is_qtensor)


def nbytes(params, *, kernels_only: bool = False, scales: bool = True) -> int:
    """Stored bytes of ``params``: QTensors packed at their bit width, floats at 4 bytes.

    ``kernels_only`` counts the weight matrices alone; ``scales=False`` leaves out the
    QTensors' float scales (the integers alone: exactly a quarter of float32 at 8 bits).
    """
    total = 0
    for _, leaf in named_leaves(params):
        if _is_qtensor(leaf):
            total += leaf.nbytes if scales else math.ceil(leaf.q.size * leaf.bits / 8)
        elif not kernels_only or is_kernel(leaf):
            total += int(np.asarray(leaf).nbytes)
    return total


def packed_bytes(params, bits: int, *, per_channel: bool = True) -> int:
    """Bytes the kernels of float ``params`` would take quantized (``nbytes`` of
    ``quantize_params``, computed from the shapes alone)."""
    bits = check_bits(bits)
    total = 0
    for _, leaf in named_leaves(params):
        if is_kernel(leaf):
            total += math.ceil(leaf.size * bits / 8) + 4 * (leaf.shape[-1] if per_channel else 1)
    return total


def mlp_layers(params) -> list[dict]:
    """The MLP's layers in order, ``[{"kernel": ..., "bias": ...}, ...]`` (hidden, then head).

    Accepts ``nnx.split(model)[1]``, a nested dict or a flat dict (``"hidden.0.kernel"``).
    """
    from kitchenlab.serve.artifact import nested_params

    if isinstance(params, nnx.State):
        params = nnx.to_pure_dict(params)
    if isinstance(params, dict) and any(isinstance(k, str) and "." in k for k in params):
        params = nested_params(params)
    if not (isinstance(params, dict) and "head" in params and "hidden" in params):
        got = sorted(map(str, params)) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params must be an MLP's (keys 'hidden' and 'head'), got {got}")
    hidden = params["hidden"]
    return [hidden[i] for i in sorted(hidden)] + [params["head"]]


def mlp_from_layers(config: MLPConfig, layers: list[dict]):
    """Inverse of ``mlp_layers``: a ``kl.models.MLP`` of ``config`` holding these arrays.

    Built on the abstract model (``nnx.eval_shape``): no random initialisation is compiled
    or run for weights that are replaced anyway.
    """
    from kitchenlab.models import MLP

    graphdef, state = nnx.split(nnx.eval_shape(lambda: MLP(config, rngs=nnx.Rngs(0))))
    pure = {"hidden": {i: {k: jnp.asarray(v) for k, v in layer.items()}
                       for i, layer in enumerate(layers[:-1])},
            "head": {k: jnp.asarray(v) for k, v in layers[-1].items()}}
    expected = jax.tree.map(lambda a: tuple(a.shape), nnx.to_pure_dict(state))
    got = jax.tree.map(lambda a: tuple(a.shape), pure)
    if got != expected:
        raise ValueError(f"layers do not fit config {config}: shapes {got}, expected {expected}")
    return nnx.merge(graphdef, pure)


def mlp_forward(layers: list[dict], x: jax.Array, *, activations: bool = False) -> jax.Array:
    """The MLP recipe from its layers: (B, F) -> (B, C). QTensor kernels run in int8 when
    ``activations`` (W8A8), else as dequantized float kernels."""
    for i, layer in enumerate(layers):
        w, b = layer["kernel"], layer["bias"]
        if _is_qtensor(w) and activations:
            x = int8_matmul(x, w) + b[None, :]  # (B, H)
        else:
            x = x @ (dequantize(w) if _is_qtensor(w) else w) + b[None, :]  # (B, H)
        if i < len(layers) - 1:
            x = jax.nn.relu(x)
    return x  # (B, C)


@functools.partial(jax.jit, static_argnames=("graphdef", "activations"))
def apply(graphdef, params, x, *, activations: bool = False) -> jax.Array:
    """Run a (quantized) model from its params: (B, F) -> (B, C), compiled once per shape.

    Weights only: the kernels are opened to float and the model's own ``__call__`` runs,
    so any nnx model works (an MLP, notebook 07's GPT). With ``activations`` every layer
    input is quantized per row and multiplied in int8 (MLP-shaped params).
    """
    if activations:
        return mlp_forward(mlp_layers(params), x, activations=True)
    return nnx.merge(graphdef, dequantize_params(params))(x)


@dataclasses.dataclass(frozen=True)
class Quantized:
    """The kitchen with spice packets: a model run from quantized params (a wrapper, not a subclass)."""

    graphdef: Any  # the model's structure (nnx.split), unchanged
    params: Any  # its params with kernels as QTensors
    activations: bool = False  # also quantize layer inputs and multiply int8 x int8

    @property
    def bits(self) -> int:
        return next(leaf.bits for _, leaf in named_leaves(self.params) if _is_qtensor(leaf))

    def __call__(self, x) -> jax.Array:
        return apply(self.graphdef, self.params, jnp.asarray(x, jnp.float32),
                     activations=self.activations)


def quantize_model(model, *, bits: int = 8, per_channel: bool = True,
                   activations: bool = False) -> Quantized:
    """Post-training quantization of a trained nnx model: ``Quantized`` (model untouched)."""
    if isinstance(model, Quantized):
        raise ValueError(f"model is already quantized ({model.bits}-bit): quantize the float "
                         "model once, not a quantized copy")
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax nnx.Module, got {type(model).__name__}")
    graphdef, params = nnx.split(model)
    return Quantized(graphdef, quantize_params(params, bits=bits, per_channel=per_channel),
                     activations=bool(activations))


# ---------------------------------------------------------------- the accuracy lesson
@functools.partial(jax.jit, static_argnames=("graphdef",))
def _bits_sweep(graphdef, params, bits, per_channel, x, y):
    ref = nnx.merge(graphdef, params)(x)  # (B, C) float32 logits

    def fake(a, b, pc):  # per channel or per tensor chosen by a traced flag: one compile
        m = qmax(b)
        scale = jnp.where(pc, _scale(a, b, True), _scale(a, b, False))  # (1, ..., N)
        return jnp.clip(jnp.round(a / scale), -m, m) * scale

    def one(b, pc):
        p = jax.tree.map(lambda a: fake(a, b, pc) if is_kernel(a) else a, params)
        logits = nnx.merge(graphdef, p)(x)  # (B, C)
        err = jnp.abs(logits - ref)
        return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
                "max_error": jnp.max(err), "mean_error": jnp.mean(err),
                "margin": jnp.min(jnp.abs(logits[:, 1] - logits[:, 0]))}

    return jax.vmap(one)(bits, per_channel), jnp.mean(jnp.argmax(ref, -1) == y)


def bits_sweep(model, data, bits=BITS, *, per_channel=True) -> dict:
    """Accuracy and logit error of ``model`` on ``data`` with its kernels at each bit width.

    One compiled call for every width (and both scale modes when ``per_channel=(True,
    False)``: then the result is ``{True: sweep, False: sweep}``). A sweep holds arrays over
    ``bits``: accuracy, max_error, mean_error (absolute logit error against float32),
    kernel_bytes (packed, scales included), margin (the smallest |logit gap| of any cake:
    a printed accuracy is stable across machines when it is not ~0); and float_accuracy,
    float_kernel_bytes.
    """
    bits = np.asarray([check_bits(int(b)) for b in np.ravel(bits)])
    modes = tuple(per_channel) if isinstance(per_channel, (tuple, list)) else (per_channel,)
    if not modes or not all(isinstance(m, bool) for m in modes):
        raise TypeError(f"per_channel must be True, False or a tuple of them, got {per_channel!r}")
    graphdef, params = nnx.split(model)
    check_float_params(params)
    grid_bits = np.tile(bits, len(modes))
    grid_modes = np.repeat(np.asarray(modes), len(bits))
    table, float_acc = _bits_sweep(graphdef, params, jnp.asarray(grid_bits, jnp.float32),
                                   jnp.asarray(grid_modes), jnp.asarray(data.x), jnp.asarray(data.y))
    out = {}
    for k, mode in enumerate(modes):
        rows = slice(k * len(bits), (k + 1) * len(bits))
        out[mode] = {name: np.asarray(v)[rows] for name, v in table.items()} | {
            "bits": bits, "float_accuracy": float(float_acc),
            "kernel_bytes": np.array([packed_bytes(params, int(b), per_channel=mode) for b in bits]),
            "float_kernel_bytes": nbytes(params, kernels_only=True)}
    return out if isinstance(per_channel, (tuple, list)) else out[modes[0]]
