"""Removing rarely used pans: magnitude pruning as masks, a masked fine-tune, and the real cut.

* ``magnitude_masks`` / ``apply_masks`` / ``prune``: zero the smallest-|w| kernel weights,
  each layer on its own (``scope="layer"``) or ranked across all kernels (``"global"``),
  as a ``params -> params`` transform; biases are never pruned.
* ``finetune``: a few epochs of Adam whose updates are masked, so a removed pan stays
  removed (the sparsity is kept exactly) while the remaining knobs make up for it.
* ``sparse_bytes`` / ``to_csr``: what a pruned model costs on disk in a sparse encoding.
* ``prune_units``: structured pruning: drop whole hidden units, so the matrices themselves
  shrink. Zeroing scattered weights makes a model smaller on disk; only this makes a dense
  matmul faster.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from kitchenlab.config import _check_finite, _check_positive_int
from kitchenlab.data import CakeData
from kitchenlab.quantize import (check_float_params, is_kernel, mlp_from_layers, mlp_layers,
                                 named_leaves)

SCOPES = ("layer", "global")
SPARSITIES = tuple(np.round(np.arange(0.0, 0.951, 0.05), 2))  # 0 ... 95 % in steps of 5 %


def check_sparsity(sparsity, name: str = "sparsity") -> float:
    """A fraction of kernel weights to remove, in [0, 1) (1 would remove every pan)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(sparsity).__name__} "
                        f"{sparsity!r}")
    if not (math.isfinite(sparsity) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"{name} must be in [0, 1) (the fraction of kernel weights removed), "
                         f"got {sparsity}")
    return float(sparsity)


def _n_remove(sparsity, n: int):
    """floor(sparsity * n): exact in float64 for a Python number; for a traced float32
    sparsity a small nudge keeps e.g. 0.3 * 1000 at 300, not 299.99997 -> 299."""
    if isinstance(sparsity, (int, float)):
        return int(math.floor(sparsity * n))
    return jnp.floor(sparsity * n + 1e-3).astype(jnp.int32)


def _keep_smallest_removed(score: jax.Array, sparsity) -> jax.Array:
    """Boolean mask keeping all but the ``floor(sparsity * n)`` smallest scores (exact count).

    Ranks break ties by position, so the count is exact even for equal weights; ``sparsity``
    may be traced (one compiled sweep over every level).
    """
    flat = score.reshape(-1)
    n_remove = _n_remove(sparsity, flat.size)
    if isinstance(n_remove, int) and not isinstance(score, jax.core.Tracer):
        # on the host: numpy's stable sort gives the same ranking without compiling
        keep = np.ones(flat.size, bool)
        keep[np.argsort(np.asarray(flat), kind="stable")[:n_remove]] = False
        return keep.reshape(score.shape)
    ranks = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)  # 0 = smallest |w|
    return (ranks >= n_remove).reshape(score.shape)


def _masks(params, sparsity, scope: str):
    """Traceable core of ``magnitude_masks``: kernels get boolean masks, other leaves all-True."""
    leaves, treedef = jax.tree.flatten(params)
    traced = not isinstance(sparsity, (int, float)) or any(
        isinstance(a, jax.core.Tracer) for a in leaves)
    xp = jnp if traced else np  # host arrays stay on the host (no compile per shape)
    if not traced:
        leaves = [np.asarray(a) for a in leaves]
    kernels = [i for i, a in enumerate(leaves) if is_kernel(a)]
    masks = [xp.ones(np.shape(a), bool) for a in leaves]
    if scope == "layer":
        for i in kernels:
            masks[i] = _keep_smallest_removed(xp.abs(leaves[i]), sparsity)
    else:  # one ranking over every kernel weight of the model
        flat = xp.concatenate([xp.abs(leaves[i]).reshape(-1) for i in kernels])
        keep, start = _keep_smallest_removed(flat, sparsity), 0
        for i in kernels:
            size = leaves[i].size
            masks[i] = keep[start:start + size].reshape(leaves[i].shape)
            start += size
    return jax.tree.unflatten(treedef, masks)


def magnitude_masks(params, sparsity: float, *, scope: str = "layer"):
    """Masks (same tree as ``params``) keeping the largest-|w| kernel weights.

    ``sparsity`` of every kernel's weights (``scope="layer"``) or of all kernel weights
    together (``"global"``: a layer with many small weights loses more) is set to False.
    """
    sparsity = check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    check_float_params(params)
    if not any(is_kernel(a) for _, a in named_leaves(params)):
        raise ValueError("params has no kernels (float arrays with >= 2 dimensions) to prune")
    return _masks(params, sparsity, scope)


