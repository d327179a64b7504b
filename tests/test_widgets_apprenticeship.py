"""The apprenticeship panels: pure compute at the sliders' extremes, PNG, readout, no raising.

Uses the default kitchen and plan (the lesson's claims are about them); one compile serves
every test here because the learning rate and the clip norm are traced.
"""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import apprenticeship as E
from kitchenlab.experiments import clipping as C
from kitchenlab.widgets import apprenticeship as A

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def kitchen():
    return kl.data.kitchen()


@pytest.fixture(scope="module")
def lr_panel(kitchen):
    return A.learning_rate_panel(kitchen)


@pytest.fixture(scope="module")
def clip_panel(kitchen):
    return A.clip_panel(kitchen)


def _slider_extremes(slider):
    return [10.0 ** slider.min, 10.0 ** ((slider.min + slider.max) / 2), 10.0 ** slider.max]


def test_control_names_match_render_kwargs(lr_panel, clip_panel):
    assert list(lr_panel.controls) == ["learning_rate"]
    assert list(clip_panel.controls) == ["clip_norm"]
    assert lr_panel.controls["learning_rate"].min == A.LR_RANGE[0]
    assert lr_panel.controls["learning_rate"].max == A.LR_RANGE[1]
    assert clip_panel.controls["clip_norm"].min == A.CLIP_RANGE[0]
    assert clip_panel.controls["clip_norm"].max == A.CLIP_RANGE[1]
    assert clip_panel.controls["clip_norm"].value == 2.0  # the cap notebook 02 chooses


def test_lr_extremes(lr_panel):
    low, mid, high = _slider_extremes(lr_panel.controls["learning_rate"])
    for lr in (low, mid, high):
        result, png, text = lr_panel.render(learning_rate=lr)
        assert png.startswith(PNG_MAGIC)
        assert f"learning rate = {E.format_value(lr)}" in text
        assert result.label == f"learning rate = {E.format_value(lr)}"
    timid = lr_panel.render(learning_rate=low)[0]
    assert timid.verdict == "stuck" and not timid.history.diverged
    assert np.all(np.isfinite(timid.history.train_loss))
    assert timid.start_loss - timid.history.train_loss[-1] < 0.05  # barely moved
    result, _, text = lr_panel.render(learning_rate=high)
    assert result.history.diverged and result.verdict == "exploded"
    assert "exploded at step" in text
    result, _, text = lr_panel.render(learning_rate=mid)  # 10**-1.5 ≈ 0.03: learns
    assert result.verdict == "learning" and "exploded" not in text
    assert E.VERDICT_WORDS["learning"] in text  # the readout repeats the verdict's rule


def test_lr_overshooting_notch(lr_panel):
    result, _, text = lr_panel.render(learning_rate=10 ** 0.75)
    assert result.verdict == "overshooting" and "overshooting" in text
    assert result.history.train_loss.max() > E.ABOVE_START * result.start_loss


def test_lr_every_notch_never_raises(lr_panel):
    slider = lr_panel.controls["learning_rate"]
    for e in np.arange(slider.min, slider.max + 1e-9, 1.0):
        result = E.lr_curves(10.0 ** e, kitchen=lr_panel.compute.keywords["kitchen"])
        assert result.verdict in E.VERDICT_WORDS


def test_clip_extremes(clip_panel):
    low, mid, high = _slider_extremes(clip_panel.controls["clip_norm"])
    for c in (low, mid, high):
        result, png, text = clip_panel.render(clip_norm=c)
        assert png.startswith(PNG_MAGIC)
        assert f"clip norm = {E.format_value(c)}" in text
        assert result.baseline.diverged  # the spiky kitchen without a cap explodes
        assert "without a cap: exploded at step" in text
    tight = clip_panel.render(clip_norm=low)[0]
    assert tight.verdict == "too tight" and not tight.history.diverged
    loose, _, text = clip_panel.render(clip_norm=high)
    assert loose.history.diverged and loose.verdict == "too loose" and "exploded" in text
    assert "trims" not in text  # no counts for a run that was rolled back


def test_clip_default_view(clip_panel):
    value = clip_panel.controls["clip_norm"].value
    run, png, text = clip_panel.render(clip_norm=value)
    c = run.counts()
    assert run.verdict == "spikes only"
    assert f"trims {c['spiky_trimmed']} of {c['spiky']} spiky turns and 0 of " in text
    assert C.CLIP_WORDS["spikes only"] in text


def test_draw_handles_a_run_that_exploded_on_day_one(kitchen):
    """A History with no completed day (rolled back in epoch 1) still draws and reads out."""
    from kitchenlab.widgets import render_png

    result = E.lr_curves(10.0, kitchen=kitchen)
    assert result.history.epochs == 0
    assert render_png(A.draw, result).startswith(PNG_MAGIC)
    assert "exploded at step 6" in A.readout(result)
    run = C.clip_curves(1000.0, kitchen=kitchen)
    assert run.history.epochs == 0 and run.counts()["spiky"] == 0
    assert render_png(A.draw_clip, run).startswith(PNG_MAGIC)
