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
    assert len(sweep) == n + len(E.L2S) * len(SEEDS)  # the padding to BATCH is dropped
    table = E.sweep_table(sweep, np.arange(len(sweep)), seeds=SEEDS)
    assert table.shape == (len(E.SWEEP_WIDTHS), len(E.DECAYS), len(SEEDS))
    v = sweep.values
    for i, width in enumerate(E.SWEEP_WIDTHS):
        for j, lam in enumerate(E.DECAYS):
            rows = table[i, j]
            assert np.all(v["width"][rows] == width) and np.allclose(v["weight_decay"][rows], lam)
            assert np.array_equal(v["seed"][rows], SEEDS) and np.all(v["l2"][rows] == 0)
    l2_rows = E.sweep_l2(sweep, np.arange(len(sweep)), seeds=SEEDS)  # (L2 lambdas, seeds)
    assert l2_rows.shape == (len(E.L2S), len(SEEDS))
    for i, lam in enumerate(E.L2S):
        rows = l2_rows[i]
        assert np.allclose(v["l2"][rows], lam) and np.all(v["weight_decay"][rows] == 0)
        assert np.all(v["width"][rows] == 32) and np.array_equal(v["seed"][rows], SEEDS)


def test_sweep_rows_equal_single_runs(pantry, sweep):
    k = int(E.sweep_table(sweep, np.arange(len(sweep)), seeds=SEEDS)[0, E.DECAYS.index(8.0), 1])
    one = E.rules_run(pantry, CFG, weight_decay=8.0, seed=1)
    np.testing.assert_allclose(one.val_loss[0], sweep.val_loss[k], atol=1e-4)
    i = E.L2S.index(E.L2_VS_DECAY)
    l2 = E.rules_run(pantry, CFG, l2=E.L2_VS_DECAY, seed=1)
    np.testing.assert_allclose(l2.val_loss[0], E.sweep_l2(sweep, sweep.val_loss, seeds=SEEDS)[i, 1],
                               atol=1e-4)
    # the wrong-verdict confidence is recorded per tasting, a probability in [0.5, 1]
    sure = sweep.val_wrong_confidence
    assert sure.shape == sweep.val_loss.shape and np.all((sure >= 0.5 - 1e-6) & (sure <= 1 + 1e-6))


def test_paired_difference_is_the_mean_and_se_of_per_seed_differences():
    m, se = E.paired_difference(np.array([0.70, 0.75, 0.72]), np.array([0.60, 0.66, 0.61]))
    d = [0.10, 0.09, 0.11]
    assert m == pytest.approx(np.mean(d), abs=1e-6)  # mean_se rounds to 6 decimals
    assert se == pytest.approx(np.std(d, ddof=1) / np.sqrt(3), abs=1e-6)
    with pytest.raises(ValueError, match="one value per seed"):
        E.paired_difference(np.zeros(3), np.zeros(4))


def test_share_kept_divides_by_the_same_seeds_run_without_rules(sweep):
    kept = E.share_kept(sweep, seeds=SEEDS)
    assert kept["adamw"].shape == (len(E.DECAYS), len(SEEDS))
    assert kept["l2"].shape == (len(E.L2S), len(SEEDS))
    np.testing.assert_allclose(kept["adamw"][0], 1.0)  # lambda = 0 is the run without rules
    table = E.sweep_table(sweep, np.arange(len(sweep)), seeds=SEEDS)
    free = int(table[E.SWEEP_WIDTHS.index(32), 0, 1])
    l2 = int(E.sweep_l2(sweep, np.arange(len(sweep)), seeds=SEEDS)[-1, 1])
    assert kept["l2"][-1, 1] == pytest.approx(
        np.abs(sweep.kernels(l2)).mean() / np.abs(sweep.kernels(free)).mean(), rel=1e-6)


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
    l2 = int(E.sweep_l2(sweep, np.arange(len(sweep)), seeds=SEEDS)[E.L2S.index(E.L2_VS_DECAY), 0])
    loud = sweep.kernels(free, of="grad_rms")
    top = loud >= out["rms_edges"][0, 3]
    want = np.abs(sweep.kernels(l2))[top].mean() / np.abs(sweep.kernels(free))[top].mean()
    assert out["l2"][0, 3] == pytest.approx(want, rel=1e-6)
    assert out["total_l2"][0] == pytest.approx(
        np.abs(sweep.kernels(l2)).mean() / np.abs(sweep.kernels(free)).mean(), rel=1e-6)


def test_near_best_pairs_by_seed():
    # each seed shifts every cell together: separate error bars would call cell 1 a tie,
    # the per-seed differences (0.01 in every seed but one) do not
    shift = np.array([0.0, 0.10, -0.08, 0.05])  # (seeds,)
    table = np.stack([0.75 + shift, 0.74 + shift + [0, 0, 0, 0.002], 0.70 + shift[::-1]])
    z = E.tie_z(table)
    assert z[0] == 0.0 and z[1] > 10 and z[2] > 0
    mean, se = E.mean_se(table)
    assert mean[0] - mean[1] < np.hypot(se[0], se[1])  # unpaired: "cannot be told apart"
    assert E.near_best(table).tolist() == [True, False, bool(z[2] <= E.TIE_Z)]
    # a cell behind by noise only (differences of either sign) ties with the best
    noisy = np.array([[0.76, 0.70, 0.74, 0.72], [0.74, 0.72, 0.72, 0.73]])
    assert E.near_best(noisy).tolist() == [True, True]
    assert E.near_best(noisy, z=0.0).tolist() == [True, False]


def test_near_best_rejects_a_table_without_seeds():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        E.near_best(np.array([0.7, 0.8]))


def test_grid_shares_the_sweeps_compiled_size(pantry):
    assert len(E.DROPOUTS) * len(E.WEIGHT_DECAYS) * len(E.GRID_SEEDS) <= E.BATCH
    assert len(E.SWEEP_WIDTHS) * len(E.DECAYS) * len(E.SEEDS) + len(E.L2S) * len(E.SEEDS) \
        <= E.BATCH
