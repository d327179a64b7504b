import ipywidgets
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from kitchenlab import plots, train, widgets  # noqa: E402


def _history(n=5, val=True):
    loss = np.linspace(1.0, 0.2, n)
    return train.History(loss, 1 - loss, loss + 0.1 if val else None, 1 - loss if val else None,
                         best_epoch=2 if val else None)


def test_loss_curves_labels_axes_and_marks_best():
    import matplotlib.pyplot as plt

    ax = plots.loss_curves(_history(), show_best=True, title="t")
    assert "epoch" in ax.get_xlabel() and "loss" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("best epoch (3)" in s for s in labels) and any("validation" in s for s in labels)
    plt.close("all")


def _panel(compute):
    return widgets.Panel(
        compute=compute,
        draw=lambda r, fig: fig.add_subplot().plot([0, 1], [0, r]),
        readout=lambda r: f"value = {r:.3g}",
        controls={"x": widgets.log_slider("x", 1.0, -2, 2)},
    )


def test_panel_renders_png_and_updates_on_slider_moves():
    panel = _panel(lambda x: x * 2)
    result, png, text = panel.render(x=3.0)
    assert result == 6.0 and png[:8] == b"\x89PNG\r\n\x1a\n" and text == "value = 6"
    box = panel.widget
    assert isinstance(box, ipywidgets.VBox)
    first = panel._image.value
    panel.controls["x"].value = 10.0
    assert panel.wait()
    assert panel._image.value != first and panel._text.value == "value = 20"
    assert panel.updates == 2 and 0 <= panel.last_seconds < 30


def test_rapid_moves_are_coalesced_and_end_on_the_last_value():
    """Ten moves while a slow compute runs: the stale ones are skipped, the last is drawn."""
    import threading
    import time

    started = threading.Event()
    seen = []

    def slow(x):
        seen.append(x)
        started.set()
        time.sleep(0.2)
        return x

    panel = _panel(slow)
    panel.widget  # draws the default view (x = 1)
    slider = panel.controls["x"]
    started.clear()
    slider.value = 0.1
    assert started.wait(5)  # the worker is busy with 0.1 ...
    for v in (0.2, 0.3, 0.5, 0.7, 1.5, 2.0, 3.0, 5.0, 7.0):  # ... while 9 more moves arrive
        slider.value = v
    assert panel.wait(10)
    assert seen[0] == 1.0 and seen[1] == 0.1 and seen[-1] == 7.0
    assert len(seen) == 3, f"computed {seen}: stale values were not skipped"
    assert panel._text.value == "value = 7"


def test_panel_shows_errors_instead_of_raising_and_clears_the_old_plot():
    def sometimes_broken(x):
        if x > 5:
            raise RuntimeError("oven on fire")
        return x

    panel = _panel(sometimes_broken)
    box = panel.widget  # must not raise
    assert isinstance(box, ipywidgets.VBox) and panel._image.value[:4] == b"\x89PNG"
    panel.controls["x"].value = 10.0
    assert panel.wait()
    assert "kl-error" in panel._text.value and "oven on fire" in panel._text.value
    assert panel._image.value == b"", "the old picture must not stay under the new value"


@pytest.mark.parametrize("factory,args", [(widgets.float_slider, ("d", 0.5, 0, 1, 0.1)),
                                          (widgets.int_slider, ("d", 2, 1, 5)),
                                          (widgets.log_slider, ("d", 0.1, -3, 1))])
def test_slider_factories(factory, args):
    s = factory(*args)
    assert s.description == "d" and s.continuous_update is False


def test_cake_map_draws_labels_boundary_and_rings_every_flipped_label():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from kitchenlab import data, plots

    raw = data.kitchen(1000, seed=1).raw.val
    fig = Figure(figsize=(10, 4.6))
    left, right = plots.cake_map(raw, fig)
    assert left.get_xlabel() == "oven temperature (°C)"
    assert right.get_ylabel() == "heat the batter can take"
    n_flipped = int(data.flipped(raw).sum())
    rings = [c for c in left.collections if c.get_offsets().shape[0] == n_flipped
             and len(c.get_facecolors()) == 0]
    assert len(rings) == 1  # exactly one ring per flipped label
    assert f"{len(raw) - n_flipped}/{len(raw)}" in right.get_title()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("boundary" in t for t in labels) and any("flipped" in t for t in labels)
    with pytest.raises(ValueError, match="raw amounts"):
        plots.cake_map(data.kitchen(600, seed=0).val, Figure())


def test_latency_percentiles_cuts_runaway_bars_and_labels_them():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    plots.latency_percentiles(ax, ["≤ 1", "≤ 8"], [0.05, 0.0004], [0.08, 0.0009],
                              [0.09, 0.0015], cap_ms=3.0, title="rush")
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 6 and max(heights) == pytest.approx(3.0)
    assert sorted(heights)[:3] == pytest.approx([0.4, 0.9, 1.5])  # in ms
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["50 ms ↑", "80 ms ↑", "90 ms ↑"]
    assert ax.get_ylabel() == "latency per guest (ms)" and ax.get_title() == "rush"
    with pytest.raises(ValueError, match="labels has 1 entries"):
        plots.latency_percentiles(ax, ["one"], [1, 2], [1, 2], [1, 2])


def test_latency_percentiles_on_a_log_axis_draws_every_bar_whole():
    """A log axis spans 0.05 ms and 90 ms at once: no bar is cut, no cap label is needed."""
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    plots.latency_percentiles(ax, ["≤ 1", "≤ 8"], [0.05, 0.00005], [0.08, 0.00009],
                              [0.09, 0.00015], log=True)
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == pytest.approx([0.05, 0.09, 0.15, 50, 80, 90])  # in ms
    assert ax.get_yscale() == "log" and len(ax.texts) == 0
    low, high = ax.get_ylim()
    assert low == pytest.approx(0.01) and high == pytest.approx(1000)  # whole decades
    assert "log" in ax.get_ylabel()
    with pytest.raises(ValueError, match="cap_ms cuts bars on a linear axis"):
        plots.latency_percentiles(ax, ["≤ 1"], [1], [1], [1], log=True, cap_ms=3.0)
    with pytest.raises(ValueError, match="latencies > 0"):
        plots.latency_percentiles(ax, ["≤ 1"], [0.0], [1], [1], log=True)
