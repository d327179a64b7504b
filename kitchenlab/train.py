"""The apprenticeship: the judge's score, the judge's notes, and the knob turns, day after day.

Two ways to train, computing the same thing (tested: same losses, same final knobs, also
when a run blows up):

* ``fit(..., fused=False)``: a plain Python loop over epochs and batches around one
  jit-compiled step (pure: knobs in, knobs out). Easiest to read and to step through.
* ``fit(..., fused=True)`` (default): whole epochs inside ``lax.scan``, compiled once, so a
  30-epoch run is one call into XLA. This is what makes sliders answer fast.

Many runs at once (``vmap`` over hyperparameters) live in ``kl.sweep``; the optimizers and
their traced hyperparameters in ``kl.optim``. Both paths compile once per model shape and
plan length: learning rate, momentum, clip norm, weight decay, L2, dropout and even the
choice of optimizer are traced (``kl.optim.Hyper``), so changing them compiles nothing.

Divergence never raises: a step whose loss is NaN/inf or above ``EXPLODED_LOSS`` (checked
before every knob turn, and on the epoch's last batch after its last turn) ends training,
the whole epoch it happened in is rolled back, and ``History.message`` says where.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from kitchenlab.config import TrainConfig
from kitchenlab.data import CakeData, check_batch_size, check_features
from kitchenlab.optim import Hyper, hyper, l2_penalty, lr_schedule, make_fused_optimizer

EXPLODED_LOSS = 1e3  # a judge's score this bad means the kitchen is on fire


# ---------------------------------------------------------------- the judge's score
def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The picky judge: mean negative log-probability of the right verdict. (B, C), (B,) -> ()."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of cakes whose most likely verdict is the right one."""
    return (jnp.argmax(logits, axis=-1) == labels).mean()


def loss_fn(params, graphdef, x, y, *, key, hp: Hyper):
    """Pure: knob settings -> (judge's score, logits). ``key=None`` means no dropout."""
    model = nnx.merge(graphdef, params)
    logits = model(x, dropout_key=key, dropout_rate=hp.dropout)  # (B, C)
    return cross_entropy(logits, y) + hp.l2 * l2_penalty(params), logits


# ---------------------------------------------------------------- one step
def _step(graphdef, tx, params, opt_state, x, y, key, hp):
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, graphdef, x, y, key=key, hp=hp)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {"loss": loss, "accuracy": accuracy(logits, y),
               "grad_norm": optax.tree.norm(grads)}  # before clipping: what the judge wrote
    return params, opt_state, metrics


@functools.partial(jax.jit, static_argnames=("graphdef", "tx"))
def train_step(graphdef, tx, params, opt_state, x, y, key, hp: Hyper):
    """One knob turn: judge a batch, read the notes (grad), let the sous-chef turn (update).

    ``tx`` is any optax optimizer (static: a new one compiles again). ``fit`` uses the same
    step with the optimizer built from traced ``hp`` instead, so it compiles once.
    """
    return _step(graphdef, tx, params, opt_state, x, y, key, hp)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def eval_step(graphdef, params, x, y):
    """Guest tasting: loss and accuracy without dropout or updates (the L2 fine is a
    training rule, not part of the taste)."""
    logits = nnx.merge(graphdef, params)(x)
    return {"loss": cross_entropy(logits, y), "accuracy": accuracy(logits, y)}


def nnx_train_step(model: nnx.Module, optimizer: nnx.Optimizer, x, y):
    """The textbook NNX step (stateful model and optimizer), for comparison and teaching.

    Wrap it with ``nnx.jit`` to use it; ``fit`` uses the functional step instead because
    ``nnx.jit`` re-walks the object graph on every call (see benchmarks/).
    """
    def loss(model):
        return cross_entropy(model(x), y)

    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)
    return value


# ---------------------------------------------------------------- pieces both paths share
def static_part(config: TrainConfig) -> TrainConfig:
    """``config`` with every traced field reset: the compile cache key.

    The optimizer, learning rate, momentum, clip norm, weight decay, L2, dropout and seed
    reach the compiled run as arrays, so changing them reuses one compiled function.
    """
    return config.replace(optimizer="adam", learning_rate=1.0, momentum=0.9, clip_norm=None,
                          weight_decay=0.0, l2=0.0, dropout=None, seed=0)