@jax.jit
def apply_masks(params, masks):
    """``params -> params``: zero every weight whose mask is False."""
    return jax.tree.map(lambda a, m: jnp.where(m, a, jnp.zeros_like(a)), params, masks)


def prune(params, sparsity: float, *, scope: str = "layer"):
    """Magnitude pruning, ``params -> params`` (the pruned params; masks via ``magnitude_masks``)."""
    return apply_masks(params, magnitude_masks(params, sparsity, scope=scope))


def sparsity_of(params) -> float:
    """Fraction of kernel weights that are exactly zero."""
    kernels = [np.asarray(a) for _, a in named_leaves(params) if is_kernel(a)]
    return float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels))


# ---------------------------------------------------------------- stored size
def to_csr(kernel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compressed sparse rows of a 2-D kernel: (values float32, column index, row pointer).

    Column indices take the smallest unsigned type that fits (uint8 up to 256 columns).
    """
    k = np.asarray(kernel, np.float32)
    if k.ndim != 2:
        raise ValueError(f"kernel must be 2-D for CSR, got shape {k.shape}")
    rows, cols = np.nonzero(k)
    index_type = np.uint8 if k.shape[1] <= 2 ** 8 else np.uint16 if k.shape[1] <= 2 ** 16 else np.uint32
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=k.shape[0]))])
    return k[rows, cols], cols.astype(index_type), row_ptr.astype(np.int32)


def from_csr(values, cols, row_ptr, shape) -> np.ndarray:
    """Dense kernel back from ``to_csr``'s three arrays."""
    dense = np.zeros(shape, np.float32)
    rows = np.repeat(np.arange(shape[0]), np.diff(row_ptr))
    dense[rows, cols.astype(np.int64)] = values
    return dense


def sparse_bytes(params) -> int:
    """Bytes on disk with kernels in CSR (values + indices + row pointers), biases dense."""
    total = 0
    for _, a in named_leaves(params):
        a = np.asarray(a)
        if is_kernel(a) and a.ndim == 2:
            total += sum(part.nbytes for part in to_csr(a))
        else:
            total += a.nbytes
    return total


def dense_bytes(params) -> int:
    """Bytes on disk with every array stored densely (zeros included)."""
    return sum(int(np.asarray(a).nbytes) for _, a in named_leaves(params))


# ---------------------------------------------------------------- masked fine-tune
def keep_masked(masks) -> optax.GradientTransformation:
    """Removed pans stay removed: zero the update wherever the mask is False."""
    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None):
        return jax.tree.map(lambda u, m: jnp.where(m, u, jnp.zeros_like(u)), updates, masks), state

    return optax.GradientTransformation(init, update)


def _finetune(graphdef, params, masks, x, y, key, learning_rate, *, epochs, batch_size):
    """Adam, then the mask, for ``epochs`` shuffled passes (``lax.scan`` over epochs and batches)."""
    tx = optax.chain(optax.adam(learning_rate), keep_masked(masks))
    params = apply_masks(params, masks)
    n_batches = x.shape[0] // batch_size

    def loss_fn(p, xb, yb):
        logits = nnx.merge(graphdef, p)(xb)  # (B, C)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def batch_body(carry, batch):
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
        updates, s = tx.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss

    def epoch_body(carry, k):
        perm = jax.random.permutation(k, x.shape[0])[: n_batches * batch_size]
        xb = x[perm].reshape(n_batches, batch_size, x.shape[1])  # (n, B, F)
        yb = y[perm].reshape(n_batches, batch_size)  # (n, B)
        carry, losses = jax.lax.scan(batch_body, carry, (xb, yb))
        return carry, losses.mean()

    (params, _), losses = jax.lax.scan(epoch_body, (params, tx.init(params)),
                                       jax.random.split(key, epochs))
    return params, losses


_finetune_jit = jax.jit(_finetune, static_argnames=("graphdef", "epochs", "batch_size"))


