import numpy as np
import pytest

from kitchenlab import data


def test_make_cakes_is_deterministic_and_balanced():
    a, b = data.make_cakes(500, seed=3), data.make_cakes(500, seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, data.make_cakes(500, seed=4).x)
    assert 0.35 < data.make_cakes(5000, seed=0).y.mean() < 0.65


def test_features_stay_in_their_ranges_and_eggs_are_whole():
    cakes = data.make_cakes(2000, seed=1)
    for j, f in enumerate(data.FEATURES):
        assert cakes.x[:, j].min() >= f.low and cakes.x[:, j].max() <= f.high, f.name
    eggs = cakes.x[:, data.FEATURE_NAMES.index("eggs")]
    np.testing.assert_array_equal(eggs, np.round(eggs))


def test_label_noise_flips_about_the_requested_fraction():
    clean = data.make_cakes(20000, seed=0, noise=0.0)
    noisy = data.make_cakes(20000, seed=0, noise=0.1)
    np.testing.assert_array_equal(clean.y, data.hidden_rule(clean.x))
    assert abs((clean.y != noisy.y).mean() - 0.1) < 0.01


def test_hidden_rule_burns_hot_long_bakes():
    x = np.array([[250, 100, 150, 3, 100, 5, 150, 20], [250, 100, 150, 3, 100, 5, 230, 60]],
                 dtype=np.float32)
    np.testing.assert_array_equal(data.hidden_rule(x), [1, 0])


def test_drift_moves_the_distribution():
    base, drifted = data.make_cakes(4000, seed=0), data.make_cakes(4000, seed=0, drift=1.0)
    t = data.FEATURE_NAMES.index("oven_temp")
    assert drifted.x[:, t].mean() > base.x[:, t].mean() + 5


def test_split_is_disjoint_and_complete():
    cakes = data.make_cakes(100, seed=0)
    s = data.split(cakes, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (70, 20, 10)
    rows = np.concatenate([s.train.x, s.val.x, s.test.x])
    assert len(np.unique(rows, axis=0)) == 100


def test_normalizer_fitted_on_train_only():
    k = data.kitchen(600, seed=0)
    np.testing.assert_allclose(k.train.x.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(k.train.x.std(axis=0), 1, atol=1e-4)
    assert not np.allclose(k.val.x.mean(axis=0), 0, atol=1e-5)  # guests were not peeked at
    np.testing.assert_allclose(k.normalizer.inverse(k.train.x), k.raw.train.x, rtol=1e-4, atol=1e-3)
    again = data.Normalizer.from_dict(k.normalizer.to_dict())
    np.testing.assert_array_equal(again(k.raw.val.x), k.val.x)


def test_batches_cover_the_data_once():
    cakes = data.make_cakes(100, seed=0)
    got = list(data.batches(cakes, 32, seed=0))
    assert [len(b) for b in got] == [32, 32, 32]
    assert len(np.unique(np.concatenate([b.x for b in got]), axis=0)) == 96
    assert [len(b) for b in data.batches(cakes, 32, drop_remainder=False)][-1] == 4


@pytest.mark.parametrize("batch_size,err,match", [
    (0, ValueError, "batch_size must be > 0"), (-4, ValueError, "batch_size must be > 0"),
    (101, ValueError, "larger than the dataset"), (2.0, TypeError, "batch_size must be an int"),
])
def test_bad_batch_sizes(batch_size, err, match):
    with pytest.raises(err, match=match):
        list(data.batches(data.make_cakes(100, seed=0), batch_size))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="n must be a positive int"):
        data.make_cakes(0)
    with pytest.raises(ValueError, match="noise"):
        data.make_cakes(10, noise=0.7)
    with pytest.raises(ValueError, match="no training cakes"):
        data.split(data.make_cakes(10), val_fraction=0.5, test_fraction=0.5)
    x = np.ones((3, 8), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite .* first at cake 1, column 2"):
        data.check_features(x)
    with pytest.raises(ValueError, match="has 7 features per cake, but the model expects 8"):
        data.check_features(np.ones((3, 7)), n_features=8)
    with pytest.raises(ValueError, match="empty"):
        data.check_features(np.ones((0, 8)))
    with pytest.raises(ValueError, match=r"shape \(N, F\)"):
        data.check_features(np.ones(8))
    with pytest.raises(ValueError, match="y must have shape"):
        data.CakeData(np.ones((3, 8)), np.ones(4))


def test_as_dicts_uses_feature_names():
    row = data.make_cakes(3, seed=0).as_dicts(1)[0]
    assert list(row) == list(data.FEATURE_NAMES)


def test_rule_terms_are_the_hidden_rule():
    cakes = data.make_cakes(3000, seed=2, noise=0.0)
    heat, capacity = data.rule_terms(cakes.x)
    np.testing.assert_array_equal((heat < capacity).astype(np.int32), cakes.y)
    np.testing.assert_array_equal(data.hidden_rule(cakes.x), cakes.y)


def test_boundary_bake_time_is_where_heat_meets_capacity():
    temps = np.array([150.0, 180.0, 225.0])
    capacity = np.array([0.8, 1.0, 1.3])
    minutes = data.boundary_bake_time(temps, capacity)
    heat = (temps - 120.0) / 60.0 * (minutes / 35.0)  # the rule's heat, written out
    np.testing.assert_allclose(heat, capacity, rtol=1e-12)
    with pytest.raises(ValueError, match="oven_temp must be above 120"):
        data.boundary_bake_time([120.0], 1.0)


def test_flipped_finds_exactly_the_noisy_labels():
    clean = data.make_cakes(4000, seed=5, noise=0.0)
    noisy = data.make_cakes(4000, seed=5, noise=0.1)
    np.testing.assert_array_equal(data.flipped(noisy), clean.y != noisy.y)
    assert not data.flipped(clean).any()
    assert data.accuracy_ceiling(clean) == 1.0
    assert data.accuracy_ceiling(noisy) == pytest.approx(1 - (clean.y != noisy.y).mean())
    assert 0.88 < data.accuracy_ceiling(noisy) < 0.92


def test_ceiling_refuses_normalized_tables_and_wrong_types():
    kitchen = data.kitchen(600, seed=0)
    with pytest.raises(ValueError, match="data must hold raw amounts.*flour"):
        data.flipped(kitchen.val)  # normalized: flour is a few spreads, not grams
    with pytest.raises(TypeError, match="data must be a CakeData table, got ndarray"):
        data.accuracy_ceiling(kitchen.raw.val.x)
    assert 0.9 < data.accuracy_ceiling(kitchen.raw.val) <= 1.0
