"""Guest tasters' panel (notebook 03): model size and data size against the generalization gap.

The panel answers from a grid of 6 widths x 5 training-set sizes x 5 seeds = 150 full
training runs, computed in ONE vmapped call (``kl.experiments.tasters.overfitting_grid``)
when the notebook opens. Moving a slider selects the five runs of that cell and redraws: no
training happens on a slider move, so it answers in the time of one matplotlib draw. Lines
are means over the seeds, shaded bands their range; every number was computed in this session.
"""

from __future__ import annotations

import dataclasses
import functools
import html

import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from kitchenlab.experiments.tasters import SIZES, WIDTHS, mean_se, per_seed
from kitchenlab.plots import PALETTE
from kitchenlab.regularize import Runs
from kitchenlab.widgets import Panel


def _nearest(options, value) -> int:
    return min(options, key=lambda o: abs(np.log(o) - np.log(max(float(value), 1e-9))))


def n_params(width: int, n_features: int = 8, n_classes: int = 2) -> int:
    """Knobs of a depth-2 MLP of this width: two hidden stations and the verdict."""
    return (n_features + 1) * width + (width + 1) * width + (width + 1) * n_classes


@dataclasses.dataclass
class TasterView:
    """What the panel shows for one (width, n_train) cell: every seed's curves."""

    width: int
    n_train: int
    n_params: int  # knobs of a width-`width`, depth-2 MLP on 8 ingredients
    epochs: np.ndarray  # (E+1,)
    train_accuracy: np.ndarray  # (S, E+1) one row per seed
    val_accuracy: np.ndarray  # (S, E+1)
    val_loss: np.ndarray  # (S, E+1) the guests' loss (lower is better)
    best_epoch: int  # lowest mean guest loss: where early stopping would land on average
    gap: float  # mean over seeds of final train - val accuracy
    gap_se: float  # its standard error
    gaps: np.ndarray  # (W, N) the whole heat map (means over seeds)

    @property
    def loss_rise(self) -> float:
        """Mean over seeds of how far the guests' loss ends above its own lowest point."""
        return float((self.val_loss[:, -1] - self.val_loss.min(axis=1)).mean())


def compute(runs: Runs, width: int, n_train: int) -> TasterView:
    """Pick the grid cell nearest to the slider values (never raises for a reachable value)."""
    width, n_train = _nearest(WIDTHS, width), _nearest(SIZES, n_train)
    hit = (runs.values["width"] == width) & (runs.values["n_train"] == n_train)
    gaps, ses = _stats(per_seed(runs, runs.gap, (len(WIDTHS), len(SIZES))))
    i, j = WIDTHS.index(width), SIZES.index(n_train)
    val_loss = runs.val_loss[hit]
    return TasterView(width=width, n_train=n_train, n_params=n_params(width),
                      epochs=runs.epochs, train_accuracy=runs.train_accuracy[hit],
                      val_accuracy=runs.val_accuracy[hit], val_loss=val_loss,
                      best_epoch=int(runs.epochs[np.argmin(val_loss.mean(0))]),
                      gap=float(gaps[i, j]), gap_se=float(ses[i, j]), gaps=gaps)


def _stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over the last axis; an error of 0 for a single seed."""
    if values.shape[-1] < 2:
        return values.mean(-1), np.zeros(values.shape[:-1])
    return mean_se(values)


def draw_heatmap(gaps: np.ndarray, ax, *, mark: tuple[int, int] | None = None,
                 numbers: bool = False, colorbar: bool = False, cax=None) -> None:
    """Gap heat map: widths down, training-set sizes across; ``mark`` = (width, n_train).

    ``colorbar`` adds a colour bar beside ``ax`` (or into ``cax``, an axes placed by hand).
    """
    vmax = max(0.25, float(gaps.max()))
    im = ax.imshow(gaps, cmap="magma_r", vmin=0.0, vmax=vmax, origin="lower", aspect="auto")
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
    ax.set_title("gap = train − val accuracy (mean)", fontsize=9)
    ax.grid(False)
    if colorbar:
        bar = ax.figure.colorbar(im, ax=None if cax is not None else ax, cax=cax, ticks=[0, 0.1, 0.2])
        bar.set_label("gap (share of cakes)", fontsize=8)
    if mark is not None:
        i, j = WIDTHS.index(mark[0]), SIZES.index(mark[1])
        ax.add_patch(Rectangle(
            (j - 0.5, i - 0.5), 1, 1, fill=False, ec=PALETTE["sky"], lw=2.5))


def _band(ax, x, rows, color, label):
    """Mean line and the seeds' range as a band."""
    ax.fill_between(x, rows.min(0), rows.max(0), color=color, alpha=0.2, lw=0)
    ax.plot(x, rows.mean(0), color=color, label=label)


