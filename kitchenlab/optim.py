"""The sous-chef: who turns the knobs, how boldly, and under which house rules.

Optimizers are composed from optax pieces the way optax builds its own:

    clip (gas-valve cap) -> direction (plain / momentum / Adam) -> decoupled weight decay
    on the kernels -> scale by the (scheduled) learning rate

The hyperparameters a slider moves (learning rate, momentum, clip norm, weight decay, L2,
dropout, and even SGD-vs-Adam) travel as traced arrays in ``Hyper``: changing them never
recompiles a training program, which is what lets one compiled run answer every slider
position and lets ``vmap`` sweep them (``kl.sweep``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kitchenlab.config import OPTIMIZERS, TrainConfig


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


def lr_schedule(config: TrainConfig, learning_rate, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate as a function of the step: constant, cosine, warm-up + cosine, exponential.

    The schedule's *shape* is static (part of the compiled program); its peak
    ``learning_rate`` may be traced.
    """
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


# ---------------------------------------------------------------- which knobs are fined
def is_kernel(param) -> bool:
    """A weight matrix (>= 2-D: a Linear kernel, an embedding), not an offset (bias, scale).

    Chosen by structure, not by name, so the rule holds for any model (the MLP, the GPT).
    """
    return jnp.ndim(param) >= 2


def kernels_only(params):
    """Mask for weight decay: the fine is for big knobs (kernels), not for offsets (biases)."""
    return jax.tree.map(is_kernel, params)


def l2_penalty(params) -> jax.Array:
    """Half the sum of squared kernel weights: the L2 fine (biases go free, as in decay)."""
    return 0.5 * sum((jnp.sum(p ** 2) for p in jax.tree.leaves(params) if is_kernel(p)),
                     jnp.float32(0.0))


# ---------------------------------------------------------------- the sous-chefs
def _around(direction: optax.GradientTransformation, hp: Hyper,
            schedule: optax.Schedule | None) -> optax.GradientTransformation:
    """clip -> ``direction`` -> decoupled decay on the kernels -> scale by the learning rate."""
    return optax.chain(optax.clip_by_global_norm(hp.clip_norm), direction,
                       optax.add_decayed_weights(hp.weight_decay, mask=kernels_only),
                       optax.scale_by_learning_rate(schedule or hp.learning_rate))


def make_optimizer(name: str, hp: Hyper, schedule: optax.Schedule | None = None
                   ) -> optax.GradientTransformation:
    """The sous-chef ``name``, composed from optax pieces the way optax builds its own.

    clip (gas-valve cap) -> direction (plain / momentum / Adam) -> decoupled weight decay
    on the kernels (so "adam" with ``weight_decay > 0`` is AdamW) -> scale by the
    (scheduled) learning rate. Equals ``optax.sgd`` / ``optax.adam`` / ``optax.adamw``
    with the same settings (tested).
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
