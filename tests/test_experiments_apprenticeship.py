"""Notebook 02's learning-rate experiments: verdict rules, one apprentice, the race.

The claims notebook 02 makes are asserted there over four apprentices; here each experiment
is checked against a reference (a fit, a hand replay of the shuffles, a crafted Race) on
small grids, so that the tests stay quick and a broken experiment fails here first.
"""

import dataclasses

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import apprenticeship as E


@pytest.fixture(scope="module")
def kitchen():
    return kl.data.kitchen()


# ---------------------------------------------------------------- verdict rules
@pytest.mark.parametrize("curve, start, word", [
    ([0.79, 0.78, 0.70], 0.8, "stuck"),  # 12.5 % below the start: less than 15 %
    ([0.6, 0.5, 0.4], 0.8, "learning"),
    ([0.5, 0.3, 0.2], 0.8, "learning"),
    ([0.5, 0.2, 0.26, 0.2], 0.8, "overshooting"),  # a day 30 % worse than the one before
    ([0.5, 0.2, 0.24, 0.2], 0.8, "learning"),  # 20 %: not a bounce
    ([0.9, 0.5, 0.4], 0.8, "overshooting"),  # day 1 more than 10 % above the start
    ([0.85, 0.6, 0.5], 0.8, "learning"),  # 6 % above the start: tolerated
    ([1.5, 1.6, 1.7], 0.8, "overshooting"),  # ends above the start
    ([0.5, np.nan], 0.8, "exploded"),
    ([], 0.8, "exploded"),
])
def test_curve_verdict_rules(curve, start, word):
    assert E.curve_verdict(np.array(curve), start) == word
    assert word in E.VERDICT_WORDS


def test_verdict_of_a_history():
    h = kl.train.History(np.array([0.5, 0.3, 0.2]), np.zeros(3), None, None)
    assert E.verdict(h, 0.8) == "learning"
    h = kl.train.History(np.array([0.5, 0.3]), np.zeros(2), None, None, diverged_at_step=40)
    assert E.verdict(h, 0.8) == "exploded"  # a diverged run is exploded whatever it kept


def test_verdict_words_state_the_thresholds():
    assert "15 %" in E.VERDICT_WORDS["stuck"] and E.STUCK_DROP == 0.15
    assert "25 %" in E.VERDICT_WORDS["overshooting"] and E.BOUNCE == 1.25
    assert "10 %" in E.VERDICT_WORDS["overshooting"] and E.ABOVE_START == 1.1


def test_default_config_sgd_is_momentum_zero():
    sgd = E.default_config()
    assert sgd.optimizer == "momentum" and sgd.momentum == 0.0
    assert E.default_config("momentum").momentum == E.MOMENTUM == 0.9
    assert E.default_config("adam").optimizer == "adam"
    assert kl.train.static_part(sgd) == kl.train.static_part(E.default_config("momentum"))
    assert len(E.LR_GRID) == 21 and E.LR_GRID[0] == pytest.approx(1e-4)
    assert E.LR_GRID[-1] == pytest.approx(10.0)


# ---------------------------------------------------------------- the race
SMALL_LRS = (1e-4, 0.01, 0.1)  # 3 sous-chefs x 3 rates = 9 runs


@pytest.fixture(scope="module")
def small_race(kitchen):
    seen = []
    race = E.race(kitchen, learning_rates=SMALL_LRS, seeds=(0, 1),
                  on_seed=lambda i, seed: seen.append((i, seed)))
    assert seen == [(0, 0), (1, 1)]
    return race


def test_race_shapes_and_verdicts(small_race):
    r = small_race
    assert r.train_loss.shape == (2, 3, 3, 20) and r.val_loss.shape == (2, 3, 3, 20)
    assert r.diverged.shape == (2, 3, 3) and not r.diverged.any()
    sgd = r.verdicts("sgd")
    assert sgd.shape == (2, 3)
    assert list(sgd[:, 0]) == ["stuck", "stuck"] and list(sgd[:, 2]) == ["learning"] * 2


def test_race_runs_equal_single_fits(kitchen, small_race):
    """A vmapped run is the same apprenticeship as one fit with that seed and rate."""
    for name, i in (("sgd", 0), ("momentum", 1), ("adam", 2)):
        h = E.lr_curves(0.01, kitchen=kitchen, optimizer=name, model_seed=1).history
        np.testing.assert_allclose(small_race.val_loss[1, i, 1], h.val_loss, rtol=1e-4,
                                   atol=1e-5)