def _optimizer(config: TrainConfig, hp: Hyper, steps_per_epoch: int):
    """The sous-chef both paths use: chosen by traced ``hp``, scheduled by static ``config``."""
    return make_fused_optimizer(hp, lr_schedule(config, hp.learning_rate, steps_per_epoch))


def shuffle_batches(key, x, y, batch_size: int):
    """Fixed-shape epoch: (n_batches, B, F), (n_batches, B); the remainder sits out."""
    n_batches = x.shape[0] // batch_size
    perm = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size]
    return (x[perm].reshape(n_batches, batch_size, x.shape[1]),
            y[perm].reshape(n_batches, batch_size))


def epoch_keys(key, epochs: int):
    """(shuffle key, dropout key) per epoch, the same on both paths."""
    return jax.vmap(jax.random.split)(jax.random.split(key, epochs))  # (E, 2) keys


def _ok(loss) -> jax.Array:
    return jnp.isfinite(loss) & (loss < EXPLODED_LOSS)


def _finite_tree(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _epoch_end_ok(graphdef, params, x_last, y_last) -> jax.Array:
    """After the epoch's last knob turn, nobody has judged the knobs yet: judge them on the
    epoch's last tray with the same threshold as every step (and check they are finite)."""
    loss = cross_entropy(nnx.merge(graphdef, params)(x_last), y_last)
    return _ok(loss) & _finite_tree(params)


def _where_tree(pred, a, b):
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


# ---------------------------------------------------------------- the readable loop
@functools.partial(jax.jit, static_argnames=("graphdef", "config", "steps_per_epoch"))
def _loop_step(graphdef, config, steps_per_epoch, params, opt_state, x, y, key, hp):
    return _step(graphdef, _optimizer(config, hp, steps_per_epoch), params, opt_state, x, y,
                 key, hp)


_loop_epoch_end_ok = jax.jit(_epoch_end_ok, static_argnames=("graphdef",))


def _loop_run(graphdef, config, params, hp, train, val_xy, key, has_val, on_epoch,
              layout=None):
    """The readable twin of ``_fused_run``: a Python loop around one jitted step.

    With a ``layout`` (``kl.distributed``) every tray arrives as a global array split over
    the mesh's devices; the same jitted step then runs on all of them at once.
    """
    steps_per_epoch = len(train) // config.batch_size
    static = static_part(config)
    opt_state = _optimizer(static, hp, steps_per_epoch).init(params)
    records = {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                               "grad_norm", "active")}
    best = (params, np.inf, -1)
    bad_step, since_best, step = -1, 0, 0
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    for epoch, (k_shuffle, k_drop) in enumerate(epoch_keys(key, config.epochs)):
        if layout is None:
            xb, yb = shuffle_batches(k_shuffle, x, y, config.batch_size)
        else:  # the same trays, each fed as this process's share of a global array
            xb, yb = layout.step_batches(k_shuffle, train.x, train.y, config.batch_size)
        start = (params, opt_state)  # an epoch that blows up is rolled back whole
        day = []  # (loss, accuracy, grad norm) of each tray, judged before its knob turn
        for xs, ys, k in zip(xb, yb, jax.random.split(k_drop, len(xb))):
            new_params, new_opt, m = _loop_step(graphdef, static, steps_per_epoch, params,
                                                opt_state, xs, ys, k, hp)
            loss = float(m["loss"])
            if not (math.isfinite(loss) and loss < EXPLODED_LOSS):
                bad_step = step
                break
            params, opt_state, step = new_params, new_opt, step + 1
            day.append((loss, float(m["accuracy"]), float(m["grad_norm"])))
        if bad_step < 0 and not bool(_loop_epoch_end_ok(graphdef, params, xb[-1], yb[-1])):
            bad_step = step - 1  # the epoch's last turn wrecked the knobs
        if bad_step >= 0:
            params, opt_state = start
            break
        tr = dict(zip(("loss", "accuracy"), np.mean(np.asarray(day)[:, :2], axis=0)))
        va = eval_step(graphdef, params, *val_xy) if has_val else tr
        for name, value in (("train_loss", tr["loss"]), ("train_accuracy", tr["accuracy"]),
                            ("val_loss", va["loss"]), ("val_accuracy", va["accuracy"])):
            records[name].append(float(value))
        records["grad_norm"].append([d[2] for d in day])
        records["active"].append(True)
        if on_epoch is not None:
            on_epoch(epoch, {k: v[-1] for k, v in records.items()
                             if k not in ("active", "grad_norm")})
        if float(va["loss"]) < best[1]:
            best, since_best = (params, float(va["loss"]), epoch), 0
        else:
            since_best += 1
            if config.patience is not None and since_best >= config.patience:
                break
    records["grad_norm"] = np.asarray(records["grad_norm"], np.float32).reshape(
        -1, steps_per_epoch)
    return params, best[0], best[2], bad_step, records


