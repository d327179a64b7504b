"""Recipe books: the fixed list of steps a model follows, with knobs (weights) to set.

Shape legend: B = batch of cakes, F = features per cake, H = hidden width, C = classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from kitchenlab.config import MLPConfig


def dropout(x: jax.Array, rate, key: jax.Array) -> jax.Array:
    """A burner randomly off: zero each unit with probability ``rate``, rescale the rest.

    ``rate`` may be a traced value, so one compiled training run can be vmapped over many
    dropout rates (``nnx.Dropout`` keeps its rate as a static Python float).
    """
    def drop(x):
        # uniform >= rate keeps a unit with probability 1 - rate; on CPU this is several
        # times cheaper than jax.random.bernoulli inside a scanned training step (measured).
        keep = jax.random.uniform(key, x.shape) >= rate
        return jnp.where(keep, x / (1.0 - rate), 0.0)

    if isinstance(rate, (int, float)):
        return drop(x) if rate > 0 else x
    # A traced rate: skip the random numbers when it is 0 (half of a small model's step
    # time). Under vmap over rates, cond becomes a select and both branches run.
    return jax.lax.cond(rate > 0, drop, lambda x: x, x)


class MLP(nnx.Module):
    """The cake recipe book: ``depth`` hidden stations of ``width`` knobs, then the verdict."""

    def __init__(self, config: MLPConfig, *, rngs: nnx.Rngs):
        self.config = config
        sizes = [config.n_features] + [config.width] * config.depth
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.head = nnx.Linear(sizes[-1], config.n_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None,
                 dropout_rate=None) -> jax.Array:
        """Bake: features (B, F) -> logits (B, C).

        Dropout runs only when ``dropout_key`` is given (training); at inference the
        restaurant uses every burner. ``dropout_rate`` overrides ``config.dropout``.
        """
        if x.ndim != 2 or x.shape[-1] != self.config.n_features:
            raise ValueError(
                f"x must have shape (B, {self.config.n_features}) for this model, "
                f"got shape {tuple(x.shape)}"
            )
        rate = self.config.dropout if dropout_rate is None else dropout_rate
        for i, layer in enumerate(self.hidden):
            x = jax.nn.relu(layer(x))  # (B, H)
            if dropout_key is not None:
                x = dropout(x, rate, jax.random.fold_in(dropout_key, i))
        return self.head(x)  # (B, C)


def count_params(model: nnx.Module) -> int:
    """How many knobs the recipe book has."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def make_mlp(config: MLPConfig | None = None, *, seed: int = 0) -> MLP:
    """A fresh MLP with knobs set at random from ``seed``."""
    return MLP(config or MLPConfig.default(), rngs=nnx.Rngs(seed))
