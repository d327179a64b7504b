"""Guest tasters and house rules: many small apprenticeships in one compiled, vmapped call.

Notebooks 03 and 04 need dozens of training runs that differ in model size, amount of
training data, dropout, weight decay and L2. Different widths mean different array shapes,
and every shape costs an XLA compile (2-5 s on a laptop CPU), so the runs here share ONE
shape and differ only in traced arrays:

* **Model size by masking.** Every run uses the same max-width MLP (``kl.models.MLP``).
  A run of width ``w`` zeroes the weights into and out of hidden units ``w..H-1`` at the
  start. A ReLU unit with all-zero weights outputs 0 and gets an exactly-zero gradient
  (``relu'(0) = 0`` in JAX), so Adam, weight decay and L2 leave it at 0 forever: the run
  *is* a width-``w`` MLP, not an approximation. Kernels after the first layer are rescaled
  by ``sqrt(H / w)`` so the init is LeCun-normal for fan-in ``w``, as for a real width-w net.
  (Tested against a real width-w MLP. With dropout > 0 the burners are drawn from an
  (N, H) random table, so a masked run sees a different, equally random dropout pattern.)
* **Data size by weights.** The training table is padded to the largest size; a run on
  ``n`` cakes gives weight 1 to the first ``n`` rows and 0 to the rest (the smaller sets are
  nested inside the bigger ones). The loss is the weighted mean, so it equals the loss on
  the first ``n`` rows exactly.
* **Dropout, weight decay, L2, learning rate** travel in ``kl.optim.Hyper`` (traced).
* **Seeds as an axis.** ``seed`` picks a run's starting knobs and its dropout randomness;
  ``data_seed`` picks *which* practice cakes a run of ``n`` cakes gets (0: the first ``n``
  rows; s > 0: the first ``n`` of a shuffle of the table drawn from s, still nested within
  one data seed). Both are ordinary per-run arrays (starting knobs stacked, a key made from
  the seed inside the program, a weight row per run), so five seeds of a grid cost one
  vmapped call, not five compiles: that is how a claim rests on several seeds cheaply.

Each run is full-batch Adam (one knob turn per epoch, on every practice cake): no shuffling
noise, so curves are smooth and a (width, size) grid is a clean experiment. The honest cost:
a masked width-2 run or a 25-cake run does the arithmetic of the biggest one. That is the
price of one compile; ``run_many`` vmaps K runs into one call, ``run_one`` is the same run
compiled without the batch axis (the "cell by cell" baseline and the live slider).

Shapes: K runs, N padded training cakes, V validation cakes, H max width, E recorded epochs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from kitchenlab.config import OPTIMIZERS, MLPConfig, TrainConfig, _check_positive_int
from kitchenlab.data import Pantry
from kitchenlab.models import make_mlp
from kitchenlab.optim import Hyper, hyper, l2_penalty, make_optimizer
from kitchenlab.sweep import check_sweep_axis, shard_runs

AXES = ("width", "n_train", "dropout", "weight_decay", "l2", "learning_rate", "seed", "data_seed")
LEARNING_RATE = 3e-3  # default peak step size (TrainConfig's default), traced like the rest
ADAM_B2 = 0.999  # optax.scale_by_adam's default decay of the squared notes (used by make_optimizer)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The static part of every run here: changing any field recompiles."""

    max_width: int = 32  # hidden units per layer of the shared (masked) MLP
    depth: int = 2  # hidden layers
    epochs: int = 200  # full-batch knob turns (each sees every practice cake once)
    record_every: int = 5  # epochs between two points on the learning curves
    optimizer: str = "adam"  # the sous-chef ("adam" here; weight decay is decoupled, AdamW-style)
    seed: int = 0  # default starting knobs and dropout randomness (the ``seed`` axis overrides)

    def __post_init__(self):
        _check_positive_int("max_width", self.max_width)
        _check_positive_int("depth", self.depth)
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("record_every", self.record_every)
        if self.epochs % self.record_every:
            raise ValueError(f"record_every ({self.record_every}) must divide epochs ({self.epochs})")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        _check_positive_int("seed", self.seed, minimum=0)

    @classmethod
    def tiny(cls) -> "RunConfig":
        return cls(max_width=8, epochs=20, record_every=5)


