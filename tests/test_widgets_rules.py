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
    assert (panel.controls["weight_decay"].min, panel.controls["weight_decay"].max) == (-3, 1.5)


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


def test_rules_grid_near_best_cells_and_drawing(pantry):
    runs = E.rules_grid(pantry, CFG, seeds=(0, 1, 2), pad_to=None)
    assert len(runs) == len(E.DROPOUTS) * len(E.WEIGHT_DECAYS) * 3
    mean, se = E.grid_stats(runs)
    assert mean.shape == se.shape == (len(E.DROPOUTS), len(E.WEIGHT_DECAYS))
    k = (runs.values["dropout"] == E.DROPOUTS[1]) & (runs.values["weight_decay"] == E.WEIGHT_DECAYS[2])
    assert mean[1, 2] == pytest.approx(runs.val_accuracy[k, -1].mean(), abs=1e-6)
    table = E.grid_table(runs)
    assert table.shape == (len(E.DROPOUTS), len(E.WEIGHT_DECAYS), 3)
    np.testing.assert_allclose(table.mean(axis=-1), mean, atol=1e-6)
    near = E.near_best(table)
    assert near[np.unravel_index(np.argmax(mean), mean.shape)]
    png = kl.widgets.render_png(R.draw_grid, runs, figsize=(6, 4))
    assert png.startswith(PNG_MAGIC)
    from matplotlib.figure import Figure

    fig = Figure()
    R.draw_grid(runs, fig)
    ax = fig.axes[0]
    assert len(fig.axes) == 2, "the grid has a colour bar"
    assert len(ax.patches) == int(near.sum()), "one outline per cell tied with the best"
    assert len(ax.texts) == mean.size


def test_check_near_best(capsys):
    assert kl.checks.check_near_best(E.near_best)
    assert not kl.checks.check_near_best(None)
    assert not kl.checks.check_near_best(lambda t: None)

    def means(t):
        return np.asarray(t).mean(axis=-1)

    assert not kl.checks.check_near_best(  # only the arg-max: crowns noise
        lambda t: means(t) == np.max(means(t)))
    assert "cannot be told apart" in capsys.readouterr().out
    assert not kl.checks.check_near_best(lambda t: np.ones(np.shape(t)[:-1], bool))  # everyone

    def unpaired(t):  # two separate error bars: ignores that the cells share their seeds
        m, se = E.mean_se(t)
        best = np.unravel_index(np.argmax(m), m.shape)
        return m[best] - m <= 2 * np.sqrt(se ** 2 + se[best] ** 2)

    assert not kl.checks.check_near_best(unpaired)
    assert "per-seed differences" in capsys.readouterr().out

    def one_se(t):  # paired, but one standard error instead of two
        return E.near_best(t, z=1.0)

    assert not kl.checks.check_near_best(one_se)


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
