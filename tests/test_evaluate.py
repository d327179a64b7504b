import numpy as np
import pytest

from kitchenlab import data, evaluate, models, train
from kitchenlab.config import MLPConfig, TrainConfig


def test_evaluate_matches_history_and_probabilities_sum_to_one():
    k = data.kitchen(300, seed=1)
    model = models.make_mlp(MLPConfig.tiny(), seed=0)
    h = train.fit(model, k.train, k.val, TrainConfig(epochs=3, batch_size=32))
    m = evaluate.evaluate(model, k.val)
    assert m["loss"] == pytest.approx(float(h.val_loss[-1]), rel=1e-5)
    assert m["accuracy"] == pytest.approx(float(h.val_accuracy[-1]), abs=1e-6)
    p = evaluate.predict_proba(model, k.val.x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert evaluate.best_epoch(h) == int(np.argmin(h.val_loss))
    gap = evaluate.generalization_gap(h)
    assert gap == pytest.approx(float(h.train_accuracy[-1] - h.val_accuracy[-1]))
    assert evaluate.generalization_gap(h, metric="loss") == pytest.approx(
        float(h.val_loss[-1] - h.train_loss[-1]))
    with pytest.raises(ValueError, match="metric must be"):
        evaluate.generalization_gap(h, metric="f1")


def test_evaluate_rejects_bad_input():
    model = models.make_mlp(MLPConfig.tiny(), seed=0)
    with pytest.raises(ValueError, match="empty"):
        evaluate.evaluate(model, data.CakeData(np.zeros((0, 8)), np.zeros(0)))
    with pytest.raises(ValueError, match="expects 8"):
        evaluate.predict_proba(model, np.zeros((2, 3)))
    h = train.History(np.ones(2), np.ones(2), None, None)
    with pytest.raises(ValueError, match="no validation"):
        evaluate.best_epoch(h)
