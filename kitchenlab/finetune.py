"""The training kitchen at night: fine-tune a laminated chef on new reviews, then judge it.

When complaints come in, the restaurant does not retrain in the dining room: it closes for a
night, takes a *trainable copy* of the laminated recipe book (the laminated one is never
touched), and adjusts it on the newly labelled orders (reviews):

* a **lower learning rate** than the apprenticeship's: adjust the knobs, do not reset them;
* optionally **frozen early layers**: the first stations keep their laminated knobs and only
  the later ones learn (``optax.multi_transform`` with ``set_to_zero`` is the textbook way;
  the fused loop here multiplies the updates by a 0/1 mask, which equals it and lets the
  number of frozen layers be traced);
* **replay**: every knob turn also tastes a few cakes from the old training table, so the
  chef learns the new guests without forgetting the old ones (catastrophic forgetting is
  what happens without it);
* **evaluation on old and new guests** after every epoch.

Many nights at once (seeds x with/without replay x frozen layers) run in ONE compiled call:
a ``lax.scan`` over epochs around a ``vmap`` over runs, each epoch a ``lax.scan`` over
knob turns. ``decide`` then compares the child with its parent on held-out checks, the
gate before a promotion (and the reason for a rollback).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from kitchenlab.config import TrainConfig, _check_finite, _check_positive_int
from kitchenlab.data import CakeData, Normalizer, check_features
from kitchenlab.optim import hyper, make_optimizer
from kitchenlab.train import ProgressSlot


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """The night shift's plan."""

    learning_rate: float = 1e-3  # lower than the apprenticeship's 3e-3: adjust, don't reset
    epochs: int = 20  # passes over the reviews
    batch_size: int = 32  # reviews per knob turn
    replay_batch: int = 32  # old cakes replayed beside them per knob turn (0: no replay)
    freeze: int = 0  # early hidden layers whose knobs stay as laminated
    seed: int = 0  # shuffling and which old cakes are replayed

    def __post_init__(self):
        object.__setattr__(self, "learning_rate", _check_finite(
            "learning_rate", self.learning_rate, low=0.0, low_open=True))
        for name, least in (("epochs", 1), ("batch_size", 1), ("replay_batch", 0),
                            ("freeze", 0), ("seed", 0)):
            object.__setattr__(self, name, _check_positive_int(name, getattr(self, name),
                                                               minimum=least))

    def replace(self, **changes) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def tiny(cls) -> "FinetuneConfig":
        return cls(epochs=3, batch_size=8, replay_batch=8)


# ---------------------------------------------------------------- the laminated parent
class Parent(NamedTuple):
    """A trainable copy of a laminated chef, with the normalizer it was laminated with."""

    model: nnx.Module
    normalizer: Normalizer
    folder: str

    def measure(self, data: CakeData) -> CakeData:
        """Raw cakes (grams, °C, minutes) -> normalized exactly as the parent was trained."""
        return CakeData(self.normalizer(data.x), data.y)


def load_parent(folder) -> Parent:
    """Read a laminated folder into a trainable copy; the folder itself stays untouched
    (its files are read-only; nothing here opens them for writing)."""
    from kitchenlab.serve import artifact

    manifest = artifact.read_manifest(folder)
    return Parent(model=artifact.load_model(folder),
                  normalizer=Normalizer.from_dict(manifest["normalizer"]),
                  folder=manifest["folder"])


