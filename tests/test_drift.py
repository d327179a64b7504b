"""kl.data.drifted_cakes and kl.drift: named drifts, effect sizes vs scipy, the alarm."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import kitchenlab as kl
from kitchenlab import data, drift

REFERENCE = data.kitchen(2000, seed=0).raw.train.x  # the training orders (1200, 8)
col = data.FEATURE_NAMES.index


# ---------------------------------------------------------------- drifted data
def test_severity_zero_is_the_kitchen_the_chef_was_trained_in():
    base = data.make_cakes(500, seed=3)
    for kind in data.DRIFTS:
        d = data.drifted_cakes(500, kind, 0.0, seed=3)
        np.testing.assert_array_equal(d.x, base.x)
        np.testing.assert_array_equal(d.y, base.y)


def test_make_cakes_is_unchanged_by_the_drift_module():
    """Other notebooks' stored outputs depend on make_cakes (and its old ``drift=``): pin a
    few of its numbers, as generated before named drifts existed."""
    cakes = data.make_cakes(5, seed=0)
    np.testing.assert_allclose(cakes.x[0], [277.39233, 232.55112, 213.17072, 2.0, 7.0799179,
                                            5.7551632, 201.96021, 40.718842], rtol=1e-6)
    np.testing.assert_array_equal(cakes.y, [0, 1, 1, 0, 0])
    drifted = data.make_cakes(400, seed=1, drift=1.0)
    assert drifted.x[:, col("oven_temp")].mean() == pytest.approx(197.72714, rel=1e-6)
    assert drifted.x[:, col("sugar")].mean() == pytest.approx(195.78717, rel=1e-6)
    assert drifted.x[:, col("oven_temp")].max() <= 230.0  # the old drift stays in range


@pytest.mark.parametrize("kind", sorted(data.DRIFTS))
def test_drifts_are_deterministic_and_keep_the_judges_bad_days(kind):
    a, b = (data.drifted_cakes(800, kind, 0.7, seed=5) for _ in range(2))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    base = data.make_cakes(800, seed=5)
    flipped = base.y != data.hidden_rule(base.x)
    real = a.x.astype(np.float64).copy()
    if kind == "hot_oven":
        real[:, col("oven_temp")] += 0.7 * data.HOT_OVEN_MAX_C
    clean = data.hidden_rule(real)
    np.testing.assert_array_equal(a.y, np.where(flipped, 1 - clean, clean))


def test_each_drift_moves_what_it_says():
    base = data.make_cakes(4000, seed=1)
    fan = data.drifted_cakes(4000, "fan_oven", 1.0, seed=1)
    np.testing.assert_allclose(fan.x[:, col("oven_temp")], base.x[:, col("oven_temp")] + 80, rtol=1e-6)
    np.testing.assert_allclose(fan.x[:, col("bake_time")], base.x[:, col("bake_time")] * 0.4, rtol=1e-6)
    hot = data.drifted_cakes(4000, "hot_oven", 1.0, seed=1)
    np.testing.assert_array_equal(hot.x, base.x)  # the same orders ...
    assert hot.y.mean() < base.y.mean() - 0.15  # ... burn more often
    sugar = data.drifted_cakes(4000, "less_sugar", 1.0, seed=1)
    np.testing.assert_allclose(sugar.x[:, col("sugar")], base.x[:, col("sugar")] * 0.3, rtol=1e-6)
    flour = data.drifted_cakes(4000, "new_flour", 1.0, seed=1)
    np.testing.assert_allclose(flour.x[:, col("flour")], base.x[:, col("flour")] * 0.4, rtol=1e-6)
    for d in (fan, sugar, flour):  # everything else stays as it was
        moved = np.any(d.x != base.x, axis=0)
        assert moved.sum() <= 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="cold_oven", severity=0.5), r"kind must be one of \['fan_oven'.*got 'cold_oven'"),
    (dict(kind="fan_oven", severity=1.5), r"severity must be a number in \[0, 1\].*got 1.5"),
    (dict(kind="fan_oven", severity=-0.1), r"severity must be a number in \[0, 1\]"),
    (dict(kind="fan_oven", severity=True), r"severity must be a number"),
    (dict(kind="fan_oven", severity="0.5"), r"severity must be a number"),
])
def test_bad_drift_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.drifted_cakes(10, **kwargs)


# ---------------------------------------------------------------- effect sizes vs references
def test_psi_by_its_definition():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=5000), rng.normal(0.3, 1.2, size=3000)
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    r = np.histogram(ref, np.r_[-np.inf, edges, np.inf])[0] / len(ref)
    c = np.histogram(cur, np.r_[-np.inf, edges, np.inf])[0] / len(cur)
    assert drift.psi(ref, cur) == pytest.approx(np.sum((c - r) * np.log(c / r)), rel=1e-9)
    assert drift.psi(ref, ref) == 0.0
    assert drift.psi(ref, rng.normal(size=3000)) < 0.02


def test_psi_handles_orders_beyond_the_reference_and_whole_eggs():
    ref = REFERENCE
    far = ref.copy()
    far[:, col("oven_temp")] += 500  # every order in the last bin
    values = drift.psi(ref, far)
    assert values.shape == (8,) and np.isfinite(values).all()
    assert values[col("oven_temp")] > 5 and values[col("flour")] == 0.0
    eggs = drift.bin_edges(ref)[col("eggs")]
    np.testing.assert_array_equal(eggs, [1, 2, 3, 4, 5])  # repeated decile edges merged


def test_wasserstein_equals_scipy():
    rng = np.random.default_rng(1)
    for n, m in ((100, 100), (300, 170), (1000, 7)):
        a, b = rng.gamma(2.0, size=n), rng.normal(1.0, 2.0, size=m)
        assert drift.wasserstein(a, b, scaled=False) == pytest.approx(
            stats.wasserstein_distance(a, b), rel=1e-9)
        assert drift.wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b) / a.std(),
                                                        rel=1e-9)
    both = drift.wasserstein(REFERENCE, REFERENCE + 1.0, scaled=False)
    np.testing.assert_allclose(both, 1.0, rtol=1e-6)


def test_ks_statistic_equals_scipy_and_p_value_is_kolmogorovs_limit():
    rng = np.random.default_rng(2)
    for n, m in ((500, 400), (2000, 3000), (50, 80)):
        a, b = rng.normal(size=n), rng.normal(0.1, 1.0, size=m)
        d, p = drift.ks_test(a, b)
        ref = stats.ks_2samp(a, b, method="asymp")
        assert d == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(stats.kstwobign.sf(np.sqrt(n * m / (n + m)) * d), rel=1e-9)
    ties_a, ties_b = rng.integers(1, 6, 500).astype(float), rng.integers(1, 5, 300).astype(float)
    assert drift.ks_test(ties_a, ties_b)[0] == pytest.approx(
        stats.ks_2samp(ties_a, ties_b).statistic, abs=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.3, 0.6, 0.99, 1.0, 1.3, 2.0, 4.0, 9.0, 20.0])
def test_kolmogorov_sf_equals_scipy(lam):
    assert drift.kolmogorov_sf(lam) == pytest.approx(stats.kstwobign.sf(lam), rel=1e-9, abs=1e-300)


# ---------------------------------------------------------------- the alarm
@pytest.mark.parametrize("n", [200, 500])
def test_no_alarm_on_undrifted_orders_across_20_seeds(n):
    for seed in range(1, 21):
        report = drift.check_drift(REFERENCE, data.make_cakes(n, seed=seed).x,
                                   names=data.FEATURE_NAMES)
        assert not report.fired, (seed, report)
        assert report.psi.max() < 0.6 * drift.AlarmConfig().psi


@pytest.mark.parametrize("kind", ["fan_oven", "less_sugar", "new_flour"])
def test_alarm_on_drifted_orders_across_20_seeds(kind):
    for seed in range(1, 21):
        report = drift.check_drift(REFERENCE, data.drifted_cakes(500, kind, 0.25, seed=seed).x,
                                   names=data.FEATURE_NAMES)
        assert report.fired, (seed, report)
        assert "orders moved" in report.reasons[0]
        assert report.worst in {"oven_temp", "bake_time", "sugar", "flour"}


def test_concept_drift_is_invisible_to_inputs_and_caught_by_reviews():
    """The oven runs hot: orders are unchanged, only late labels show the chef is wrong.
    The 'chef' here is the kitchen's own rule for the old oven (launch accuracy ~ 1 - noise)."""
    for seed in range(1, 21):
        guests = data.drifted_cakes(500, "hot_oven", 1.0, seed=seed)
        correct = data.hidden_rule(guests.x) == guests.y
        report = drift.check_drift(REFERENCE, guests.x, correct=correct, launch_accuracy=0.95)
        assert report.fired and len(report.reasons) == 1 and "reviews" in report.reasons[0]
    calm = data.make_cakes(500, seed=3)
    report = drift.check_drift(REFERENCE, calm.x, correct=data.hidden_rule(calm.x) == calm.y,
                               launch_accuracy=0.95)
    assert not report.fired


