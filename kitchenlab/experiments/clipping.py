"""The gas-valve cap (notebook 02): gradient clipping for rare flare-ups in the judge's notes.

``spiky_kitchen`` hands out a few practice bags whose flour was weighed in milligrams: rare
outlier cakes whose notes spike hundreds of times above the ordinary band. ``clip_curves``
trains there with a cap on the notes' global norm and counts which turns the cap touched
(ordinary ones or spiky ones) and names the outcome (``CLIP_WORDS``: too tight, spikes only,
too loose); ``cap_sweep`` does the same for many caps and several seeds at once, sharing
``apprenticeship.race``'s compiled program when it has as many runs.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from kitchenlab.config import TrainConfig
from kitchenlab.experiments.apprenticeship import (SEEDS, _kitchen, _swept, _train,
                                                   curve_verdict, default_config, format_value)

TIGHT_ORDINARY = 0.05  # a cap is "too tight" when it trims over 5 % of the ordinary turns

CLIP_WORDS = {
    "too tight": "too tight: the cap also trims more than 5 % of the ordinary turns, "
                 "shortening them: a smaller learning rate in disguise",
    "spikes only": "spikes only: the cap trims spiky turns and at most 5 % of the ordinary "
                   "ones, and the run neither explodes nor bounces",
    "too loose": "too loose: spikes get through: the run explodes, or the guests' score "
                 "bounces (some day 25 % worse than the day before, or 10 % worse than "
                 "after the first day)",
}


def clip_verdict(history, ordinary_trimmed: float) -> str:
    """One word for a capped run on the spiky kitchen (see CLIP_WORDS).

    Judged on the guests (validation), who bring no mis-weighed bags: a run is "too loose"
    when it explodes, or when its validation loss overshoots (see ``curve_verdict``).
    """
    if history.diverged or curve_verdict(history.val_loss, history.val_loss[0]) == "overshooting":
        return "too loose"
    if ordinary_trimmed > TIGHT_ORDINARY:
        return "too tight"
    return "spikes only"


# ---------------------------------------------------------------- the spiky kitchen
@dataclasses.dataclass(frozen=True)
class SpikyKitchen:
    """The kitchen with a few practice bags weighed in the wrong unit (rare outlier cakes).

    The labels stay true (the cakes were baked from the real amounts); only the order
    sheet is wrong. The guests (``val``) bring ordinary cakes.
    """

    train: object  # CakeData (N, F): the practice cakes, ``outliers`` rows mis-weighed
    val: object  # CakeData: the guest tasters, untouched
    outliers: np.ndarray  # (n_outliers,) row indices of the mis-weighed bags
    feature: str  # which ingredient was mis-weighed
    factor: float  # by how much its amount was multiplied (1000: grams read as milligrams)


def spiky_kitchen(kitchen=None, *, n_outliers: int = 4, feature: str = "flour",
                  factor: float = 1000.0, seed: int = 0) -> SpikyKitchen:
    """``kitchen`` with ``n_outliers`` practice bags whose ``feature`` reads ``factor``x too big.

    The normalizer stays the one fitted on the clean bags (it was fitted before the bad
    bags arrived), so a bag of flour in milligrams sits thousands of spreads from the rest.
    """
    from kitchenlab.data import FEATURE_NAMES, CakeData

    kitchen = _kitchen(kitchen)
    if feature not in FEATURE_NAMES:
        raise ValueError(f"feature must be one of {FEATURE_NAMES}, got {feature!r}")
    if isinstance(n_outliers, bool) or not isinstance(n_outliers, (int, np.integer)) \
            or not 0 <= n_outliers <= len(kitchen.train):
        raise ValueError(f"n_outliers must be an int in [0, {len(kitchen.train)}], "
                         f"got {n_outliers!r}")
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    rows = np.sort(np.random.default_rng(seed).choice(len(kitchen.train), n_outliers,
                                                      replace=False))
    raw = kitchen.raw.train.x.copy()
    raw[rows, FEATURE_NAMES.index(feature)] *= factor
    train = CakeData(kitchen.normalizer(raw), kitchen.train.y)
    return SpikyKitchen(train, kitchen.val, rows, feature, float(factor))


def outlier_turns(n_train: int, outliers, config: TrainConfig) -> np.ndarray:
    """(epochs * steps_per_epoch,) True where the knob turn's tray holds an outlier cake.

    Replays ``fit``'s tray shuffling (same keys), so it lines up with ``History.grad_norm``.
    """
    rows = tuple(int(i) for i in np.asarray(outliers, dtype=int).reshape(-1))
    return _outlier_turns(int(n_train), rows, config.seed, config.epochs, config.batch_size)


@functools.lru_cache(maxsize=32)
def _outlier_turns(n_train: int, rows: tuple, seed: int, epochs: int, batch_size: int):
    """Cached: a slider move must not replay 20 shuffles (~20 ms)."""
    import jax
    import jax.numpy as jnp

    from kitchenlab.train import epoch_keys, shuffle_batches

    index = jnp.arange(n_train)
    dummy = jnp.zeros((n_train, 1), jnp.float32)
    is_outlier = np.zeros(n_train, bool)
    is_outlier[list(rows)] = True
    turns = []
    for k_shuffle, _ in epoch_keys(jax.random.key(seed), epochs):
        _, trays = shuffle_batches(k_shuffle, dummy, index, batch_size)  # (n, B) cake rows
        turns.append(is_outlier[np.asarray(trays)].any(axis=1))
    out = np.concatenate(turns)
    out.setflags(write=False)
    return out


@dataclasses.dataclass(frozen=True)
class ClipRun:
    """One cap on the spiky kitchen: the capped run, the uncapped one, the clean kitchen's."""

    clip_norm: float  # the cap on the notes' global norm
    learning_rate: float
    history: object  # History on the spiky kitchen with the cap (grad_norm: before clipping)
    baseline: object  # History on the spiky kitchen without a cap
    clean: object  # History on the clean kitchen without a cap (what an ordinary day gives)
    spiky_turns: np.ndarray  # (steps,) True where the turn's tray holds a mis-weighed bag
    verdict: str  # one of CLIP_WORDS
    steps_per_epoch: int = 1
    epochs: int = 20

    @property
    def label(self) -> str:
        return f"clip norm = {format_value(self.clip_norm)}"

    @property
    def trimmed(self) -> np.ndarray:
        """(turns done,) True where the cap bit (the note's norm was above it)."""
        return np.asarray(self.history.grad_norm) > self.clip_norm

    def counts(self) -> dict:
        """How many ordinary and spiky turns the run made and how many the cap trimmed."""
        spiky = self.spiky_turns[: self.trimmed.size]
        return {"ordinary": int((~spiky).sum()), "ordinary_trimmed": int((self.trimmed & ~spiky).sum()),
                "spiky": int(spiky.sum()), "spiky_trimmed": int((self.trimmed & spiky).sum())}