# ---------------------------------------------------------------- the fused run
def _report_epoch(on_epoch, epoch, record):
    """Host side of the per-epoch progress callback of the fused run."""
    if bool(record["active"]):
        on_epoch(int(epoch), {k: float(v) for k, v in record.items()
                              if k not in ("active", "grad_norm")})


@functools.partial(jax.jit, static_argnames=(
    "graphdef", "config", "batch_size", "has_val", "on_epoch", "layout"))
def _fused_run(graphdef, config: TrainConfig, params, hp: Hyper, x, y, xv, yv, key, *,
               batch_size: int, has_val: bool, on_epoch=None, layout=None):
    """All epochs in one compiled call (``lax.scan`` over epochs, then over batches).

    After divergence (non-finite or exploded loss) or early stopping the knobs are frozen:
    a scan cannot break, so the remaining epochs run but change nothing — the compute is
    still spent. Freezing happens per epoch (an epoch with a bad step is rolled back whole),
    which keeps the per-step work to the step itself: per-step selects over all knobs cost
    ~30 % of a small model's run. ``on_epoch`` (static; ``fit`` passes a stable handle)
    adds an ordered host callback per epoch for progress displays.

    With a ``layout`` (``kl.distributed``; static) ``x, y`` are every epoch's trays, already
    shuffled and split over the mesh: (E, S, B, F), (E, S, B). The scan is the same; the
    partitioner runs each tray's share on its device and averages the gradients.
    """
    steps_per_epoch = x.shape[0] // batch_size if layout is None else x.shape[1]
    tx = _optimizer(config, hp, steps_per_epoch)
    patience = config.patience if config.patience is not None else config.epochs + 1
    zero = jnp.int32(0)

    def batch_body(carry, batch):
        params, opt_state, bad_step, step = carry
        xb, yb, k = batch
        params, opt_state, m = _step(graphdef, tx, params, opt_state, xb, yb, k, hp)
        # A non-finite update shows up as a bad loss one step later, and the epoch's last
        # update is judged at the epoch's end, so checking the loss per step is enough.
        bad_step = jnp.where((bad_step < 0) & ~_ok(m["loss"]), step, bad_step)
        return (params, opt_state, bad_step, step + 1), (m["loss"], m["accuracy"],
                                                         m["grad_norm"])

    def epoch_body(carry, epoch_inputs):
        params, opt_state, bad_step, step, best, since_best, stopped = carry
        epoch, (k_shuffle, k_drop), planned = epoch_inputs
        bad_before = bad_step
        if layout is None:
            xb, yb = shuffle_batches(k_shuffle, x, y, batch_size)
        else:
            xb, yb = layout.constrain_batches(*planned)
        keys = jax.random.split(k_drop, xb.shape[0])
        (new_params, new_opt, bad_step, step), (losses, accs, norms) = jax.lax.scan(
            batch_body, (params, opt_state, bad_step, step), (xb, yb, keys))
        end_ok = _epoch_end_ok(graphdef, new_params, xb[-1], yb[-1])
        bad_step = jnp.where((bad_step < 0) & ~end_ok, step - 1, bad_step)
        bad_step = jnp.where(stopped, bad_before, bad_step)  # epochs after a stop never diverge
        roll_back = stopped | (bad_step >= 0)  # keep the knobs from before this epoch
        params = _where_tree(roll_back, params, new_params)
        if layout is not None:
            params = layout.constrain_params(params)
        opt_state = _where_tree(roll_back, opt_state, new_opt)
        tr = {"loss": losses.mean(), "accuracy": accs.mean()}
        va = eval_step.__wrapped__(graphdef, params, xv, yv) if has_val else tr
        best_params, best_loss, best_epoch = best
        improved = (va["loss"] < best_loss) & ~stopped & (bad_step < 0)
        best = (_where_tree(improved, params, best_params),
                jnp.where(improved, va["loss"], best_loss),
                jnp.where(improved, epoch, best_epoch))
        since_best = jnp.where(improved, 0, since_best + 1)
        now_stopped = stopped | (since_best >= patience)
        record = {"train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                  "val_loss": va["loss"], "val_accuracy": va["accuracy"],
                  "grad_norm": norms, "active": ~stopped & (bad_step < 0)}
        if on_epoch is not None:
            # Ordered callbacks need a single device; on a mesh the (unordered) callback
            # still comes once per epoch, in order, because the epochs run one by one.
            jax.debug.callback(functools.partial(_report_epoch, on_epoch), epoch, record,
                               ordered=layout is None or layout.size == 1)
        return (params, opt_state, bad_step, step, best, since_best, now_stopped), record

    opt_state = tx.init(params)
    best = (params, jnp.float32(jnp.inf), jnp.int32(-1))
    carry = (params, opt_state, jnp.int32(-1), zero, best, zero, jnp.bool_(False))
    epochs = jnp.arange(config.epochs, dtype=jnp.int32)
    planned = None if layout is None else (x, y)
    carry, records = jax.lax.scan(epoch_body, carry,
                                  (epochs, epoch_keys(key, config.epochs), planned))
    params, _, bad_step, _, (best_params, _, best_epoch), _, _ = carry
    if layout is not None:  # the knobs leave the run laid out as they came in
        params, best_params = layout.constrain_params((params, best_params))
    return params, best_params, best_epoch, bad_step, records


