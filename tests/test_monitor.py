"""kl.serve.Monitor: a Service wrapped, its answers unchanged; rolling windows; late reviews;
the alarm; bad input."""

from __future__ import annotations

import numpy as np
import pytest

import kitchenlab as kl


@pytest.fixture(scope="module")
def restaurant(tmp_path_factory):
    kitchen = kl.data.kitchen(400, seed=0)
    model = kl.models.make_mlp(kl.config.MLPConfig.tiny(), seed=0)
    kl.train.fit(model, kitchen.train, kitchen.val, kl.config.TrainConfig.tiny())
    folder = kl.serve.laminate(model, tmp_path_factory.mktemp("shelf") / "chef",
                               normalizer=kitchen.normalizer)
    return kl.serve.open_restaurant(folder, batch_sizes=(1, 64)), kitchen


def _monitor(restaurant, **kwargs):
    service, kitchen = restaurant
    kwargs.setdefault("config", kl.drift.AlarmConfig.tiny())
    return kl.serve.Monitor(service, kitchen.raw.train.x, **kwargs)


def test_answers_pass_through_unchanged(restaurant):
    service, kitchen = restaurant
    mon = _monitor(restaurant)
    x = kitchen.raw.test.x[:30]
    np.testing.assert_array_equal(mon.predict(x).logits, service.predict(x).logits)
    assert [str(v) for v in mon.serve(x[:5])] == [str(v) for v in service.serve(x[:5])]
    order = kitchen.raw.test.as_dicts(1)[0]
    assert str(mon(order)[0]) == str(service(order)[0])
    assert (mon.requests, mon.orders) == (3, 36)
    np.testing.assert_array_equal(mon.last_tickets, [35])


def test_the_window_keeps_the_last_orders_in_order(restaurant):
    service, kitchen = restaurant
    mon = _monitor(restaurant, window=50)
    x = kl.data.make_cakes(130, seed=4).x
    for start in range(0, 130, 20):  # trays of 20, the last one of 10
        mon.predict(x[start:start + 20])
    np.testing.assert_array_equal(mon.window_orders(), x[-50:])
    np.testing.assert_allclose(mon.window_confidence(), service.predict(x[-50:]).confidence)
    mon.predict(kl.data.make_cakes(120, seed=5).x)  # one tray bigger than the window
    np.testing.assert_array_equal(mon.window_orders(), kl.data.make_cakes(120, seed=5).x[-50:])
    stats = mon.stats()
    assert stats["window"] == 50 and stats["orders"] == 250 and stats["requests"] == 8
    assert stats["mean"]["flour"] == pytest.approx(float(mon.window_orders()[:, 0].mean()), rel=1e-6)
    assert 0.5 <= stats["mean_confidence"] <= 1.0


def test_late_reviews_are_matched_to_their_tickets(restaurant):
    service, _ = restaurant
    mon = _monitor(restaurant, window=100, launch_accuracy=0.9)
    guests = kl.data.make_cakes(60, seed=6)
    served = mon.predict(guests.x).label_ids
    tickets = mon.last_tickets
    order = np.random.default_rng(0).permutation(60)  # reviews arrive in any order
    assert mon.review(tickets[order], guests.y[order]) == 60
    assert sorted(mon.window_correct()) == sorted(served[order] == guests.y[order])
    names = [service.labels[i] for i in guests.y[:5]]
    mon.review(tickets[:5], names)  # label names work too
    assert mon.reviews == 65
    report = mon.report()
    assert report.accuracy == pytest.approx(float(mon.window_correct().mean()))


def test_reviews_of_tickets_that_left_the_window_are_dropped(restaurant):
    mon = _monitor(restaurant, window=20)
    guests = kl.data.make_cakes(50, seed=7)
    mon.predict(guests.x)
    assert mon.review(np.arange(50), guests.y) == 20


def test_the_alarm_fires_on_drift_and_not_on_ordinary_evenings(restaurant):
    mon = _monitor(restaurant, window=300, config=kl.drift.AlarmConfig())
    calm = kl.data.make_cakes(300, seed=8)
    mon.predict(calm.x)
    assert not mon.report().fired
    mon.predict(kl.data.drifted_cakes(300, "fan_oven", 1.0, seed=9).x)
    report = mon.report()
    assert report.fired and report.worst in ("oven_temp", "bake_time")


@pytest.mark.parametrize("call, err, match", [
    (lambda m: m.review(np.array([0.5]), [1]), ValueError, r"tickets must be a 1-D int array"),
    (lambda m: m.review(np.array([0, 1]), [1]), ValueError, r"one verdict per ticket: 2 tickets, 1 labels"),
    (lambda m: m.review(np.array([0]), [7]), ValueError, r"labels must be ids in \[0, 2\) or names"),
    (lambda m: m.review(np.array([0]), ["tasty"]), ValueError, r"labels must be ids"),
    (lambda m: m.review(np.array([99]), [1]), ValueError, r"tickets must be in \[0, 3\)"),
    (lambda m: m.predict(np.zeros((0, 8))), ValueError, r"orders is empty"),
    (lambda m: m.predict(np.zeros((2, 7))), ValueError, r"orders must have shape \(B, 8\)"),
])
def test_bad_input(restaurant, call, err, match):
    mon = _monitor(restaurant)
    mon.predict(kl.data.make_cakes(3, seed=1).x)
    with pytest.raises(err, match=match):
        call(mon)
    assert (mon.orders, mon.reviews) == (3, 0)  # nothing recorded


def test_bad_construction(restaurant):
    service, kitchen = restaurant
    with pytest.raises(TypeError, match=r"service must be a kl.serve.Service"):
        kl.serve.Monitor(object(), kitchen.raw.train.x)
    with pytest.raises(ValueError, match=r"window must be an int >= 2"):
        kl.serve.Monitor(service, kitchen.raw.train.x, window=1)
    with pytest.raises(TypeError, match=r"config must be a kl.drift.AlarmConfig"):
        kl.serve.Monitor(service, kitchen.raw.train.x, config={"psi": 0.1})
    with pytest.raises(ValueError, match=r"only 0 order\(s\) served so far"):
        kl.serve.Monitor(service, kitchen.raw.train.x).report()
