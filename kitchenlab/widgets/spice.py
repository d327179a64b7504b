"""Spice packets and pans (notebook 06): a bits slider and a sparsity slider.

Both panels answer from grids computed once when they open (one vmapped call each:
``kl.quantize.bits_sweep`` over every bit width, ``kl.prune.sparsity_sweep`` over every
sparsity with its masked fine-tune), so a slider move is a lookup plus a redraw.
"""

from __future__ import annotations

import dataclasses
import functools
import html

import numpy as np

from kitchenlab import prune as P
from kitchenlab import quantize as Q
from kitchenlab.plots import PALETTE

SHOWN_LAYER = "hidden.1.kernel"  # the station whose knobs the histograms show
MODES = {True: "output channel", False: "tensor"}  # per_channel -> words


def _layer(params, name: str = SHOWN_LAYER) -> np.ndarray:
    for leaf_name, leaf in Q.named_leaves(params):
        if leaf_name == name:
            return np.asarray(leaf)
    raise ValueError(f"params has no {name!r}; it has {[n for n, _ in Q.named_leaves(params)]}")


def _hist(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    return np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins)[0]


def _levels(bits: int) -> str:
    n = 2 ** (bits - 1) - 1
    return f"{n} level" + ("" if n == 1 else "s")


# ---------------------------------------------------------------- the bits slider
@dataclasses.dataclass(frozen=True)
class QuantGrid:
    """Everything the bits panel can show, computed once: sweeps for both scale modes."""

    sweeps: dict  # per_channel (bool) -> kl.quantize.bits_sweep result
    bins: np.ndarray  # histogram bin edges for the shown layer's weights
    float_counts: np.ndarray  # histogram of the float weights
    counts: dict  # (per_channel, bits) -> histogram of the dequantized weights


@dataclasses.dataclass(frozen=True)
class QuantView:
    """One slider position: bit width and scale mode, with what they cost."""

    bits: int
    per_channel: bool
    accuracy: float
    float_accuracy: float
    max_error: float
    mean_error: float
    kernel_bytes: int
    float_kernel_bytes: int
    grid: QuantGrid


def quant_grid(model, data, sweeps: dict | None = None) -> QuantGrid:
    """Sweep every bit width, per output channel and per tensor (two compiled calls).

    ``sweeps`` ({True: bits_sweep per channel, False: per tensor}) reuses sweeps already run.
    """
    from flax import nnx

    if sweeps is None:
        sweeps = Q.bits_sweep(model, data, per_channel=(True, False))
    w = _layer(nnx.split(model)[1])
    lim = float(np.abs(w).max()) * 1.02
    bins = np.linspace(-lim, lim, 81)
    counts = {(pc, int(b)): _hist(np.asarray(Q.fake_quantize(w, int(b), per_channel=pc)), bins)
              for pc in (True, False) for b in Q.BITS}
    return QuantGrid(sweeps=sweeps, bins=bins, float_counts=_hist(w, bins), counts=counts)


def compute_quant(grid: QuantGrid, bits, per_channel=True) -> QuantView:
    """Look the slider position up in the grid (bits clipped into 2..8: never raises)."""
    bits = int(np.clip(round(float(bits)), 2, 8))
    per_channel = bool(per_channel)
    s = grid.sweeps[per_channel]
    i = int(np.flatnonzero(s["bits"] == bits)[0])
    return QuantView(bits=bits, per_channel=per_channel, accuracy=float(s["accuracy"][i]),
                     float_accuracy=float(s["float_accuracy"]),
                     max_error=float(s["max_error"][i]), mean_error=float(s["mean_error"][i]),
                     kernel_bytes=int(s["kernel_bytes"][i]),
                     float_kernel_bytes=int(s["float_kernel_bytes"]), grid=grid)


