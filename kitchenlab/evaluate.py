"""Tasting: how good are the cakes, on the tables that matter.

Loss and accuracy on any table, predicted probabilities, and what a training history says
(best epoch, generalization gap).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kitchenlab.data import CakeData, check_features
from kitchenlab.train import History, accuracy, cross_entropy


@nnx.jit
def _logits(model, x):
    return model(x)


def predict_logits(model: nnx.Module, x) -> np.ndarray:
    """Raw verdict scores (N, C) for normalized features (N, F); dropout off."""
    x = check_features(x, "x", n_features=model.config.n_features)
    return np.asarray(_logits(model, jnp.asarray(x)))


def predict_proba(model: nnx.Module, x) -> np.ndarray:
    """Probabilities (N, C) for each verdict (softmax of the logits)."""
    return np.asarray(jax.nn.softmax(predict_logits(model, x), axis=-1))


def evaluate(model: nnx.Module, data: CakeData) -> dict[str, float]:
    """Loss and accuracy of ``model`` on a table (eval mode: every burner on)."""
    if len(data) == 0:
        raise ValueError("data is empty: need at least one cake to taste")
    logits = jnp.asarray(predict_logits(model, data.x))
    y = jnp.asarray(data.y)
    return {"loss": float(cross_entropy(logits, y)), "accuracy": float(accuracy(logits, y))}


def best_epoch(history: History) -> int:
    """Epoch (0-based) with the lowest validation loss."""
    if history.val_loss is None or len(history.val_loss) == 0:
        raise ValueError("history has no validation losses: train with val=...")
    return int(np.argmin(history.val_loss))


def generalization_gap(history: History, *, metric: str = "accuracy") -> float:
    """Train minus validation accuracy (or validation minus train loss) at the last epoch.

    Positive means the chef does better on practice cakes than on guests.
    """
    if history.val_loss is None or history.epochs == 0:
        raise ValueError("history has no validation curve to compare with")
    if metric == "accuracy":
        return float(history.train_accuracy[-1] - history.val_accuracy[-1])
    if metric == "loss":
        return float(history.val_loss[-1] - history.train_loss[-1])
    raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
