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


# ================================================================ the chatbot chef (notebook 07)
# Shape legend for TinyGPT: B = batch of orders, T = new tokens in this call, S = cache slots,
# C = width, H = query heads, Hkv = key/value heads, G = H // Hkv (queries per kv head),
# D = head width, V = vocabulary.

import dataclasses  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from kitchenlab import kv_cache as _kv  # noqa: E402  (the fridge; imports only config)
from kitchenlab.config import GPTConfig  # noqa: E402

_NEG = -1e30  # a masked score: exp() underflows to exactly 0, and a fully masked row stays finite


def _init(std: float):
    return nnx.initializers.normal(std)


class Attention(nnx.Module):
    """Each token looks back at the earlier ones (causal self-attention, grouped queries)."""

    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        c, d = config.width, config.head_dim
        self.config = config
        proj_std = 0.02 / (2 * config.n_layer) ** 0.5  # GPT-2: residual projections scaled down
        self.query = nnx.Linear(c, c, kernel_init=_init(0.02), rngs=rngs)
        self.key_value = nnx.Linear(c, 2 * config.n_kv_head * d, kernel_init=_init(0.02), rngs=rngs)
        self.out = nnx.Linear(c, c, kernel_init=_init(proj_std), rngs=rngs)

    def __call__(self, x, layer: int, cache, positions, key_ok):
        """x (B, T, C) -> (B, T, C); writes this layer's keys/values into ``cache`` if given.

        ``positions`` (T,) are the query slots; ``key_ok`` (B, 1, 1, 1, K) marks key slots a
        row may see at all (not left padding), K = cache slots or T without a cache.
        """
        cfg = self.config
        b, t, _ = x.shape
        hkv, g, d = cfg.n_kv_head, cfg.n_head // cfg.n_kv_head, cfg.head_dim
        # queries grouped by the kv head they share: (B*Hkv, G*T, D)
        q = self.query(x).reshape(b, t, hkv, g, d).transpose(0, 2, 3, 1, 4).reshape(b * hkv, g * t, d)
        kv = self.key_value(x).reshape(b, t, 2, hkv, d)
        k = kv[:, :, 0].transpose(0, 2, 1, 3).reshape(b * hkv, t, d)  # (B*Hkv, T, D)
        v = kv[:, :, 1].transpose(0, 2, 1, 3).reshape(b * hkv, t, d)
        if cache is None:  # training: the T tokens attend to each other
            n_keys = t
            scores = jnp.einsum("bqd,bkd->bqk", q, k) * (d ** -0.5)  # (B*Hkv, G*T, T)
        else:  # into the fridge at slot `length`, then read the whole fridge
            cache = _kv.write(cache, layer, k, v)
            keys_t, v = cache.keys[layer], cache.values[layer]  # (B*Hkv, D, S), (B*Hkv, S, D)
            n_keys = cache.size
            scores = jnp.einsum("bqd,bdk->bqk", q, keys_t) * (d ** -0.5)  # (B*Hkv, G*T, S)
        causal = jnp.arange(n_keys)[None, :] <= positions[:, None]  # (T, K)
        ok = causal[None, None, None] & key_ok  # (B or 1, 1, 1, T, K)
        scores = jnp.where(ok, scores.reshape(b, hkv, g, t, n_keys), _NEG)  # (B, Hkv, G, T, K)
        probs = jax.nn.softmax(scores, axis=-1).reshape(b * hkv, g * t, n_keys)
        y = jnp.einsum("bqk,bkd->bqd", probs, v)  # (B*Hkv, G*T, D)
        y = y.reshape(b, hkv, g, t, d).transpose(0, 3, 1, 2, 4).reshape(b, t, cfg.width)
        return self.out(y), cache


class Block(nnx.Module):
    """One course: pre-norm attention, then a pre-norm MLP, each added to the residual."""

    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        c, h = config.width, config.width * config.mlp_ratio
        self.norm1 = nnx.LayerNorm(c, epsilon=1e-5, rngs=rngs)
        self.attention = Attention(config, rngs=rngs)
        self.norm2 = nnx.LayerNorm(c, epsilon=1e-5, rngs=rngs)
        self.fc = nnx.Linear(c, h, kernel_init=_init(0.02), rngs=rngs)
        self.proj = nnx.Linear(h, c, kernel_init=_init(0.02 / (2 * config.n_layer) ** 0.5),
                               rngs=rngs)

    def __call__(self, x, layer, cache, positions, key_ok):
        a, cache = self.attention(self.norm1(x), layer, cache, positions, key_ok)
        x = x + a
        x = x + self.proj(jax.nn.gelu(self.fc(self.norm2(x))))  # (B, T, C)
        return x, cache