def draw_quant(view: QuantView, fig) -> None:
    """Left: the shown layer's weights before/after. Right: accuracy against bits."""
    fig.set_layout_engine(None)  # hand-placed axes: a layout engine doubles the redraw time
    hx = fig.add_axes((0.07, 0.15, 0.4, 0.72))
    ax = fig.add_axes((0.58, 0.15, 0.4, 0.72))
    g = view.grid
    hx.stairs(g.float_counts, g.bins, fill=True, color=PALETTE["muted"], alpha=0.6,
              label="float32 knobs")
    hx.stairs(g.counts[view.per_channel, view.bits], g.bins, color=PALETTE["val"], lw=1.4,
              label=f"{view.bits}-bit packets")
    # square-root counts: the packets' tall spikes and the float spread both stay visible
    # (a log axis draws its labels with mathtext: twice the redraw time)
    hx.set_yscale("function", functions=(np.sqrt, np.square))
    hx.set_ylim(0, None)
    hx.set_xlabel(f"weight value ({SHOWN_LAYER})")
    hx.set_ylabel("how many knobs (square-root scale)")
    hx.legend(loc="upper right", fontsize=8)
    step = ("each column its own step size" if view.per_channel else
            "one step size for the whole matrix")
    hx.set_title(f"{view.bits} bits: {_levels(view.bits)} each side of zero, {step}", fontsize=9)
    bits = g.sweeps[True]["bits"]
    for pc, color in ((True, PALETTE["train"]), (False, PALETTE["yellow"])):
        ax.plot(bits, 100 * g.sweeps[pc]["accuracy"], "o-", color=color, ms=4,
                label=f"scale per {MODES[pc]}")
    ax.axhline(100 * view.float_accuracy, color=PALETTE["muted"], ls="--", lw=1, label="float32")
    ax.plot([view.bits], [100 * view.accuracy], "o", ms=11, mfc="none", mec=PALETTE["val"], mew=2)
    ax.set_ylim(40, 100)
    ax.set_xlim(8.3, 1.7)  # 8 bits on the left: fewer bits to the right
    ax.set_xlabel("bits per weight")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"weight matrices {view.float_kernel_bytes / view.kernel_bytes:.1f}x smaller",
                 fontsize=9)


def readout_quant(view: QuantView) -> str:
    ratio = view.float_kernel_bytes / view.kernel_bytes
    drop = 100 * (view.float_accuracy - view.accuracy)
    verdict = ("as good as float32" if drop <= 0.5 else "a small price" if drop <= 2.0 else
               "noticeably worse" if drop <= 5.0 else "broken: the packets are too coarse")
    return (f"<b>{view.bits} bits</b> per weight, scale per {MODES[view.per_channel]}: "
            f"accuracy {100 * view.accuracy:.1f}% (float32 {100 * view.float_accuracy:.1f}%) — "
            f"{html.escape(verdict)}; weight matrices {ratio:.1f}x smaller "
            f"({view.kernel_bytes:,} vs {view.float_kernel_bytes:,} bytes); "
            f"logit error max {view.max_error:.3f}, mean {view.mean_error:.4f}")


def quant_panel(model, data, *, bits: int = 8, per_channel: bool = True,
                sweeps: dict | None = None):
    """The bits slider (8 ... 2) and the scale mode; answers from ``quant_grid``."""
    import ipywidgets as w

    from kitchenlab.widgets import Panel, int_slider

    controls = {
        "bits": int_slider("bits per spice packet", bits, 2, 8),
        "per_channel": w.ToggleButtons(options=[("scale per output channel", True),
                                                ("scale per tensor", False)],
                                       value=per_channel, description="packets:",
                                       style={"button_width": "190px"}),
    }
    return Panel(functools.partial(compute_quant, quant_grid(model, data, sweeps)), draw_quant,
                 readout_quant, controls, figsize=(9.6, 3.6))


# ---------------------------------------------------------------- the sparsity slider
@dataclasses.dataclass(frozen=True)
class PruneView:
    """One sparsity: accuracy before and after the masked fine-tune, and the stored size."""

    sparsity: float
    accuracy: float
    finetuned_accuracy: float
    float_accuracy: float
    sparse_bytes: int
    dense_bytes: int
    sweep: dict
    counts: np.ndarray  # histogram of the surviving weights of the shown layer
    float_counts: np.ndarray
    bins: np.ndarray