def test_too_few_orders_or_reviews_are_not_judged():
    report = drift.check_drift(REFERENCE, data.drifted_cakes(50, "fan_oven", 1.0, seed=1).x,
                               correct=np.zeros(10, bool), launch_accuracy=0.9)
    assert not report.fired
    assert any("only 50 orders" in r for r in report.reasons)
    assert any("only 10 reviews" in r for r in report.reasons)
    assert "no alarm" in str(report)


def test_report_text_names_an_ingredient_only_above_the_threshold():
    calm = drift.check_drift(REFERENCE, data.make_cakes(500, seed=2).x, names=data.FEATURE_NAMES)
    assert calm.worst is None and "(" not in str(calm).split("->")[0]
    moved = drift.check_drift(REFERENCE, data.drifted_cakes(500, "less_sugar", 1.0, seed=2).x,
                              names=data.FEATURE_NAMES)
    assert moved.worst == "sugar" and "(sugar)" in str(moved)


@pytest.mark.parametrize("call, err, match", [
    (lambda: drift.psi(REFERENCE, np.zeros((0, 8))), ValueError, r"current needs at least 2 orders"),
    (lambda: drift.psi(REFERENCE, np.zeros((5, 7))), ValueError, r"current has 7 features, the reference has 8"),
    (lambda: drift.psi(REFERENCE, np.full((5, 8), np.nan)), ValueError, r"current contains NaN"),
    (lambda: drift.psi(REFERENCE, "orders"), TypeError, r"current must be a numeric array"),
    (lambda: drift.psi(REFERENCE, REFERENCE, bins=1), ValueError, r"bins must be an int >= 2"),
    (lambda: drift.check_drift(REFERENCE, REFERENCE, correct=np.ones(5)), ValueError,
     r"correct must be a 1-D bool array"),
    (lambda: drift.check_drift(REFERENCE, REFERENCE, names=["a"]), ValueError,
     r"names lists 1 features, the orders have 8"),
    (lambda: drift.check_drift(REFERENCE, REFERENCE, config={}), TypeError,
     r"config must be an AlarmConfig"),
    (lambda: drift.AlarmConfig(psi=0), ValueError, r"psi must be a positive number"),
    (lambda: drift.AlarmConfig(min_orders=1), ValueError, r"min_orders must be an int >= 2"),
])
def test_bad_inputs_name_the_argument(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_drift_is_a_public_submodule():
    assert kl.drift.psi is drift.psi
