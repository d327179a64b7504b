"""The sous-chef's apprenticeship (notebook 02): how boldly the knobs turn, and who turns them.

Named experiments that notebook 02, its panels (``kl.widgets.apprenticeship``) and its checks
share. Each is a pure function of its settings and never raises when training blows up:
``lr_curves`` trains one apprentice and names the regime (``verdict``: stuck, learning,
overshooting or exploded); ``race`` sweeps SGD, momentum and Adam over a grid of learning
rates and several seeds, so that each sous-chef can be judged at its own best rate, on the
guests, and ``Race.momentum_pairs`` lines momentum at η up with SGD at its effective step
η / (1 − β), seed by seed. The gas-valve cap (gradient clipping) has its own module,
``kl.experiments.clipping``.

Everything runs ``kl.train.fit`` (fused) or ``kl.sweep.sweep`` with the learning rate,
momentum, clip norm and optimizer traced, so one compiled program per kind serves every
setting. Plain SGD is the "momentum" optimizer with momentum 0 (the update is then exactly
-lr * g).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from kitchenlab.config import TrainConfig

OPTIMIZER_NAMES = {"sgd": "SGD", "momentum": "SGD + momentum", "adam": "Adam", "adamw": "AdamW"}
SOUS_CHEFS = ("sgd", "momentum", "adam")  # the three raced in ``race``
MOMENTUM = 0.9  # the momentum sous-chef's beta
LR_GRID = 10.0 ** np.arange(-4.0, 1.001, 0.25)  # the slider's notches: 1e-4 ... 10, (21,)
SEEDS = (0, 1, 2, 3)  # apprentices with different starting knobs and tray orders
NO_CAP = float(np.finfo(np.float32).max)  # a clip norm no finite note reaches

# What the verdict words mean (notebook 02 prints these definitions):
BOUNCE = 1.25  # overshooting: some day's loss at least 25 % above the day before ...
ABOVE_START = 1.1  # ... or more than 10 % above the loss before training
STUCK_DROP = 0.15  # stuck: after the last day, less than 15 % below the loss before training

VERDICT_WORDS = {
    "stuck": "stuck: after the last day the loss is less than 15 % below where it started",
    "learning": "learning: the loss ends more than 15 % below its start, without bouncing",
    "overshooting": "overshooting: the loss bounces (some day 25 % worse than the day "
                    "before) or climbs more than 10 % above where it started",
    "exploded": "exploded: the loss became NaN/inf or passed 1000; training stopped and the "
                "knobs were rolled back to the start of that day",
}


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
        return base.replace(momentum=MOMENTUM).replace(**changes)
    return base.replace(optimizer=optimizer).replace(**changes)


def format_value(value: float) -> str:
    """How a slider value is written everywhere (readout, title): 3 significant digits."""
    return f"{float(value):.3g}"


# ---------------------------------------------------------------- verdicts
def curve_verdict(train_loss, start: float, diverged: bool = False) -> str:
    """One word for a daily train-loss curve that started at ``start`` (see VERDICT_WORDS)."""
    loss = np.asarray(train_loss, dtype=float)
    if diverged or loss.size == 0 or not np.all(np.isfinite(loss)):
        return "exploded"
    bounced = loss.size > 1 and np.max(loss[1:] / loss[:-1]) > BOUNCE
    if bounced or np.max(loss) > ABOVE_START * start:
        return "overshooting"
    if start - loss[-1] < STUCK_DROP * start:
        return "stuck"
    return "learning"


def verdict(history, start: float) -> str:
    """One word for a training ``History`` (see VERDICT_WORDS)."""
    return curve_verdict(history.train_loss, start, history.diverged)


# ---------------------------------------------------------------- one apprentice
@dataclasses.dataclass(frozen=True)
class Curves:
    """What one learning-rate slider position produced: the diary and a verdict in words."""

    name: str  # the slider's quantity: "learning rate"
    value: float  # the slider value
    optimizer: str  # display name of the sous-chef
    history: object  # kl.train.History of the run
    start_loss: float  # judge's score before the first knob turn
    verdict: str  # one of VERDICT_WORDS
    steps_per_epoch: int = 1  # knob turns per day of baking
    epochs: int = 20  # days of baking planned (the x-axis length)

    @property
    def label(self) -> str:
        return f"{self.name} = {format_value(self.value)}"


def _kitchen(kitchen):
    if kitchen is None:
        from kitchenlab.data import kitchen as make_kitchen

        kitchen = make_kitchen()
    return kitchen


class _ByIdentity:
    """Hashable handle on an object (a Kitchen holds arrays): equal only to itself."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _ByIdentity) and other.obj is self.obj