# ---------------------------------------------------------------- the two masks
def _mlp_layer(path) -> int | None:
    """Position of a knob's layer in the MLP: 0 .. depth-1 for the hidden stations (by the
    model's own structure ``hidden[i]``), ``None`` for the verdict layer (``head``)."""
    first = path[0].key
    return path[1].key if first == "hidden" else None


def mask_width(params, width, max_width: int):
    """Switch off hidden units ``width..max_width-1`` (zero weights in and out) and rescale.

    ``width`` may be traced. Returns params of the same structure as the max-width MLP.
    Which axes to mask follows the model's structure: a kernel (>= 2-D) maps its layer's
    inputs (rows) to outputs (columns); a bias (1-D) belongs to the outputs. Every hidden
    layer's outputs are hidden units; every layer but the first takes hidden units in.
    """
    width = jnp.asarray(width, jnp.float32)
    on = (jnp.arange(max_width) < width).astype(jnp.float32)  # (H,)
    scale = jnp.sqrt(max_width / width)  # LeCun-normal for fan-in `width`

    def one(path, p):
        layer = _mlp_layer(path)
        takes_hidden, gives_hidden = layer != 0, layer is not None
        if p.ndim < 2:  # a bias: one per output
            return p * on if gives_hidden else p
        if takes_hidden:  # (H, out): inputs are hidden units (never the 8 ingredients)
            p = p * on[:, None] * scale
        return p * on[None, :] if gives_hidden else p

    return jax.tree_util.tree_map_with_path(one, params)


def example_weights(n, n_max: int) -> jax.Array:
    """Weight 1 for the first ``n`` practice cakes, 0 for the padding. (N,)"""
    return (jnp.arange(n_max) < n).astype(jnp.float32)


def data_order(data_seed: int, n_max: int) -> np.ndarray:
    """Rank of every practice cake for ``data_seed`` (0: table order; else a seeded shuffle).

    A run on ``n`` cakes uses the cakes ranked below ``n``, so within one data seed the
    smaller sets are nested inside the bigger ones. (N,)
    """
    if data_seed == 0:
        return np.arange(n_max)
    return np.argsort(np.random.default_rng(int(data_seed)).permutation(n_max))


def weighted_loss(params, graphdef, x, y, weights, *, key, hp: Hyper):
    """``kl.train.loss_fn`` with per-cake weights: the mean over the cakes that count."""
    model = nnx.merge(graphdef, params)
    logits = model(x, dropout_key=key, dropout_rate=hp.dropout)  # (N, C)
    per_cake = optax.softmax_cross_entropy_with_integer_labels(logits, y)  # (N,)
    loss = jnp.sum(weights * per_cake) / jnp.maximum(jnp.sum(weights), 1.0)
    return loss + hp.l2 * l2_penalty(params), (loss, logits)


def _taste(params, graphdef, x, y, weights):
    """Pure judge's score, accuracy, and how sure the verdicts that miss the tag are.

    Every burner on (no dropout, no L2 fine). The third number is the mean confidence
    (the verdict's softmax probability) over the cakes judged wrong; 0.5 if none is wrong.
    """
    logits = nnx.merge(graphdef, params)(x)  # (N, C)
    per_cake = optax.softmax_cross_entropy_with_integer_labels(logits, y)  # (N,)
    hit = (jnp.argmax(logits, -1) == y).astype(jnp.float32)  # (N,)
    total = jnp.maximum(jnp.sum(weights), 1.0)
    miss = weights * (1.0 - hit)  # (N,) the counted cakes judged wrong
    sure = jnp.max(jax.nn.softmax(logits, -1), -1)  # (N,) confidence of each verdict
    n_miss = jnp.sum(miss)
    wrong_sure = jnp.where(n_miss > 0, jnp.sum(miss * sure) / jnp.maximum(n_miss, 1.0), 0.5)
    return jnp.sum(weights * per_cake) / total, jnp.sum(weights * hit) / total, wrong_sure


