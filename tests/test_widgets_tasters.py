"""The overfitting panel (notebook 03): every slider extreme computes, draws and reads out."""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import tasters as E
from kitchenlab.widgets import tasters as T

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CFG = kl.regularize.RunConfig(max_width=32, epochs=20, record_every=5)  # short runs, same grid
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def runs():
    pantry = kl.data.pantry(n_train=400, n_val=100, n_test=20, seed=0)
    return E.overfitting_grid(pantry, CFG, seeds=SEEDS)


@pytest.fixture(scope="module")
def panel(runs):
    return T.panel(runs)


def test_grid_covers_every_cell_and_seed(runs):
    assert len(runs) == len(E.WIDTHS) * len(E.SIZES) * len(SEEDS)
    assert E.gap_table(runs).shape == (len(E.WIDTHS), len(E.SIZES))
    for w in E.WIDTHS:
        for n in E.SIZES:
            hit = (runs.values["width"] == w) & (runs.values["n_train"] == n)
            assert sorted(runs.values["seed"][hit]) == list(SEEDS)
            assert np.array_equal(runs.values["data_seed"][hit], runs.values["seed"][hit])
    # the table is the mean over seeds of each cell's gaps
    k = (runs.values["width"] == 8) & (runs.values["n_train"] == 50)
    i, j = E.WIDTHS.index(8), E.SIZES.index(50)
    assert E.gap_table(runs)[i, j] == pytest.approx(runs.gap[k].mean(), abs=1e-6)


def test_controls(panel):
    assert list(panel.controls) == ["width", "n_train"]
    assert tuple(panel.controls["width"].options) == E.WIDTHS
    assert tuple(panel.controls["n_train"].options) == E.SIZES


@pytest.mark.parametrize("width", [E.WIDTHS[0], E.WIDTHS[-1]])
@pytest.mark.parametrize("n_train", [E.SIZES[0], E.SIZES[-1]])
def test_every_slider_extreme_renders(panel, runs, width, n_train):
    view, png, text = panel.render(width=width, n_train=n_train)
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert f"width {width}</b>" in text and f"{n_train} practice cakes" in text
    hit = (runs.values["width"] == width) & (runs.values["n_train"] == n_train)
    assert view.gap == pytest.approx(float(runs.gap[hit].mean()), abs=1e-6)
    assert f"gap {view.gap:.2f} ±" in text and f"{len(SEEDS)} seeds" in text
    assert view.train_accuracy.shape == (len(SEEDS), len(view.epochs))
    assert view.best_epoch == runs.epochs[np.argmin(runs.val_loss[hit].mean(0))]


def test_loss_rise_is_measured_from_each_seeds_own_lowest_point():
    loss = np.array([[1.0, 0.5, 0.7], [1.0, 0.8, 0.9]])
    view = T.TasterView(width=8, n_train=50, n_params=T.n_params(8), epochs=np.arange(3),
                        train_accuracy=np.ones((2, 3)), val_accuracy=np.ones((2, 3)),
                        val_loss=loss, best_epoch=1, gap=0.0, gap_se=0.0,
                        gaps=np.zeros((len(E.WIDTHS), len(E.SIZES))))
    assert view.loss_rise == pytest.approx((0.2 + 0.1) / 2)


def test_n_params_counts_a_real_mlp():
    for width in (1, 8, 32):
        model = kl.models.make_mlp(kl.config.MLPConfig(width=width, depth=2))
        assert T.n_params(width) == kl.models.count_params(model)


def test_off_grid_values_snap_to_the_nearest_cell(runs):
    view = T.compute(runs, width=30, n_train=0)
    assert (view.width, view.n_train) == (32, 25)


def test_widget_builds_without_error(panel):
    box = panel.widget
    assert "kl-panel" in box._dom_classes
    panel.controls["width"].value = E.WIDTHS[0]
    assert panel.wait()
    assert "kl-error" not in panel._text.value and "width 1</b>" in panel._text.value
    assert bytes(panel._image.value).startswith(PNG_MAGIC)


def test_pictures_differ_between_cells(panel):
    _, a, _ = panel.render(width=1, n_train=25)
    _, b, _ = panel.render(width=32, n_train=400)
    assert a != b


def test_heatmap_with_numbers_and_colorbar_draws():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    T.draw_heatmap(np.linspace(0, 0.3, 30).reshape(6, 5), ax, numbers=True, colorbar=True)
    assert len(ax.texts) == 30 and len(fig.axes) == 2  # every cell labelled, plus the bar


def test_checks_for_notebook_03(capsys):
    def mean_se(values):
        values = np.asarray(values, float)
        return values.mean(-1), values.std(-1, ddof=1) / np.sqrt(values.shape[-1])

    assert kl.checks.check_mean_se(mean_se)
    assert not kl.checks.check_mean_se(None)
    assert not kl.checks.check_mean_se(lambda v: None)
    assert not kl.checks.check_mean_se(lambda v: (0.2, 0.01))  # a constant
    assert not kl.checks.check_mean_se(  # plain std: underestimates with few seeds
        lambda v: (np.mean(v, -1), np.std(v, -1) / np.sqrt(np.shape(v)[-1])))
    assert not kl.checks.check_mean_se(  # the spread, not the error of the mean
        lambda v: (np.mean(v, -1), np.std(v, -1, ddof=1)))
    assert not kl.checks.check_mean_se(lambda v: (np.mean(v), np.std(v, ddof=1)))  # all axes
    out = capsys.readouterr().out
    assert "ddof=1" in out and "sqrt(number of seeds)" in out

    def stop_epoch(val_loss, patience):
        best, best_loss, since = 0, float("inf"), 0
        for epoch, loss in enumerate(val_loss):
            if loss < best_loss:
                best, best_loss, since = epoch, loss, 0
            else:
                since += 1
                if since >= patience:
                    return best, epoch
        return best, None

    assert kl.checks.check_stop_epoch(stop_epoch)
    assert not kl.checks.check_stop_epoch(lambda v, p: None)
    assert not kl.checks.check_stop_epoch(lambda v, p: (int(np.argmin(v)), None))
    assert not kl.checks.check_stop_epoch(lambda v, p: (2, 4))  # a constant
    assert not kl.checks.check_stop_epoch(None)
    assert "✘" in capsys.readouterr().out
