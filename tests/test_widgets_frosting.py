"""The frosting panel (notebook 08): every slider stop and draft renders, reads out and never
raises; the transcript colours every token."""

import re

import numpy as np
import pytest

from kitchenlab import speculative
from kitchenlab.experiments.frosting import N_TOKENS, Grid
from kitchenlab.widgets import frosting as W

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DRAFTS = ("commis", "perfect", "apprentice")
KS = (1, 2, 4, 8)


def fake_grid() -> Grid:
    """A grid with known numbers: the commis pays, the perfect draft more, the apprentice not."""
    alpha = np.array([[0.9, 0.85, 0.75, 0.65], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    per_call = np.array([[1.9, 2.7, 4.0, 6.2], [2.0, 3.0, 4.9, 8.8], [1.0, 1.0, 1.0, 1.0]])
    speedup = np.array([[1.0, 1.2, 1.3, 1.3], [1.1, 1.5, 1.8, 1.9], [0.5, 0.4, 0.3, 0.2]])
    kinds = np.tile(np.array([speculative.ACCEPTED, speculative.CORRECTED, speculative.BONUS,
                              speculative.ACCEPTED], np.int8), N_TOKENS // 4)
    return Grid(DRAFTS, KS, 0.1, 0.1 / speedup, alpha, per_call,
                np.ceil(N_TOKENS / per_call), np.broadcast_to(kinds, (3, 4, N_TOKENS)).copy(),
                np.ones((3, 4), bool), {"commis": 0.01, "perfect": 0.01, "apprentice": 0.15})


@pytest.fixture(scope="module")
def panel():
    return W.speedup_panel(fake_grid(), k=4, draft="commis")


def test_controls(panel):
    k, draft = panel.controls["k"], panel.controls["draft"]
    assert tuple(k.options) == KS and k.value == 4
    assert [v for _, v in draft.options] == list(DRAFTS) and draft.value == "commis"


@pytest.mark.parametrize("draft", DRAFTS)
@pytest.mark.parametrize("k", KS)
def test_every_reachable_position_renders(panel, draft, k):
    view, png, text = panel.render(k=k, draft=draft)
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert re.search(rf", k = {k}</b>: alpha = \d\.\d\d, .*measured \d\.\d\dx", text)
    grid = fake_grid()
    d, j = DRAFTS.index(draft), KS.index(k)
    assert view.measured == pytest.approx(grid.speedup[d, j])
    x = grid.speedup[d, j]
    expected = "pays" if x >= 1.05 else "does not pay" if x < 0.95 else "break-even"
    assert f"({expected})" in text
    assert np.all(np.isfinite(view.predicted_all)) and view.kinds.shape == (N_TOKENS,)


def test_compute_never_raises_off_the_grid():
    grid = fake_grid()
    assert W.compute(grid, 3, "commis").k == 2  # nearest timed k (ties: the smaller)
    assert W.compute(grid, 7, "commis").k == 8
    assert W.compute(grid, 100, "nobody").draft == "commis"


def test_the_prediction_is_the_formula():
    grid = fake_grid()
    s = W.compute(grid, 4, "commis")
    v5 = grid.seconds[1, 2] / grid.rounds[1, 2] / (grid.plain[1, 2] / N_TOKENS)
    assert s.predicted == pytest.approx(speculative.predicted_speedup(0.75, 4, 0.01, v5))


def test_transcript_colours_every_character():
    html = W.transcript_html("ab\nc<", [1, 2, 3, 1, 2])
    assert html.count("<span") == 5 + 3  # 5 characters, 3 legend entries
    assert "⏎" in html and "&lt;" in html and "bonus token" in html
