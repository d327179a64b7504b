"""The pantry: ingredient bags labelled "good cake" or "burnt", generated, never downloaded.

A cake is eight measured ingredients and oven settings. A hidden rule of the kitchen
(more heat than the batter's moisture can take burns the cake; sugar caramelises and burns
sooner) decides the label, and a few labels are flipped on purpose: real judges make
mistakes too. Everything is deterministic given ``seed``.

Shapes: N = number of cakes, F = number of features (8).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, NamedTuple

import numpy as np


class Feature(NamedTuple):
    """One ingredient on the order sheet."""

    name: str
    unit: str
    low: float  # smallest amount the pantry hands out
    high: float  # largest amount
    integer: bool = False  # eggs come whole


FEATURES: tuple[Feature, ...] = (
    Feature("flour", "g", 150.0, 350.0),
    Feature("sugar", "g", 50.0, 250.0),
    Feature("butter", "g", 50.0, 250.0),
    Feature("eggs", "count", 1.0, 5.0, integer=True),
    Feature("milk", "ml", 0.0, 250.0),
    Feature("baking_powder", "g", 0.0, 15.0),
    Feature("oven_temp", "°C", 140.0, 230.0),
    Feature("bake_time", "min", 15.0, 60.0),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_UNITS: dict[str, str] = {f.name: f.unit for f in FEATURES}
LABELS: tuple[str, ...] = ("burnt", "good cake")  # index = class id


@dataclasses.dataclass(frozen=True)
class CakeData:
    """A table of cakes: features ``x`` (N, F) float32 and labels ``y`` (N,) int32."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (N, F), got shape {x.shape}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got shape {y.shape}")
        object.__setattr__(self, "x", x.astype(np.float32, copy=False))
        object.__setattr__(self, "y", y.astype(np.int32, copy=False))

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, index) -> "CakeData":
        """The cakes at ``index`` (an int array, slice or boolean mask)."""
        return CakeData(self.x[index], self.y[index])

    def as_dicts(self, n: int | None = None) -> list[dict[str, float]]:
        """Rows as ``{ingredient: amount}`` order forms (the first ``n``)."""
        rows = self.x if n is None else self.x[:n]
        return [dict(zip(FEATURE_NAMES, map(float, row))) for row in rows]


