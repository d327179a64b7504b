"""Notebook 02's experiments: how boldly the sous-chef turns the knobs.

``default_config`` is the notebook's training plan; ``lr_curves`` / ``clip_curves`` train a
fresh model at one slider value and name what happened (``verdict``). They call
``kl.train.fit(fused=True)``, in which the learning rate and the clip norm are traced: every
slider position reuses one compiled run. Plain SGD runs as the "momentum" optimizer with
momentum 0 (the update is then exactly ``-lr * g``), so SGD and momentum share that
compiled run too.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from kitchenlab.config import TrainConfig

OPTIMIZER_NAMES = {"sgd": "SGD", "momentum": "SGD + momentum", "adam": "Adam", "adamw": "AdamW"}


def default_config(optimizer: str = "sgd", **changes) -> TrainConfig:
    """The apprenticeship plan notebook 02 and its panels share: 20 days, 64 cakes per turn.

    ``optimizer="sgd"`` gives the "momentum" optimizer with ``momentum=0.0``: the same
    update as plain SGD, compiled once for SGD and momentum alike (momentum is traced).
    """
    base = TrainConfig(optimizer="momentum", momentum=0.0, learning_rate=0.1, epochs=20,
                       batch_size=64)
    if optimizer == "sgd":
        return base.replace(**changes)
    if optimizer == "momentum":
        return base.replace(momentum=0.9).replace(**changes)
    return base.replace(optimizer=optimizer).replace(**changes)


def format_value(value: float) -> str:
    """How a slider value is written everywhere (readout, title): 3 significant digits."""
    return f"{float(value):.3g}"


@dataclasses.dataclass(frozen=True)
class Curves:
    """What one slider position produced: the training diary and a verdict in words."""

    name: str  # the slider's quantity, e.g. "learning rate"
    value: float  # the slider value
    optimizer: str  # display name of the sous-chef
    history: object  # kl.train.History of the run
    start_loss: float  # judge's score before the first knob turn
    verdict: str  # "stuck", "learning", "overshooting", "ruined" or "exploded"
    steps_per_epoch: int = 1  # knob turns per day of baking
    epochs: int = 20  # days of baking planned (the x-axis length)
    baseline: object = None  # optional second History to compare with (e.g. no clipping)
    baseline_label: str = ""
    context: str = ""  # fixed settings worth naming in the title, e.g. " at learning rate 10"

    @property
    def label(self) -> str:
        return f"{self.name} = {format_value(self.value)}"


def _kitchen(kitchen):
    if kitchen is None:
        from kitchenlab.data import kitchen as make_kitchen

        kitchen = make_kitchen()
    return kitchen


def verdict(history, start: float) -> str:
    """One word for a loss curve: exploded, ruined, stuck, overshooting or learning."""
    if history.diverged:
        return "exploded"
    loss = np.asarray(history.train_loss, dtype=float)
    if loss.size == 0 or not np.all(np.isfinite(loss)):
        return "exploded"
    if loss[-1] > 1.1 * start:
        return "ruined"  # finite, but worse than before training: knobs slammed too far
    if start - loss[-1] < 0.15 * start:
        return "stuck"  # less than 15 % better after every day of baking
    if loss.size > 1 and np.max(loss[1:] / loss[:-1]) > 1.25:
        return "overshooting"  # some day ended 25 % worse than the day before
    return "learning"


VERDICT_WORDS = {
    "stuck": "stuck: the knobs barely move, the loss hardly falls",
    "learning": "learning: the loss falls steadily",
    "overshooting": "overshooting: turns so bold the loss jumps back up on some days",
    "ruined": "ruined: finite, but worse than before training (knobs slammed too far)",
    "exploded": "exploded",
}


class _ByIdentity:
    """Hashable handle on an object (a Kitchen holds arrays): equal only to itself."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _ByIdentity) and other.obj is self.obj


@functools.lru_cache(maxsize=8)
def _fresh_knobs(kitchen_ref: _ByIdentity, model_seed: int):
    """The untrained model (as split state) and its loss: the same for every slider value,
    so computed once (creating a module and an eager forward pass cost ~20 ms a move)."""
    import jax.numpy as jnp

    from kitchenlab.models import make_mlp
    from kitchenlab.train import cross_entropy

    kitchen = kitchen_ref.obj
    model = make_mlp(seed=model_seed)
    start = float(cross_entropy(model(jnp.asarray(kitchen.train.x)), jnp.asarray(kitchen.train.y)))
    return model, start


def _train(kitchen, config: TrainConfig, model_seed: int):
    """(History, loss before training) of a fresh model trained with ``config``."""
    from flax import nnx

    from kitchenlab.train import fit

    untrained, start = _fresh_knobs(_ByIdentity(kitchen), model_seed)
    model = nnx.clone(untrained)  # fit trains in place: the cached model must stay untouched
    return fit(model, kitchen.train, kitchen.val, config, fused=True), start


def lr_curves(learning_rate: float, *, kitchen=None, optimizer: str = "sgd",
              config: TrainConfig | None = None, model_seed: int = 0) -> Curves:
    """Train a fresh model at ``learning_rate`` and judge the curve. Never raises on divergence.

    ``config`` (default ``default_config(optimizer)``) fixes everything but the rate.
    """
    kitchen = _kitchen(kitchen)
    config = config or default_config(optimizer)
    lr = float(learning_rate)
    history, start = _train(kitchen, config.replace(learning_rate=lr), model_seed)
    return Curves("learning rate", lr, _display(config), history, start, verdict(history, start),
                  steps_per_epoch=len(kitchen.train) // config.batch_size, epochs=config.epochs)


def clip_curves(clip_norm: float, *, kitchen=None, learning_rate: float = 10.0,
                optimizer: str = "sgd", config: TrainConfig | None = None,
                model_seed: int = 0, baseline=None) -> Curves:
    """Train at a bold ``learning_rate`` with gradients capped at global norm ``clip_norm``.

    ``baseline`` is the same run without a cap (computed when not given; a panel computes
    it once and passes it in).
    """
    kitchen = _kitchen(kitchen)
    config = (config or default_config(optimizer)).replace(learning_rate=float(learning_rate))
    if baseline is None:
        baseline = _train(kitchen, config.replace(clip_norm=None), model_seed)[0]
    history, start = _train(kitchen, config.replace(clip_norm=float(clip_norm)), model_seed)
    return Curves("clip norm", float(clip_norm), _display(config), history, start,
                  verdict(history, start), steps_per_epoch=len(kitchen.train) // config.batch_size,
                  epochs=config.epochs, baseline=baseline,
                  baseline_label="no cap (same learning rate)",
                  context=f" at learning rate {format_value(learning_rate)}")


def _display(config: TrainConfig) -> str:
    if config.optimizer == "momentum" and config.momentum == 0.0:
        return "SGD"
    return OPTIMIZER_NAMES[config.optimizer]
