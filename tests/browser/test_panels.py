"""Sliders tried as a learner would: JupyterLab in headless Chromium, Run All, then keys.

Every notebook with a panel is one ``SliderCase`` below (data only; ``notebook`` is a glob
in notebooks/, so a renamed topic still matches); ``check_slider`` does the work. Keys: Home/End jump to the ends, PageUp/PageDown move 5 steps, arrows one step.
A notebook that has not landed yet is skipped with its path in the reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from labdriver import Move, Rapid, SliderCase, check_slider

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser

# The fixture: learning rate 10**-3 ... 10**1 in steps of 10**0.25, starting at 0.01;
# gradient descent on w**2 explodes above a learning rate of 1.
FIXTURE = SliderCase(
    id="fixture_panel",
    notebook="_browser_fixtures/fixture_panel.ipynb",
    slider="learning rate",
    moves=(Move(("Home",), r"learning rate = 0\.001\b", "small"),
           Move(("PageUp", "PageUp"), r"learning rate = 0\.32\b", "middle"),
           Move(("End",), r"learning rate = 10\b.*exploded", "largest")),
    rapid=Rapid("ArrowRight", 10, r"learning rate = 0\.32\b", start=("Home",)),
)

# One entry per course notebook with a panel (03, 04, 06-09 join as they land).
NOTEBOOK_CASES = [
    # learning rate 10**-4 ... 10**1 in steps of 10**0.25, written with 3 significant digits.
    SliderCase(
        id="02_apprenticeship",
        notebook="02_*.ipynb",
        slider="learning rate η",
        moves=(Move(("Home",), r"learning rate = 0\.0001\b", "small"),
               Move(("PageUp", "PageUp"), r"learning rate = 0\.0316\b", "middle"),
               Move(("End",), r"learning rate = 10\b.*exploded", "largest")),
        rapid=Rapid("ArrowRight", 10, r"learning rate = 0\.0316\b", start=("Home",)),
    ),
    # model size: a selection slider over widths 1, 2, 4, 8, 16, 32 (starts at 32, with 200
    # practice cakes); the readout gives means over the grid's 5 seeds.
    SliderCase(
        id="03_tasters",
        notebook="03_*.ipynb",
        slider="model size",
        moves=(Move(("Home",), r"width 1\b", "small"),
               Move(("ArrowRight",) * 3, r"width 8\b", "middle"),
               Move(("End",), r"width 32\b", "largest")),
        rapid=Rapid("ArrowRight", 10, r"width 32\b", start=("Home",)),
    ),
    # dropout 0 ... 0.9 in steps of 0.05, starting at 0 (the weight-decay slider, at 10,
    # shares the panel); every move retrains.
    SliderCase(
        id="04_house_rules",
        notebook="04_*.ipynb",
        slider="dropout",
        moves=(Move(("PageUp",), r"dropout 0\.25\b", "middle"),
               Move(("Home",), r"dropout 0\.00\b.*weight decay 10\b", "small"),
               Move(("End",), r"dropout 0\.90\b", "largest")),
        rapid=Rapid("ArrowRight", 10, r"dropout 0\.50\b", start=("Home",)),
    ),
    # the order form: bake time 15 ... 60 min in steps of 0.45 min, the other ingredients
    # those of the first test cake; a short bake is a good cake, a long one burns.
    SliderCase(
        id="05_order_form",
        notebook="05_*.ipynb",
        slider="bake_time",
        moves=(Move(("Home",), r"good cake — \d+% sure", "shortest bake"),
               Move(("End",), r"burnt — \d+% sure", "longest bake")),
        rapid=Rapid("ArrowRight", 10, r"good cake — \d+% sure", start=("Home",)),
    ),
    # bits per weight 2 ... 8 in steps of 1 (the notebook opens it at 4); the scale toggle
    # shares the panel.
    SliderCase(
        id="06_spice_packets",
        notebook="06_*.ipynb",
        slider="bits per spice packet",
        moves=(Move(("Home",), r"\b2 bits per weight\b.*broken", "fewest"),
               Move(("PageUp",), r"\b7 bits per weight\b", "middle"),
               Move(("End",), r"\b8 bits per weight\b", "most")),
        rapid=Rapid("ArrowRight", 10, r"\b8 bits per weight\b", start=("Home",)),
    ),
    # drift severity 0 ... 1 in steps of 0.05 (starts at 0.5; the drift dropdown stays on
    # fan_oven): the input alarm is silent at 0 and fires from 0.25 on.
    SliderCase(
        id="09_complaints",
        notebook="09_*.ipynb",
        slider="drift severity",
        moves=(Move(("Home",), r"severity 0\.00\b.*no alarm", "small"),
               Move(("PageUp",), r"severity 0\.25\b.*ALARM", "middle"),
               Move(("End",), r"severity 1\.00\b.*ALARM", "largest")),
        rapid=Rapid("ArrowRight", 10, r"severity 0\.50\b", start=("Home",)),
    ),
    # temperature 0 ... 2 in steps of 0.1, starting at 0 (greedy); top-k shares the panel.
    SliderCase(
        id="07_layer_by_layer",
        notebook="07_*.ipynb",
        slider="temperature",
        moves=(Move(("End",), r"temperature 2\.00\b.*sampling", "hot"),
               Move(("Home",), r"temperature 0\.00\b.*greedy", "greedy"),
               Move(("PageUp", "PageUp"), r"temperature 1\.00\b.*sampling", "warm")),
        rapid=Rapid("ArrowRight", 10, r"temperature 1\.00\b", start=("Home",)),
    ),
    # draft length k over the timed values 1, 2, 3, 4, 6, 8 (starts at 4, the n-gram commis
    # drafting); acceptance does not depend on the clock, so the readout's alpha is exact.
    SliderCase(
        id="08_frost_while_baking",
        notebook="08_*.ipynb",
        slider="k (draft length)",
        moves=(Move(("Home",), r"commis, k = 1: alpha = 0\.92\b.*measured \d", "shortest"),
               Move(("ArrowRight",) * 3, r"k = 4: alpha = 0\.77\b", "middle"),
               Move(("End",), r"k = 8: alpha = 0\.66\b.*measured \d", "longest")),
        rapid=Rapid("ArrowRight", 10, r"k = 8: alpha = 0\.66\b", start=("Home",)),
    ),
]


def _run(case, lab_page, lab_server, out_dir, record_report):
    report = check_slider(lab_page, lab_server, case, out_dir)
    record_report(report)
    print(f"{case.id}: run-all {report.run_all_s:.1f} s, median key press -> new plot "
          f"{report.median_s:.3f} s over {len(report.latencies_s)} presses; "
          f"screenshots in {out_dir}")


def test_fixture_panel(lab_page, lab_server, out_dir, record_report):
    _run(FIXTURE, lab_page, lab_server, out_dir, record_report)


def test_broken_callback_fails(lab_page, lab_server, out_dir):
    """The check itself: a panel whose compute raises must make check_slider fail."""
    src = lab_server.root / FIXTURE.notebook
    broken = src.with_name("fixture_panel_broken.ipynb")
    broken.write_text(src.read_text().replace("BREAK_ABOVE = None", "BREAK_ABOVE = 0.1"))
    case = dataclasses.replace(FIXTURE, id="fixture_broken", rapid=None,
                               notebook=str(broken.relative_to(lab_server.root)))
    with pytest.raises(AssertionError, match="panel shows an error.*deliberately broken"):
        check_slider(lab_page, lab_server, case, out_dir)


@pytest.mark.parametrize("case", NOTEBOOK_CASES, ids=lambda c: c.id)
def test_notebook_slider(case, request, out_dir, record_report):
    found = sorted((REPO / "notebooks").glob(case.notebook))
    if not found:
        pytest.skip(f"notebooks/{case.notebook} has not landed yet")
    case = dataclasses.replace(case, notebook=found[0].name)
    lab_page, lab_server = request.getfixturevalue("lab_page"), request.getfixturevalue("lab_server")
    _run(case, lab_page, lab_server, out_dir, record_report)
