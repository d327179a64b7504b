"""The apprenticeship panels (notebook 02): how boldly the sous-chef turns, and the gas-valve cap.

Two panels, each a slider whose every move retrains the model and redraws:

* ``learning_rate_panel(kitchen)``: control ``learning_rate`` (log slider, 1e-4 ... 10).
  The loss curve and its verdict (stuck, learning, overshooting, exploded; defined in
  ``kl.experiments.apprenticeship.VERDICT_WORDS``).
* ``clip_panel(kitchen)``: control ``clip_norm`` (log slider, 0.01 ... 1000), the safety cap
  on the gas valve, on the spiky kitchen (a few bags of flour weighed in milligrams) at the
  plan's learning rate. Left: the size of the judge's notes at every turn, ordinary and
  spiky, with the cap drawn across; right: the guests' score per day next to the clean
  kitchen's and the uncapped run's. Verdicts: too tight, spikes only, too loose (``CLIP_WORDS``).

Time a panel the way the benchmark does: one warm-up ``panel.render(learning_rate=0.1)``
(the only compile), then ``panel.render(learning_rate=...)`` / ``panel.render(clip_norm=...)``.
The control names are the keyword names of ``render``.

The compute functions ``kl.experiments.apprenticeship.lr_curves`` and
``kl.experiments.clipping.clip_curves`` are pure functions of the slider value (plus fixed
keyword arguments); this module only draws.
"""

from __future__ import annotations

import functools
import html

import numpy as np
from matplotlib.ticker import FixedLocator, MaxNLocator

from kitchenlab import plots
from kitchenlab.config import TrainConfig
from kitchenlab.experiments.apprenticeship import (VERDICT_WORDS, Curves, _kitchen, _train,
                                                   default_config, format_value, lr_curves)
from kitchenlab.experiments.clipping import CLIP_WORDS, ClipRun, clip_curves, spiky_kitchen
from kitchenlab.widgets import Panel, log_slider

LR_RANGE = (-4.0, 1.0)  # learning-rate slider: 10**-4 ... 10**1
CLIP_RANGE = (-2.0, 3.0)  # clip-norm slider: 0.01 ... 1000
FIGSIZE = (6.4, 3.4)  # inches; drawn at 80 dpi
CLIP_FIGSIZE = (7.6, 3.4)


def _exploded_text(history) -> str:
    return f"exploded at step {history.diverged_at_step}"


def _epoch_of(history, steps_per_epoch: int) -> int:
    return (history.diverged_at_step - 1) // steps_per_epoch + 1


# ---------------------------------------------------------------- learning rate
def draw(result: Curves, fig) -> None:
    """Loss per epoch; a plain message where a run exploded.

    Drawn on one hand-placed axis (linear scale, no layout engine): a slider redraw must stay
    well under the 0.3 s budget, and layout engines and log-scale tick labels cost most of it.
    """
    fig.set_layout_engine("none")
    ax = fig.add_axes((0.1, 0.15, 0.87, 0.74))
    h = result.history
    ax.axhline(result.start_loss, color=plots.PALETTE["muted"], ls=":", lw=1.2,
               label="before training")
    if h.epochs:
        epochs = np.arange(1, h.epochs + 1)
        ax.plot(epochs, h.train_loss, color=plots.PALETTE["train"], lw=2,
                label="train (practice cakes)")
        ax.plot(epochs, h.val_loss, color=plots.PALETTE["val"], lw=1.5, ls="--",
                label="validation (guest tasters)")
    curves = [h.train_loss, h.val_loss] if h.epochs else []
    top = max([1.2] + [float(np.max(c)) * 1.05 for c in curves if len(c)])
    ax.set_ylim(0.0, min(top, 3.0))
    ax.set_xlim(0.5, result.epochs + 0.5)
    # Few ticks: building tick artists is the largest part of a redraw (profiled).
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.set_xlabel("epoch (day of baking)")
    ax.set_ylabel("loss (judge's score)")
    ax.set_title(f"{result.optimizer}, {result.label}: {result.verdict}")
    ax.legend(loc="upper right", fontsize=8)
    if h.diverged:
        plots.message_panel(ax, _exploded_text(h) + " (loss became NaN/inf)")


def readout(result: Curves) -> str:
    """One line of HTML: the slider value, the verdict, the numbers behind it."""
    h = result.history
    parts = [f"<b>{html.escape(result.label)}</b>", html.escape(result.optimizer)]
    if h.diverged:
        parts.append(f'<span style="color:#D55E00"><b>{_exploded_text(h)}</b></span> '
                     f"(epoch {_epoch_of(h, result.steps_per_epoch)}): "
                     "loss became NaN/inf. Learning rate too bold?")
    else:
        parts.append(f"{html.escape(VERDICT_WORDS[result.verdict])}; train loss "
                     f"{result.start_loss:.3f} → {h.train_loss[-1]:.3f} after {h.epochs} "
                     f"epochs, validation accuracy {h.val_accuracy[-1]:.1%}")
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


# ---------------------------------------------------------------- the gas-valve cap
_DECADES = np.arange(-2, 5, 2)  # tick positions of the log10 norm axis: 0.01, 1, 100, 1e4


