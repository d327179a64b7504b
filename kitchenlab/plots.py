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


def cake_map(raw, fig=None, *, title: str | None = None):
    """The ingredient bags drawn two ways, coloured by label; flipped labels ringed.

    Left: two telling raw features (oven temperature, bake time) with the hidden rule's
    boundary for the median batter and the band the other ingredients move it in.
    Right: the rule's own two numbers (heat given, heat the batter can take), where the
    boundary is the diagonal and only the flipped labels sit on the wrong side.
    ``raw``: a ``CakeData`` table in grams, °C and minutes (e.g. ``kitchen.raw.val``).
    Returns the two axes.
    """
    import matplotlib.pyplot as plt

    from kitchenlab import data as cakes

    flip = cakes.flipped(raw)  # also checks that the table is raw
    heat, capacity = cakes.rule_terms(raw.x)
    names = cakes.FEATURE_NAMES
    temp, time = raw.x[:, names.index("oven_temp")], raw.x[:, names.index("bake_time")]
    if fig is None:
        fig = plt.figure(figsize=(10.0, 4.6))
    left = fig.add_axes((0.07, 0.27, 0.38, 0.6))
    right = fig.add_axes((0.57, 0.27, 0.38, 0.6))
    colors = {0: PALETTE["val"], 1: PALETTE["test"]}
    for label, name in enumerate(cakes.LABELS):
        keep = raw.y == label
        left.scatter(temp[keep], time[keep], s=9, color=colors[label], alpha=0.6, lw=0,
                     label=f"labelled {name}")
        right.scatter(heat[keep], capacity[keep], s=9, color=colors[label], alpha=0.6, lw=0)
    for ax, (a, b) in ((left, (temp, time)), (right, (heat, capacity))):
        ax.scatter(a[flip], b[flip], s=40, facecolors="none", edgecolors="black", lw=1.0,
                   label=f"flipped label ({int(flip.sum())})" if ax is left else None)
    t = np.linspace(cakes.FEATURES[names.index("oven_temp")].low,
                    cakes.FEATURES[names.index("oven_temp")].high, 200)
    lo, mid, hi = np.percentile(capacity, [10, 50, 90])
    left.fill_between(t, cakes.boundary_bake_time(t, lo), cakes.boundary_bake_time(t, hi),
                      color=PALETTE["muted"], alpha=0.25, lw=0,
                      label="boundary moves here with the batter (10-90 %)")
    left.plot(t, cakes.boundary_bake_time(t, mid), color="black", lw=1.5,
              label="hidden rule's boundary, median batter")
    tf = cakes.FEATURES[names.index("bake_time")]
    left.set_ylim(tf.low - 2, tf.high + 2)
    left.set_xlabel("oven temperature (°C)")
    left.set_ylabel("bake time (min)")
    left.set_title("two telling ingredients")
    fig.legend(*left.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8.5,
               bbox_to_anchor=(0.5, 0.0))
    edge = max(float(heat.max()), float(capacity.max())) * 1.02
    right.plot([0, edge], [0, edge], color="black", lw=1.5, label="heat = capacity")
    right.set_xlim(0, float(heat.max()) * 1.02)
    right.set_ylim(float(capacity.min()) - 0.05, float(capacity.max()) + 0.05)
    right.set_xlabel("heat the oven gives")
    right.set_ylabel("heat the batter can take")
    right.set_title(f"the hidden rule: good above the line\nceiling "
                    f"{1 - flip.mean():.1%} = {len(flip) - int(flip.sum())}/{len(flip)} "
                    "labels the rule gets right")
    right.text(0.97, 0.05, "burnt side", transform=right.transAxes, ha="right",
               color=PALETTE["val"])
    right.text(0.03, 0.93, "good side", transform=right.transAxes, ha="left",
               color=PALETTE["test"])
    if title:
        fig.suptitle(title)
    return left, right


def latency_percentiles(ax, labels, p50, p95, p99, *, cap_ms: float | None = None,
                        log: bool = False, title: str | None = None):
    """Grouped bars of p50 / p95 / p99 latency (seconds in, drawn in ms).

    One group per queue setting (``labels``). ``log=True`` draws a log axis, on which
    sub-millisecond bars and a runaway queue's tens of milliseconds are all readable. On a
    linear axis, bars taller than ``cap_ms`` are cut at the cap and labelled with their
    value, so a runaway queue does not flatten the rest.
    """
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter, LogLocator, NullFormatter

    values = np.asarray([p50, p95, p99], dtype=float) * 1e3  # (3, G) in ms
    if values.shape[1] != len(labels):
        raise ValueError(f"labels has {len(labels)} entries but the percentiles have "
                         f"{values.shape[1]}")
    if log and cap_ms is not None:
        raise ValueError(f"cap_ms cuts bars on a linear axis; a log axis needs none, got "
                         f"cap_ms={cap_ms!r} with log=True")
    if log and not np.all(values > 0):
        raise ValueError("a log axis needs latencies > 0")
    top = cap_ms if cap_ms is not None else float(values.max()) * 1.1
    x = np.arange(len(labels))
    for k, (name, color) in enumerate((("p50 (median guest)", PALETTE["train"]),
                                       ("p95", PALETTE["sky"]),
                                       ("p99 (1 guest in 100)", PALETTE["yellow"]))):
        shown = values[k] if log else np.minimum(values[k], top)
        ax.bar(x + (k - 1) * 0.27, shown, 0.27, color=color, label=name)
        if not log:
            for i in np.flatnonzero(values[k] > top):
                ax.text(x[i] + (k - 1) * 0.27, top * 0.98, f"{values[k, i]:.0f} ms ↑",
                        rotation=90, ha="center", va="top", fontsize=7.5, color="white")
    ax.set_xticks(x, labels, fontsize=8)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(10.0 ** np.floor(np.log10(values.min() * 0.8)),
                    10.0 ** np.ceil(np.log10(values.max() * 1.25)))
        ax.yaxis.set_major_locator(LogLocator(base=10))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="minor", axis="y", alpha=0.12)
        ax.set_ylabel("latency per guest (ms, log scale)")
    else:
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))
        ax.set_ylabel("latency per guest (ms)")
    if title:
        ax.set_title(title)
    return ax
