"""Notebook 08's experiments on the shipped chefs: the grid's deterministic parts, the
chi-square tests against known values, and the measurements' plumbing."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from kitchenlab.experiments import frosting as F


@pytest.fixture(scope="module")
def kitchen():
    return F.open_kitchen(recipes=300)


@pytest.fixture(scope="module")
def grid(kitchen):
    return F.measure_grid(kitchen, names=("commis", "perfect", "apprentice"), ks=(1, 4),
                          repeats=1)


def test_grid_shapes_and_greedy_identity(grid):
    assert grid.seconds.shape == grid.acceptance.shape == (3, 2)
    assert grid.kinds.shape == (3, 2, F.N_TOKENS)
    assert grid.identical.all()  # every greedy service wrote the target's own text
    assert np.all(grid.seconds > 0) and grid.baseline_s > 0
    assert set(grid.v) == {2, 5} and all(v > 0 for v in grid.v.values())
    assert set(grid.c) == {"commis", "perfect", "apprentice"}


def test_the_perfect_draft_is_always_kept_and_the_apprentice_almost_never(grid):
    p, a = grid.drafts.index("perfect"), grid.drafts.index("apprentice")
    assert np.all(grid.acceptance[p] == 1.0)
    # k + 1 tokens per pass, but the last round may stop short of 256
    assert np.all(grid.tokens_per_call[p] >= np.array(grid.ks) + 1 - 0.1)
    assert np.all(grid.acceptance[a] < 0.2) and np.all(grid.tokens_per_call[a] < 1.3)
    c = grid.drafts.index("commis")
    assert np.all(grid.tokens_per_call[c] < grid.tokens_per_call[p])
    assert (grid.rounds * grid.tokens_per_call == pytest.approx(F.N_TOKENS))


def test_predictions_use_the_formula(grid):
    from kitchenlab.speculative import predicted_speedup

    j = grid.ks.index(4)
    d = grid.drafts.index("commis")
    assert grid.predicted("commis", 4) == pytest.approx(predicted_speedup(
        float(grid.acceptance[d, j]), 4, grid.c["commis"], grid.v[5]))
    assert grid.speedup_over_all_k("commis") > 0


def test_measure_grid_needs_the_perfect_draft(kitchen):
    with pytest.raises(ValueError, match="names must include 'perfect'"):
        F.measure_grid(kitchen, names=("commis",), ks=(1,), repeats=1)


def test_pass_costs_and_its_errors(kitchen):
    v = F.pass_costs(kitchen.target, (5,), n=5, repeats=2)
    assert set(v) == {5} and v[5] > 0.5
    with pytest.raises(ValueError, match="widths must be ints"):
        F.pass_costs(kitchen.target, (0,))


def test_one_core_restores_the_affinity():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this system")
    before = os.sched_getaffinity(0)
    with F.one_core():
        assert len(os.sched_getaffinity(0)) == 1
    assert os.sched_getaffinity(0) == before


def test_speculative_samples_follow_the_target(kitchen):
    probs = F.next_token_probs(kitchen, "Birthday ")
    assert probs.shape == (77,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    counts = F.first_token_counts(kitchen, "chef", "Birthday ", n=150, seed=5)
    assert counts.sum() == 150
    assert F.chi_square(counts, probs)[2] > 1e-3


# ---------------------------------------------------------------- the tests' own arithmetic
@pytest.mark.parametrize("stat,dof,p", [(3.841458820694124, 1, 0.05), (10.0, 5, 0.0752352),
                                        (0.5, 3, 0.9188914), (40.0, 10, 1.6944744e-05),
                                        (0.0, 4, 1.0)])
def test_chi2_tail_matches_known_values(stat, dof, p):
    assert F._chi2_sf(stat, dof) == pytest.approx(p, rel=1e-4)


def test_chi_square_tells_a_fair_sample_from_a_wrong_one():
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    fair = np.bincount(rng.choice(5, 4000, p=p), minlength=5)
    skewed = np.bincount(rng.choice(5, 4000, p=[0.45, 0.3, 0.15, 0.1, 0.0]), minlength=5)
    assert F.chi_square(fair, p)[2] > 0.01
    assert F.chi_square(skewed, p)[2] < 1e-6
    assert F.chi_square_two(fair, np.bincount(rng.choice(5, 4000, p=p), minlength=5))[2] > 0.01
    assert F.chi_square_two(fair, skewed)[2] < 1e-6
    stat, dof, _ = F.chi_square([9, 1, 0], [0.9, 0.05, 0.05])  # rare bins pooled
    assert dof == 1 and math.isfinite(stat)


def test_ceiling():
    assert F.ceiling({5: 2.5}, 4) == pytest.approx(2.0)
    assert math.isnan(F.ceiling({5: float("inf")}, 4))