def draw_clip(run: ClipRun, fig) -> None:
    """Left: log10 of every note's norm, ordinary and spiky, and the cap. Right: guests' score.

    The norm axis plots log10 values on a linear axis with hand-set decade ticks: a real
    log scale costs a large part of the 0.3 s redraw budget.
    """
    fig.set_layout_engine("none")
    left = fig.add_axes((0.1, 0.15, 0.38, 0.72))
    right = fig.add_axes((0.60, 0.15, 0.38, 0.72))
    h, spiky = run.history, run.spiky_turns
    norms = np.log10(np.maximum(np.asarray(h.grad_norm, dtype=float), 1e-3))
    turns = np.arange(1, norms.size + 1)
    ordinary = ~spiky[: norms.size]
    left.plot(turns[ordinary], norms[ordinary], ".", ms=3, color=plots.PALETTE["train"],
              label="ordinary tray")
    left.plot(turns[~ordinary], norms[~ordinary], ".", ms=5, color=plots.PALETTE["yellow"],
              label="tray with a mis-weighed bag")
    cap = np.log10(run.clip_norm)
    left.axhline(cap, color=plots.PALETTE["val"], ls="--", lw=1.5, label="cap")
    left.set_ylim(-2.2, 4.3)
    left.set_xlim(0, len(spiky) + 1)
    left.yaxis.set_major_locator(FixedLocator(_DECADES))
    left.set_yticklabels([f"{10.0 ** d:g}" for d in _DECADES])
    left.xaxis.set_major_locator(FixedLocator([0, 180, 360]))
    left.set_xlabel("knob turn")
    left.set_ylabel("size of the notes (norm, log)")
    left.set_title(f"SGD, η = {format_value(run.learning_rate)}, {run.label}: {run.verdict}",
                   fontsize=10, loc="left")
    left.legend(loc="upper right", fontsize=7)
    if h.diverged:
        plots.message_panel(left, _exploded_text(h))

    for hist, style in ((run.clean, dict(color=plots.PALETTE["muted"], ls=":", lw=1.5,
                                         label="clean kitchen, no cap")),
                        (run.baseline, dict(color=plots.PALETTE["accent"], lw=1.2,
                                            label="mis-weighed bags, no cap")),
                        (h, dict(color=plots.PALETTE["val"], lw=2,
                                 label="mis-weighed bags, this cap"))):
        if hist.epochs:
            right.plot(np.arange(1, hist.epochs + 1), hist.val_loss, **style)
    if run.baseline.diverged:
        right.text(0.5, 0.6, "no cap: " + _exploded_text(run.baseline), ha="center",
                   transform=right.transAxes, color=plots.PALETTE["accent"], fontsize=8)
    right.set_xlim(0.5, run.epochs + 0.5)
    right.set_ylim(0.0, 1.0)
    right.xaxis.set_major_locator(FixedLocator([1, 20]))
    right.yaxis.set_major_locator(FixedLocator([0.0, 0.5, 1.0]))
    right.set_xlabel("epoch (day of baking)")
    right.set_ylabel("validation loss (guests)")
    right.legend(loc="upper right", fontsize=7)


def readout_clip(run: ClipRun) -> str:
    """One line of HTML: the cap, what it trimmed, the guests' score, the verdict."""
    h, c = run.history, run.counts()
    parts = [f"<b>{html.escape(run.label)}</b>",
             f"SGD at learning rate {format_value(run.learning_rate)}"]
    if h.diverged:
        parts.append(f'<span style="color:#D55E00"><b>{_exploded_text(h)}</b></span> '
                     f"(epoch {_epoch_of(h, run.steps_per_epoch)})")
    else:
        parts.append(f"trims {c['spiky_trimmed']} of {c['spiky']} spiky turns and "
                     f"{c['ordinary_trimmed']} of {c['ordinary']} ordinary ones")
        parts.append(f"validation loss {h.val_loss[-1]:.3f} (clean kitchen "
                     f"{run.clean.val_loss[-1]:.3f})")
    parts.append(html.escape(CLIP_WORDS[run.verdict]))
    b = run.baseline
    parts.append("without a cap: " + (_exploded_text(b) if b.diverged
                                      else f"validation loss {b.val_loss[-1]:.3f}"))
    return '<span class="kl-value">' + " · ".join(parts) + "</span>"


def clip_panel(kitchen=None, *, spiky=None, learning_rate: float = 0.1,
               config: TrainConfig | None = None, value: float = 2.0,
               model_seed: int = 0) -> Panel:
    """A log slider for the cap on the notes' norm, on the spiky kitchen."""
    kitchen = _kitchen(kitchen)
    spiky = spiky or spiky_kitchen(kitchen)
    cfg = (config or default_config()).replace(learning_rate=float(learning_rate),
                                               seed=model_seed)
    baseline = _train(spiky, cfg, model_seed)[0]  # computed once, shown at every cap
    clean = _train(kitchen, cfg, model_seed)[0]
    compute = functools.partial(clip_curves, spiky=spiky, kitchen=kitchen,
                                learning_rate=learning_rate, config=cfg,
                                model_seed=model_seed, baseline=baseline, clean=clean)
    slider = log_slider("clip norm (cap on the gas valve)", value, *CLIP_RANGE, 0.25)
    return Panel(compute, draw_clip, readout_clip, {"clip_norm": slider},
                 figsize=CLIP_FIGSIZE)