class ProgressSlot:
    """A host callback for compiled runs that report progress (``fit``, ``kl.finetune``).

    A compiled program's callback is fixed when it is traced, and a new Python function per
    call would mean a new program per call. So the program calls a ``ProgressSlot``: every
    slot compares equal (one compiled program for every callback), and calling it forwards
    to the callback installed for the current run (``with ProgressSlot.installed(fn):``).
    """

    current: Callable | None = None  # the callback of the run in progress

    def __call__(self, *args):
        if ProgressSlot.current is not None:
            ProgressSlot.current(*args)

    def __hash__(self):
        return hash(ProgressSlot)

    def __eq__(self, other):
        return isinstance(other, ProgressSlot)

    @staticmethod
    @contextlib.contextmanager
    def installed(callback: Callable | None):
        """Route the slot to ``callback`` while the block runs; wait for every report."""
        ProgressSlot.current = callback
        try:
            yield None if callback is None else ProgressSlot()
            if callback is not None:
                jax.effects_barrier()  # every report has reached the host
        finally:
            ProgressSlot.current = None


# ---------------------------------------------------------------- results
@dataclasses.dataclass
class History:
    """The apprenticeship diary: one entry per completed epoch (day of baking).

    ``train_*`` are means over the epoch's batches, each judged just before its knob turn
    (with dropout on, if any) — the usual running training loss, free to compute.
    ``val_*`` are measured after the epoch on the whole validation table, dropout off.
    ``grad_norm`` is the global norm of the judge's notes at every knob turn (before any
    clipping), shape (epochs * steps_per_epoch,).
    """

    train_loss: np.ndarray
    train_accuracy: np.ndarray
    val_loss: np.ndarray | None
    val_accuracy: np.ndarray | None
    best_epoch: int | None = None  # epoch (0-based) with the lowest validation loss
    stopped_epoch: int | None = None  # set when early stopping ended training
    diverged_at_step: int | None = None  # 1-based knob turn at which the loss blew up
    message: str = ""  # one human sentence on how training went
    grad_norm: np.ndarray | None = None  # (epochs * steps_per_epoch,) per knob turn

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
            "Try a smaller rate or gradient clipping. The knobs were rolled back to the "
            f"start of epoch {epoch}.")


