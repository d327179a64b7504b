"""The overfitting panel (notebook 03): every slider extreme computes, draws and reads out."""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import tasters as E
from kitchenlab.widgets import tasters as T

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CFG = kl.regularize.RunConfig(max_width=32, epochs=20, record_every=5)  # short runs, same grid


@pytest.fixture(scope="module")
def runs():
    pantry = kl.data.pantry(n_train=400, n_val=100, n_test=20, seed=0)
    return E.overfitting_grid(pantry, CFG)


@pytest.fixture(scope="module")
def panel(runs):
    return T.panel(runs)


def test_grid_covers_every_cell(runs):
    assert len(runs) == len(E.WIDTHS) * len(E.SIZES)
    assert E.gap_table(runs).shape == (len(E.WIDTHS), len(E.SIZES))
    for w in E.WIDTHS:
        for n in E.SIZES:
            k = runs.index(width=w, n_train=n)
            assert runs.values["width"][k] == w and runs.values["n_train"][k] == n


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
    k = runs.index(width=width, n_train=n_train)
    assert view.gap == pytest.approx(float(runs.gap[k]))
    assert f"gap {runs.gap[k]:.2f}" in text
    assert view.train_accuracy.shape == view.epochs.shape


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


def test_checks_for_notebook_03(runs, capsys):
    k = int(np.argmax(runs.gap))
    right = (int(runs.values["width"][k]), int(runs.values["n_train"][k]))
    assert kl.checks.check_largest_gap(runs, right)
    assert not kl.checks.check_largest_gap(runs, None)
    wrong = (1, 400) if right != (1, 400) else (32, 25)
    assert not kl.checks.check_largest_gap(runs, wrong)

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
    assert not kl.checks.check_stop_epoch(None)
    assert "✘" in capsys.readouterr().out
