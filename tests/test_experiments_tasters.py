"""Notebook 03's experiments: seeds as a grid axis, means and errors, trends read over rows."""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import tasters as E

CFG = kl.regularize.RunConfig(max_width=32, epochs=10, record_every=5)


def test_mean_se_is_the_sample_error_over_the_last_axis():
    values = np.array([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]])
    mean, se = E.mean_se(values)
    np.testing.assert_allclose(mean, [0.2, 1.0], atol=1e-6)
    np.testing.assert_allclose(se, [0.1 / np.sqrt(3), 0.0], atol=1e-6)


@pytest.mark.parametrize("mean,se,direction,holds", [
    ([0.20, 0.15, 0.10, 0.05], [0.01] * 4, "falls", True),
    ([0.20, 0.15, 0.10, 0.05], [0.01] * 4, "rises", False),
    ([0.05, 0.10, 0.15, 0.20], [0.01] * 4, "rises", True),
    ([0.20, 0.19, 0.20, 0.05], [0.01] * 4, "falls", True),  # a step back of 0.7 SE: noise
    ([0.20, 0.10, 0.16, 0.05], [0.01] * 4, "falls", False),  # a step back of 4 SE: real
    ([0.20, 0.19, 0.18, 0.17], [0.02] * 4, "falls", False),  # the whole fall is only 1 SE
])
def test_trend_reads_a_row_against_its_noise(mean, se, direction, holds):
    assert E.trend(mean, se, direction).holds(total=2, step=1) is holds


def test_trend_numbers_and_bad_direction():
    t = E.trend([0.3, 0.2, 0.25, 0.1], [0.01, 0.01, 0.01, 0.01], "falls")
    assert t.total_z == pytest.approx(0.2 / np.sqrt(2e-4))
    assert t.worst_step_z == pytest.approx(0.05 / np.sqrt(2e-4))
    with pytest.raises(ValueError, match="direction must be 'rises' or 'falls'"):
        E.trend([1, 2], [0.1, 0.1], "grows")


def test_noisy_label_grid_flips_practice_labels_per_seed_and_matches_the_grid_size():
    pantry = kl.data.pantry(n_train=400, n_val=50, n_test=10, seed=0)
    seeds = (0, 1)
    noisy = E.noisy_label_grid(pantry, CFG, seeds=seeds)
    assert len(noisy) == len(E.WIDTHS) * len(E.FLIPS) * len(seeds)  # = the grid's size
    assert len(noisy) == len(E.WIDTHS) * len(E.SIZES) * len(seeds)
    assert np.all(noisy.values["n_train"] == E.NOISY_CAKES)
    assert np.allclose(noisy.values["learning_rate"], E.NOISY_LEARNING_RATE)
    shape = (len(E.WIDTHS), len(E.FLIPS))
    per = E.per_seed(noisy, noisy.train_loss, shape)
    assert per.shape == (*shape, len(seeds), len(noisy.epochs))
    flips = E.per_seed(noisy, noisy.values["flip"], shape)
    assert np.all(flips[:, 2] == E.FLIPS[2])


def test_at_lowest_loss_picks_each_runs_own_best_tasting():
    pantry = kl.data.pantry(n_train=60, n_val=40, n_test=10, seed=0)
    runs = kl.regularize.run_many(pantry, CFG, width=[4, 32], seed=[0, 1], learning_rate=1e-2)
    best = np.argmin(runs.val_loss, axis=1)
    got = E.at_lowest_loss(runs, runs.val_accuracy)
    np.testing.assert_array_equal(got, runs.val_accuracy[np.arange(2), best])
    np.testing.assert_array_equal(E.at_lowest_loss(runs, runs.val_loss), runs.val_loss.min(axis=1))
    with pytest.raises(ValueError, match="one recorded curve per run"):
        E.at_lowest_loss(runs, runs.val_accuracy[:, -1])
