"""The order form (notebook 05): ingredient sliders -> the restaurant's verdict, live.

Every slider move sends one order through the laminated ``Service`` (measure -> bake on
the tray-of-one compiled at opening -> plate) and shows the verdict, the confidence and
the probability of each label.
"""

from __future__ import annotations

from kitchenlab.plots import PALETTE
from kitchenlab.widgets import Panel, float_slider


def order_form(service, *, start: dict | None = None) -> Panel:
    """A panel with one slider per ingredient (in its default unit, over the trained range)."""
    start = start or {}
    controls = {}
    for f in service.features:
        lo, hi = float(f["low"]), float(f["high"])
        value = float(start.get(f["name"], (lo + hi) / 2))
        step = 1.0 if f.get("integer") else (hi - lo) / 100
        controls[f["name"]] = float_slider(f"{f['name']} ({f['unit']})", value, lo, hi, step)

    def compute(**order):
        return service.serve(order)[0]

    def draw(verdict, fig):
        ax = fig.add_subplot()
        names = list(verdict.probabilities)
        probs = [verdict.probabilities[n] for n in names]
        colors = [PALETTE["val"] if n == "burnt" else PALETTE["test"] for n in names]
        ax.barh(names, probs, color=colors)
        ax.set_xlim(0, 1)
        ax.axvline(0.5, color=PALETTE["muted"], ls="--", lw=1)
        ax.set_xlabel("probability (after softmax)")
        ax.set_title(f"verdict: {verdict.label} ({verdict.confidence:.0%} sure)")
        for y, p in enumerate(probs):
            ax.text(min(p + 0.02, 0.9), y, f"{p:.2f}", va="center")

    def readout(verdict) -> str:
        color = PALETTE["val"] if verdict.label == "burnt" else PALETTE["test"]
        notes = "".join(f"<br><i>careful: {n}</i>" for n in verdict.notes)
        return (f'<b style="color:{color}">{verdict.label}</b> — '
                f"{verdict.confidence:.0%} sure{notes}")

    return Panel(compute, draw, readout, controls, figsize=(5.6, 2.4), css_class="kl-order-form")