def prune_grid(model, train, test, *, config: P.FinetuneConfig = P.FinetuneConfig(),
               sweep: dict | None = None) -> dict:
    """``kl.prune.sparsity_sweep`` (global scope, fine-tuned) plus the shown layer's histograms.

    ``sweep`` reuses a sweep already run (with ``finetune_config``) instead of running one.
    """
    from flax import nnx

    if sweep is None:
        sweep = P.sparsity_sweep(model, train, test, scope="global", finetune_config=config)
    params = nnx.split(model)[1]
    w = _layer(params)
    lim = float(np.abs(w).max()) * 1.02
    bins = np.linspace(-lim, lim, 81)
    masks = _layer(sweep["masks"])  # (K, H, H) on the host: no device op per level
    return dict(sweep, bins=bins, float_counts=_hist(w, bins),
                counts=[_hist(w[m], bins) for m in masks])


def compute_prune(sweep: dict, sparsity) -> PruneView:
    """The grid point nearest the slider's sparsity (clipped into the grid: never raises)."""
    i = int(np.argmin(np.abs(sweep["sparsity"] - float(np.clip(sparsity, 0.0, 0.99)))))
    return PruneView(sparsity=float(sweep["sparsity"][i]), accuracy=float(sweep["accuracy"][i]),
                     finetuned_accuracy=float(sweep["finetuned_accuracy"][i]),
                     float_accuracy=float(sweep["float_accuracy"]),
                     sparse_bytes=int(sweep["sparse_bytes"][i]),
                     dense_bytes=int(sweep["dense_bytes"]), sweep=sweep,
                     counts=sweep["counts"][i], float_counts=sweep["float_counts"],
                     bins=sweep["bins"])


def draw_prune(view: PruneView, fig) -> None:
    """Left: the shown layer's weights, all vs kept. Right: accuracy and stored size vs sparsity."""
    fig.set_layout_engine(None)
    hx = fig.add_axes((0.07, 0.15, 0.4, 0.72))
    ax = fig.add_axes((0.58, 0.15, 0.4, 0.72))
    hx.stairs(view.float_counts, view.bins, fill=True, color=PALETTE["muted"], alpha=0.6,
              label="every knob")
    hx.stairs(view.counts, view.bins, fill=True, color=PALETTE["test"], alpha=0.8,
              label="pans kept")
    hx.set_xlabel(f"weight value ({SHOWN_LAYER})")
    hx.set_ylabel("how many knobs")
    hx.legend(loc="upper right", fontsize=8)
    hx.set_title(f"{view.sparsity:.0%} of the smallest knobs removed (global ranking)", fontsize=9)
    s = view.sweep
    pct = 100 * s["sparsity"]
    ax.plot(pct, 100 * s["accuracy"], "o-", ms=3, color=PALETTE["val"], label="pruned")
    ax.plot(pct, 100 * s["finetuned_accuracy"], "o-", ms=3, color=PALETTE["train"],
            label="pruned + masked fine-tune")
    ax.plot(pct, 100 * s["sparse_bytes"] / s["dense_bytes"], ":", color=PALETTE["muted"],
            label="stored size, % of dense")
    ax.axvline(100 * view.sparsity, color=PALETTE["accent"], lw=1.5)
    ax.set_ylim(0, 135)
    ax.set_xlabel("sparsity (% of kernel weights removed)")
    ax.set_ylabel("test accuracy / size (%)")
    ax.legend(loc="lower left", fontsize=8)


def readout_prune(view: PruneView) -> str:
    return (f"<b>sparsity {view.sparsity:.0%}</b>: accuracy {100 * view.accuracy:.1f}% pruned, "
            f"{100 * view.finetuned_accuracy:.1f}% after the masked fine-tune "
            f"(float32 {100 * view.float_accuracy:.1f}%); stored sparse "
            f"{view.sparse_bytes:,} bytes vs {view.dense_bytes:,} dense "
            f"({view.sparse_bytes / view.dense_bytes:.0%} of dense); the dense matmul does "
            "the same work")


def prune_panel(model, train, test, *, sparsity: float = 0.5,
                config: P.FinetuneConfig = P.FinetuneConfig(), sweep: dict | None = None):
    """The sparsity slider (0 ... 95 %); answers from ``prune_grid``."""
    from kitchenlab.widgets import Panel, float_slider

    controls = {"sparsity": float_slider("sparsity: share of pans removed", sparsity, 0.0,
                                         0.95, 0.05)}
    grid = prune_grid(model, train, test, config=config, sweep=sweep)
    return Panel(functools.partial(compute_prune, grid),
                 draw_prune, readout_prune, controls, figsize=(9.6, 3.6))
