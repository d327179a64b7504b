"""The temperature panel (notebook 07): every slider extreme samples, draws and reads out."""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.widgets import chatbot as C

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def panel():
    model = kl.models.make_gpt(kl.config.GPTConfig.tiny().replace(context=160), seed=0)
    return C.temperature_panel(model, max_new_tokens=40)


def test_controls(panel):
    t, k = panel.controls["temperature"], panel.controls["top_k"]
    assert (t.min, t.max, t.value, t.step) == (0.0, 2.0, 0.0, 0.1)
    assert (k.min, k.max, k.value) == (1, 77, 77)


@pytest.mark.parametrize("temperature,top_k", [(0.0, 1), (0.0, 77), (2.0, 1), (2.0, 77), (0.8, 5)])
def test_every_slider_extreme_renders(panel, temperature, top_k):
    view, png, text = panel.render(temperature=temperature, top_k=top_k)
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert f"temperature {temperature:.2f}</b>, top-k {top_k}" in text
    assert np.all(np.isfinite(view.probs)) and 0.0 <= view.probs.sum() <= 1.0 + 1e-5
    assert ("greedy" in text) == (temperature == 0 or top_k == 1)
    assert len(view.labels) == C.N_BARS and view.n_tokens >= 1


def test_greedy_is_repeatable_and_temperature_spreads_the_bars(panel):
    a, b = panel.compute(temperature=0.0, top_k=77), panel.compute(temperature=0.0, top_k=77)
    assert a.recipe == b.recipe and a.probs[0] == 1.0 and a.probs[1:].sum() == 0
    hot = panel.compute(temperature=2.0, top_k=77)
    assert hot.probs.max() < a.probs.max()
    assert panel.compute(temperature=1.0, top_k=3).probs[3:].sum() == 0


def test_show_char():
    assert [C.show_char(c) for c in (" ", "\n", "<end>", "a")] == ["␣", "⏎", "<end>", "a"]


def test_shown_lines_mark_every_cut():
    short = C.shown_lines("Cake\nServes 4", ended=True)
    assert short == ["Cake", "Serves 4"]
    assert C.shown_lines("Cake\nServes", ended=False)[-1] == "Serves …"  # budget ran out
    tall = C.shown_lines("\n".join(f"line {i}" for i in range(40)), ended=True)
    assert len(tall) == C.TEXT_LINES and tall[-1] == "…" and tall[-2] == f"line {C.TEXT_LINES - 2}"
    wide = C.shown_lines("x" * 100, ended=True)[0]
    assert len(wide) == C.TEXT_WIDTH and wide.endswith("…")
