"""Guest tasters' panel (notebook 03): model size and data size against the generalization gap.

The panel answers from a grid of 6 widths x 5 training-set sizes = 30 full training runs,
computed in ONE vmapped call (``kl.regularize.run_many``) when the notebook opens. Moving a
slider selects a run of that grid and redraws: no training happens on a slider move, so it
answers in the time of one matplotlib draw. Every number was computed in this session.
"""

from __future__ import annotations

import dataclasses
import functools
import html

import numpy as np
from matplotlib.patches import Rectangle

from kitchenlab.experiments.tasters import SIZES, WIDTHS, gap_table
from kitchenlab.plots import PALETTE
from kitchenlab.regularize import Runs
from kitchenlab.widgets import Panel



def _nearest(options, value) -> int:
    return min(options, key=lambda o: abs(np.log(o) - np.log(max(float(value), 1e-9))))


@dataclasses.dataclass
class TasterView:
    """What the panel shows for one (width, n_train) cell."""

    width: int
    n_train: int
    n_params: int  # knobs of a width-`width`, depth-2 MLP on 8 ingredients
    epochs: np.ndarray  # (E+1,)
    train_accuracy: np.ndarray
    val_accuracy: np.ndarray
    best_epoch: int  # lowest validation loss: where early stopping would land
    gap: float
    gaps: np.ndarray  # (W, S) the whole heat map


def compute(runs: Runs, width: int, n_train: int) -> TasterView:
    """Pick the grid run nearest to the slider values (never raises for a reachable value)."""
    width, n_train = _nearest(WIDTHS, width), _nearest(SIZES, n_train)
    k = runs.index(width=width, n_train=n_train)
    n_params = 8 * width + width + width * width + width + width * 2 + 2
    return TasterView(width=width, n_train=n_train, n_params=n_params, epochs=runs.epochs,
                      train_accuracy=runs.train_accuracy[k], val_accuracy=runs.val_accuracy[k],
                      best_epoch=int(runs.best_epoch[k]), gap=float(runs.gap[k]),
                      gaps=gap_table(runs))


def draw_heatmap(gaps: np.ndarray, ax, *, mark: tuple[int, int] | None = None,
                 numbers: bool = False) -> None:
    """Gap heat map: widths down, training-set sizes across; ``mark`` = (width, n_train)."""
    vmax = max(0.2, float(gaps.max()))
    ax.imshow(gaps, cmap="magma_r", vmin=0.0, vmax=vmax, origin="lower", aspect="auto")
    # Only the chosen cell carries its number: 30 text labels would double the redraw time;
    # notebook figures pass numbers=True for the full table.
    cells = np.ndindex(*gaps.shape) if numbers else (
        [(WIDTHS.index(mark[0]), SIZES.index(mark[1]))] if mark is not None else [])
    for i, j in cells:
        ax.text(j, i, f"{gaps[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="white" if gaps[i, j] > 0.55 * vmax else "black")
    ax.set_xticks(range(len(SIZES)), [str(s) for s in SIZES])
    ax.set_yticks(range(len(WIDTHS)), [str(w) for w in WIDTHS])
    ax.set_xlabel("practice cakes (training-set size)")
    ax.set_ylabel("knobs per station (width)")
    ax.set_title("gap = train − val accuracy")
    ax.grid(False)
    if mark is not None:
        i, j = WIDTHS.index(mark[0]), SIZES.index(mark[1])
        ax.add_patch(Rectangle(
            (j - 0.5, i - 0.5), 1, 1, fill=False, ec=PALETTE["sky"], lw=2.5))


def draw(view: TasterView, fig) -> None:
    """Left: practice vs guest accuracy over epochs, best epoch marked. Right: the heat map."""
    fig.set_layout_engine(None)  # fixed margins: constrained layout (and the extra layout
    # pass savefig makes for any layout engine) would more than double the redraw time
    ax, hm = fig.subplots(1, 2, width_ratios=[1.15, 1], gridspec_kw=dict(
        left=0.07, right=0.99, bottom=0.14, top=0.9, wspace=0.28))
    ax.plot(view.epochs, view.train_accuracy, color=PALETTE["train"], label="practice cakes (train)")
    ax.plot(view.epochs, view.val_accuracy, color=PALETTE["val"], label="guest tasters (val)")
    b = int(np.searchsorted(view.epochs, view.best_epoch))
    ax.axvline(view.best_epoch, color=PALETTE["muted"], ls="--", lw=1)
    ax.plot([view.best_epoch], [view.val_accuracy[b]], "o", color=PALETTE["val"],
            label=f"lowest val loss (epoch {view.best_epoch})")
    ax.set_ylim(0.4, 1.02)
    ax.set_xlabel("epoch (day of baking)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"width {view.width} ({view.n_params} knobs), {view.n_train} cakes")
    ax.legend(loc="lower right", fontsize=8)
    draw_heatmap(view.gaps, hm, mark=(view.width, view.n_train))


def readout(view: TasterView) -> str:
    verdict = ("too few knobs: cannot even learn the practice cakes"
               if view.train_accuracy[-1] < 0.75 else
               "memorising the practice cakes" if view.gap > 0.12 else
               "some memorising" if view.gap > 0.05 else "generalises")
    return (f"<b>width {view.width}</b> ({view.n_params} knobs), <b>{view.n_train} practice "
            f"cakes</b>: train accuracy {view.train_accuracy[-1]:.2f}, guest accuracy "
            f"{view.val_accuracy[-1]:.2f}, <b>gap {view.gap:.2f}</b> ({html.escape(verdict)}); "
            f"lowest val loss at epoch {view.best_epoch}")


def panel(runs: Runs, *, width: int = 32, n_train: int = 50) -> Panel:
    """The overfitting panel: model-size and training-set-size sliders over ``runs``."""
    import ipywidgets as w

    style = {"description_width": "initial"}
    controls = {
        "width": w.SelectionSlider(options=list(WIDTHS), value=width, continuous_update=False,
                                   description="model size (knobs per station)", style=style,
                                   layout=w.Layout(width="520px")),
        "n_train": w.SelectionSlider(options=list(SIZES), value=n_train, continuous_update=False,
                                     description="practice cakes (training-set size)",
                                     style=style, layout=w.Layout(width="520px")),
    }
    return Panel(functools.partial(compute, runs), draw, readout, controls, figsize=(9.6, 3.6),
                 css_class="kl-panel")
