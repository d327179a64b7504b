"""The control panels: sliders whose every move recomputes and redraws a plot.

Each panel is three pieces, kept apart so they can be tested without a browser:

* ``compute(**slider_values) -> result``: a pure function of the slider values (it calls
  compiled kitchenlab code and never raises for a value its slider can reach);
* ``draw(result, fig)``: matplotlib drawing only;
* ``readout(result) -> str``: one line of HTML under the plot (the value, a verdict,
  or a plain "exploded" message).

``Panel`` wires them to ipywidgets: the figure is sent as a PNG to an ``Image`` widget, so a
redraw replaces one image (no flicker) and a test can see that the picture changed.
Rapid slider moves are coalesced: the work runs in one background thread that always takes
the newest slider values, so ten quick key presses cost at most two computes (the one
running and the last), never ten in a row.
Topic panels live in submodules: ``kl.widgets.apprenticeship`` (notebook 02), ...
"""

from __future__ import annotations

import html
import importlib
import io
import threading
import time
import traceback
from typing import Any, Callable

_TOPICS = ("apprenticeship", "tasters", "rules", "service", "spice", "chatbot", "complaints",
           "frosting")


def __getattr__(name):
    if name in _TOPICS:
        return importlib.import_module(f"kitchenlab.widgets.{name}")
    raise AttributeError(f"module 'kitchenlab.widgets' has no attribute {name!r}")


def render_png(draw: Callable[[Any, Any], None], result, *, figsize=(6.4, 3.6), dpi=80,
               fig=None) -> bytes:
    """Draw ``result`` and return PNG bytes (no pyplot state kept).

    Pass a ``fig`` to reuse it (it is cleared first): matplotlib caches text metrics per
    renderer, so redrawing one figure is ~15 % faster than building a new one.
    """
    from matplotlib.figure import Figure

    if fig is None:
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    else:
        fig.clear()
    draw(result, fig)
    buf = io.BytesIO()
    # Light compression: a 25 kB plot encodes several times faster at level 1 than at
    # the default 6, and a slider redraw has a 0.3 s budget.
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
    return buf.getvalue()


class Panel:
    """Sliders -> pure compute -> drawn PNG + readout. ``panel.widget`` is what a notebook shows."""

    def __init__(self, compute: Callable[..., Any], draw: Callable[[Any, Any], None],
                 readout: Callable[[Any], str], controls: dict[str, Any], *,
                 figsize=(6.4, 3.6), css_class: str = "kl-panel"):
        self.compute, self.draw, self.readout = compute, draw, readout
        self.controls = controls
        self.figsize = figsize
        self.css_class = css_class
        self.last_seconds: float | None = None  # compute + draw time of the last update
        self.last_result = None
        self.updates = 0  # how many slider positions were computed and shown (or failed)
        self._widget = None
        self._fig = None  # one figure redrawn on every move (see render_png)
        self._lock = threading.Lock()
        self._pending: dict | None = None  # newest slider values not yet shown
        self._worker: threading.Thread | None = None

    def values(self) -> dict[str, Any]:
        return {name: c.value for name, c in self.controls.items()}

    def render(self, **values) -> tuple[Any, bytes, str]:
        """Compute and draw for these slider values: (result, png bytes, readout html)."""
        result = self.compute(**values)
        if self._fig is None:
            from matplotlib.figure import Figure

            self._fig = Figure(figsize=self.figsize, dpi=80, layout="constrained")
        png = render_png(self.draw, result, fig=self._fig)
        return result, png, self.readout(result)

    @property
    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        import ipywidgets as w

        self._image = w.Image(format="png", layout=w.Layout(width="100%", max_width="640px"))
        self._text = w.HTML()
        self._image.add_class("kl-plot")
        self._text.add_class("kl-readout")
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        box = w.VBox(list(self.controls.values()) + [self._text, self._image])
        box.add_class(self.css_class)
        self._show(self.values())  # the default view, drawn before the panel appears
        return box

    def _on_change(self, _change=None):
        """A slider moved: remember its newest values; start the worker if it is idle."""
        with self._lock:
            self._pending = self.values()
            if self._worker is not None:
                return  # the running worker picks the newest values when it is done
            self._worker = threading.Thread(target=self._work, name="kl-panel", daemon=True)
            self._worker.start()

    def _work(self):
        while True:
            with self._lock:
                values, self._pending = self._pending, None
                if values is None:  # nothing newer arrived while we drew: done
                    self._worker = None
                    return
            self._show(values)

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until every slider move so far is drawn (for tests and scripts)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self._lock:
                worker = self._worker
            if worker is None:
                return True
            worker.join(max(deadline - time.perf_counter(), 0.0))
        return False

    def _show(self, values: dict):
        start = time.perf_counter()
        try:
            self.last_result, png, text = self.render(**values)
            self._image.value = png
            self._text.value = text
        except Exception as err:  # a panel must never leave a traceback: show it plainly
            self._image.value = b""  # never leave the old picture under a new value
            self._text.value = (
                '<div class="kl-error" style="color:#D55E00"><b>This panel hit an error</b>: '
                f"{html.escape(type(err).__name__)}: {html.escape(str(err))}<pre>"
                f"{html.escape(traceback.format_exc(limit=3))}</pre></div>")
        self.updates += 1
        self.last_seconds = time.perf_counter() - start

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def log_slider(description: str, value: float, lo_exp: float, hi_exp: float,
               step: float = 0.25):
    """A base-10 log slider from 10**lo_exp to 10**hi_exp (steps in the exponent)."""
    import ipywidgets as w

    return w.FloatLogSlider(value=value, base=10, min=lo_exp, max=hi_exp, step=step,
                            description=description, continuous_update=False,
                            readout_format=".2g", style={"description_width": "initial"},
                            layout=w.Layout(width="520px"))


def float_slider(description: str, value: float, lo: float, hi: float, step: float):
    import ipywidgets as w

    return w.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                         continuous_update=False, style={"description_width": "initial"},
                         layout=w.Layout(width="520px"))


def int_slider(description: str, value: int, lo: int, hi: int, step: int = 1):
    import ipywidgets as w

    return w.IntSlider(value=value, min=lo, max=hi, step=step, description=description,
                       continuous_update=False, style={"description_width": "initial"},
                       layout=w.Layout(width="520px"))