def _run(graphdef, config: RunConfig, params, width, w, y, hp: Hyper, seed, x, xv, yv):
    """One full-batch apprenticeship; returns final params and curves (E+1 points each).

    ``w`` (N,) weighs the practice cakes that count; ``seed`` makes the dropout key.
    """
    params = mask_width(params, width, config.max_width)
    key = jax.random.key(seed)
    tx = make_optimizer(config.optimizer, hp)
    grad_fn = jax.grad(weighted_loss, has_aux=True)

    def step(carry, k):  # one epoch = one knob turn on all practice cakes
        params, opt_state = carry
        grads, _ = grad_fn(params, graphdef, x, y, w, key=k, hp=hp)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    def record(params):
        tr, va = _taste(params, graphdef, x, y, w), _taste(params, graphdef, xv, yv, jnp.ones_like(yv, jnp.float32))
        return jnp.stack([tr[0], tr[1], va[0], va[1], va[2]])

    def chunk(carry, k):  # scan inside scan: record_every epochs, then taste once
        carry, _ = jax.lax.scan(step, carry, jax.random.split(k, config.record_every))
        return carry, record(carry[0])

    n_chunks = config.epochs // config.record_every
    first = record(params)
    (params, opt_state), rec = jax.lax.scan(chunk, (params, tx.init(params)),
                                            jax.random.split(key, n_chunks))
    rec = jnp.concatenate([first[None], rec])  # (E+1, 5)
    return params, grad_rms(opt_state, params), rec


def grad_rms(opt_state, params):
    """Adam's running size of each knob's notes, sqrt(v-hat) (bias-corrected); 0 without Adam.

    Adam divides every step by this, so it is what an L2 fine in the loss is divided by too.
    """
    def is_adam(s):
        return isinstance(s, optax.ScaleByAdamState)

    for s in jax.tree.leaves(opt_state, is_leaf=is_adam):
        if is_adam(s):
            correction = 1.0 - ADAM_B2 ** s.count.astype(jnp.float32)
            return jax.tree.map(lambda v: jnp.sqrt(v / correction), s.nu)
    return jax.tree.map(jnp.zeros_like, params)


@functools.partial(jax.jit, static_argnames=("graphdef", "config"))
def _run_one(graphdef, config, params, width, w, y, hp, seed, x, xv, yv):
    return _run(graphdef, config, params, width, w, y, hp, seed, x, xv, yv)


@functools.partial(jax.jit, static_argnames=("graphdef", "config"))
def _run_many(graphdef, config, params, width, w, y, hp, seed, x, xv, yv):
    # vmap: K runs become one program with a leading K axis on every array (starting knobs,
    # width, cake weights, labels, hyperparameters, seed) -> one compile; tables are shared
    return jax.vmap(lambda p, wd, ww, yy, h, s: _run(graphdef, config, p, wd, ww, yy, h, s,
                                                       x, xv, yv))(params, width, w, y, hp, seed)