@functools.partial(jax.jit, static_argnames=("graphdef", "epochs", "batch_size"))
def _finetune_many(graphdef, params, masks, x, y, xt, yt, key, learning_rate, *, epochs,
                   batch_size):
    """K masks (leading axis) fine-tuned at once (same start, same batches), then tasted."""
    def one(m):
        p, _ = _finetune(graphdef, params, m, x, y, key, learning_rate, epochs=epochs,
                         batch_size=batch_size)
        logits = nnx.merge(graphdef, p)(xt)  # (B, C)
        return p, jnp.mean(jnp.argmax(logits, -1) == yt)

    return jax.vmap(one)(masks)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """How the kitchen re-learns after the pans are gone."""

    epochs: int = 30  # passes over the training table (as many as the first training)
    learning_rate: float = 3e-3  # Adam step size
    batch_size: int = 64  # cakes per knob turn
    seed: int = 0  # shuffling

    def __post_init__(self):
        _check_positive_int("epochs", self.epochs)
        _check_finite("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("seed", self.seed, minimum=0)

    @classmethod
    def tiny(cls) -> "FinetuneConfig":
        return cls(epochs=2, batch_size=16)


def finetune(model: nnx.Module, masks, train: CakeData, config: FinetuneConfig = FinetuneConfig()):
    """Fine-tune ``model`` with its pruning ``masks`` kept; returns (params, losses per epoch).

    The model itself is not changed; ``nnx.merge(nnx.graphdef(model), params)`` is the
    fine-tuned one. Every masked weight is exactly zero before and after. ``masks=None``
    keeps every weight (a plain fine-tune, e.g. of a model cut by ``prune_units``).
    """
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a kl.prune.FinetuneConfig, got {type(config).__name__}")
    if not isinstance(train, CakeData):
        raise TypeError(f"train must be a CakeData table, got {type(train).__name__}")
    graphdef, params = nnx.split(model)
    check_float_params(params)
    if masks is None:
        masks = jax.tree.map(lambda a: np.ones(np.shape(a), bool), params)
    if jax.tree.structure(masks) != jax.tree.structure(params):
        raise ValueError("masks must have the same tree structure as the model's params "
                         "(build them with kl.prune.magnitude_masks(nnx.split(model)[1], ...))")
    if len(train) < config.batch_size:
        raise ValueError(f"train has {len(train)} cakes, fewer than batch_size "
                         f"{config.batch_size}")
    params, losses = _finetune_jit(graphdef, params, masks, jnp.asarray(train.x),
                                   jnp.asarray(train.y), jax.random.key(config.seed),
                                   jnp.float32(config.learning_rate), epochs=config.epochs,
                                   batch_size=config.batch_size)
    return params, np.asarray(losses)


@functools.partial(jax.jit, static_argnames=("graphdef", "scope"))
def _sweep_masks(graphdef, params, sparsities, x, y, *, scope):
    def one(s):
        m = _masks(params, s, scope)
        logits = nnx.merge(graphdef, apply_masks(params, m))(x)
        return m, jnp.mean(jnp.argmax(logits, -1) == y)

    masks, acc = jax.vmap(one)(sparsities)
    return masks, acc, jnp.mean(jnp.argmax(nnx.merge(graphdef, params)(x), -1) == y)


def sparsity_sweep(model: nnx.Module, train: CakeData, test: CakeData,
                   sparsities=SPARSITIES, *, scope: str = "global",
                   finetune_config: FinetuneConfig | None = FinetuneConfig()) -> dict:
    """Accuracy on ``test`` at every sparsity, before and after a masked fine-tune.

    Every level is pruned in one vmapped call and fine-tuned in another (same start, same
    batches). Returns arrays over ``sparsities``: accuracy, finetuned_accuracy (when
    ``finetune_config``; also finetuned_params), sparse_bytes, masks (leading axis K); and
    float_accuracy, dense_bytes of the unpruned model.
    """
    levels = np.asarray([check_sparsity(float(s)) for s in np.ravel(sparsities)], np.float32)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    graphdef, params = nnx.split(model)
    check_float_params(params)
    xt, yt = jnp.asarray(test.x), jnp.asarray(test.y)
    masks, acc, float_acc = _sweep_masks(graphdef, params, jnp.asarray(levels), xt, yt,
                                         scope=scope)
    host_params, host_masks = jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, masks)
    out = {"sparsity": levels, "accuracy": np.asarray(acc), "float_accuracy": float(float_acc),
           "dense_bytes": dense_bytes(params),
           "sparse_bytes": np.array([sparse_bytes(jax.tree.map(
               lambda a, m: np.where(m[i], a, 0), host_params, host_masks))
               for i in range(len(levels))])}
    if finetune_config is not None:
        c = finetune_config
        tuned, tuned_acc = _finetune_many(graphdef, params, masks, jnp.asarray(train.x),
                                          jnp.asarray(train.y), xt, yt, jax.random.key(c.seed),
                                          jnp.float32(c.learning_rate), epochs=c.epochs,
                                          batch_size=c.batch_size)
        out["finetuned_accuracy"] = np.asarray(tuned_acc)
        out["finetuned_params"] = tuned
    out["masks"] = masks
    return out


