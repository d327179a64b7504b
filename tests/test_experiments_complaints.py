"""Notebook 09's experiments, panel and checks, on the notebook's own chef: the claims hold
on evenings, weeks and nights the notebook does not use."""

from __future__ import annotations

import re

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import complaints as X
from kitchenlab.widgets import complaints as W


@pytest.fixture(scope="module")
def restaurant(tmp_path_factory):
    """The notebook's chef: notebook 05's recipe, laminated and opened."""
    kitchen = kl.data.kitchen(2000, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig.default(), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val,
                 kl.config.TrainConfig(optimizer="adam", learning_rate=3e-3, epochs=30))
    folder = kl.serve.laminate(model, tmp_path_factory.mktemp("shelf") / "v1",
                               normalizer=kitchen.normalizer)
    return kl.serve.open_restaurant(folder, batch_sizes=(1, 1024)), kitchen, folder


# ---------------------------------------------------------------- the world drifts
def test_accuracy_falls_and_psi_rises_with_severity(restaurant):
    service, kitchen, _ = restaurant
    for seed in (200, 201, 202):
        c = X.severity_curve(service, kitchen.raw.train.x, severities=(0.0, 0.25, 0.5, 0.75, 1.0),
                             seed=seed)
        assert np.all(np.diff(c.psi_max) > 0) and not c.fired[0] and c.fired[1:].all()
        assert abs(c.accuracy[1] - c.accuracy[0]) <= 0.03
        assert np.all(np.diff(c.accuracy[1:]) < 0)
        assert c.accuracy[-1] <= c.accuracy[0] - 0.08


def test_the_drift_table_tells_the_four_stories(restaurant):
    service, kitchen, _ = restaurant
    rows = {r["kind"]: r for r in X.drift_table(service, kitchen.raw.train.x, seed=300)}
    assert rows["fan_oven"]["input_alarm"] and rows["fan_oven"]["change"] <= -0.08
    assert not rows["hot_oven"]["input_alarm"] and rows["hot_oven"]["change"] <= -0.10
    assert rows["hot_oven"]["worst"] is None
    assert rows["less_sugar"]["input_alarm"] and rows["less_sugar"]["change"] >= -0.02
    assert rows["new_flour"]["input_alarm"] and rows["new_flour"]["change"] < 0
    assert X.input_blind_drifts() == ["hot_oven"]


def test_the_p_value_trap(restaurant):
    service, _, _ = restaurant
    for seed in (10, 11, 12):
        rows = X.pvalue_trap(service, seed=seed)
        assert [r["n"] for r in rows] == list(X.TRAP_SIZES)
        assert rows[-1]["p_value"] < 1e-3 and all(r["psi"] < X.ALARM.psi for r in rows)
        assert abs(rows[-1]["accuracy_this"] - rows[-1]["accuracy_last"]) < 0.005


def test_replay_keeps_the_old_guests_on_other_nights(restaurant):
    """The notebook's night-shift claims on three nights of reviews it does not use."""
    _, _, folder = restaurant
    parent = kl.finetune.load_parent(folder)
    old_cakes = parent.measure(kl.data.kitchen(2000, seed=0).raw.train)
    for night in (30, 31, 32):
        reviews, checks, _ = X.night_tables(parent, review_seed=night)
        shift = kl.finetune.night_shift(parent.model, reviews, replay=old_cakes, config=X.NIGHT,
                                        checks=checks, seeds=range(3), replay_on=(0.0, 1.0))
        before = shift.parent_scores
        old, new = shift.final("old guests"), shift.final("new guests")
        plain, replayed = shift.select(replay=0.0), shift.select(replay=1.0)
        assert before["new guests"] <= before["old guests"] - 0.10
        assert np.all(new - before["new guests"] >= 0.05), (night, new)
        assert np.all(np.abs(old[replayed] - before["old guests"]) <= 0.02), (night, old)
        assert np.all(old[plain] < old[replayed]), (night, old)


# ---------------------------------------------------------------- the panel
@pytest.fixture(scope="module")
def panel(restaurant):
    service, kitchen, _ = restaurant
    return W.panel(service, kitchen.raw.train.x)


SLIDER_READOUTS = {0.0: r"severity 0\.00\b.*no alarm", 0.25: r"severity 0\.25\b.*ALARM",
                   0.5: r"severity 0\.50\b", 1.0: r"severity 1\.00\b.*ALARM"}