# ---------------------------------------------------------------- public runs
@dataclasses.dataclass
class Runs:
    """K apprenticeships side by side: settings (K,) and curves (K, E+1), epoch 0 = untrained."""

    values: dict[str, np.ndarray]  # every axis of AXES, each (K,)
    epochs: np.ndarray  # (E+1,) epoch number of each recorded point
    train_loss: np.ndarray  # pure cross-entropy on the practice cakes that count
    train_accuracy: np.ndarray
    val_loss: np.ndarray  # guest tasters: never trained on, no dropout, no L2 fine
    val_accuracy: np.ndarray
    params: object  # final knobs, each leaf with a leading K axis (masked units stay 0)
    grad_rms: object = None  # Adam's sqrt(v-hat) per knob at the end, same tree as params
    val_wrong_confidence: np.ndarray | None = None  # mean confidence of the guests' wrong verdicts

    def __len__(self) -> int:
        return self.train_loss.shape[0]

    @property
    def gap(self) -> np.ndarray:
        """Generalization gap (K,): final train accuracy minus final validation accuracy."""
        return self.train_accuracy[:, -1] - self.val_accuracy[:, -1]

    @property
    def best_epoch(self) -> np.ndarray:
        """(K,) recorded epoch with the lowest validation loss (where early stopping would land)."""
        return self.epochs[np.argmin(self.val_loss, axis=1)]

    def index(self, **values) -> int:
        """Row of the run whose settings match ``values`` (e.g. ``width=32, n_train=100``)."""
        hit = np.ones(len(self), bool)
        for name, v in values.items():
            if name not in self.values:
                raise ValueError(f"unknown setting {name!r}; choose from {tuple(self.values)}")
            hit &= np.isclose(self.values[name], v)
        if not hit.any():
            raise ValueError(f"no run with {values}")
        return int(np.argmax(hit))

    def kernels(self, k: int, *, of: str = "params") -> np.ndarray:
        """All hidden and head kernel entries of run ``k`` that are switched on (flat).

        ``of="grad_rms"`` gives Adam's sqrt(v-hat) for the same entries, in the same order.
        """
        if of not in ("params", "grad_rms"):
            raise ValueError(f"of must be 'params' or 'grad_rms', got {of!r}")
        width = int(self.values["width"][k])
        out = []
        for path, p in jax.tree_util.tree_leaves_with_path(getattr(self, of)):
            a = np.asarray(p[k])
            if a.ndim < 2:  # biases are not kernel entries
                continue
            layer = _mlp_layer(path)
            rows = a.shape[0] if layer == 0 else width
            cols = width if layer is not None else a.shape[1]
            out.append(a[:rows, :cols].ravel())
        return np.concatenate(out)


def _axis(name: str, value, config: RunConfig, n_max: int) -> np.ndarray:
    arr = check_sweep_axis(name, value, dtype=np.float64)  # shared checks: finite, in range
    if name == "width" and (np.any(arr < 1) | np.any(arr > config.max_width) | np.any(arr % 1)):
        raise ValueError(f"width values must be whole numbers in [1, {config.max_width}] "
                         f"(RunConfig.max_width), got {arr.tolist()}")
    if name == "n_train" and (np.any(arr < 1) | np.any(arr > n_max) | np.any(arr % 1)):
        raise ValueError(f"n_train values must be whole numbers in [1, {n_max}] (the practice "
                         f"table's size), got {arr.tolist()}")
    if name in ("seed", "data_seed") and (np.any(arr < 0) | np.any(arr % 1) | np.any(arr >= 2**31)):
        raise ValueError(f"{name} values must be whole numbers >= 0, got {arr.tolist()}")
    return arr


class _Prepared(NamedTuple):
    """Everything one call hands to the compiled run (K = number of runs)."""

    vals: dict  # every axis of AXES as (K,) numpy values
    graphdef: object  # the shared max-width MLP's structure
    params: object  # starting knobs, each leaf (K, ...) (one set per seed); unbatched if single
    width: np.ndarray  # (K,)
    weights: np.ndarray  # (K, N) 1 for the practice cakes a run uses
    labels: np.ndarray  # (K, N)
    hp: Hyper  # every field (K,)
    seed: np.ndarray  # (K,) int32: the dropout key's seed
    tables: tuple  # (x, xv, yv) shared by all runs


