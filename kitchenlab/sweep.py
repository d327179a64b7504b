"""Many kitchens at once: the fused training run ``vmap``-ed over hyperparameters.

``sweep(model, train, val, config, learning_rate=[...])`` trains K copies of a model that
differ only in traced hyperparameters (``kl.optim.Hyper`` fields): one compiled program,
K kitchens baking side by side. ``shard_runs`` spreads the K runs over the local devices
(``kl.setup()`` splits a 2-core CPU into two XLA devices): a chain of kitchens in miniature,
which notebook 10 grows into real data-parallel training.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kitchenlab.config import TrainConfig
from kitchenlab.data import CakeData
from kitchenlab.optim import Hyper, hyper
from kitchenlab.train import _fused_run, check_training_data, static_part


@dataclasses.dataclass
class Sweep:
    """Histories of K runs that differ only in the swept hyperparameters: arrays (K, epochs)."""

    values: dict[str, np.ndarray]  # the swept settings, each (K,)
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    diverged_at_step: np.ndarray  # (K,), 1-based step or -1 when the run stayed finite
    best_epoch: np.ndarray  # (K,)
    grad_norm: np.ndarray  # (K, epochs * steps_per_epoch): the notes' size at every turn

    def __len__(self) -> int:
        return self.val_loss.shape[0]


def check_sweep_axis(name: str, values, dtype=np.float32) -> np.ndarray:
    """Validate one swept hyperparameter: a non-empty 1-D list of finite, in-range values."""
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} must list at least one value, got an empty sequence")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} values must be finite, got {arr.tolist()}")
    if name == "learning_rate" and np.any(arr <= 0):
        raise ValueError(f"learning_rate values must be > 0, got {arr.tolist()}")
    if name == "dropout" and np.any((arr < 0) | (arr >= 1)):
        raise ValueError(f"dropout values must be in [0, 1), got {arr.tolist()}")
    if name in ("weight_decay", "l2") and np.any(arr < 0):
        raise ValueError(f"{name} values must be >= 0, got {arr.tolist()}")
    if name == "clip_norm" and np.any(arr <= 0):
        raise ValueError(f"clip_norm values must be > 0, got {arr.tolist()}")
    if name == "momentum" and np.any((arr < 0) | (arr >= 1)):
        raise ValueError(f"momentum values must be in [0, 1), got {arr.tolist()}")
    if name == "adaptive" and np.any((arr != 0) & (arr != 1)):
        raise ValueError(f"adaptive values must be 0 (SGD/momentum) or 1 (Adam), "
                         f"got {arr.tolist()}")
    return arr


def sweep(model: nnx.Module, train: CakeData, val: CakeData, config: TrainConfig,
          **axes) -> Sweep:
    """Train K copies of ``model`` (same start, same batches) at once with ``vmap``.

    ``axes`` name ``Hyper`` fields with K values each, e.g. ``learning_rate=[1e-3, 1e-2]``
    or ``dropout=[...], weight_decay=[...]`` (paired element-wise; build grids with
    ``np.meshgrid``). ``adaptive=[0, 1]`` with ``momentum=[0.9, 0]`` races momentum against
    Adam in the same call. One compile serves every K of the same size.
    """
    check_training_data(model, train, val, config)
    if val is None:
        raise ValueError("val must be a CakeData table for a sweep, got None")
    unknown = set(axes) - set(Hyper._fields)
    if unknown:
        raise ValueError(f"unknown sweep axis {sorted(unknown)}; choose from {Hyper._fields}")
    if not axes:
        raise ValueError(f"sweep needs at least one axis from {Hyper._fields}")
    values = {name: check_sweep_axis(name, v) for name, v in axes.items()}
    sizes = {name: v.size for name, v in values.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"sweep axes must have equal lengths, got {sizes}")
    k = next(iter(sizes.values()))
    base = hyper(config, model.config.dropout)
    # Swept fields carry the K values (vmapped); the others stay scalars shared by every
    # run, so e.g. a zero dropout rate still skips its random numbers inside the vmap.
    hp = Hyper(*[jnp.asarray(values[f]) if f in values else jnp.asarray(getattr(base, f))
                 for f in Hyper._fields])
    swept = tuple(f in values for f in Hyper._fields)
    hp, _ = shard_runs(hp, k)
    graphdef, params = nnx.split(model)
    _, _, best_epoch, bad_step, records = _sweep_run(
        graphdef, static_part(config), params, hp, train.x, train.y, val.x, val.y,
        jax.random.key(config.seed), batch_size=config.batch_size, swept=swept)
    rec = {name: np.asarray(v)[:k] for name, v in records.items()}
    bad, best_epoch = np.asarray(bad_step)[:k], np.asarray(best_epoch)[:k]
    return Sweep(values=values, train_loss=rec["train_loss"],
                 train_accuracy=rec["train_accuracy"], val_loss=rec["val_loss"],
                 val_accuracy=rec["val_accuracy"],
                 diverged_at_step=np.where(bad >= 0, bad + 1, -1),
                 best_epoch=np.asarray(best_epoch),
                 grad_norm=rec["grad_norm"].reshape(k, -1))


def shard_runs(tree, k: int):
    """Spread K independent runs over the local devices: (tree, K padded).

    Every leaf whose leading axis is K is padded (repeating its last run) to a multiple of
    the device count and sharded along that axis; other leaves are shared. jit then
    partitions the vmapped program so each device (``kl.setup()`` makes a 2-core CPU two
    devices) trains its share of the runs. Slice results back to ``[:k]``.
    """
    devices = jax.local_devices()
    if len(devices) < 2:
        return tree, k
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    k_pad = -(-k // len(devices)) * len(devices)
    runs = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))

    def spread(leaf):
        leaf = jnp.asarray(leaf)
        if leaf.ndim == 0 or leaf.shape[0] != k:
            return leaf
        if k_pad > k:
            leaf = jnp.concatenate([leaf, jnp.repeat(leaf[-1:], k_pad - k, axis=0)])
        return jax.device_put(leaf, runs)

    return jax.tree.map(spread, tree), k_pad


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "batch_size", "swept"))
def _sweep_run(graphdef, config, params, hp, x, y, xv, yv, key, *, batch_size, swept):
    def one(h):
        return _fused_run.__wrapped__(graphdef, config, params, h, x, y, xv, yv, key,
                                      batch_size=batch_size, has_val=True)
    in_axes = Hyper(*[0 if s else None for s in swept])
    return jax.vmap(one, in_axes=(in_axes,))(hp)