def _fraction(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def clip_curves(clip_norm: float, *, spiky: SpikyKitchen | None = None, kitchen=None,
                learning_rate: float = 0.1, config: TrainConfig | None = None,
                model_seed: int = 0, baseline=None, clean=None) -> ClipRun:
    """Train on the spiky kitchen with notes capped at global norm ``clip_norm``.

    ``baseline`` (the uncapped spiky run) and ``clean`` (the clean kitchen's run) are
    computed when not given; a panel computes them once and passes them in.
    """
    kitchen = _kitchen(kitchen)
    spiky = spiky or spiky_kitchen(kitchen)
    config = (config or default_config()).replace(learning_rate=float(learning_rate),
                                                  seed=model_seed)
    if baseline is None:
        baseline = _train(spiky, config, model_seed)[0]
    if clean is None:
        clean = _train(kitchen, config, model_seed)[0]
    history = _train(spiky, config.replace(clip_norm=float(clip_norm)), model_seed)[0]
    turns = outlier_turns(len(spiky.train), spiky.outliers, config)
    run = ClipRun(float(clip_norm), float(learning_rate), history, baseline, clean, turns,
                  "", steps_per_epoch=len(spiky.train) // config.batch_size,
                  epochs=config.epochs)
    c = run.counts()
    return dataclasses.replace(run, verdict=clip_verdict(
        history, _fraction(c["ordinary_trimmed"], c["ordinary"])))


@dataclasses.dataclass(frozen=True)
class CapSweep:
    """Many caps on the spiky kitchen at one learning rate, for several seeds: arrays (S, K, ...)."""

    caps: np.ndarray  # (K,)
    seeds: tuple  # (S,)
    learning_rate: float
    val_loss: np.ndarray  # (S, K, E)
    diverged: np.ndarray  # (S, K)
    ordinary_trimmed: np.ndarray  # (S, K) fraction of ordinary turns whose note the cap cut
    spiky_trimmed: np.ndarray  # (S, K) fraction of spiky turns whose note the cap cut
    verdicts: np.ndarray  # (S, K) one of CLIP_WORDS

    def final_val_loss(self) -> np.ndarray:
        return np.where(self.diverged, np.inf, self.val_loss[..., -1])


def cap_sweep(spiky: SpikyKitchen | None = None, *, caps, seeds=SEEDS,
              learning_rate: float = 0.1, config: TrainConfig | None = None,
              kitchen=None) -> CapSweep:
    """Plain SGD on the spiky kitchen at every cap in ``caps``, one vmapped sweep per seed."""
    from kitchenlab.train import History

    spiky = spiky or spiky_kitchen(_kitchen(kitchen))
    config = (config or default_config()).replace(learning_rate=float(learning_rate))
    caps = np.asarray(caps, dtype=np.float64).reshape(-1)
    k = caps.size
    val, bad, ordinary, spikes, words = [], [], [], [], []
    for seed in seeds:
        s = _swept(spiky, config, seed, learning_rate=np.full(k, float(learning_rate)),
                   momentum=np.zeros(k), adaptive=np.zeros(k), clip_norm=caps)
        turns = outlier_turns(len(spiky.train), spiky.outliers, config.replace(seed=seed))
        diverged = s.diverged_at_step > 0
        steps = np.arange(turns.size)
        done = np.where(diverged[:, None], steps < s.diverged_at_step[:, None] - 1, True)
        trimmed = (s.grad_norm > caps[:, None]) & done  # (K, steps), turns before a blow-up
        ordinary.append((trimmed & ~turns).sum(axis=1) / np.maximum((done & ~turns).sum(axis=1), 1))
        spikes.append((trimmed & turns).sum(axis=1) / np.maximum((done & turns).sum(axis=1), 1))
        words.append([clip_verdict(History(s.train_loss[j], None, s.val_loss[j], None,
                                           diverged_at_step=int(s.diverged_at_step[j])
                                           if diverged[j] else None), ordinary[-1][j])
                      for j in range(k)])
        val.append(s.val_loss)
        bad.append(diverged)
    return CapSweep(caps, tuple(seeds), float(learning_rate), np.stack(val), np.stack(bad),
                    np.stack(ordinary), np.stack(spikes), np.array(words))
