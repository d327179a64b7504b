"""The frosting station (notebook 08): how long a draft, which commis, and what it pays.

``speedup_panel(grid)``: a k slider (draft tokens per round: the k values timed) and a draft
selector.
Each position shows the measured speedup of every k for that draft (dots) beside the
formula's prediction (line), and a strip of the 256 tokens served, each coloured by what
it was: a draft guess the chef accepted, a token the chef corrected, or a bonus token.

Retiming a service per move would take ~0.1 s of a noisy machine's time for a number that
jumps by +-10 % between repeats, so the panel answers from a ``kl.experiments.frosting.Grid``
measured once (every draft and k, alternating with plain decoding, fastest of repeats).
``transcript_html(text, kinds)`` colours a served text the same way, as HTML.
"""

from __future__ import annotations

import dataclasses
import html

import numpy as np
from matplotlib.colors import to_rgb

from kitchenlab import speculative
from kitchenlab.experiments.frosting import DRAFT_LABELS, Grid
from kitchenlab.plots import PALETTE
from kitchenlab.widgets import Panel

FIGSIZE = (9.6, 3.5)
KIND_COLOURS = {speculative.ACCEPTED: PALETTE["test"], speculative.CORRECTED: PALETTE["yellow"],
                speculative.BONUS: PALETTE["train"]}
KIND_WORDS = {speculative.ACCEPTED: "accepted guess", speculative.CORRECTED: "corrected by the chef",
              speculative.BONUS: "bonus token"}
STRIP = (8, 32)  # the 256 tokens as 8 rows of 32


def transcript_html(tokens_text: str, kinds, *, width: int = 64) -> str:
    """Served text as HTML, each character on the colour of its kind (newlines shown as ⏎)."""
    spans, column = [], 0
    for ch, kind in zip(tokens_text, np.asarray(kinds).tolist()):
        colour = KIND_COLOURS.get(kind, "#ffffff")
        shown = "⏎" if ch == "\n" else html.escape(ch)
        spans.append(f'<span style="background:{colour}33;border-bottom:2px solid {colour}">'
                     f"{shown}</span>")
        column += 1
        if ch == "\n" or column >= width:
            spans.append("<br>")
            column = 0
    legend = " ".join(f'<span style="background:{c}33;border-bottom:2px solid {c}">'
                      f"{KIND_WORDS[k]}</span>" for k, c in KIND_COLOURS.items())
    return (f'<div style="font-family:monospace;font-size:12px;line-height:1.5">{"".join(spans)}'
            f'</div><div style="font-size:12px;margin-top:4px">{legend}</div>')


@dataclasses.dataclass(frozen=True)
class Station:
    """One position of the controls."""

    draft: str
    k: int
    alpha: float  # this draft and k: drafted tokens kept
    tokens_per_call: float
    predicted: float  # the formula, from this cell's alpha and the measured c, v(k + 1)
    measured: float  # plain decoding's time / this service's (from the grid)
    measured_all: np.ndarray  # (K,) this draft, every k
    predicted_all: np.ndarray  # (K,)
    ks: tuple[int, ...]
    kinds: np.ndarray  # (256,) what each token was


def compute(grid: Grid, k: int, draft: str) -> Station:
    """Look the position up in the grid (k -> the nearest k timed, unknown drafts -> the first)."""
    draft = draft if draft in grid.drafts else grid.drafts[0]
    k = min(grid.ks, key=lambda kk: (abs(kk - int(k)), kk))
    d, j = grid.drafts.index(draft), grid.ks.index(k)
    predicted_all = np.array([grid.predicted(draft, kk) for kk in grid.ks])
    return Station(draft, k, float(grid.acceptance[d, j]), float(grid.tokens_per_call[d, j]),
                   float(predicted_all[j]), float(grid.speedup[d, j]), grid.speedup[d],
                   predicted_all, grid.ks, grid.kinds[d, j])


def draw(s: Station, fig):
    fig.set_layout_engine(None)  # hand-placed axes: a layout engine doubles the redraw time
    ax = fig.add_axes((0.07, 0.15, 0.4, 0.72))
    ks = np.array(s.ks)
    ax.axhline(1.0, color=PALETTE["muted"], lw=1, ls="--")
    ax.text(ks[-1], 1.0, "plain decoding", ha="right", va="bottom", fontsize=8,
            color=PALETTE["muted"])
    ax.plot(ks, s.predicted_all, "-", color=PALETTE["accent"], label="predicted (formula)")
    ax.plot(ks, s.measured_all, "o", color=PALETTE["train"], label="measured")
    ax.plot([s.k], [s.measured], "o", ms=12, mfc="none", mec=PALETTE["val"], mew=2)
    top = max(2.5, float(np.nanmax(np.r_[s.measured_all, s.predicted_all])) * 1.1)
    ax.set_ylim(0, top)
    ax.set_xticks(ks)
    ax.set_xlabel("k: draft tokens per round")
    ax.set_ylabel("speedup over plain decoding")
    ax.set_title(DRAFT_LABELS.get(s.draft, s.draft), fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    strip = fig.add_axes((0.53, 0.15, 0.45, 0.72))
    colours = np.array([[1.0, 1.0, 1.0]] + [to_rgb(KIND_COLOURS[k]) for k in (1, 2, 3)])
    kinds = np.asarray(s.kinds)[: STRIP[0] * STRIP[1]].reshape(STRIP)
    strip.imshow(colours[kinds], aspect="auto", interpolation="nearest")
    strip.set_xticks([])
    strip.set_yticks([])
    strip.grid(False)
    strip.set_title(f"the 256 tokens served, k = {s.k}: green accepted, yellow corrected, "
                    "blue bonus", fontsize=8)


def readout(s: Station) -> str:
    # within 5 % of plain decoding is a draw: timings move that much between repeats
    verdict = "pays" if s.measured >= 1.05 else "does not pay" if s.measured < 0.95 else "break-even"
    colour = {"pays": PALETTE["test"], "does not pay": PALETTE["val"]}.get(verdict, PALETTE["muted"])
    return (f"<b>{html.escape(DRAFT_LABELS.get(s.draft, s.draft))}, k = {s.k}</b>: "
            f"alpha = {s.alpha:.2f}, {s.tokens_per_call:.1f} tokens per target pass; "
            f"predicted {s.predicted:.2f}x, "
            f'<b style="color:{colour}">measured {s.measured:.2f}x ({verdict})</b>')


def speedup_panel(grid: Grid, *, k: int = 4, draft: str | None = None):
    """The k slider and draft selector over a grid measured once."""
    import ipywidgets as w

    controls = {"k": w.SelectionSlider(options=list(grid.ks), value=k, continuous_update=False,
                                       description="k (draft length)",
                                       style={"description_width": "initial"},
                                       layout=w.Layout(width="520px")),
                "draft": w.Dropdown(options=[(DRAFT_LABELS.get(d, d), d) for d in grid.drafts],
                                    value=draft or grid.drafts[0], description="draft",
                                    style={"description_width": "initial"})}
    return Panel(lambda k, draft: compute(grid, k, draft), draw, readout, controls,
                 figsize=FIGSIZE, css_class="kl-frosting")
