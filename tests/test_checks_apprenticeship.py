"""Notebook 02's new checks: a cap rule (several scales, so no constant passes) and the race."""

import numpy as np
import pytest

from kitchenlab.checks import apprenticeship as C
from kitchenlab.experiments import apprenticeship as E
from check_grading import ok as _ok, wrong as _wrong


@pytest.mark.parametrize("rule", [
    lambda g: 4.0 * np.median(g),
    lambda g: 3.0 * np.median(g),
    lambda g: 10.0 * float(np.percentile(g, 50)),
])
def test_median_based_caps_pass(rule, capsys):
    _ok(C.check_choose_cap, rule, capsys=capsys)


@pytest.mark.parametrize("rule", [
    lambda g: 2.0,  # a constant cannot fit notes near 0.001 and near 300
    lambda g: 2.0 * np.max(g),  # above the spikes
    lambda g: np.percentile(g, 99),  # the spikes pull a high percentile up
    lambda g: np.percentile(g, 90),  # trims 10 % of the ordinary turns
    lambda g: np.mean(g) * 3,  # the spikes pull the mean up
    lambda g: -1.0,
    lambda g: float("nan"),
])
def test_bad_cap_rules_fail(rule, capsys):
    _wrong(C.check_choose_cap, rule, capsys=capsys)


def test_cap_rule_that_raises_or_is_not_a_function(capsys):
    _wrong(C.check_choose_cap, lambda g: g.nope, capsys=capsys)
    _wrong(C.check_choose_cap, 2.0, capsys=capsys)


def test_norm_traces_cover_several_scales():
    scales = [np.median(n[~s]) for _, n, s in C._norm_traces()]
    assert min(scales) < 0.01 and max(scales) > 100
    assert any(not s.any() for _, _, s in C._norm_traces())  # one record without spikes


def _race():
    """A crafted race: Adam's steady rates 0.001 (0.31), 0.003 (0.305), 0.01 (0.40)."""
    lrs = np.array([0.001, 0.003, 0.01])
    train = np.broadcast_to(np.linspace(0.7, 0.3, 3), (2, 3, 3, 3)).copy()
    val = np.full((2, 3, 3, 3), 0.5)
    val[:, 2, :, -1] = [0.31, 0.305, 0.40]
    return E.Race(lrs, (0, 1), train, val, np.zeros_like(val), np.zeros((2, 3, 3), bool),
                  np.full(2, 0.8))


def test_best_rate(capsys):
    race = _race()
    _ok(C.check_best_rate, 0.003, race, "adam", capsys=capsys)
    _ok(C.check_best_rate, 0.001, race, "adam", capsys=capsys)  # within 0.01: a near-tie
    _wrong(C.check_best_rate, 0.01, race, "adam", capsys=capsys)
    _wrong(C.check_best_rate, None, race, "adam", capsys=capsys)
    _wrong(C.check_best_rate, "fast", race, "adam", capsys=capsys)
    _wrong(C.check_best_rate, 0.003, race, "rmsprop", capsys=capsys)


def test_new_checks_are_reexported():
    import kitchenlab as kl

    assert kl.checks.check_choose_cap is C.check_choose_cap
    assert kl.checks.check_best_rate is C.check_best_rate