def draw(view: TasterView, fig) -> None:
    """Accuracy and guests' loss over epochs (mean, seeds' range), then the heat map."""
    fig.set_layout_engine(None)  # fixed margins: constrained layout (and the extra layout
    # pass savefig makes for any layout engine) would more than double the redraw time
    ax, lx, hm = fig.subplots(1, 3, width_ratios=[1.1, 1, 1], gridspec_kw=dict(
        left=0.06, right=0.91, bottom=0.15, top=0.88, wspace=0.34))
    _band(ax, view.epochs, view.train_accuracy, PALETTE["train"], "practice cakes (train)")
    _band(ax, view.epochs, view.val_accuracy, PALETTE["val"], "guest tasters (val)")
    ax.axvline(view.best_epoch, color=PALETTE["muted"], ls="--", lw=1)
    # Few, fixed ticks: tick labels are most of a redraw's time
    ticks = [0, view.epochs[-1] // 2, view.epochs[-1]]
    ax.set_xticks(ticks)
    ax.set_ylim(0.4, 1.02)
    ax.set_yticks([0.5, 0.75, 1.0])
    ax.set_xlabel("epoch (day of baking)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"width {view.width} ({view.n_params} knobs), {view.n_train} cakes", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    _band(lx, view.epochs, view.val_loss, PALETTE["val"], "guests' loss")
    lx.axvline(view.best_epoch, color=PALETTE["muted"], ls="--", lw=1,
               label=f"lowest (epoch {view.best_epoch})")
    lx.set_xticks(ticks)
    lx.yaxis.set_major_locator(MaxNLocator(3))
    lx.set_xlabel("epoch (day of baking)")
    lx.set_ylabel("guests' loss (lower is better)")
    lx.set_title(f"guests' loss: +{view.loss_rise:.2f} after its lowest", fontsize=9)
    lx.legend(loc="upper right", fontsize=7)
    draw_heatmap(view.gaps, hm, mark=(view.width, view.n_train), colorbar=True,
                 cax=fig.add_axes([0.92, 0.15, 0.01, 0.73]))


def readout(view: TasterView) -> str:
    train = float(view.train_accuracy[:, -1].mean())
    val, val_se = _stats(view.val_accuracy[:, -1])
    verdict = ("too few knobs: cannot even learn the practice cakes" if train < 0.75 else
               "memorising the practice cakes" if view.gap > 0.12 else
               "some memorising" if view.gap > 0.05 else "generalises")
    return (f"<b>width {view.width}</b> ({view.n_params} knobs), <b>{view.n_train} practice "
            f"cakes</b>, {len(view.val_loss)} seeds: train accuracy {train:.2f}, guest "
            f"accuracy {val:.2f} ± {val_se:.2f}, <b>gap {view.gap:.2f} ± {view.gap_se:.2f}</b> "
            f"({html.escape(verdict)}); guests' loss lowest at epoch {view.best_epoch}, "
            f"then +{view.loss_rise:.2f}")


def panel(runs: Runs, *, width: int = 32, n_train: int = 200) -> Panel:
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
    return Panel(functools.partial(compute, runs), draw, readout, controls, figsize=(10.4, 3.5),
                 css_class="kl-panel")
