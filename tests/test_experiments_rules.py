"""Notebook 04's experiments: the noisy kitchen, the weight-decay sweep, which knobs pay."""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.experiments import rules as E

CFG = kl.regularize.RunConfig(max_width=32, epochs=20, record_every=10)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def pantry():
    return kl.data.pantry(n_train=60, n_val=60, n_test=10, noise=0.05, seed=0)


@pytest.fixture(scope="module")
def sweep(pantry):
    return E.decay_sweep(pantry, CFG, seeds=SEEDS)


def test_noisy_labels_flip_a_share_per_seed(pantry):
    y = E.noisy_labels(pantry, [0, 1])
    assert y.shape == (2, len(pantry.train))
    for row in y:
        assert (row != pantry.train.y).mean() == pytest.approx(E.FLIP, abs=1 / len(row))
    assert not np.array_equal(y[0], y[1])


def test_sweep_layout_then_l2_runs(sweep):
    n = len(E.SWEEP_WIDTHS) * len(E.DECAYS) * len(SEEDS)
    assert len(sweep) == n + len(SEEDS)  # the padding to BATCH is dropped
    table = E.sweep_table(sweep, np.arange(len(sweep)), seeds=SEEDS)
    assert table.shape == (len(E.SWEEP_WIDTHS), len(E.DECAYS), len(SEEDS))
    v = sweep.values
    for i, width in enumerate(E.SWEEP_WIDTHS):
        for j, lam in enumerate(E.DECAYS):
            rows = table[i, j]
            assert np.all(v["width"][rows] == width) and np.allclose(v["weight_decay"][rows], lam)
            assert np.array_equal(v["seed"][rows], SEEDS) and np.all(v["l2"][rows] == 0)
    l2_rows = E.sweep_l2(sweep, np.arange(len(sweep)), seeds=SEEDS)
    assert np.allclose(v["l2"][l2_rows], E.L2) and np.all(v["weight_decay"][l2_rows] == 0)
    assert np.all(v["width"][l2_rows] == 32) and np.array_equal(v["seed"][l2_rows], SEEDS)


def test_sweep_rows_equal_single_runs(pantry, sweep):
    k = int(E.sweep_table(sweep, np.arange(len(sweep)), seeds=SEEDS)[0, E.DECAYS.index(8.0), 1])
    one = E.rules_run(pantry, CFG, weight_decay=8.0, seed=1)
    np.testing.assert_allclose(one.val_loss[0], sweep.val_loss[k], atol=1e-4)
    l2 = E.rules_run(pantry, CFG, l2=E.L2, seed=0)
    np.testing.assert_allclose(l2.val_loss[0], E.sweep_l2(sweep, sweep.val_loss, seeds=SEEDS)[0],
                               atol=1e-4)


def test_paired_gain_subtracts_the_same_seed():
    table = np.array([[0.60, 0.65, 0.50],   # lambda = 0, seeds 0..2
                      [0.70, 0.72, 0.70],   # lambda 1
                      [0.80, 0.84, 0.70]])  # lambda 2
    gain, se = E.paired_gain(table)
    np.testing.assert_allclose(gain, [0.0, (0.10 + 0.07 + 0.20) / 3, (0.20 + 0.19 + 0.20) / 3],
                               atol=1e-6)
    assert se[0] == 0.0
    assert se[2] == pytest.approx(np.std([0.20, 0.19, 0.20], ddof=1) / np.sqrt(3), abs=1e-6)


def test_loudness_shrink_groups_knobs_by_the_free_runs_gradient_size(sweep):
    out = E.loudness_shrink(sweep, seeds=SEEDS)
    assert out["l2"].shape == out["adamw"].shape == (len(SEEDS), 4)
    assert out["rms_edges"].shape == (len(SEEDS), 5)
    assert np.all(np.diff(out["rms_edges"], axis=1) >= 0)
    # recompute seed 0's loudest quarter under L2 by hand
    table = E.sweep_table(sweep, np.arange(len(sweep)), seeds=SEEDS)
    free = int(table[E.SWEEP_WIDTHS.index(32), 0, 0])
    l2 = int(E.sweep_l2(sweep, np.arange(len(sweep)), seeds=SEEDS)[0])
    loud = sweep.kernels(free, of="grad_rms")
    top = loud >= out["rms_edges"][0, 3]
    want = np.abs(sweep.kernels(l2))[top].mean() / np.abs(sweep.kernels(free))[top].mean()
    assert out["l2"][0, 3] == pytest.approx(want, rel=1e-6)
    assert out["total_l2"][0] == pytest.approx(
        np.abs(sweep.kernels(l2)).mean() / np.abs(sweep.kernels(free)).mean(), rel=1e-6)


@pytest.mark.parametrize("mean,se,want", [
    ([[0.70, 0.71], [0.80, 0.72]], [[0.01] * 2] * 2, [[False, False], [True, False]]),
    ([[0.75, 0.76], [0.70, 0.77]], [[0.01] * 2] * 2, [[False, True], [False, True]]),
    ([0.60, 0.64, 0.65, 0.58], [0.02, 0.01, 0.01, 0.02], [False, True, True, False]),
])
def test_near_best_keeps_what_noise_cannot_separate(mean, se, want):
    assert E.near_best(np.array(mean), np.array(se)).tolist() == want


def test_grid_shares_the_sweeps_compiled_size(pantry):
    assert len(E.DROPOUTS) * len(E.WEIGHT_DECAYS) * len(E.GRID_SEEDS) <= E.BATCH
    assert len(E.SWEEP_WIDTHS) * len(E.DECAYS) * len(E.SEEDS) + len(E.SEEDS) <= E.BATCH