# ---------------------------------------------------------------- structured pruning
def prune_units(model: nnx.Module, sparsity: float) -> nnx.Module:
    """Structured pruning of an MLP: remove ``sparsity`` of every hidden layer's units.

    A unit's importance is the norm of its incoming weights times the norm of its outgoing
    weights (a pan that gets little or passes on little). The kept units' rows and columns
    are sliced out, so the new model (a fresh ``kl.models.MLP`` of smaller width) does
    less work in every matmul. The original model is not changed.
    """
    from kitchenlab.models import MLP

    sparsity = check_sparsity(sparsity)
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a kl.models.MLP (structured pruning slices its "
                        f"hidden units), got {type(model).__name__}")
    graphdef, params = nnx.split(model)
    check_float_params(params)
    layers = [{k: np.asarray(v) for k, v in layer.items()} for layer in mlp_layers(params)]
    width = model.config.width
    keep_n = max(1, width - int(math.floor(sparsity * width)))
    # every hidden layer's units, scored on the unpruned model; the head keeps its classes
    keeps = [np.sort(np.argsort(-(np.linalg.norm(layers[i]["kernel"], axis=0)
                                  * np.linalg.norm(layers[i + 1]["kernel"], axis=1)),
                                kind="stable")[:keep_n]) for i in range(len(layers) - 1)]
    for i, keep in enumerate(keeps):
        layers[i] = {"kernel": layers[i]["kernel"][:, keep], "bias": layers[i]["bias"][keep]}
        layers[i + 1] = dict(layers[i + 1], kernel=layers[i + 1]["kernel"][keep, :])
    return mlp_from_layers(dataclasses.replace(model.config, width=keep_n), layers)


def matching_sparsity(model: nnx.Module, units: float) -> float:
    """The unstructured sparsity that keeps as many kernel weights as ``prune_units(model,
    units)``: the fair level to compare the two kinds of pruning at (same knob count)."""
    small = prune_units(model, units)
    kept = sum(int(np.size(layer["kernel"])) for layer in mlp_layers(nnx.split(small)[1]))
    total = sum(int(np.size(layer["kernel"])) for layer in mlp_layers(nnx.split(model)[1]))
    return 1.0 - kept / total


def pruning_speed(width: int = 1024, batch: int = 1024, *, sparsity: float = 0.9,
                  units: float = 0.5, seed: int = 0, budget_s: float = 0.5) -> dict:
    """Float32 forward time of a banquet MLP: dense vs unstructured vs structured pruning.

    Unstructured: ``sparsity`` of the kernel weights zeroed (same matrix shapes).
    Structured: ``units`` of every hidden layer's units removed (smaller matrices).
    Each is timed interleaved with the dense model in the same run; speedups > 1 are faster.
    """
    from kitchenlab.quant_speed import banquet, compiled_forward, time_pair

    model = banquet(width, seed=seed)
    graphdef, params = nnx.split(model)
    zeroed = prune(params, sparsity, scope="layer")
    small = prune_units(model, units)
    small_graphdef, small_params = nnx.split(small)
    x = jnp.asarray(np.random.default_rng(seed).standard_normal((batch, model.config.n_features)),
                    jnp.float32)

    def run(g, p):
        forward = compiled_forward(g, p)
        return lambda: jax.block_until_ready(forward(x))

    dense_a, zero_s = time_pair(run(graphdef, params), run(graphdef, zeroed), budget_s=budget_s)
    dense_b, small_s = time_pair(run(graphdef, params), run(small_graphdef, small_params),
                                 budget_s=budget_s)
    return {"width": width, "batch": batch, "dense_s": min(dense_a, dense_b),
            "unstructured_sparsity": sparsity_of(zeroed), "unstructured_s": zero_s,
            "unstructured_speedup": dense_a / zero_s, "structured_width": small.config.width,
            "structured_s": small_s, "structured_speedup": dense_b / small_s,
            "dense_bytes": dense_bytes(params), "unstructured_sparse_bytes": sparse_bytes(zeroed),
            "structured_bytes": dense_bytes(small_params)}