def rule_terms(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hidden rule's two quantities: (heat the oven gives, heat the batter can take).

    ``x`` holds raw amounts (N, F) in the units of ``FEATURES``. A cake is good exactly when
    heat < capacity; in these two numbers the rule is a straight line. Both (N,) float64.
    """
    x = np.asarray(x, dtype=np.float64)
    flour, sugar, butter, eggs, milk, powder, temp, time = x.T
    heat = (temp - 120.0) / 60.0 * (time / 35.0)  # how much the oven gives
    moisture = (butter + milk + 50.0 * eggs) / flour  # how much the batter can take
    capacity = 0.95 + 0.45 * np.sqrt(moisture) - 0.9 * sugar / flour + 0.01 * powder
    return heat, capacity


def hidden_rule(x: np.ndarray) -> np.ndarray:
    """The kitchen's secret: 1 (good cake) unless the heat exceeds what the batter can take.

    ``x`` holds raw amounts in the units of ``FEATURES``. Returns int32 labels (N,).
    """
    heat, capacity = rule_terms(x)
    return (heat < capacity).astype(np.int32)


def boundary_bake_time(oven_temp, capacity) -> np.ndarray:
    """The hidden rule's boundary in (oven temperature, bake time): the bake time (min) at
    which a batter that takes ``capacity`` starts to burn at ``oven_temp`` (°C, > 120)."""
    temp = np.asarray(oven_temp, dtype=np.float64)
    if np.any(temp <= 120.0):
        raise ValueError(f"oven_temp must be above 120 °C (below it nothing burns), got "
                         f"minimum {float(temp.min())}")
    return np.asarray(capacity, dtype=np.float64) * 35.0 * 60.0 / (temp - 120.0)


def _check_raw(data, name: str) -> "CakeData":
    if not isinstance(data, CakeData):
        raise TypeError(f"{name} must be a CakeData table, got {type(data).__name__}")
    for j, f in enumerate(FEATURES):
        col = data.x[:, j]
        if len(col) and (col.min() < f.low - 1e-3 or col.max() > f.high + 1e-3):
            raise ValueError(
                f"{name} must hold raw amounts (grams, °C, minutes: e.g. kitchen.raw.val), "
                f"but {f.name} runs from {float(col.min()):.3g} to {float(col.max()):.3g}, "
                f"outside the pantry's range [{f.low:g}, {f.high:g}] {f.unit}: a normalized "
                "table?")
    return data


def flipped(data: CakeData) -> np.ndarray:
    """Wrong tags on the bags: which labels of a raw table disagree with the hidden rule (N,) bool."""
    data = _check_raw(data, "data")
    return data.y != hidden_rule(data.x)


def accuracy_ceiling(data: CakeData) -> float:
    """The best accuracy any chef can reach on these labels: the hidden rule's own score,
    1 - the share of flipped labels (no model can know which bags were mislabelled)."""
    mask = flipped(data)
    if mask.size == 0:
        raise ValueError("data is empty: need at least one cake to score")
    return float(1.0 - mask.mean())


def make_cakes(n: int, *, seed: int = 0, noise: float = 0.05, drift: float = 0.0) -> CakeData:
    """Bake ``n`` labelled cakes.

    Args:
      n: number of cakes (> 0).
      seed: randomness of the pantry and of the label noise.
      noise: fraction of labels flipped on purpose (wrong tags on the bags: the tag says
        the opposite of how the cake really turned out), in [0, 0.5).
      drift: in [0, 1]: a new oven supplier and a sweeter clientele move the ingredient
        distribution (hotter ovens, more sugar). 0 is the kitchen the model was trained in.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive int (number of cakes), got {n!r}")
    if not 0.0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5) (fraction of flipped labels), got {noise!r}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift!r}")
    rng = np.random.default_rng(seed)
    cols = []
    for f in FEATURES:
        u = rng.random(n)
        if f.name == "oven_temp":
            u = np.clip(u + 0.35 * drift * rng.random(n), 0.0, 1.0)
        if f.name == "sugar":
            u = u ** (1.0 - 0.6 * drift)
        col = f.low + u * (f.high - f.low)
        cols.append(np.round(col) if f.integer else col)
    x = np.stack(cols, axis=1).astype(np.float32)
    y = hidden_rule(x)
    flip = rng.random(n) < noise
    y = np.where(flip, 1 - y, y)
    return CakeData(x, y)


# ---------------------------------------------------------------- the world changes
# Named drifts: what changed in the restaurant's world, and how it moves the cakes. Each takes
# a severity in [0, 1]; 0 is the kitchen the chef was trained in.
DRIFTS: dict[str, str] = {
    "fan_oven": "a new fan oven: the kitchen bakes hotter (up to +80 °C) and shorter (down to "
                "40 % of the time); orders move into territory the chef never saw",
    "hot_oven": "the oven runs hot: the dial reads as before, the cake gets up to 30 °C more; "
                "the same orders, new outcomes",
    "less_sugar": "guests who now prefer less sugar (down to 30 % of it); orders move, but "
                  "inside territory the chef knows",
    "new_flour": "a new, stronger flour: recipes use less of it (down to 40 %)",
}
HOT_OVEN_MAX_C = 30.0  # how much hotter than its dial the oven runs at severity 1
FAN_OVEN_HOTTER_C = 80.0  # fan oven at severity 1: the dial set this much higher ...
FAN_OVEN_SHORTER = 0.6  # ... and the bake this much shorter (a fraction of the time)