@functools.lru_cache(maxsize=16)
def _fresh_knobs(kitchen_ref: _ByIdentity, model_seed: int):
    """The untrained model and its train loss: the same for every slider value, so computed
    once (creating a module and an eager forward pass cost ~20 ms a move)."""
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


def _display(config: TrainConfig) -> str:
    if config.optimizer == "momentum" and config.momentum == 0.0:
        return "SGD"
    return OPTIMIZER_NAMES[config.optimizer]


def lr_curves(learning_rate: float, *, kitchen=None, optimizer: str = "sgd",
              config: TrainConfig | None = None, model_seed: int = 0) -> Curves:
    """Train a fresh model at ``learning_rate`` and judge the curve. Never raises on divergence.

    ``config`` (default ``default_config(optimizer)``) fixes everything but the rate;
    ``model_seed`` picks the apprentice: starting knobs and tray order (as in ``race``).
    """
    kitchen = _kitchen(kitchen)
    config = config or default_config(optimizer)
    lr = float(learning_rate)
    history, start = _train(kitchen, config.replace(learning_rate=lr, seed=model_seed),
                            model_seed)
    return Curves("learning rate", lr, _display(config), history, start, verdict(history, start),
                  steps_per_epoch=len(kitchen.train) // config.batch_size, epochs=config.epochs)


# ---------------------------------------------------------------- the race
def _swept(kitchen, config: TrainConfig, seed: int, *, learning_rate, momentum, adaptive,
           clip_norm):
    """One vmapped sweep with seed ``seed`` (starting knobs and tray order); every caller
    sweeps the same four fields, so ``race`` and ``clipping.cap_sweep`` (with as many runs)
    share one compiled program."""
    from kitchenlab.models import make_mlp
    from kitchenlab.sweep import sweep

    return sweep(make_mlp(seed=seed), kitchen.train, kitchen.val, config.replace(seed=seed),
                 learning_rate=learning_rate, momentum=momentum, adaptive=adaptive,
                 clip_norm=clip_norm)


@dataclasses.dataclass(frozen=True)
class Race:
    """SGD, momentum and Adam over a grid of learning rates and several seeds.

    Arrays are (S, 3, L, E): seed, sous-chef (``SOUS_CHEFS`` order), learning rate, day.
    """

    learning_rates: np.ndarray  # (L,)
    seeds: tuple  # (S,)
    train_loss: np.ndarray  # (S, 3, L, E) mean judge's score of each day's trays
    val_loss: np.ndarray  # (S, 3, L, E) the guests' score after each day
    val_accuracy: np.ndarray  # (S, 3, L, E)
    diverged: np.ndarray  # (S, 3, L) True where the run exploded
    start_loss: np.ndarray  # (S,) train loss of each seed's untrained knobs

    def final_val_loss(self) -> np.ndarray:
        """(S, 3, L) the guests' score after the last day; inf where the run exploded."""
        return np.where(self.diverged, np.inf, self.val_loss[..., -1])

    def mean_val_loss(self) -> np.ndarray:
        """(3, L) final validation loss averaged over seeds (inf if any seed exploded)."""
        return self.final_val_loss().mean(axis=0)

    def steady(self, optimizer: str) -> np.ndarray:
        """(L,) True where every seed of ``optimizer`` is "learning" (no bounce, no blow-up)."""
        return np.all(self.verdicts(optimizer) == "learning", axis=0)

    def best(self, optimizer: str) -> tuple[float, float, float]:
        """(learning rate, mean, std over seeds) of the lowest mean final validation loss.

        Only rates at which every seed learns steadily compete: a run that overshoots can
        land low by luck, and luck is not a setting to recommend.
        """
        i = SOUS_CHEFS.index(optimizer)
        mean = np.where(self.steady(optimizer), self.mean_val_loss()[i], np.inf)
        j = int(np.argmin(mean))
        return (float(self.learning_rates[j]), float(mean[j]),
                float(self.final_val_loss()[:, i, j].std()))

    def good_band(self, optimizer: str, within: float = 0.01) -> np.ndarray:
        """The steady learning rates whose mean final validation loss is within ``within``
        of the best: near-ties are reported as a set, never decided by the last bits."""
        mean = np.where(self.steady(optimizer),
                        self.mean_val_loss()[SOUS_CHEFS.index(optimizer)], np.inf)
        return self.learning_rates[mean <= np.min(mean) + within]

    def momentum_pairs(self) -> "MomentumPairs":
        """Momentum at η next to SGD at its effective step η / (1 − β), where the grid has both.

        The same seed means the same starting knobs and trays, so the gap is paired.
        """
        lrs = self.learning_rates
        mom, sgd = [], []
        for j, lr in enumerate(lrs):
            k = np.flatnonzero(np.isclose(lrs, lr / (1 - MOMENTUM), rtol=1e-6))
            if k.size:
                mom.append(j)
                sgd.append(int(k[0]))
        mom, sgd = np.array(mom, dtype=int), np.array(sgd, dtype=int)
        final = self.final_val_loss()
        with np.errstate(invalid="ignore"):  # inf - inf where both exploded: nan
            gap = (final[:, SOUS_CHEFS.index("momentum"), mom]
                   - final[:, SOUS_CHEFS.index("sgd"), sgd])  # (S, P)
        return MomentumPairs(lrs[mom] / (1 - MOMENTUM), mom, sgd, gap)

    def verdicts(self, optimizer: str = "sgd") -> np.ndarray:
        """(S, L) verdict word of every run of ``optimizer`` (see VERDICT_WORDS)."""
        i = SOUS_CHEFS.index(optimizer)
        return np.array([[curve_verdict(self.train_loss[s, i, j], self.start_loss[s],
                                        self.diverged[s, i, j])
                          for j in range(len(self.learning_rates))]
                         for s in range(len(self.seeds))])


@dataclasses.dataclass(frozen=True)
class MomentumPairs:
    """Momentum (β = ``MOMENTUM``) at η paired with SGD at η / (1 − β) in a ``Race``."""

    steps: np.ndarray  # (P,) the effective step η / (1 − β) of each pair
    momentum_index: np.ndarray  # (P,) index of momentum's η in ``Race.learning_rates``
    sgd_index: np.ndarray  # (P,) index of SGD's rate η / (1 − β)
    gap: np.ndarray  # (S, P) momentum's final validation loss minus SGD's, per seed; -inf
    #                  where only SGD exploded, +inf where only momentum did, nan if both

    def finite(self) -> np.ndarray:
        """(P,) True where no run of the pair exploded, for any seed."""
        return np.all(np.isfinite(self.gap), axis=0)

    def mean(self) -> np.ndarray:
        """(P,) the mean gap over seeds (±inf or nan where a run exploded)."""
        with np.errstate(invalid="ignore"):
            return self.gap.mean(axis=0)

    def standard_error(self) -> np.ndarray:
        """(P,) standard error of the mean gap over seeds; nan where a run exploded."""
        n = self.gap.shape[0]
        ok = self.finite()
        spread = np.where(ok, self.gap, 0.0).std(axis=0, ddof=1) if n > 1 else np.zeros(ok.shape)
        return np.where(ok, spread / np.sqrt(n), np.nan)


def race(kitchen=None, *, learning_rates=LR_GRID, seeds=SEEDS,
         config: TrainConfig | None = None, on_seed=None) -> Race:
    """Train SGD, momentum (beta 0.9) and Adam at every learning rate, for every seed.

    One vmapped sweep of 3 x L runs per seed (same starting knobs and trays within a seed).
    ``on_seed(i, seed)`` is called after each seed (for a progress line).
    """
    import jax.numpy as jnp

    from kitchenlab.models import make_mlp
    from kitchenlab.train import cross_entropy

    kitchen = _kitchen(kitchen)
    config = config or default_config()
    lrs = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
    n = lrs.size
    axes = dict(learning_rate=np.tile(lrs, 3), momentum=np.repeat([0.0, MOMENTUM, 0.0], n),
                adaptive=np.repeat([0.0, 0.0, 1.0], n), clip_norm=np.full(3 * n, NO_CAP))
    runs, starts = [], []
    for i, seed in enumerate(seeds):
        runs.append(_swept(kitchen, config, seed, **axes))
        model = make_mlp(seed=seed)
        starts.append(float(cross_entropy(model(jnp.asarray(kitchen.train.x)),
                                          jnp.asarray(kitchen.train.y))))
        if on_seed is not None:
            on_seed(i, seed)

    def stack(name):  # (S, 3 * L, E) -> (S, 3, L, E)
        arr = np.stack([getattr(r, name) for r in runs])
        return arr.reshape(len(seeds), 3, n, *arr.shape[2:])

    return Race(lrs, tuple(seeds), stack("train_loss"), stack("val_loss"),
                stack("val_accuracy"), stack("diverged_at_step") > 0, np.asarray(starts))