@pytest.mark.parametrize("severity", sorted(SLIDER_READOUTS))
def test_panel_readouts_match_the_browser_case(panel, severity):
    view, png, text = panel.render(kind="fan_oven", severity=severity)
    assert re.search(SLIDER_READOUTS[severity], text), text
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert view.curve.severity.shape == (len(X.SEVERITIES),)


@pytest.mark.parametrize("kind", sorted(kl.data.DRIFTS) + ["nonsense"])
@pytest.mark.parametrize("severity", [-1.0, 0.0, 0.35, 1.0, 7.0])
def test_panel_never_raises(panel, kind, severity):
    view, _, text = panel.render(kind=kind, severity=severity)
    assert 0.0 <= view.severity <= 1.0 and "severity" in text
    assert view.kind in kl.data.DRIFTS


def test_hot_oven_readout_names_no_ingredient(panel):
    _, _, text = panel.render(kind="hot_oven", severity=1.0)
    assert "no alarm" in text and "(" not in text.split("largest PSI")[1]


def test_progress_bar_counts_epochs():
    bar = W.Progress(3, "night shift")
    bar(1, {"loss": np.array([0.5]), "old guests": np.array([0.9, 0.8]),
            "new guests": np.array([0.7, 0.7])})
    assert bar.bar.value == 2 and "old guests 0.850" in bar.text.value
    assert bar.start("night of reviews 19") is bar  # the next night: a new label, back to 0
    assert (bar.bar.value, bar.bar.description, bar.text.value) == (0, "night of reviews 19", "")


# ---------------------------------------------------------------- the checks
def test_check_ks_gap(capsys):
    def solution(a, b):
        a, b = np.sort(a), np.sort(b)
        grid = np.concatenate([a, b])
        return np.abs(np.searchsorted(a, grid, side="right") / len(a)
                      - np.searchsorted(b, grid, side="right") / len(b)).max()

    assert kl.checks.check_ks_gap(solution)
    assert not kl.checks.check_ks_gap(None)
    assert not kl.checks.check_ks_gap(lambda a, b: 0.19)
    assert not kl.checks.check_ks_gap(lambda a, b: abs(np.mean(a) - np.mean(b)))
    assert not kl.checks.check_ks_gap(lambda a, b: 1 / 0)
    assert "division by zero" in capsys.readouterr().out


@pytest.mark.parametrize("answer, ok", [("hot_oven", True), ("Hot oven", True),
                                        ("the oven runs hot", True), ("concept drift", True),
                                        ("less_sugar", False), ("fan_oven", False), ("", False),
                                        (None, False), (3, False)])
def test_check_blind_drift(answer, ok, capsys):
    assert kl.checks.check_blind_drift(answer) is ok


def test_check_frozen(restaurant, capsys):
    """The frozen station is checked knob for knob, and the habit is graded against the
    learner's own runs: a whole night (40 epochs) on other reviews, frozen, with and without
    replay."""
    _, _, folder = restaurant
    parent = kl.finetune.load_parent(folder)
    reviews, checks, _ = X.night_tables(parent, review_seed=23, n_check=1000)
    old = parent.measure(kl.data.kitchen(2000, seed=0).raw.train)
    frozen = kl.finetune.night_shift(parent.model, reviews, replay=old, config=X.NIGHT,
                                     checks=checks, freeze=(1,), seeds=(0, 1),
                                     replay_on=(0.0, 1.0))
    loose = kl.finetune.night_shift(parent.model, reviews, replay=old,
                                    config=X.NIGHT.replace(epochs=3), checks=checks,
                                    freeze=(0,), seeds=(0, 1), replay_on=(0.0, 1.0))
    for answer in ("replay", "Replay.", "experience replay", "replaying old cakes"):
        assert kl.checks.check_frozen(parent.model, frozen, answer), answer
    for answer in ("freezing", "Freeze", "frozen layers"):
        assert not kl.checks.check_frozen(parent.model, frozen, answer), answer
        assert "is not what your runs show" in capsys.readouterr().out
    for answer in (None, "both", "", 3):
        assert not kl.checks.check_frozen(parent.model, frozen, answer), answer
    assert not kl.checks.check_frozen(parent.model, loose, "replay")  # nothing frozen
    assert not kl.checks.check_frozen(parent.model, None, "replay")
    assert not kl.checks.check_frozen(parent.model, "frozen", "replay")
    only_plain = kl.finetune.night_shift(parent.model, reviews, replay=old,
                                         config=X.NIGHT.replace(epochs=3), checks=checks,
                                         freeze=(1,), seeds=(0,), replay_on=(0.0,))
    assert not kl.checks.check_frozen(parent.model, only_plain, "replay")
    assert "with and without replay" in capsys.readouterr().out