def drifted_cakes(n: int, kind: str, severity: float, *, seed: int = 0,
                  noise: float = 0.05) -> CakeData:
    """``n`` labelled cakes from a world changed by drift ``kind`` (see ``DRIFTS``).

    These are the guests of the changed world; the ones whose verdict comes back later are
    the "reviews" a chef is fine-tuned on. The guests are ``make_cakes(n, seed=seed,
    noise=noise)``, moved by the drift, with the same wrong tags on the bags (the same labels are
    flipped), so severity 0 gives exactly ``make_cakes``'s cakes and a larger severity
    changes nothing else. Labels always come from the kitchen's physics
    (``hidden_rule``); for "hot_oven" the physics sees the oven's real temperature.
    """
    if not isinstance(kind, str) or kind not in DRIFTS:
        raise ValueError(f"kind must be one of {sorted(DRIFTS)} (a named drift), got {kind!r}")
    if isinstance(severity, bool) or not isinstance(severity, (int, float, np.floating)) \
            or not 0.0 <= float(severity) <= 1.0:
        raise ValueError(f"severity must be a number in [0, 1] (0: no drift), got {severity!r}")
    s = float(severity)
    base = make_cakes(n, seed=seed, noise=noise)
    flipped = base.y != hidden_rule(base.x)  # the same guests keep their wrong tags
    x = base.x.astype(np.float64)
    real = x  # what the physics sees (differs from the order only for a lying oven dial)
    col = FEATURE_NAMES.index
    if kind == "fan_oven":
        x = x.copy()
        x[:, col("oven_temp")] += FAN_OVEN_HOTTER_C * s
        x[:, col("bake_time")] *= 1.0 - FAN_OVEN_SHORTER * s
        real = x
    elif kind == "hot_oven":
        real = x.copy()
        real[:, col("oven_temp")] += HOT_OVEN_MAX_C * s
    elif kind == "less_sugar":
        x = x.copy()
        x[:, col("sugar")] *= 1.0 - 0.7 * s
        real = x
    else:  # "new_flour"
        x = x.copy()
        x[:, col("flour")] *= 1.0 - 0.6 * s
        real = x
    y = np.where(flipped, 1 - hidden_rule(real), hidden_rule(real))
    return CakeData(x.astype(np.float32), y)


class Splits(NamedTuple):
    """The kitchen's three tables: practice (train), guest tasters (val), final judges (test)."""

    train: CakeData
    val: CakeData
    test: CakeData