class TinyGPT(nnx.Module):
    """The chatbot chef: reads an order character by character and writes the recipe.

    ``model(tokens)`` is the full forward pass (training): (B, T) ids -> (B, T, V) logits.
    ``model(tokens, cache)`` also reads and writes a ``kl.kv_cache.KVCache``: the T new
    tokens sit at slots ``cache.length ...`` and ``(logits, new_cache)`` comes back -- a
    prefill (T = prompt), a decode step (T = 1) or a verify pass (T = k + 1) alike.
    ``start`` (B,) marks left padding in the no-cache call (the cache carries its own).
    The output head reuses the token embedding (weight tying, as GPT-2 and nanoGPT do).
    """

    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.token_embed = nnx.Embed(config.vocab_size, config.width, embedding_init=_init(0.02),
                                     rngs=rngs)
        self.pos_embed = nnx.Embed(config.context, config.width, embedding_init=_init(0.02),
                                   rngs=rngs)
        self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.n_layer)])
        self.norm = nnx.LayerNorm(config.width, epsilon=1e-5, rngs=rngs)

    def __call__(self, tokens: jax.Array, cache: _kv.KVCache | None = None, *, start=None):
        cfg = self.config
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape (B, T), got shape {tuple(tokens.shape)}")
        b, t = tokens.shape
        if cache is None:
            if t > cfg.context:
                raise ValueError(f"tokens has {t} positions, more than the context ({cfg.context})")
            first, n_keys, padded = jnp.int32(0), t, start is not None
            start = jnp.zeros((b,), jnp.int32) if start is None else jnp.asarray(start, jnp.int32)
        else:
            if cache.batch != b:
                raise ValueError(f"cache holds {cache.batch} rows but tokens has {b}")
            if t > cache.size:
                raise ValueError(f"tokens has {t} positions, more than the cache's {cache.size} slots")
            first, start, n_keys, padded = cache.length, cache.start, cache.size, True
        positions = first + jnp.arange(t, dtype=jnp.int32)  # (T,) slots of the new tokens
        if padded:  # (B, 1, 1, 1, K): slots before a row's start are left padding
            key_ok = (jnp.arange(n_keys)[None, :] >= start[:, None])[:, None, None, None, :]
        else:  # no padding: only the causal mask (cheaper to train with)
            key_ok = jnp.ones((1, 1, 1, 1, n_keys), bool)
        pos_ids = jnp.maximum(positions[None, :] - start[:, None], 0)  # (B, T) from each prompt's start
        x = self.token_embed(tokens) + self.pos_embed(pos_ids)  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x, cache = block(x, layer, cache, positions, key_ok)
        logits = self.token_embed.attend(self.norm(x))  # (B, T, V)
        if cache is None:
            return logits
        return logits, _kv.advance(cache, t)


def make_gpt(config: GPTConfig | None = None, *, seed: int = 0) -> TinyGPT:
    """A fresh TinyGPT with knobs set at random from ``seed`` (NumPy's generator).

    Same distributions as ``TinyGPT(config, rngs=...)`` (normal 0.02, residual projections
    0.02 / sqrt(2 * n_layer), zero biases, unit norm scales), drawn on the host: built op by
    op under JAX, the initialisation compiled dozens of tiny programs (~2 s on one core, a
    notebook's budget), and jitted it still compiled for ~1.7 s. The same on every machine.
    """
    config = config or GPTConfig.default()
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(abstract_gpt(config))
    flat = nnx.to_flat_state(state)
    for path, var in flat:
        shape = var.get_value().shape
        if path[-1] == "bias":
            value = np.zeros(shape, np.float32)
        elif path[-1] == "scale":
            value = np.ones(shape, np.float32)
        else:  # kernels and embeddings
            residual = path[-2] in ("out", "proj")
            std = 0.02 / (2 * config.n_layer) ** 0.5 if residual else 0.02
            value = rng.normal(0.0, std, shape).astype(np.float32)
        var.set_value(jnp.asarray(value))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def abstract_gpt(config: GPTConfig) -> TinyGPT:
    """A TinyGPT of this shape with no weights yet (``jax.ShapeDtypeStruct`` leaves): to be filled."""
    return nnx.eval_shape(lambda: TinyGPT(config, rngs=nnx.Rngs(0)))


@dataclasses.dataclass(frozen=True)
class GPTStep:
    """The model step as a pure, hashable function ``step(params, tokens, cache)``.

    Pass it as a static argument to ``jax.jit`` and ``params`` as a traced one; inside,
    ``functools.partial(step, params)`` is the ``logits_fn(tokens, cache) -> (logits, cache)``
    that generation and speculative decoding take.
    """

    graphdef: Any  # nnx.GraphDef of a TinyGPT (hashable)
    config: GPTConfig  # its shape, for callers that size caches and buffers

    def __call__(self, params, tokens, cache=None, *, start=None):
        return nnx.merge(self.graphdef, params)(tokens, cache, start=start)


def split_gpt(model: TinyGPT) -> tuple[GPTStep, Any]:
    """``(step, params)``: the pure step and the weights it takes (``nnx.split``)."""
    if not isinstance(model, TinyGPT):
        raise TypeError(f"model must be a kl.models.TinyGPT, got {type(model).__name__}")
    graphdef, params = nnx.split(model)
    return GPTStep(graphdef, model.config), params
