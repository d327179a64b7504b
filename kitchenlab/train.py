"""The apprenticeship: the judge's score, the judge's notes, and the sous-chef's knob turns.

Three ways to train, all computing the same thing:

* ``fit(..., fused=False)``: a plain Python loop over epochs and batches around one
  jit-compiled ``train_step`` (pure: params in, params out). Easiest to read.
* ``fit(..., fused=True)`` (default): whole epochs inside ``lax.scan``, compiled once, so a
  30-epoch run is one call into XLA. This is what makes sliders answer fast.
* ``sweep(...)``: the fused run ``vmap``-ed over hyperparameters (16 learning rates at once).

The hyperparameters that sliders move (learning rate, clip norm, dropout, weight decay, L2)
travel as traced arrays in ``Hyper``, so changing them never recompiles.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from kitchenlab.config import OPTIMIZERS, TrainConfig
from kitchenlab.data import CakeData, check_batch_size, check_features

EXPLODED_LOSS = 1e3  # a judge's score this bad means the kitchen is on fire


# ---------------------------------------------------------------- the judge's score
def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The picky judge: mean negative log-probability of the right verdict. (B, C), (B,) -> ()."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of cakes whose most likely verdict is the right one."""
    return (jnp.argmax(logits, axis=-1) == labels).mean()


class Hyper(NamedTuple):
    """Knob-turning settings that may change without recompiling (each a float array)."""

    learning_rate: jax.Array  # peak step size
    momentum: jax.Array  # for the "momentum" optimizer
    clip_norm: jax.Array  # max global gradient norm; inf = no cap on the gas valve
    weight_decay: jax.Array  # decoupled decay (the AdamW way)
    l2: jax.Array  # L2 penalty added to the loss (the classic way)
    dropout: jax.Array  # rate of switched-off hidden units while training
    adaptive: jax.Array = 1.0  # 1: Adam's per-knob step sizes; 0: SGD/momentum direction


def hyper(config: TrainConfig, model_dropout: float = 0.0) -> Hyper:
    """The traced hyperparameters of ``config`` (dropout falls back to the model's)."""
    wd = config.weight_decay
    if config.optimizer == "adamw" and wd == 0.0:
        wd = 1e-4  # optax's default for AdamW
    return Hyper(
        learning_rate=jnp.float32(config.learning_rate),
        momentum=jnp.float32(config.momentum if config.optimizer == "momentum" else 0.0),
        clip_norm=jnp.float32(np.inf if config.clip_norm is None else config.clip_norm),
        weight_decay=jnp.float32(wd),
        l2=jnp.float32(config.l2),
        dropout=jnp.float32(model_dropout if config.dropout is None else config.dropout),
        adaptive=jnp.float32(config.optimizer in ("adam", "adamw")),
    )


# ---------------------------------------------------------------- the sous-chef
def lr_schedule(config: TrainConfig, learning_rate, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate as a function of the step: constant, cosine, warm-up + cosine, exponential."""
    total = max(config.epochs * steps_per_epoch, 1)
    if config.schedule == "constant":
        shape = optax.constant_schedule(1.0)
    elif config.schedule == "cosine":
        shape = optax.cosine_decay_schedule(1.0, total)
    elif config.schedule == "warmup_cosine":
        shape = optax.warmup_cosine_decay_schedule(
            0.0, 1.0, config.warmup_epochs * steps_per_epoch, total)
    else:  # "exponential": down to 1 % of the peak by the last step
        shape = optax.exponential_decay(1.0, transition_steps=total, decay_rate=0.01)
    return lambda step: learning_rate * shape(step)


def _is_kernel(path) -> bool:
    return "kernel" in jax.tree_util.keystr(path)


def _kernels_only(params):
    """Mask for weight decay: the fine is for big knobs (kernels), not for offsets (biases)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: _is_kernel(path), params)


def l2_penalty(params) -> jax.Array:
    """Half the sum of squared kernel weights: the L2 fine (biases go free, as in decay)."""
    return 0.5 * sum(jnp.sum(p ** 2) for path, p in jax.tree_util.tree_leaves_with_path(params)
                     if _is_kernel(path))


def _around(direction: optax.GradientTransformation, hp: Hyper,
            schedule: optax.Schedule | None) -> optax.GradientTransformation:
    """clip -> ``direction`` -> decoupled decay on the kernels -> scale by the learning rate."""
    return optax.chain(optax.clip_by_global_norm(hp.clip_norm), direction,
                       optax.add_decayed_weights(hp.weight_decay, mask=_kernels_only),
                       optax.scale_by_learning_rate(schedule or hp.learning_rate))


