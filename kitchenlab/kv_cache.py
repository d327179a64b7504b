"""Whipped cream kept in the fridge: the KV cache as an ordinary value (init, write, rollback).

Generating token by token, a transformer would recompute the keys and values of every
earlier token at every step. The cache keeps them: each layer's keys and values for the
positions written so far, plus ``length`` (how many positions hold real cream). A model step
takes a cache and returns a new one -- nothing is mutated, so a cache can be copied, kept,
compared or rolled back (speculative decoding drops the tokens a verifier rejected).

Layout (one pair of arrays per layer, measured on XLA CPU, see benchmarks/bench_gen.py):

* values are ``(B * H_kv, S, hd)``: batch B, key/value heads H_kv, S cache slots, head
  width hd -- the bytes of the usual ``(B, H_kv, S, hd)`` with the first two axes merged.
  For batch 1 that is ``(H_kv, S, hd)``: no axis of size 1, which matters -- with a
  ``(1, H, S, hd)`` cache XLA CPU copied every cache array on every token (32 cache-sized
  copies per token for 4 layers, ~2x slower).
* keys are stored transposed, ``(B * H_kv, hd, S)``: the scores q . K^T then read them in
  the order the matrix product wants. Stored like the values, XLA CPU repacked every
  layer's keys on every token (that product took 2.7x the time of probs . V); transposed,
  decoding ran 5-7 % faster at batch 1 and 13-24 % at batch 16 (same run, one core).
  ``layer_view(i, "keys")`` gives the usual ``(B, H_kv, S, hd)`` view (a transposed copy).
* heads before positions: ``(B, H, S, hd)`` decoded ~3x faster than ``(B, S, H, hd)`` (a
  transpose per token otherwise);
* one array per layer, not one stacked array: updating a slice of a stacked array made XLA
  copy it.

Writes use ``lax.dynamic_update_slice`` at ``length``: a prefill writes a whole prompt in
one call, a decode step writes one token, a verify pass writes k + 1. ``start`` holds, per
batch row, how many left-padding slots precede the prompt (0 without padding): attention
ignores them and positions count from there.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kitchenlab.config import GPTConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    """The fridge: per-layer keys and values, the filled length and per-row padding."""

    keys: tuple  # per layer: (B * H_kv, hd, S) float32 (transposed: see the module notes)
    values: tuple  # per layer: (B * H_kv, S, hd) float32
    length: jax.Array  # () int32: slots [0, length) hold cream (the same for every row)
    start: jax.Array  # (B,) int32: left-padding slots of each row (masked out)
    batch: int = dataclasses.field(metadata={"static": True}, default=1)  # rows B

    @property
    def n_layer(self) -> int:
        return len(self.keys)

    @property
    def n_kv_head(self) -> int:
        return self.values[0].shape[0] // self.batch

    @property
    def size(self) -> int:
        """Slots S: the most positions this cache can hold."""
        return self.values[0].shape[1]

    def layer_view(self, layer: int, which: str = "keys") -> jax.Array:
        """Layer ``layer``'s keys or values as ``(B, H_kv, S, hd)``."""
        if which not in ("keys", "values"):
            raise ValueError(f"which must be 'keys' or 'values', got {which!r}")
        arr = self.values[layer] if which == "values" else self.keys[layer].transpose(0, 2, 1)
        return arr.reshape(self.batch, self.n_kv_head, *arr.shape[1:])


def init(config: GPTConfig, batch: int = 1, size: int | None = None, *, start=None,
         dtype=jnp.float32) -> KVCache:
    """An empty fridge for ``batch`` rows and ``size`` slots (default: the whole context)."""
    size = config.context if size is None else size
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= config.context:
        raise ValueError(f"size must be an int in [1, context={config.context}], got {size!r}")
    rows = batch * config.n_kv_head
    keys = tuple(jnp.zeros((rows, config.head_dim, size), dtype) for _ in range(config.n_layer))
    values = tuple(jnp.zeros((rows, size, config.head_dim), dtype) for _ in range(config.n_layer))
    start = jnp.zeros((batch,), jnp.int32) if start is None else jnp.asarray(start, jnp.int32)
    if start.shape != (batch,):
        raise ValueError(f"start must have shape ({batch},), got {tuple(start.shape)}")
    return KVCache(keys, values, jnp.int32(0), start, batch)


def write(cache: KVCache, layer: int, k: jax.Array, v: jax.Array) -> KVCache:
    """Put T new tokens' keys and values (each ``(B * H_kv, T, hd)``) of ``layer`` at ``length``.

    Keys go in transposed (the cache keeps them ``(B * H_kv, hd, S)``).

    ``length`` itself moves on in ``advance`` (once, after every layer has written).
    """
    zero = jnp.int32(0)
    keys = list(cache.keys)
    values = list(cache.values)
    keys[layer] = lax.dynamic_update_slice(  # keys transposed: (B*H_kv, hd, T) at column `length`
        keys[layer], k.transpose(0, 2, 1).astype(keys[layer].dtype), (zero, zero, cache.length))
    values[layer] = lax.dynamic_update_slice(
        values[layer], v.astype(values[layer].dtype), (zero, cache.length, zero))
    return dataclasses.replace(cache, keys=tuple(keys), values=tuple(values))


def advance(cache: KVCache, n) -> KVCache:
    """``length += n``: the n tokens just written now count as cream in the fridge."""
    return dataclasses.replace(cache, length=cache.length + jnp.int32(n))


def rollback(cache: KVCache, length, *, clear: bool = False) -> KVCache:
    """Forget everything from slot ``length`` on (e.g. draft tokens a verifier rejected).

    The old entries stay in the arrays but are invisible: attention only reads slots below
    the query's position, and the next write overwrites them. ``clear=True`` also zeroes
    them (a full pass over the cache; useful to compare a cache with a fresh one).
    """
    if isinstance(length, (int, np.integer)) and length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    length = jnp.minimum(jnp.asarray(length, jnp.int32), cache.length)
    cache = dataclasses.replace(cache, length=length)
    if not clear:
        return cache
    keep = jnp.arange(cache.size) < length  # (S,)
    return dataclasses.replace(
        cache, keys=tuple(jnp.where(keep[None, None, :], a, 0) for a in cache.keys),
        values=tuple(jnp.where(keep[None, :, None], a, 0) for a in cache.values))


def filled(cache: KVCache, layer: int = 0, which: str = "keys") -> np.ndarray:
    """The filled slots of one layer as a NumPy array ``(B, H_kv, length, hd)``."""
    return np.asarray(cache.layer_view(layer, which))[:, :, : int(cache.length)]


def nbytes(config: GPTConfig, batch: int, size: int, *, bytes_per_number: int = 4) -> int:
    """Bytes of a full fridge: 2 (keys, values) x layers x batch x H_kv x slots x hd x bytes."""
    return (2 * config.n_layer * batch * config.n_kv_head * size * config.head_dim
            * bytes_per_number)
