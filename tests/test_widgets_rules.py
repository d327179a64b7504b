"""The house-rules panel (notebook 04): every slider extreme trains, draws and reads out."""

import jax
import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import rules as E
from kitchenlab.widgets import rules as R

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CFG = kl.regularize.RunConfig(max_width=16, epochs=20, record_every=5)  # tiny, same code


@pytest.fixture(scope="module")
def pantry():
    return kl.data.pantry(n_train=60, n_val=60, n_test=20, noise=0.1, seed=0)


@pytest.fixture(scope="module")
def panel(pantry):
    return R.panel(pantry, CFG)


def _extremes(panel):
    d, w = panel.controls["dropout"], panel.controls["weight_decay"]
    return [(d.min, 10.0 ** w.min), (d.min, 10.0 ** w.max), (d.max, 10.0 ** w.min),
            (d.max, 10.0 ** w.max)]


def test_controls(panel):
    assert list(panel.controls) == ["dropout", "weight_decay"]
    assert panel.controls["dropout"].min == 0.0 and panel.controls["dropout"].max < 1.0
    assert (panel.controls["weight_decay"].min, panel.controls["weight_decay"].max) == (-3, 1)


def test_every_slider_extreme_renders(panel):
    for dropout, wd in _extremes(panel):
        view, png, text = panel.render(dropout=dropout, weight_decay=wd)
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
        assert f"dropout {dropout:.2f}</b>" in text and f"weight decay {wd:.3g}</b>" in text
        assert view.weights.size == 8 * 16 + 16 * 16 + 16 * 2
        assert np.isfinite(view.gap)


def test_unreachable_values_are_clipped_not_raised(panel):
    view, _, text = panel.render(dropout=1.0, weight_decay=-1.0)
    assert view.dropout < 1.0 and view.weight_decay == 0.0 and "dropout" in text


def test_strong_weight_decay_shrinks_the_knobs(panel):
    weak = panel.compute(dropout=0.0, weight_decay=1e-3)
    strong = panel.compute(dropout=0.0, weight_decay=10.0)
    assert np.abs(strong.weights).mean() < np.abs(weak.weights).mean()


def test_widget_builds_without_error(panel):
    box = panel.widget
    assert "kl-panel" in box._dom_classes
    panel.controls["dropout"].value = panel.controls["dropout"].max
    assert panel.wait()
    assert "kl-error" not in panel._text.value and "dropout 0.90</b>" in panel._text.value


def test_rules_grid_best_cell_and_drawing(pantry):
    runs = E.rules_grid(pantry, CFG)
    assert len(runs) == len(E.DROPOUTS) * len(E.WEIGHT_DECAYS)
    d, w = E.best_cell(runs)
    k = runs.index(dropout=d, weight_decay=w)
    assert runs.val_accuracy[k, -1] == runs.val_accuracy[:, -1].max()
    png = kl.widgets.render_png(R.draw_grid, runs, figsize=(5, 3.6))
    assert png.startswith(PNG_MAGIC)
    assert kl.checks.check_best_rules(runs, (d, w))
    assert not kl.checks.check_best_rules(runs, None)


def test_check_dropout():
    def mine(x, rate, key):
        keep = jax.random.uniform(key, x.shape) >= rate
        return jax.numpy.where(keep, x / (1.0 - rate), 0.0)

    assert kl.checks.check_dropout(mine)
    assert kl.checks.check_dropout(kl.models.dropout)
    assert not kl.checks.check_dropout(lambda x, rate, key: None)
    assert not kl.checks.check_dropout(lambda x, rate, key: x)  # never drops
    assert not kl.checks.check_dropout(  # forgets to rescale
        lambda x, rate, key: jax.numpy.where(jax.random.uniform(key, x.shape) >= rate, x, 0.0))
    assert not kl.checks.check_dropout(None)
