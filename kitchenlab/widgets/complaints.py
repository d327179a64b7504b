"""Complaints panel (notebook 09): a drift-severity slider, the chef's accuracy, the alarm.

The curves over all severities of every named drift are computed once when the panel is
built (``kl.experiments.complaints.severity_curve``: fresh guests of the drifted world
through the laminated service, PSI of their orders against the training orders). A slider
move bakes one more evening of guests at that severity through the service and redraws:
a few milliseconds of numpy and one compiled tray, then one matplotlib draw.
"""

from __future__ import annotations

import dataclasses
import functools
import html

import numpy as np

from kitchenlab.data import DRIFTS, FEATURE_NAMES
from kitchenlab.experiments.complaints import ALARM, DRIFT, Curve, look, severity_curve
from kitchenlab.plots import PALETTE

SHORT = {"flour": "flour", "sugar": "sugar", "butter": "butter", "eggs": "eggs",
         "milk": "milk", "baking_powder": "powder", "oven_temp": "oven °C",
         "bake_time": "time"}


@dataclasses.dataclass
class DriftView:
    """One position of the slider: this evening's numbers and the whole curve."""

    kind: str
    severity: float
    accuracy: float  # this evening's guests
    launch_accuracy: float  # severity 0: the world the chef was trained in
    psi: np.ndarray  # (F,) this evening's orders vs the training orders
    fired: bool
    reasons: tuple[str, ...]
    curve: Curve


def compute(service, reference, curves: dict[str, Curve], kind: str,
            severity: float) -> DriftView:
    """Bake one evening of the drifted world (clipped to [0, 1]: never raises)."""
    kind = kind if kind in curves else DRIFT
    severity = float(np.clip(severity, 0.0, 1.0))
    acc, report = look(service, reference, kind, severity)
    return DriftView(kind=kind, severity=severity, accuracy=acc,
                     launch_accuracy=float(curves[kind].accuracy[0]), psi=report.psi,
                     fired=report.fired, reasons=report.reasons, curve=curves[kind])


LOG_TICKS = (-3, -2, -1, 0, 1)  # PSI axes: log10 of the value, labelled in plain numbers
LOG_LABELS = ("0.001", "0.01", "0.1", "1", "10")


def _log_psi(values) -> np.ndarray:
    """PSI on a log10 scale drawn on a linear axis: matplotlib's log axes and their
    mathtext labels cost more than the rest of the redraw together."""
    return np.log10(np.clip(values, 1e-3, 30.0))


def draw(view: DriftView, fig) -> None:
    """Left: accuracy vs severity. Middle: largest PSI vs severity (log), threshold dashed.
    Right: PSI per ingredient this evening."""
    fig.set_layout_engine(None)  # hand-placed axes: a layout engine doubles the redraw time
    c = view.curve
    threshold = np.log10(ALARM.psi)
    ax = fig.add_axes((0.07, 0.16, 0.25, 0.7))
    ax.plot(c.severity, c.accuracy, color=PALETTE["train"])
    ax.axhline(view.launch_accuracy, color=PALETTE["muted"], ls=":", lw=1)
    ax.plot([view.severity], [view.accuracy], "o", color=PALETTE["val"])
    ax.set_ylim(0.5, 1.0)
    ax.set_yticks((0.5, 0.6, 0.7, 0.8, 0.9, 1.0))  # few fixed ticks: ticks are most of a redraw
    ax.set_xticks((0.0, 0.5, 1.0))
    ax.set_xlabel("drift severity")
    ax.set_ylabel("chef's accuracy on guests")
    ax.set_title("the chef", fontsize=10)
    px = fig.add_axes((0.41, 0.16, 0.25, 0.7))
    px.plot(c.severity, _log_psi(c.psi_max), color=PALETTE["accent"])
    px.axhline(threshold, color=PALETTE["val"], ls="--", lw=1)
    px.plot([view.severity], [_log_psi(view.psi.max())], "o", color=PALETTE["val"])
    px.set_ylim(-3.2, 1.5)
    px.set_yticks(LOG_TICKS, LOG_LABELS)
    px.set_xticks((0.0, 0.5, 1.0))
    px.set_xlabel("drift severity")
    px.set_ylabel("largest PSI (log scale)")
    px.set_title(f"the alarm (dashed: {ALARM.psi:g})", fontsize=10)
    bx = fig.add_axes((0.75, 0.16, 0.23, 0.7))
    colors = [PALETTE["val"] if v > ALARM.psi else PALETTE["muted"] for v in view.psi]
    bx.barh(np.arange(len(view.psi)), _log_psi(view.psi) + 3.2, left=-3.2, color=colors)
    bx.set_xlim(-3.2, 1.5)
    bx.set_xticks(LOG_TICKS, LOG_LABELS)
    bx.axvline(threshold, color=PALETTE["val"], ls="--", lw=1)
    bx.set_yticks(np.arange(len(view.psi)), [SHORT.get(n, n) for n in FEATURE_NAMES],
                  fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("PSI this evening (log scale)")
    bx.set_title("which ingredient moved", fontsize=10)


def readout(view: DriftView) -> str:
    alarm = ("<b style='color:#D55E00'>ALARM</b>: " + html.escape("; ".join(view.reasons))
             if view.fired else "no alarm")
    j = int(np.argmax(view.psi))
    which = f" ({html.escape(FEATURE_NAMES[j])})" if view.psi[j] > ALARM.psi else ""
    return (f"<b>{html.escape(view.kind)}</b>, <b>severity {view.severity:.2f}</b>: "
            f"accuracy {view.accuracy:.2f} (launch {view.launch_accuracy:.2f}) · largest PSI "
            f"{view.psi[j]:.2f}{which} · {alarm}")


def panel(service, reference, *, kind: str = DRIFT, severity: float = 0.5):
    """Drift dropdown and severity slider; curves for every drift computed at build."""
    import ipywidgets as w

    from kitchenlab.widgets import Panel, float_slider

    curves = {k: severity_curve(service, reference, k) for k in DRIFTS}
    controls = {
        "kind": w.Dropdown(options=list(DRIFTS), value=kind, description="what changed",
                           style={"description_width": "initial"}),
        "severity": float_slider("drift severity", severity, 0.0, 1.0, 0.05),
    }
    return Panel(functools.partial(compute, service, reference, curves), draw, readout,
                 controls, figsize=(10.0, 3.4), css_class="kl-panel")


# ---------------------------------------------------------------- progress of long work
class Progress:
    """A progress bar for ``fit(..., on_epoch=bar)`` or ``night_shift(..., on_epoch=bar)``:
    the epoch, and the mean over runs of the metrics named in ``show``."""

    def __init__(self, epochs: int, description: str = "night shift",
                 show: tuple[str, ...] = ("old guests", "new guests")):
        import ipywidgets as w

        self.epochs = int(epochs)
        self.show = tuple(show)
        self.bar = w.IntProgress(value=0, min=0, max=self.epochs, description=description,
                                 style={"description_width": "initial"})
        self.text = w.HTML()
        self.widget = w.HBox([self.bar, self.text])

    def start(self, description: str) -> "Progress":
        """Begin another run of the same length (e.g. the next night): a new label, bar at 0."""
        self.bar.description = str(description)
        self.bar.value = 0
        self.text.value = ""
        return self

    def __call__(self, epoch: int, metrics: dict) -> None:
        self.bar.value = epoch + 1
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        parts += [f"{html.escape(name)} {float(np.mean(metrics[name])):.3f}"
                  for name in self.show if name in metrics]
        self.text.value = " · ".join(parts)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