def make_optimizer(name: str, hp: Hyper, schedule: optax.Schedule | None = None
                   ) -> optax.GradientTransformation:
    """The sous-chef, composed from optax pieces the way optax builds its own optimizers.

    clip (gas-valve cap) -> direction (plain / momentum / Adam) -> decoupled weight decay
    on the kernels (so "adam" with ``weight_decay > 0`` is AdamW) -> scale by the
    (scheduled) learning rate.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if name == "momentum":
        direction = optax.trace(decay=hp.momentum)
    elif name in ("adam", "adamw"):
        direction = optax.scale_by_adam()
    else:  # "sgd": the notes as they are
        direction = optax.identity()
    return _around(direction, hp, schedule)


def _switchable_direction(hp: Hyper) -> optax.GradientTransformation:
    """Momentum (SGD when momentum = 0) or Adam, chosen by the traced ``hp.adaptive``.

    Both directions are computed and one is selected, so every sous-chef shares one compiled
    training program: on a CPU each compile costs seconds, the extra arithmetic microseconds.
    The selected update is exactly what ``make_optimizer`` would give (tested).
    """
    sgd_like, adam = optax.trace(decay=hp.momentum), optax.scale_by_adam()

    def init(params):
        return sgd_like.init(params), adam.init(params)

    def update(grads, state, params=None):
        u_sgd, s_sgd = sgd_like.update(grads, state[0], params)
        u_adam, s_adam = adam.update(grads, state[1], params)
        pick = jnp.asarray(hp.adaptive) > 0.5
        return jax.tree.map(lambda a, b: jnp.where(pick, b, a), u_sgd, u_adam), (s_sgd, s_adam)

    return optax.GradientTransformation(init, update)


def make_fused_optimizer(hp: Hyper, schedule: optax.Schedule | None = None
                         ) -> optax.GradientTransformation:
    """``make_optimizer`` with the sous-chef chosen by ``hp`` (traced) instead of by name."""
    return _around(_switchable_direction(hp), hp, schedule)


# ---------------------------------------------------------------- one step
def loss_fn(params, graphdef, x, y, *, key, hp: Hyper):
    """Pure: knob settings -> (judge's score, logits). ``key=None`` means no dropout."""
    model = nnx.merge(graphdef, params)
    logits = model(x, dropout_key=key, dropout_rate=hp.dropout)  # (B, C)
    return cross_entropy(logits, y) + hp.l2 * l2_penalty(params), logits


def _step(graphdef, tx, params, opt_state, x, y, key, hp):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, graphdef, x, y, key=key, hp=hp)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {"loss": loss, "accuracy": accuracy(logits, y),
               "grad_norm": optax.tree.norm(grads)}
    return params, opt_state, metrics


@functools.partial(jax.jit, static_argnames=("graphdef", "tx"))
def train_step(graphdef, tx, params, opt_state, x, y, key, hp: Hyper):
    """One knob turn: judge a batch, read the notes (grad), let the sous-chef turn (update)."""
    return _step(graphdef, tx, params, opt_state, x, y, key, hp)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def eval_step(graphdef, params, x, y, hp: Hyper):
    """Guest tasting: loss and accuracy without dropout or updates."""
    logits = nnx.merge(graphdef, params)(x)  # the L2 fine is a training rule, not the taste
    return {"loss": cross_entropy(logits, y), "accuracy": accuracy(logits, y)}


def nnx_train_step(model: nnx.Module, optimizer: nnx.Optimizer, x, y):
    """The textbook NNX step (stateful model and optimizer), for comparison and teaching.

    Wrap it with ``nnx.jit`` to use it; ``fit`` uses the functional ``train_step`` instead
    because ``nnx.jit`` re-walks the object graph on every call (see benchmarks/).
    """
    def loss(model):
        return cross_entropy(model(x), y)

    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)
    return value


# ---------------------------------------------------------------- whole runs
def _shuffle_batches(key, x, y, batch_size: int):
    """Fixed-shape epoch: (n_batches, B, F), (n_batches, B); the remainder sits out."""
    n_batches = x.shape[0] // batch_size
    perm = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size]
    return (x[perm].reshape(n_batches, batch_size, x.shape[1]),
            y[perm].reshape(n_batches, batch_size))