def split(data: CakeData, *, val_fraction: float = 0.2, test_fraction: float = 0.2,
          seed: int = 0) -> Splits:
    """Shuffle once and cut into train / validation / test tables."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {frac!r}")
    n = len(data)
    n_val, n_test = int(round(n * val_fraction)), int(round(n * test_fraction))
    if n - n_val - n_test <= 0:
        raise ValueError(
            f"val_fraction + test_fraction leave no training cakes: {n} cakes, "
            f"{n_val} validation, {n_test} test"
        )
    order = np.random.default_rng(seed).permutation(n)
    return Splits(
        train=data.take(order[n_val + n_test:]),
        val=data.take(order[:n_val]),
        test=data.take(order[n_val:n_val + n_test]),
    )


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Measuring exact amounts: per-feature mean and spread, fitted on the training table only."""

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)

    @classmethod
    def fit(cls, x: np.ndarray) -> "Normalizer":
        x = check_features(x, "x")
        if x.shape[0] < 2:
            raise ValueError(f"x needs at least 2 rows to fit a normalizer, got {x.shape[0]}")
        std = x.std(axis=0)
        return cls(mean=x.mean(axis=0), std=np.where(std > 0, std, 1.0).astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_features(x, "x", n_features=self.mean.shape[0])
        return ((x - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def check_features(x, name: str = "x", *, n_features: int | None = None, item: str = "cake",
                   columns=None) -> np.ndarray:
    """Validate a feature table: a 2-D, non-empty, finite float32 array with ``n_features``
    columns. Errors name the table (``name``), a row as an ``item`` ("cake", "order") and a
    column by its ingredient name when ``columns`` lists them."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N, F), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}; need at least one {item}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features per {item}, but the model expects {n_features}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        where = f"ingredient {columns[col]!r}" if columns is not None else f"column {col}"
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf), "
            f"first at {item} {row}, {where}: {arr[row, col]}"
        )
    return arr


class Kitchen(NamedTuple):
    """Everything a lesson needs: normalized splits plus the normalizer that made them."""

    train: CakeData
    val: CakeData
    test: CakeData
    normalizer: Normalizer
    raw: Splits  # the same tables in grams, °C and minutes


def kitchen(n: int = 2000, *, seed: int = 0, noise: float = 0.05, val_fraction: float = 0.2,
            test_fraction: float = 0.2, drift: float = 0.0) -> Kitchen:
    """Bake, split, and normalize (fitted on train only) in one call."""
    raw = split(make_cakes(n, seed=seed, noise=noise, drift=drift),
                val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    norm = Normalizer.fit(raw.train.x)

    def apply(d: CakeData) -> CakeData:
        return CakeData(norm(d.x), d.y) if len(d) else d

    return Kitchen(apply(raw.train), apply(raw.val), apply(raw.test), norm, raw)


@dataclasses.dataclass(frozen=True)
class Pantry:
    """Practice cakes padded to the biggest size, the guest tasters, and the final judges."""

    train: CakeData  # (N, F): a run on n cakes uses the first n rows
    val: CakeData  # (V, F): guest tasters: scores only, never trained on
    test: CakeData  # final judges: tasted once, at the very end

    def __post_init__(self):
        if len(self.val) == 0:
            raise ValueError("val is empty: the validation split has 0 cakes; guest tasters "
                             "are needed to see overfitting (use a larger val table)")
        if len(self.train) == 0:
            raise ValueError("train is empty: need at least one practice cake")


def pantry(n_train: int = 400, n_val: int = 400, n_test: int = 400, *, noise: float = 0.1,
           seed: int = 0) -> Pantry:
    """Bake practice, guest-taster and final-judge tables (normalized on practice cakes)."""
    for name, value, least in (("n_train", n_train, 2), ("n_val", n_val, 1),
                               ("n_test", n_test, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an int >= {least} (a split that small cannot "
                             f"teach or taste anything), got {value!r}")
    n = n_train + n_val + n_test
    k = kitchen(n, seed=seed, noise=noise, val_fraction=n_val / n, test_fraction=n_test / n)
    return Pantry(train=k.train, val=k.val, test=k.test)


def flip_labels(y: np.ndarray, fraction: float, *, seed: int = 0) -> np.ndarray:
    """Wrong tags on the bags: flip a ``fraction`` of the (binary) labels, chosen by ``seed``."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
            or not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be a number in [0, 1] (share of labels to flip), "
                         f"got {fraction!r}")
    rng = np.random.default_rng(seed)
    flip = rng.permutation(len(y))[: int(round(fraction * len(y)))]
    y = np.array(y, dtype=np.int32)
    y[flip] = 1 - y[flip]
    return y


def batches(data: CakeData, batch_size: int, *, seed: int = 0,
            drop_remainder: bool = True) -> Iterator[CakeData]:
    """Shuffled minibatches: the cakes judged before each knob turn."""
    check_batch_size(batch_size, len(data))
    order = np.random.default_rng(seed).permutation(len(data))
    stop = len(data) - (len(data) % batch_size if drop_remainder else 0)
    for start in range(0, stop, batch_size):
        yield data.take(order[start:start + batch_size])


def check_batch_size(batch_size, n: int) -> int:
    if n == 0:
        raise ValueError("dataset is empty: need at least one cake to train on")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__} {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) is larger than the dataset ({n} cakes)")
    return int(batch_size)