# ---------------------------------------------------------------- frozen stations
def layer_index(params) -> object:
    """The station each knob belongs to: hidden layer i -> i, the head -> depth (a pytree of
    ints shaped like ``params``: an ``nnx.State`` or a nested dict)."""
    paths = [_parts(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    depth = len({p[1] for p in paths if p[0] == "hidden"})

    def index(path, _):
        parts = _parts(path)
        return int(parts[1]) if parts[0] == "hidden" else depth

    return jax.tree_util.tree_map_with_path(index, params)


def _parts(path) -> list:
    """Key names of a pytree path, without nnx's trailing ``.value``."""
    keys = [getattr(e, "key", getattr(e, "name", getattr(e, "idx", e))) for e in path]
    return keys[:-1] if keys and keys[-1] == "value" else keys


def frozen_labels(params, freeze: int):
    """Labels for ``optax.multi_transform``: "frozen" for the first ``freeze`` hidden layers."""
    return jax.tree.map(lambda i: "frozen" if i < freeze else "tune", layer_index(params))


def freeze_mask(params, freeze) -> object:
    """1.0 where a knob may move, 0.0 in the first ``freeze`` hidden layers (may be traced)."""
    return jax.tree.map(lambda i: (jnp.asarray(i) >= freeze).astype(jnp.float32),
                        layer_index(params))


# ---------------------------------------------------------------- the compiled night shift
def replay_loss(params, graphdef, x, y, x_old, y_old, replay):
    """Reviews' judge's score, plus the replayed old cakes' with weight ``replay`` (0 or 1):
    (sum new + replay * sum old) / (B + replay * B_old)."""
    model = nnx.merge(graphdef, params)
    ce_new = optax.softmax_cross_entropy_with_integer_labels(model(x), y)  # (B,)
    total, count = ce_new.sum(), jnp.float32(y.shape[0])
    if x_old is not None:
        ce_old = optax.softmax_cross_entropy_with_integer_labels(model(x_old), y_old)
        total = total + replay * ce_old.sum()
        count = count + replay * y_old.shape[0]
    return total / count


def _accuracy(graphdef, params, x, y):
    return (jnp.argmax(nnx.merge(graphdef, params)(x), axis=-1) == y).mean()


def draws(seed: int, n_reviews: int, n_old: int, config: FinetuneConfig):
    """Which cakes each knob turn tastes, drawn on the host from ``seed``: a fresh shuffle
    of the reviews every epoch, (E, n_batches, B), and old cakes at random for replay,
    (E, n_batches, B_old). Drawn outside the compiled program, which then holds no random
    number generator (a smaller program: it compiles faster)."""
    rng = np.random.default_rng(seed)
    n_batches = n_reviews // config.batch_size
    order = np.stack([rng.permutation(n_reviews)[: n_batches * config.batch_size]
                      for _ in range(config.epochs)])
    old = rng.integers(0, max(n_old, 1), size=(config.epochs, n_batches, config.replay_batch))
    return (order.reshape(config.epochs, n_batches, config.batch_size).astype(np.int32),
            old.astype(np.int32))


@functools.partial(jax.jit, static_argnames=("graphdef", "sizes", "names", "progress"))
def _night_shift(graphdef, params, x, y, x_old, y_old, check_x, check_y, order, old_order,
                 learning_rate, replay, freeze, *, sizes, names, progress=None):
    """K fine-tuning runs from ``params`` in one call: scan over epochs { vmap over runs }.

    Each run is exactly the plain loop (tests/test_finetune.py writes it out with optax):
    per epoch the reviews in the order ``order`` gives, B of them per knob turn with the
    B_old old cakes ``old_order`` picks, Adam on ``replay_loss``, the update masked in
    frozen stations. order (E, K, n_batches, B), old_order (E, K, n_batches, B_old);
    learning_rate, replay (K,) float and freeze (K,) int are traced: changing them compiles
    nothing. The check tables are concatenated, (sum(sizes), F), and tasted in one pass.
    """
    has_old = x_old is not None
    hp = hyper(TrainConfig(optimizer="adam"))
    bounds = np.cumsum((0,) + sizes)

    def sous_chef(lr):  # Adam, as in the apprenticeship, at this run's learning rate
        return make_optimizer("adam", hp._replace(learning_rate=lr))

    def taste(params):  # (C,) accuracy on each check table
        right = jnp.argmax(nnx.merge(graphdef, params)(check_x), axis=-1) == check_y
        return jnp.stack([right[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:])])

    def step(carry, batch):
        params, opt_state, lr, w, mask = carry
        idx, old_idx = batch  # (B,), (B_old,)
        xo, yo = (x_old[old_idx], y_old[old_idx]) if has_old else (None, None)
        loss, grads = jax.value_and_grad(replay_loss)(params, graphdef, x[idx], y[idx], xo, yo, w)
        updates, opt_state = sous_chef(lr).update(grads, opt_state, params)
        updates = jax.tree.map(lambda u, m: u * m, updates, mask)  # frozen stations stay
        return (optax.apply_updates(params, updates), opt_state, lr, w, mask), loss

    def one_epoch(params, opt_state, idx, old_idx, lr, w, n_frozen):
        carry = (params, opt_state, lr, w, freeze_mask(params, n_frozen))
        (params, opt_state, *_), losses = jax.lax.scan(step, carry, (idx, old_idx))
        scores = taste(params) if names else jnp.zeros((0,))
        return params, opt_state, losses.mean(), scores

    def epoch_body(carry, batches):
        params, opt_state = carry
        epoch, idx, old_idx = batches
        params, opt_state, loss, scores = jax.vmap(one_epoch)(
            params, opt_state, idx, old_idx, learning_rate, replay, freeze)
        metrics = {"loss": loss} | {n: scores[:, i] for i, n in enumerate(names)}
        if progress is not None:
            jax.debug.callback(progress, epoch, metrics, ordered=True)
        return (params, opt_state), metrics

    before = taste(params) if names else jnp.zeros((0,))
    k = learning_rate.shape[0]
    stacked = jax.tree.map(lambda p: jnp.broadcast_to(p, (k,) + p.shape), params)
    opt_state = jax.vmap(sous_chef(1.0).init)(stacked)
    epochs = jnp.arange(order.shape[0])
    (params, _), history = jax.lax.scan(epoch_body, (stacked, opt_state),
                                        (epochs, order, old_order))
    return params, history, before


def _unstack(tree, k: int):
    return jax.tree.map(lambda p: p[k], tree)


# ---------------------------------------------------------------- results
@dataclasses.dataclass
class NightShift:
    """K fine-tuned chefs and their diary: one row per run, one column per epoch."""

    graphdef: object
    params: object  # stacked: every leaf (K, ...)
    runs: list[dict]  # per run: {"seed", "replay", "freeze"}
    loss: np.ndarray  # (K, E) mean training loss per epoch
    scores: dict[str, np.ndarray]  # check name -> (K, E) accuracy after every epoch
    parent_scores: dict[str, float]  # check name -> the parent's accuracy
    config: FinetuneConfig

    def __len__(self) -> int:
        return len(self.runs)

    def model(self, k: int) -> nnx.Module:
        """Run ``k``'s fine-tuned chef as a trainable model (e.g. to laminate it)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < len(self):
            raise ValueError(f"k must be a run index in [0, {len(self)}), got {k!r}")
        return nnx.merge(self.graphdef, _unstack(self.params, int(k)))

    def final(self, name: str) -> np.ndarray:
        """(K,) accuracy on check ``name`` after the last epoch."""
        if name not in self.scores:
            raise ValueError(f"name must be one of the checks {sorted(self.scores)}, got {name!r}")
        return self.scores[name][:, -1]

    def select(self, **where) -> np.ndarray:
        """Indices of the runs whose settings match, e.g. ``select(replay=1.0)``."""
        return np.array([k for k, r in enumerate(self.runs)
                         if all(r[key] == value for key, value in where.items())], int)


# ---------------------------------------------------------------- the public entry points
def _check_reviews(model, data, name: str, *, least: int = 1) -> CakeData:
    if not isinstance(data, CakeData):
        raise TypeError(f"{name} must be a CakeData table (normalized with the parent's "
                        f"normalizer), got {type(data).__name__}")
    if len(data) < least:
        raise ValueError(f"{name} is empty or too small: {len(data)} cakes; need at least "
                         f"{least} to fine-tune on")
    check_features(data.x, f"{name}.x", n_features=model.config.n_features)
    n_classes = model.config.n_classes
    if data.y.min() < 0 or data.y.max() >= n_classes:
        raise ValueError(f"{name}.y labels must be in [0, {n_classes}), got "
                         f"[{data.y.min()}, {data.y.max()}]")
    return data


def night_shift(model: nnx.Module, reviews: CakeData, *, replay: CakeData | None = None,
                config: FinetuneConfig = FinetuneConfig(),
                checks: dict[str, CakeData] | None = None, seeds: Sequence[int] = (0,),
                replay_on: Sequence[float] | None = None, freeze: Sequence[int] | None = None,
                on_epoch: Callable[[int, dict], None] | None = None) -> NightShift:
    """Fine-tune copies of ``model`` on ``reviews``: every combination of ``seeds`` x
    ``replay_on`` (1: replay old cakes, 0: reviews only; default 1 when ``replay`` is given
    and ``config.replay_batch > 0``, else 0) x ``freeze`` in one compiled call.

    ``model`` is never changed (its knobs are copied). Tables are normalized with the
    parent's normalizer. ``checks`` (name -> table) are tasted after every epoch, and by
    the parent once before. ``on_epoch(epoch, metrics)`` gets, after each epoch, the (K,)
    loss and check accuracies of all runs (for a progress display).
    """
    if getattr(model, "laminated", False):
        raise TypeError("model is a laminated Service: it refuses to be trained. Get a "
                        "trainable copy with kl.finetune.load_parent(folder).model")
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax nnx.Module, got {type(model).__name__}")
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    _check_reviews(model, reviews, "reviews", least=config.batch_size)
    use_replay = config.replay_batch > 0 and replay is not None
    if replay_on is None:
        replay_on = (1.0,) if use_replay else (0.0,)
    if not use_replay and any(float(r) > 0 for r in replay_on):
        raise ValueError("replay_on asks for replay, but there is nothing to replay: pass "
                         "replay=<old training table> and config.replay_batch > 0, or "
                         "replay_on=(0.0,)")
    if use_replay:
        _check_reviews(model, replay, "replay")
    checks = dict(checks or {})
    for name, table in checks.items():
        _check_reviews(model, table, f"checks[{name!r}]")
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"on_epoch must be a function (epoch, metrics) or None, "
                        f"got {type(on_epoch).__name__}")
    depth = model.config.depth
    freeze = tuple(freeze) if freeze is not None else (config.freeze,)
    for f in freeze:
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f <= depth:
            raise ValueError(f"freeze must list ints in [0, {depth}] (hidden layers of this "
                             f"model), got {f!r}")
    for r in replay_on:
        if not 0.0 <= float(r) <= 1.0:
            raise ValueError(f"replay_on must list weights in [0, 1], got {r!r}")
    runs = [{"seed": int(s), "replay": float(r), "freeze": int(f)}
            for r in replay_on for f in freeze for s in seeds]
    if not runs:
        raise ValueError("seeds, replay_on and freeze must each list at least one value")
    graphdef, params = nnx.split(model)
    n_old = len(replay) if use_replay else 0
    plan = config.replace(replay_batch=config.replay_batch if use_replay else 1)
    picks = [draws(r["seed"], len(reviews), n_old, plan) for r in runs]
    order = np.stack([p[0] for p in picks], axis=1)  # (E, K, n_batches, B)
    old_order = np.stack([p[1] for p in picks], axis=1)  # (E, K, n_batches, B_old)
    x_old, y_old = (replay.x, replay.y) if use_replay else (None, None)
    names = tuple(checks)
    tables = list(checks.values()) or [reviews.take(slice(0, 1))]
    report = None if on_epoch is None else (  # host side: plain numbers for a display
        lambda epoch, metrics: on_epoch(int(epoch), {k: np.asarray(v)
                                                     for k, v in metrics.items()}))
    with ProgressSlot.installed(report) as slot:
        out, history, before = _night_shift(
            graphdef, params, reviews.x, reviews.y, x_old, y_old,
            np.concatenate([t.x for t in tables]), np.concatenate([t.y for t in tables]),
            order, old_order,
            jnp.full((len(runs),), config.learning_rate, jnp.float32),
            jnp.array([r["replay"] for r in runs], jnp.float32),
            jnp.array([r["freeze"] for r in runs], jnp.int32),
            sizes=tuple(len(t) for t in tables), names=names,
            progress=slot)
        jax.block_until_ready(out)
    history = jax.device_get(history)
    return NightShift(graphdef=graphdef, params=out, runs=runs,
                      loss=np.asarray(history["loss"]).T,
                      scores={n: np.asarray(history[n]).T for n in names},
                      parent_scores={n: float(v) for n, v in zip(names, np.asarray(before))},
                      config=config)


def finetune(model: nnx.Module, reviews: CakeData, *, replay: CakeData | None = None,
             config: FinetuneConfig = FinetuneConfig(),
             checks: dict[str, CakeData] | None = None,
             on_epoch: Callable[[int, dict], None] | None = None) -> tuple[nnx.Module, NightShift]:
    """One night: a fine-tuned copy of ``model`` (seed, replay and freeze from ``config``)."""
    shift = night_shift(model, reviews, replay=replay, config=config, checks=checks,
                        seeds=(config.seed,), freeze=(config.freeze,), on_epoch=on_epoch)
    return shift.model(0), shift


# ---------------------------------------------------------------- the gate before promotion
class Decision(NamedTuple):
    """Whether the child may replace its parent, and why (one sentence)."""

    promote: bool
    reason: str
    parent: dict[str, float]
    child: dict[str, float]


def scores(model: nnx.Module, checks: dict[str, CakeData]) -> dict[str, float]:
    """Accuracy of ``model`` on every held-out table (normalized)."""
    graphdef, params = nnx.split(model)
    return {name: float(_accuracy_jit(graphdef, params, t.x, t.y)) for name, t in checks.items()}


_accuracy_jit = jax.jit(_accuracy, static_argnames=("graphdef",))


def decide(parent: dict[str, float], child: dict[str, float], *,
           tolerance: float = 0.02) -> Decision:
    """Promote the child only if it is no worse than its parent by more than ``tolerance``
    on ANY held-out check, and better on at least one (otherwise: keep / roll back)."""
    if set(parent) != set(child) or not parent:
        raise ValueError(f"parent and child must be scored on the same checks, got "
                         f"{sorted(parent)} and {sorted(child)}")
    tolerance = _check_finite("tolerance", tolerance, low=0.0)
    worse = {n: parent[n] - child[n] for n in parent if child[n] < parent[n] - tolerance}
    better = [n for n in parent if child[n] > parent[n]]
    if worse:
        n = max(worse, key=worse.get)
        return Decision(False, f"worse on {n}: {child[n]:.2f} vs the parent's {parent[n]:.2f} "
                               f"(more than {tolerance:.2f} below)", dict(parent), dict(child))
    if not better:
        return Decision(False, "no better than the parent on any check", dict(parent),
                        dict(child))
    gains = ", ".join(f"{n} {parent[n]:.2f} -> {child[n]:.2f}" for n in parent)
    return Decision(True, f"no check worse by more than {tolerance:.2f}; {gains}",
                    dict(parent), dict(child))
