"""The apprenticeship panels: pure compute at the sliders' extremes, PNG, readout, no raising.

Uses the default kitchen and plan (the lesson's claims are about them); one compile serves
every test here because the learning rate and the clip norm are traced.
"""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import apprenticeship as E
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
        assert result.baseline.diverged  # η = 10 without a cap explodes
    rescued = clip_panel.render(clip_norm=low)[0]
    assert not rescued.history.diverged
    assert rescued.history.train_loss[-1] < 0.5 * rescued.start_loss
    loose, _, text = clip_panel.render(clip_norm=high)
    assert loose.history.diverged and "exploded" in text


def test_clip_curves_is_pure(kitchen):
    a = E.clip_curves(0.1, kitchen=kitchen)
    b = E.clip_curves(0.1, kitchen=kitchen)
    np.testing.assert_array_equal(a.history.train_loss, b.history.train_loss)
    assert a.baseline.diverged and not a.history.diverged


def test_verdict_words():
    h = kl.train.History(np.array([0.79, 0.78]), np.zeros(2), None, None)
    assert E.verdict(h, 0.8) == "stuck"
    h = kl.train.History(np.array([0.5, 0.3, 0.2]), np.zeros(3), None, None)
    assert E.verdict(h, 0.8) == "learning"
    h = kl.train.History(np.array([0.5, 0.2, 0.4, 0.2]), np.zeros(4), None, None)
    assert E.verdict(h, 0.8) == "overshooting"
    h = kl.train.History(np.array([1.5, 2.0]), np.zeros(2), None, None)
    assert E.verdict(h, 0.8) == "ruined"
    h = kl.train.History(np.array([]), np.array([]), None, None, diverged_at_step=3)
    assert E.verdict(h, 0.8) == "exploded"


def test_default_config_sgd_is_momentum_zero():
    sgd = E.default_config()
    assert sgd.optimizer == "momentum" and sgd.momentum == 0.0
    assert E.default_config("momentum").momentum == 0.9
    assert E.default_config("adam").optimizer == "adam"
    assert kl.train.static_part(sgd) == kl.train.static_part(E.default_config("momentum"))