def _prepare(pantry_: Pantry, config: RunConfig, labels, settings: dict, *,
             single: bool = False) -> _Prepared:
    if not isinstance(pantry_, Pantry):
        raise TypeError(f"pantry must be a Pantry (kl.data.pantry()), got {type(pantry_).__name__}")
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    unknown = set(settings) - set(AXES)
    if unknown:
        raise ValueError(f"unknown setting {sorted(unknown)}; choose from {AXES}")
    n_max = len(pantry_.train)
    defaults = {"width": config.max_width, "n_train": n_max, "dropout": 0.0,
                "weight_decay": 0.0, "l2": 0.0, "learning_rate": LEARNING_RATE,
                "seed": config.seed, "data_seed": 0}
    vals = {a: _axis(a, settings.get(a, defaults[a]), config, n_max) for a in AXES}
    sizes = {a: v.size for a, v in vals.items() if v.size > 1}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"settings must have equal lengths (or be single values), got {sizes}")
    k = max(sizes.values(), default=1)
    vals = {a: np.broadcast_to(v, (k,)).copy() for a, v in vals.items()}
    y = pantry_.train.y if labels is None else np.asarray(labels, np.int32)
    if y.shape == (n_max,):
        y = np.broadcast_to(y, (k, n_max))
    if y.shape != (k, n_max) or y.min() < 0 or y.max() > 1:
        raise ValueError(f"labels must be 0/1 with shape ({n_max},) or ({k}, {n_max}), "
                         f"got shape {y.shape}")
    # Every Hyper field as a (K,) float array: the swept ones from `vals`, the others
    # (momentum, clip norm, ...) at kl.optim.hyper's defaults for this optimizer. Host
    # (numpy) arrays until the compiled call: a slider's single run pays no device ops.
    fixed = _hyper_defaults(config.optimizer)
    hp = Hyper(**{f: vals[f].astype(np.float32) if f in vals else np.full(k, fixed[f], np.float32)
                  for f in Hyper._fields})
    # Which practice cakes count: rank < n within the run's data seed.          (K, N)
    orders = {s: data_order(s, n_max) for s in np.unique(vals["data_seed"]).astype(int)}
    weights = np.stack([orders[int(s)] < n for s, n in zip(vals["data_seed"], vals["n_train"])])
    # Starting knobs per run, made once per distinct seed (stacked for K runs). (K, ...)
    seeds = vals["seed"].astype(int)
    if single:
        params = _initial(config, int(seeds[0]))[1]
    else:
        starts = {s: _initial(config, s)[1] for s in np.unique(seeds)}
        params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[starts[s] for s in seeds])
    return _Prepared(vals, _initial(config, int(seeds[0]))[0], params,
                     vals["width"].astype(np.float32), weights.astype(np.float32),
                     y.astype(np.int32), hp, seeds.astype(np.int32),
                     (pantry_.train.x, pantry_.val.x, pantry_.val.y))


@functools.lru_cache(maxsize=8)
def _hyper_defaults(optimizer: str) -> dict[str, float]:
    """kl.optim.hyper's value of every Hyper field for ``optimizer`` (as host floats)."""
    return {f: float(v) for f, v in hyper(TrainConfig(optimizer=optimizer))._asdict().items()}


@functools.lru_cache(maxsize=64)
def _initial(config: RunConfig, seed: int | None = None):
    """The shared max-width model's structure and starting knobs for ``seed`` (made once)."""
    seed = config.seed if seed is None else int(seed)
    return nnx.split(make_mlp(MLPConfig(width=config.max_width, depth=config.depth), seed=seed))


def trained_model(runs: "Runs", k: int, config: RunConfig = RunConfig()):
    """Run ``k``'s final knobs in a ``kl.models.MLP`` (max width; switched-off units are 0)."""
    graphdef, _ = _initial(config)
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[k], runs.params))


def _runs(vals, config, params, rms, rec) -> Runs:
    rec = np.asarray(rec)
    epochs = np.arange(rec.shape[1]) * config.record_every
    return Runs(values=vals, epochs=epochs, train_loss=rec[..., 0], train_accuracy=rec[..., 1],
                val_loss=rec[..., 2], val_accuracy=rec[..., 3], params=params, grad_rms=rms,
                val_wrong_confidence=rec[..., 4])