def test_momentum_strides_like_sgd_at_ten_times_the_rate(small_race):
    """Momentum (beta 0.9) at 0.01 ends where SGD at 0.1 does: effective step lr/(1-beta)."""
    final = small_race.final_val_loss()
    np.testing.assert_allclose(final[:, 1, 1], final[:, 0, 2], atol=0.01)
    assert np.all(final[:, 0, 1] > final[:, 1, 1] + 0.05)  # not where SGD at 0.01 ends
    pairs = small_race.momentum_pairs()  # the grid (1e-4, 0.01, 0.1) has one such pair
    np.testing.assert_allclose(pairs.steps, [0.1])
    assert list(pairs.momentum_index) == [1] and list(pairs.sgd_index) == [2]
    np.testing.assert_allclose(pairs.gap[:, 0], final[:, 1, 1] - final[:, 0, 2])
    assert np.all(np.abs(pairs.mean()) < 0.01) and bool(pairs.finite()[0])


def test_momentum_pairs_on_a_crafted_race():
    """Pairs follow the grid (momentum at η with SGD at 10η); the gap is paired per seed and
    an exploded run shows as ±inf, never as a number."""
    race = _crafted_race([0.40, 0.31, 0.305, 0.20], steady=[True] * 4)  # lrs 0.01, 0.1, 1, 3
    val = race.val_loss.copy()
    val[:, 1, :, -1] = [[0.42, 0.30, 0.5, 0.6], [0.40, 0.34, 0.5, 0.6]]  # momentum, 2 seeds
    diverged = race.diverged.copy()
    diverged[1, 0, 2] = True  # SGD at 1.0 explodes for seed 1
    race = dataclasses.replace(race, val_loss=val, diverged=diverged)
    pairs = race.momentum_pairs()
    np.testing.assert_allclose(pairs.steps, [0.1, 1.0])  # 3.0 / 10 is not on the grid
    assert list(pairs.momentum_index) == [0, 1] and list(pairs.sgd_index) == [1, 2]
    np.testing.assert_allclose(pairs.gap[:, 0], [0.42 - 0.31, 0.40 - 0.31])
    assert pairs.gap[0, 1] == pytest.approx(0.30 - 0.305) and pairs.gap[1, 1] == -np.inf
    assert list(pairs.finite()) == [True, False]
    assert pairs.mean()[0] == pytest.approx(0.10) and pairs.mean()[1] == -np.inf
    se = pairs.standard_error()
    assert se[0] == pytest.approx(np.std([0.11, 0.09], ddof=1) / np.sqrt(2)) and np.isnan(se[1])


def _crafted_race(final_by_rate, steady):
    """A Race whose SGD row has the given final validation losses and steadiness."""
    lrs = np.array([0.01, 0.1, 1.0, 3.0])
    s, e = 2, 3
    good = np.linspace(0.7, 0.3, e)  # a learning train curve
    bumpy = np.array([0.3, 0.7, 0.3])  # a bounce: overshooting
    train = np.broadcast_to(good, (s, 3, len(lrs), e)).copy()
    for j, ok in enumerate(steady):
        if not ok:
            train[:, 0, j] = bumpy
    val = np.zeros((s, 3, len(lrs), e))
    val[:, :, :, -1] = 0.5
    val[:, 0, :, -1] = final_by_rate
    return E.Race(lrs, (0, 1), train, val, np.zeros_like(val), np.zeros((s, 3, len(lrs)), bool),
                  np.full(s, 0.8))


def test_best_and_good_band_ignore_lucky_overshooting_rates():
    race = _crafted_race([0.40, 0.31, 0.305, 0.20], steady=[True, True, True, False])
    lr, mean, std = race.best("sgd")
    assert lr == 1.0 and mean == pytest.approx(0.305) and std == 0.0  # not 3.0, which bounced
    np.testing.assert_array_equal(race.good_band("sgd", within=0.01), [0.1, 1.0])
    np.testing.assert_array_equal(race.good_band("sgd", within=0.2), [0.01, 0.1, 1.0])
    assert list(race.steady("sgd")) == [True, True, True, False]