def static_part(config: TrainConfig) -> TrainConfig:
    """``config`` with every traced field reset: the compile cache key.

    The optimizer, learning rate, momentum, clip norm, weight decay, L2, dropout and seed
    reach the compiled run as arrays, so changing them reuses one compiled function.
    """
    return config.replace(optimizer="adam", learning_rate=1.0, momentum=0.9, clip_norm=None,
                          weight_decay=0.0, l2=0.0, dropout=None, seed=0)


def _finite_tree(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _where_tree(pred, a, b):
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


@functools.partial(jax.jit, static_argnames=(
    "graphdef", "config", "batch_size", "has_val"))
def _fused_run(graphdef, config: TrainConfig, params, hp: Hyper, x, y, xv, yv, key, *,
               batch_size: int, has_val: bool):
    """All epochs in one compiled call (``lax.scan`` over epochs, then over batches).

    After divergence (non-finite or exploded loss) or early stopping the knobs are frozen:
    a scan cannot break, so the remaining epochs run but change nothing. Freezing happens
    per epoch (an epoch with a bad step is rolled back whole), which keeps the per-step work
    to the step itself: per-step selects over all knobs cost ~30 % of a small model's run.
    """
    steps_per_epoch = x.shape[0] // batch_size
    tx = make_fused_optimizer(hp, lr_schedule(config, hp.learning_rate, steps_per_epoch))
    patience = config.patience if config.patience is not None else config.epochs + 1
    zero = jnp.int32(0)

    def batch_body(carry, batch):
        params, opt_state, bad_step, step = carry
        xb, yb, k = batch
        params, opt_state, m = _step(graphdef, tx, params, opt_state, xb, yb, k, hp)
        # A non-finite update shows up as a non-finite loss one step later (and at the
        # epoch's tasting below), so the loss alone is checked per step: cheaper.
        ok = jnp.isfinite(m["loss"]) & (m["loss"] < EXPLODED_LOSS)
        bad_step = jnp.where((bad_step < 0) & ~ok, step, bad_step)
        return (params, opt_state, bad_step, step + 1), (m["loss"], m["accuracy"])

    def epoch_body(carry, epoch_key):
        params, opt_state, bad_step, step, best, since_best, stopped = carry
        bad_before = bad_step
        k_shuffle, k_drop = jax.random.split(epoch_key)
        xb, yb = _shuffle_batches(k_shuffle, x, y, batch_size)
        keys = jax.random.split(k_drop, xb.shape[0])
        (new_params, new_opt, bad_step, step), (losses, accs) = jax.lax.scan(
            batch_body, (params, opt_state, bad_step, step), (xb, yb, keys))
        # knobs that went non-finite on the epoch's last turn: diverged there
        bad_step = jnp.where((bad_step < 0) & ~_finite_tree(new_params), step - 1, bad_step)
        bad_step = jnp.where(stopped, bad_before, bad_step)  # epochs after a stop never diverge
        roll_back = stopped | (bad_step >= 0)  # keep the knobs from before this epoch
        params = _where_tree(roll_back, params, new_params)
        opt_state = _where_tree(roll_back, opt_state, new_opt)
        tr = {"loss": losses.mean(), "accuracy": accs.mean()}
        va = eval_step.__wrapped__(graphdef, params, xv, yv, hp) if has_val else tr
        best_params, best_loss, best_epoch = best
        improved = (va["loss"] < best_loss) & ~stopped & (bad_step < 0)
        epoch = step // steps_per_epoch - 1
        best = (_where_tree(improved, params, best_params),
                jnp.where(improved, va["loss"], best_loss),
                jnp.where(improved, epoch, best_epoch))
        since_best = jnp.where(improved, 0, since_best + 1)
        now_stopped = stopped | (since_best >= patience)
        record = {"train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                  "val_loss": va["loss"], "val_accuracy": va["accuracy"],
                  "active": ~stopped}
        return (params, opt_state, bad_step, step, best, since_best, now_stopped), record

    opt_state = tx.init(params)
    best = (params, jnp.float32(jnp.inf), jnp.int32(-1))
    carry = (params, opt_state, jnp.int32(-1), zero, best, zero, jnp.bool_(False))
    carry, records = jax.lax.scan(epoch_body, carry, jax.random.split(key, config.epochs))
    params, _, bad_step, _, (best_params, _, best_epoch), _, _ = carry
    return params, best_params, best_epoch, bad_step, records


# ---------------------------------------------------------------- results
@dataclasses.dataclass
class History:
    """The apprenticeship diary: one entry per completed epoch (day of baking).

    ``train_*`` are means over the epoch's batches, each judged just before its knob turn
    (with dropout on, if any) — the usual running training loss, free to compute.
    ``val_*`` are measured after the epoch on the whole validation table, dropout off.
    """

    train_loss: np.ndarray
    train_accuracy: np.ndarray
    val_loss: np.ndarray | None
    val_accuracy: np.ndarray | None
    best_epoch: int | None = None  # epoch (0-based) with the lowest validation loss
    stopped_epoch: int | None = None  # set when early stopping ended training
    diverged_at_step: int | None = None  # 1-based knob turn at which the loss blew up
    message: str = ""  # one human sentence on how training went

    @property
    def diverged(self) -> bool:
        return self.diverged_at_step is not None

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def divergence_message(step: int, steps_per_epoch: int, lr: float) -> str:
    epoch = (step - 1) // steps_per_epoch + 1
    return (f"exploded: loss became NaN/inf (or > {EXPLODED_LOSS:g}) at step {step} "
            f"(epoch {epoch}) with learning rate {lr:.3g}: learning rate too bold? "
            "Try a smaller rate or gradient clipping.")


def _history(records, best_epoch, bad_step, config: TrainConfig, steps_per_epoch: int,
             has_val: bool, lr: float) -> History:
    rec = {k: np.asarray(v) for k, v in records.items()}
    n = int(rec["active"].sum())  # epochs actually trained (early stopping freezes the rest)
    diverged_at = int(bad_step) + 1 if int(bad_step) >= 0 else None
    if diverged_at is not None:
        n = min(n, (diverged_at - 1) // steps_per_epoch)  # keep only epochs before the blow-up
    cut = {k: v[:n] for k, v in rec.items()}
    stopped = n - 1 if (config.patience is not None and n < config.epochs and diverged_at is None) else None
    if diverged_at is not None:
        msg = divergence_message(diverged_at, steps_per_epoch, lr)
    elif stopped is not None:
        msg = (f"early stop after epoch {stopped + 1}: no validation gain for "
               f"{config.patience} epochs; best epoch {int(best_epoch) + 1} restored")
    else:
        msg = f"trained {n} epochs"
    return History(
        train_loss=cut["train_loss"], train_accuracy=cut["train_accuracy"],
        val_loss=cut["val_loss"] if has_val else None,
        val_accuracy=cut["val_accuracy"] if has_val else None,
        best_epoch=int(best_epoch) if (has_val and int(best_epoch) >= 0) else None,
        stopped_epoch=stopped, diverged_at_step=diverged_at, message=msg)


def _check_data(model, train: CakeData, val: CakeData | None, config: TrainConfig):
    if getattr(model, "laminated", False):
        raise TypeError("model is a laminated Service: it refuses to be trained. Get a "
                        "trainable copy with kl.serve.load_model(folder)")
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax nnx.Module (e.g. kl.models.MLP), "
                        f"got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(train, CakeData):
        raise TypeError(f"train must be a CakeData table, got {type(train).__name__}")
    if len(train) == 0:
        raise ValueError("train is empty: need at least one cake to train on")
    n_features = model.config.n_features
    check_features(train.x, "train.x", n_features=n_features)
    check_batch_size(config.batch_size, len(train))
    if val is not None:
        if len(val) == 0:
            raise ValueError("val is empty: the validation split has 0 cakes; "
                             "use a val_fraction > 0 or pass val=None")
        check_features(val.x, "val.x", n_features=n_features)
    if config.patience is not None and val is None:
        raise ValueError("patience (early stopping) needs a validation set: pass val=...")
    n_classes = model.config.n_classes
    for name, d in (("train.y", train), ("val.y", val)):
        if d is not None and (d.y.min() < 0 or d.y.max() >= n_classes):
            raise ValueError(f"{name} labels must be in [0, {n_classes}), got "
                             f"[{d.y.min()}, {d.y.max()}]")


def fit(model: nnx.Module, train: CakeData, val: CakeData | None, config: TrainConfig, *,
        fused: bool = True, on_epoch: Callable[[int, dict], None] | None = None) -> History:
    """Train ``model`` in place and return its ``History``.

    Divergence never raises: training stops, the knobs keep their last finite values and
    ``history.message`` says at which step the loss blew up. With ``config.patience`` the
    best validation epoch's weights are restored.
    ``on_epoch(epoch, metrics)`` (unfused path only) reports progress.
    """
    _check_data(model, train, val, config)
    graphdef, params = nnx.split(model)
    hp = hyper(config, model.config.dropout)
    key = jax.random.key(config.seed)
    steps_per_epoch = len(train) // config.batch_size
    has_val = val is not None
    xv, yv = (val.x, val.y) if has_val else (train.x[:1], train.y[:1])
    if fused:
        params, best_params, best_epoch, bad_step, records = _fused_run(
            graphdef, static_part(config), params, hp, train.x, train.y, xv, yv, key,
            batch_size=config.batch_size, has_val=has_val)
    else:
        params, best_params, best_epoch, bad_step, records = _loop_run(
            graphdef, config, params, hp, train, (xv, yv), key, has_val, on_epoch)
    history = _history(records, best_epoch, bad_step, config, steps_per_epoch, has_val,
                       config.learning_rate)
    if config.patience is not None and history.best_epoch is not None:
        params = best_params
    nnx.update(model, params)
    return history


def _loop_run(graphdef, config, params, hp, train, val_xy, key, has_val, on_epoch):
    """The readable twin of ``_fused_run``: a Python loop around the jitted ``train_step``."""
    steps_per_epoch = len(train) // config.batch_size
    tx = make_optimizer(config.optimizer, hp,
                        lr_schedule(config, hp.learning_rate, steps_per_epoch))
    opt_state = tx.init(params)
    records = {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "active")}
    best = (params, np.inf, -1)
    bad_step, since_best, step = -1, 0, 0
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    for epoch, epoch_key in enumerate(jax.random.split(key, config.epochs)):
        k_shuffle, k_drop = jax.random.split(epoch_key)
        xb, yb = _shuffle_batches(k_shuffle, x, y, config.batch_size)
        day = []  # (loss, accuracy) of each tray, judged with the knobs before its turn
        for xs, ys, k in zip(xb, yb, jax.random.split(k_drop, xb.shape[0])):
            new_params, new_opt, m = train_step(graphdef, tx, params, opt_state, xs, ys, k, hp)
            loss = float(m["loss"])
            if not (math.isfinite(loss) and loss < EXPLODED_LOSS):
                bad_step = step
                break
            params, opt_state, step = new_params, new_opt, step + 1
            day.append((m["loss"], m["accuracy"]))
        if bad_step < 0 and not bool(_finite_tree(params)):  # same rule as the fused run
            bad_step = step - 1
        if bad_step >= 0:
            break
        tr = dict(zip(("loss", "accuracy"), np.mean(np.asarray(day), axis=0)))
        va = eval_step(graphdef, params, *val_xy, hp) if has_val else tr
        for name, value in (("train_loss", tr["loss"]), ("train_accuracy", tr["accuracy"]),
                            ("val_loss", va["loss"]), ("val_accuracy", va["accuracy"])):
            records[name].append(float(value))
        records["active"].append(True)
        if on_epoch is not None:
            on_epoch(epoch, {k: v[-1] for k, v in records.items() if k != "active"})
        if float(va["loss"]) < best[1]:
            best, since_best = (params, float(va["loss"]), epoch), 0
        else:
            since_best += 1
            if config.patience is not None and since_best >= config.patience:
                break
    return params, best[0], best[2], bad_step, records


# ---------------------------------------------------------------- many kitchens at once
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
    return arr


def sweep(model: nnx.Module, train: CakeData, val: CakeData, config: TrainConfig,
          **axes) -> Sweep:
    """Train K copies of ``model`` (same start, same batches) at once with ``vmap``.

    ``axes`` name ``Hyper`` fields with K values each, e.g. ``learning_rate=[1e-3, 1e-2]``
    or ``dropout=[...], weight_decay=[...]`` (paired element-wise; build grids with
    ``np.meshgrid``). One compile serves every K of the same size.
    """
    _check_data(model, train, val, config)
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
                 best_epoch=np.asarray(best_epoch))


def shard_runs(tree, k: int):
    """Spread K independent runs over the local devices: (tree, K padded).

    Every leaf whose leading axis is K is padded (repeating its last run) to a multiple of
    the device count and sharded along that axis; other leaves are shared. jit then
    partitions the vmapped program so each device (``kl.setup()`` makes a 2-core CPU two
    devices) trains its share of the runs: a chain of kitchens in miniature (notebook 10).
    Slice results back to ``[:k]``.
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
