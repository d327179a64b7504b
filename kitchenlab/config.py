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


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """The chatbot chef's recipe book: a character-level GPT (notebook 07).

    ``n_kv_head < n_head`` is grouped-query attention: ``n_head // n_kv_head`` query heads
    share one key/value head, so the KV cache (the fridge) is that many times smaller.
    """

    vocab_size: int = 77  # characters the chef reads and writes (kl.text.CharTokenizer)
    context: int = 512  # longest text (order + recipe) the chef can hold, in tokens
    n_layer: int = 4  # transformer blocks (courses served one after another)
    width: int = 192  # embedding width d_model (knobs per token per block)
    n_head: int = 6  # query heads per attention layer
    n_kv_head: int = 2  # key/value heads (= n_head: classic multi-head attention)
    mlp_ratio: int = 4  # hidden width of each block's MLP, in multiples of ``width``

    def __post_init__(self):
        for name in ("vocab_size", "context", "n_layer", "width", "n_head", "n_kv_head",
                     "mlp_ratio"):
            _check_positive_int(name, getattr(self, name))
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3 (pad, end and one character), "
                             f"got {self.vocab_size}")
        if self.width % self.n_head:
            raise ValueError(f"width must be divisible by n_head ({self.n_head}), got {self.width}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head, "
                             f"got n_kv_head={self.n_kv_head}")

    @property
    def head_dim(self) -> int:
        return self.width // self.n_head

    def replace(self, **changes) -> "GPTConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def tiny(cls) -> "GPTConfig":
        """Small enough for unit tests (a few thousand knobs)."""
        return cls(context=64, n_layer=2, width=32, n_head=4, n_kv_head=2)

    @classmethod
    def default(cls) -> "GPTConfig":
        """The target chef shipped in kitchenlab/weights (4 blocks, width 192)."""
        return cls()

    @classmethod
    def draft(cls) -> "GPTConfig":
        """The commis: one block, width 128 (for speculative decoding, notebook 08)."""
        return cls(n_layer=1, width=128, n_head=4, n_kv_head=2)
