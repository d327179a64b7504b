"""The apprenticeship panels (notebook 02): how boldly the sous-chef turns the knobs.

Two panels, each a slider whose every move retrains the model and redraws its loss curve:

* ``learning_rate_panel(kitchen)``: control ``learning_rate`` (log slider, 1e-4 ... 10).
  Too small: the loss barely moves (stuck). Sensible: it falls. Too big: it zig-zags
  (overshoot). The largest: it explodes, and the plot and readout say "exploded at step N".
* ``clip_panel(kitchen)``: control ``clip_norm`` (log slider, 0.01 ... 100), the safety cap
  on the gas valve, at a learning rate that explodes without it (10 by default).

Time a panel the way the benchmark does: one warm-up ``panel.render(learning_rate=0.1)``
(the only compile), then ``panel.render(learning_rate=...)`` / ``panel.render(clip_norm=...)``.
The control names are the keyword names of ``render``.

The compute functions ``kl.experiments.lr_curves`` and ``clip_curves`` are pure functions
of the slider value (plus fixed keyword arguments); this module only draws what they return.
"""

from __future__ import annotations

import functools
import html

import numpy as np
from matplotlib.ticker import MaxNLocator

from kitchenlab import plots
from kitchenlab.config import TrainConfig
from kitchenlab.experiments.apprenticeship import (VERDICT_WORDS, Curves, _kitchen, _train, clip_curves,
                                    default_config, lr_curves)
from kitchenlab.widgets import Panel, log_slider

LR_RANGE = (-4.0, 1.0)  # learning-rate slider: 10**-4 ... 10**1
CLIP_RANGE = (-2.0, 2.0)  # clip-norm slider: 0.01 ... 100
FIGSIZE = (6.4, 3.4)  # inches; drawn at 80 dpi


def _exploded_text(history) -> str:
    return f"exploded at step {history.diverged_at_step}"


def draw(result: Curves, fig) -> None:
    """Loss per epoch; a plain message where a run exploded.

    Drawn on one hand-placed axis (linear scale, no layout engine): a slider redraw must stay
    well under the 0.3 s budget, and layout engines and log-scale tick labels cost most of it.
    """
    fig.set_layout_engine("none")
    ax = fig.add_axes((0.1, 0.15, 0.87, 0.74))
    h = result.history
    curves = [h.train_loss, h.val_loss] if h.epochs else []
    ax.axhline(result.start_loss, color=plots.PALETTE["muted"], ls=":", lw=1.2,
               label="before training")
    b = result.baseline
    if b is not None and b.epochs:
        ax.plot(np.arange(1, b.epochs + 1), b.train_loss, color=plots.PALETTE["muted"],
                lw=1.5, label=result.baseline_label)
        curves.append(b.train_loss)
    if h.epochs:
        epochs = np.arange(1, h.epochs + 1)
        ax.plot(epochs, h.train_loss, color=plots.PALETTE["train"], lw=2,
                label="train (practice cakes)")
        ax.plot(epochs, h.val_loss, color=plots.PALETTE["val"], lw=1.5, ls="--",
                label="validation (guest tasters)")
    top = max([1.2] + [float(np.max(c)) * 1.05 for c in curves if len(c)])
    ax.set_ylim(0.0, min(top, 3.0))
    ax.set_xlim(0.5, result.epochs + 0.5)
    # Few ticks: building tick artists is the largest part of a redraw (profiled).
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.set_xlabel("epoch (day of baking)")
    ax.set_ylabel("loss (judge's score)")
    ax.set_title(f"{result.optimizer}{result.context}, {result.label}: {result.verdict}")
    ax.legend(loc="upper right", fontsize=8)
    notes = []
    if h.diverged:
        notes.append(_exploded_text(h) + " (loss became NaN/inf)")
    if b is not None and b.diverged:
        notes.append("without a cap: " + _exploded_text(b))
    if notes:
        plots.message_panel(ax, "\n".join(notes))


def readout(result: Curves) -> str:
    """One line of HTML: the slider value, the verdict, the numbers behind it."""
    h = result.history
    parts = [f"<b>{html.escape(result.label)}</b>", html.escape(result.optimizer + result.context)]
    if h.diverged:
        parts.append(f'<span style="color:#D55E00"><b>{_exploded_text(h)}</b></span> '
                     f"(epoch {(h.diverged_at_step - 1) // result.steps_per_epoch + 1}): "
                     "loss became NaN/inf. Learning rate too bold?")
    else:
        parts.append(f"{VERDICT_WORDS[result.verdict]}; train loss "
                     f"{result.start_loss:.3f} → {h.train_loss[-1]:.3f} after {h.epochs} "
                     f"epochs, validation accuracy {h.val_accuracy[-1]:.1%}")
    if result.baseline is not None:
        b = result.baseline
        parts.append("without a cap: " + (_exploded_text(b) if b.diverged
                                          else f"train loss {b.train_loss[-1]:.3f}"))
    return '<span class="kl-value">' + " · ".join(parts) + "</span>"


def learning_rate_panel(kitchen=None, *, optimizer: str = "sgd",
                        config: TrainConfig | None = None, value: float = 0.1,
                        model_seed: int = 0) -> Panel:
    """A log slider for the learning rate, retraining and redrawing on every move."""
    kitchen = _kitchen(kitchen)
    compute = functools.partial(lr_curves, kitchen=kitchen, optimizer=optimizer,
                                config=config, model_seed=model_seed)
    slider = log_slider("learning rate η (how boldly knobs turn)", value, *LR_RANGE, 0.25)
    return Panel(compute, draw, readout, {"learning_rate": slider}, figsize=FIGSIZE)


def clip_panel(kitchen=None, *, learning_rate: float = 10.0, optimizer: str = "sgd",
               config: TrainConfig | None = None, value: float = 0.1,
               model_seed: int = 0) -> Panel:
    """A log slider for the gradient-norm cap at a learning rate that explodes without it."""
    kitchen = _kitchen(kitchen)
    cfg = (config or default_config(optimizer)).replace(learning_rate=float(learning_rate))
    baseline = _train(kitchen, cfg.replace(clip_norm=None), model_seed)[0]  # computed once
    compute = functools.partial(clip_curves, kitchen=kitchen, learning_rate=learning_rate,
                                config=cfg, model_seed=model_seed, baseline=baseline)
    slider = log_slider("clip norm (cap on the gas valve)", value, *CLIP_RANGE, 0.25)
    return Panel(compute, draw, readout, {"clip_norm": slider}, figsize=FIGSIZE)