def run_many(pantry_: Pantry, config: RunConfig = RunConfig(), *, labels=None,
             pad_to: int | None = None, **settings) -> Runs:
    """K runs in ONE vmapped call. Settings from ``AXES``, each a value or K values.

    Example: ``run_many(p, width=[4, 64], n_train=[50, 50])``; five seeds of each:
    ``run_many(p, **grid(width=[4, 64], seed=range(5)))``. One compile serves every call
    with the same K and table shapes; ``pad_to`` (>= K) runs copies of the last run up to
    that many (results dropped), so experiments of different sizes share one compile.
    """
    r = _prepare(pantry_, config, labels, settings)
    k = r.width.shape[0]
    batched = (r.params, r.width, r.weights, r.labels, r.hp, r.seed)
    if pad_to is not None:
        if isinstance(pad_to, bool) or not isinstance(pad_to, (int, np.integer)) or pad_to < k:
            raise ValueError(f"pad_to must be an int >= the number of runs ({k}), got {pad_to!r}")
        batched = jax.tree.map(lambda a: jnp.concatenate(
            [a, jnp.repeat(a[-1:], pad_to - k, axis=0)]), batched)
    batched, _ = shard_runs(batched, int(batched[1].shape[0]))  # runs spread over the cores
    final, rms, rec = _run_many(r.graphdef, config, *batched, *r.tables)
    final, rms, rec = jax.tree.map(lambda a: a[:k], (final, rms, rec))
    return _runs(r.vals, config, final, rms, rec)


def run_one(pantry_: Pantry, config: RunConfig = RunConfig(), *, labels=None, **settings) -> Runs:
    """One run (single values), compiled without the K axis: the live slider's answer.

    Same numbers as the matching row of ``run_many`` (up to float rounding), returned as a
    ``Runs`` with K = 1.
    """
    r = _prepare(pantry_, config, labels, settings, single=True)
    if len(r.vals["width"]) != 1:
        raise ValueError(f"run_one takes single values; use run_many for {len(r.vals['width'])} runs")
    hp = Hyper(*(f[0] for f in r.hp))
    final, rms, rec = _run_one(r.graphdef, config, r.params, r.width[0], r.weights[0],
                               r.labels[0], hp, r.seed[0], *r.tables)
    final, rms = jax.tree.map(lambda a: a[None], (final, rms))
    return _runs(r.vals, config, final, rms, np.asarray(rec)[None])


def mean_se(values, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds and its standard error (sample std with ddof=1, / sqrt(seeds)).

    Both are rounded to 6 decimals: a mean of accuracies sits on a grid (k / (seeds * N))
    and may land exactly on a printing boundary such as 0.175, where float32 noise in the
    last bits would decide between "0.17" and "0.18" on different CPUs. Rounding first
    makes the printed digits depend on the cakes, not on the order of float additions.
    """
    values = np.asarray(values, np.float64)
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"values need at least 2 seeds along axis {axis} for a standard "
                         f"error, got shape {values.shape}")
    return np.round(values.mean(axis), 6), np.round(values.std(axis, ddof=1) / np.sqrt(n), 6)


def grid(**axes) -> dict[str, np.ndarray]:
    """Every combination of two (or more) axes, flattened row-major: ready for ``run_many``.

    ``grid(width=[4, 64], n_train=[50, 100, 200])`` gives 6 runs; reshape results with
    ``.reshape(len(width), len(n_train))``.
    """
    if not axes:
        raise ValueError(f"grid needs at least one axis from {AXES}")
    mesh = np.meshgrid(*[np.asarray(v, np.float64).reshape(-1) for v in axes.values()], indexing="ij")
    return {name: m.ravel() for name, m in zip(axes, mesh)}
