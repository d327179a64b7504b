"""The order sheets: small frozen configs for models and training.

Every field carries a comment; ``tiny()`` gives a configuration small enough for
unit tests and ``default()`` the one the notebooks use.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")


def _check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as a Python int >= ``minimum``; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_finite(name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """``value`` as a finite Python float in range; bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def _store(config, name: str, value) -> None:
    """Keep the validated value (a float for ``0.1``, never the string ``"0.1"``)."""
    object.__setattr__(config, name, value)


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """The recipe book's shape: how many steps (layers) and how many knobs per step."""

    n_features: int = 8  # ingredients measured per cake (inputs)
    width: int = 32  # units per hidden layer (knobs per station)
    depth: int = 2  # number of hidden layers (stations in the recipe)
    n_classes: int = 2  # verdicts the judge can give: burnt / good cake
    dropout: float = 0.0  # probability a hidden unit is switched off while training

    def __post_init__(self):
        _store(self, "n_features", _check_positive_int("n_features", self.n_features))
        _store(self, "width", _check_positive_int("width", self.width))
        _store(self, "depth", _check_positive_int("depth", self.depth, minimum=0))
        _store(self, "n_classes", _check_positive_int("n_classes", self.n_classes, minimum=2))
        _store(self, "dropout", _check_finite("dropout", self.dropout, low=0.0, high=1.0,
                                              high_open=True))

    @classmethod
    def tiny(cls) -> "MLPConfig":
        return cls(width=8, depth=1)

    @classmethod
    def default(cls) -> "MLPConfig":
        return cls()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The apprenticeship plan: who turns the knobs, how boldly, and for how long."""

    optimizer: str = "adam"  # the sous-chef: one of OPTIMIZERS
    learning_rate: float = 3e-3  # how boldly knobs are turned (peak value when scheduled)
    epochs: int = 30  # full days of baking (passes over the training set)
    batch_size: int = 64  # cakes judged before each knob turn
    momentum: float = 0.9  # for "momentum": how much of the last turn carries over
    schedule: str = "constant"  # how the learning rate changes over training: SCHEDULES
    warmup_epochs: int = 0  # for "warmup_cosine": epochs of linear warm-up
    clip_norm: float | None = None  # safety cap on the gas valve: max global gradient norm
    weight_decay: float = 0.0  # decoupled decay of the kernels (AdamW); 0 with "adamw" means 1e-4
    l2: float = 0.0  # L2 penalty added to the loss (the "fine in the judge's score")
    dropout: float | None = None  # overrides the model's dropout rate when set
    patience: int | None = None  # early stopping: epochs without validation gain before stopping
    seed: int = 0  # shuffling and dropout randomness

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        _store(self, "learning_rate",
               _check_finite("learning_rate", self.learning_rate, low=0.0, low_open=True))
        _store(self, "epochs", _check_positive_int("epochs", self.epochs))
        _store(self, "batch_size", _check_positive_int("batch_size", self.batch_size))
        _store(self, "momentum",
               _check_finite("momentum", self.momentum, low=0.0, high=1.0, high_open=True))
        _store(self, "warmup_epochs",
               _check_positive_int("warmup_epochs", self.warmup_epochs, minimum=0))
        if self.warmup_epochs >= self.epochs and self.schedule == "warmup_cosine":
            raise ValueError(
                f"warmup_epochs must be < epochs ({self.epochs}), got {self.warmup_epochs}"
            )
        if self.clip_norm is not None:
            _store(self, "clip_norm",
                   _check_finite("clip_norm", self.clip_norm, low=0.0, low_open=True))
        _store(self, "weight_decay", _check_finite("weight_decay", self.weight_decay, low=0.0))
        _store(self, "l2", _check_finite("l2", self.l2, low=0.0))
        if self.dropout is not None:
            _store(self, "dropout",
                   _check_finite("dropout", self.dropout, low=0.0, high=1.0, high_open=True))
        if self.patience is not None:
            _store(self, "patience", _check_positive_int("patience", self.patience))
        _store(self, "seed", _check_positive_int("seed", self.seed, minimum=0))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def tiny(cls) -> "TrainConfig":
        return cls(epochs=3, batch_size=16)

    @classmethod
    def default(cls) -> "TrainConfig":
        return cls()
