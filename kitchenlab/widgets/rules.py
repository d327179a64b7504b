"""House rules' panel (notebook 04): dropout and weight decay against the generalization gap.

Every slider move trains a fresh model: ``kl.experiments.rules.rules_run`` is one compiled
full-batch run (200 epochs in ``lax.scan``, seed 0 of the noisy kitchen) in which dropout
and weight decay are traced arrays, so a new value reuses the compiled program and answers
in about 0.1 s. The "no house rules" baseline drawn in grey is trained once when the panel
is built. One run is one seed: the notebook's sweep gives the error bars.
"""

from __future__ import annotations

import dataclasses
import functools
import html

import numpy as np
from matplotlib.patches import Rectangle

from kitchenlab.data import Pantry
from kitchenlab.experiments.rules import (CONFIG, DROPOUTS, TIE_Z, WEIGHT_DECAYS, grid_stats,
                                          grid_table, near_best, rules_baseline, rules_run)
from kitchenlab.plots import PALETTE
from kitchenlab.regularize import RunConfig, Runs


@dataclasses.dataclass
class RulesView:
    """One fresh run with the house rules, next to the no-rules baseline."""

    dropout: float
    weight_decay: float
    epochs: np.ndarray
    train_accuracy: np.ndarray  # (E+1,)
    val_accuracy: np.ndarray
    base_val_accuracy: np.ndarray  # no dropout, no weight decay
    gap: float
    base_gap: float
    weights: np.ndarray  # every kernel entry after training (flat)
    base_weights: np.ndarray
    finite: bool


def compute(pantry: Pantry, config: RunConfig, base: Runs, dropout: float,
            weight_decay: float) -> RulesView:
    """Train once with these rules (clipped into the valid range, so it never raises)."""
    dropout = float(np.clip(dropout, 0.0, 0.95))
    weight_decay = float(max(weight_decay, 0.0))
    r = rules_run(pantry, config, dropout=dropout, weight_decay=weight_decay)
    finite = bool(np.all(np.isfinite(r.val_loss)))
    return RulesView(dropout=dropout, weight_decay=weight_decay, epochs=r.epochs,
                     train_accuracy=r.train_accuracy[0], val_accuracy=r.val_accuracy[0],
                     base_val_accuracy=base.val_accuracy[0], gap=float(r.gap[0]),
                     base_gap=float(base.gap[0]), weights=r.kernels(0),
                     base_weights=base.kernels(0), finite=finite)


def draw(view: RulesView, fig) -> None:
    """Left: train/val accuracy over epochs (grey: no rules). Right: weight-size histogram."""
    fig.set_layout_engine(None)  # fixed margins: constrained layout (and the extra layout
    # pass savefig makes for any layout engine) would more than double the redraw time
    ax, hx = fig.subplots(1, 2, gridspec_kw=dict(left=0.08, right=0.98, bottom=0.14, top=0.9,
                                                  wspace=0.25))
    ax.plot(view.epochs, view.base_val_accuracy, color=PALETTE["muted"], lw=1.2,
            label="guests, no house rules")
    ax.plot(view.epochs, view.train_accuracy, color=PALETTE["train"], label="practice cakes (train)")
    ax.plot(view.epochs, view.val_accuracy, color=PALETTE["val"], label="guest tasters (val)")
    ax.set_ylim(0.4, 1.02)
    ax.set_xlabel("epoch (day of baking)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"dropout {view.dropout:.2f}, weight decay {view.weight_decay:.3g}")
    ax.legend(loc="lower right", fontsize=8)
    bins = np.linspace(-1.5, 1.5, 61)
    for w, color, label in ((view.base_weights, PALETTE["muted"], "no house rules"),
                            (view.weights, PALETTE["accent"], "with these rules")):
        counts, _ = np.histogram(np.clip(w, -1.5, 1.5), bins=bins)
        hx.stairs(counts, bins, fill=True, alpha=0.55, color=color, label=label)
    hx.set_xlabel("knob setting (weight value, clipped to ±1.5)")
    hx.set_ylabel("how many knobs")
    hx.set_title("weight sizes after training", fontsize=9)
    hx.legend(loc="upper right", fontsize=8)


def readout(view: RulesView) -> str:
    if not view.finite:
        return (f"dropout {view.dropout:.2f}, weight decay {view.weight_decay:.3g}: "
                "<b>the loss became NaN</b>: these rules are too strict for this kitchen")
    change = view.base_gap - view.gap
    verdict = ("too strict: the chef cannot learn even the practice cakes"
               if view.train_accuracy[-1] < 0.75 else
               "the rules shrink the gap" if change > 0.02 else "little effect on the gap")
    return (f"<b>dropout {view.dropout:.2f}</b>, <b>weight decay {view.weight_decay:.3g}</b>: "
            f"train {view.train_accuracy[-1]:.2f}, guests {view.val_accuracy[-1]:.2f}, "
            f"<b>gap {view.gap:.2f}</b> (no rules: {view.base_gap:.2f}) — "
            f"{html.escape(verdict)}; mean |weight| {np.abs(view.weights).mean():.3f} "
            f"(no rules: {np.abs(view.base_weights).mean():.3f})")


def panel(pantry: Pantry, config: RunConfig = CONFIG, *, dropout: float = 0.0,
          weight_decay: float = 10.0):
    """Dropout-rate slider and weight-decay slider (log scale); each move trains afresh."""
    from kitchenlab.widgets import Panel, float_slider, log_slider

    controls = {
        "dropout": float_slider("dropout: share of burners randomly off", dropout, 0.0, 0.9, 0.05),
        "weight_decay": log_slider("weight decay: fine for big knobs", weight_decay, -3, 1.5,
                                   0.25),
    }
    base = rules_baseline(pantry, config)
    return Panel(functools.partial(compute, pantry, config, base), draw, readout, controls,
                 figsize=(9.6, 3.6), css_class="kl-panel")


# ---------------------------------------------------------------- the summary grid
def draw_grid(runs: Runs, fig) -> None:
    """Mean guest accuracy over (dropout x weight decay) with a colour bar; the cells that
    tie with the best (within ``TIE_Z`` standard errors of the per-seed difference) are
    outlined: with these seeds they cannot be told apart from it."""
    mean, se = grid_stats(runs)
    near = near_best(grid_table(runs))
    ax = fig.subplots()
    im = ax.imshow(mean, cmap="viridis", origin="lower", aspect="auto")
    fig.colorbar(im, ax=ax, label="guest accuracy (mean over seeds)")
    mid = 0.5 * (mean.min() + mean.max())
    for i in range(mean.shape[0]):
        for j in range(mean.shape[1]):
            ax.text(j, i, f"{mean[i, j]:.2f}\n±{se[i, j]:.2f}", ha="center", va="center",
                    fontsize=7, color="white" if mean[i, j] < mid else "black")
            if near[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                       ec=PALETTE["val"], lw=2.5))
    ax.set_xticks(range(len(WEIGHT_DECAYS)), [f"{w:g}" for w in WEIGHT_DECAYS])
    ax.set_yticks(range(len(DROPOUTS)), [f"{d:g}" for d in DROPOUTS])
    ax.set_xlabel("weight decay λ (fine for big knobs)")
    ax.set_ylabel("dropout (burners off)")
    n_seeds = len(np.unique(runs.values["seed"]))
    ax.set_title(f"guest accuracy, mean ± SE of {n_seeds} seeds\noutlined: tied with the best "
                 f"(within {TIE_Z:g} SE, paired by seed)", fontsize=9)
    ax.grid(False)
