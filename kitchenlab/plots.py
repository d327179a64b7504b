"""Plating the numbers: matplotlib helpers with labelled axes and a colour-blind-safe palette."""

from __future__ import annotations

import matplotlib

import numpy as np

# Okabe–Ito palette: distinguishable with the common colour-vision deficiencies.
PALETTE = {
    "train": "#0072B2",  # blue
    "val": "#D55E00",  # vermillion
    "test": "#009E73",  # green
    "accent": "#CC79A7",  # purple
    "muted": "#999999",
    "yellow": "#E69F00",
    "sky": "#56B4E9",
}
CYCLE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def style() -> None:
    """One house style for every figure."""
    matplotlib.rcParams.update({
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 90,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": matplotlib.cycler(color=CYCLE),
        "font.size": 10,
        "legend.frameon": False,
    })


def loss_curves(history, ax=None, *, title: str | None = None, log: bool = False,
                show_best: bool = False):
    """Train (and validation) loss per epoch; marks the best epoch when asked."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots()[1]
    epochs = np.arange(1, history.epochs + 1)
    if history.epochs:
        ax.plot(epochs, history.train_loss, color=PALETTE["train"], label="train (practice cakes)")
        if history.val_loss is not None:
            ax.plot(epochs, history.val_loss, color=PALETTE["val"], label="validation (guest tasters)")
            if show_best and history.best_epoch is not None:
                b = history.best_epoch
                ax.axvline(b + 1, color=PALETTE["muted"], ls="--", lw=1)
                ax.plot([b + 1], [history.val_loss[b]], "o", color=PALETTE["val"],
                        label=f"best epoch ({b + 1})")
        ax.legend(loc="upper right")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch (day of baking)")
    ax.set_ylabel("loss (judge's score, lower is better)")
    if title:
        ax.set_title(title)
    return ax


def message_panel(ax, text: str, *, color: str = "#D55E00") -> None:
    """Write a plain message across an axis (e.g. "exploded at step 6")."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, color=color, fontsize=12,
            transform=ax.transAxes, bbox={"boxstyle": "round", "fc": "white", "ec": color})