def _history(records, best_epoch, bad_step, config: TrainConfig, steps_per_epoch: int,
             has_val: bool, lr: float) -> History:
    rec = {k: np.asarray(v) for k, v in records.items()}
    n = int(rec["active"].sum())  # epochs actually trained and kept
    diverged_at = int(bad_step) + 1 if int(bad_step) >= 0 else None
    cut = {k: v[:n] for k, v in rec.items()}
    stopped = n - 1 if (config.patience is not None and n < config.epochs
                        and diverged_at is None) else None
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
        stopped_epoch=stopped, diverged_at_step=diverged_at, message=msg,
        grad_norm=cut["grad_norm"].reshape(-1))


def check_training_data(model, train: CakeData, val: CakeData | None, config: TrainConfig):
    """Refuse what cannot be trained, naming the argument, what was expected and what came."""
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
        if not isinstance(val, CakeData):
            raise TypeError(f"val must be a CakeData table or None, got {type(val).__name__}")
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
        fused: bool = True, on_epoch: Callable[[int, dict], None] | None = None,
        mesh=None) -> History:
    """Train ``model`` in place and return its ``History``.

    Divergence never raises: training stops, the epoch it happened in is rolled back (the
    knobs keep their values from the start of that epoch) and ``history.message`` says at
    which step the loss blew up. With ``config.patience`` the best validation epoch's
    weights are restored. ``on_epoch(epoch, metrics)`` reports progress after every epoch
    on both paths (the fused run calls it from inside the compiled program).

    ``mesh`` (``kl.distributed.make_mesh()``) trains data-parallel on its devices: every
    tray is split along the mesh's "data" axis, the knobs are replicated (or split along
    its "model" axis) and the compiler averages the gradients. Same trays, same steps, same
    result as one device up to float rounding; ``batch_size`` must divide evenly. In a
    multi-process job (``kl.chain``) every process calls ``fit`` with the same arguments.
    """
    check_training_data(model, train, val, config)
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"on_epoch must be a function (epoch, metrics) or None, "
                        f"got {type(on_epoch).__name__}")
    graphdef, params = nnx.split(model)
    hp = hyper(config, model.config.dropout)
    key = jax.random.key(config.seed)
    steps_per_epoch = len(train) // config.batch_size
    has_val = val is not None
    xv, yv = (val.x, val.y) if has_val else (train.x[:1], train.y[:1])
    layout, x, y = None, train.x, train.y
    if mesh is not None:
        from kitchenlab.distributed import Layout

        layout = Layout.for_run(mesh, batch_size=config.batch_size, width=model.config.width)
        if fused:  # every epoch's trays, shuffled as on one device, split over the mesh
            x, y = layout.plan(epoch_keys(key, config.epochs)[:, 0], train.x, train.y,
                               config.batch_size)
        params = layout.put_params(params)
        hp, key, xv, yv = layout.replicate((hp, key, xv, yv))
    if fused:
        with ProgressSlot.installed(on_epoch) as slot:
            params, best_params, best_epoch, bad_step, records = _fused_run(
                graphdef, static_part(config), params, hp, x, y, xv, yv, key,
                batch_size=config.batch_size, has_val=has_val, on_epoch=slot, layout=layout)
            jax.block_until_ready(params)
    else:
        params, best_params, best_epoch, bad_step, records = _loop_run(
            graphdef, config, params, hp, train, (xv, yv), key, has_val, on_epoch, layout)
    history = _history(records, best_epoch, bad_step, config, steps_per_epoch, has_val,
                       config.learning_rate)
    if config.patience is not None and history.best_epoch is not None:
        params = best_params
    nnx.update(model, params)
    return history
