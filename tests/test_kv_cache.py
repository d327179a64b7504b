"""The fridge as a value: shapes, writes, rollback, memory."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitchenlab import kv_cache
from kitchenlab.config import GPTConfig
from kitchenlab.models import make_gpt

CFG = GPTConfig.tiny()  # 2 layers, width 32, 4 query heads sharing 2 key/value heads


def test_init_layout_and_memory():
    cache = kv_cache.init(CFG, batch=3, size=40)
    assert cache.n_layer == 2 and cache.batch == 3 and cache.size == 40 and cache.n_kv_head == 2
    assert cache.values[0].shape == (3 * 2, 40, 8)  # (B * H_kv, S, hd)
    assert cache.keys[0].shape == (3 * 2, 8, 40)  # keys transposed: (B * H_kv, hd, S)
    assert cache.layer_view(1, "values").shape == (3, 2, 40, 8)  # (B, H_kv, S, hd)
    assert cache.layer_view(1, "keys").shape == (3, 2, 40, 8)
    assert int(cache.length) == 0 and cache.start.tolist() == [0, 0, 0]
    total = sum(a.nbytes for a in cache.keys + cache.values)
    assert kv_cache.nbytes(CFG, 3, 40) == total
    assert kv_cache.nbytes(CFG, 3, 40, bytes_per_number=2) == total // 2
    one = kv_cache.init(CFG)  # batch 1: (H_kv, S, hd), no axis of size one
    assert one.values[0].shape == (2, CFG.context, 8) and one.keys[0].shape == (2, 8, CFG.context)
    with pytest.raises(ValueError, match="which must be 'keys' or 'values'"):
        one.layer_view(0, "cream")


def test_cache_is_a_pytree_that_jit_can_carry():
    cache = kv_cache.init(CFG, batch=2, size=16)
    leaves, treedef = jax.tree.flatten(cache)
    assert len(leaves) == 2 * CFG.n_layer + 2  # keys, values, length, start
    again = jax.jit(lambda c: kv_cache.advance(c, 3))(cache)
    assert int(again.length) == 3 and again.batch == 2


def test_write_puts_tokens_at_length():
    cache = kv_cache.advance(kv_cache.init(CFG, batch=1, size=10), 4)
    k = jnp.ones((2, 3, 8))
    new = kv_cache.write(cache, 1, k, 2 * k)
    assert int(new.length) == 4, "write does not move length; advance does"
    keys = np.asarray(new.layer_view(1))  # (B, H_kv, S, hd)
    assert (keys[:, :, 4:7] == 1).all() and (keys[:, :, :4] == 0).all() and (keys[:, :, 7:] == 0).all()
    assert (np.asarray(new.keys[1])[:, :, 4:7] == 1).all(), "stored transposed"
    assert (np.asarray(new.values[1])[:, 4:7] == 2).all()
    assert (np.asarray(new.keys[0]) == 0).all(), "other layers untouched"
    assert kv_cache.filled(kv_cache.advance(new, 3), 1).shape == (1, 2, 7, 8)


def test_rollback_hides_then_overwrites():
    cache = kv_cache.init(CFG, batch=1, size=10)
    cache = kv_cache.advance(kv_cache.write(cache, 0, jnp.ones((2, 6, 8)), jnp.ones((2, 6, 8))), 6)
    back = kv_cache.rollback(cache, 2)
    assert int(back.length) == 2
    assert (np.asarray(back.values[0])[:, 2:6] == 1).all(), "stale entries stay (masked)"
    cleared = kv_cache.rollback(cache, 2, clear=True)
    for which in ("keys", "values"):
        view = np.asarray(cleared.layer_view(0, which))
        assert (view[:, :, 2:] == 0).all() and (view[:, :, :2] == 1).all()
    assert int(kv_cache.rollback(cache, 9).length) == 6, "rollback never moves forward"
    with pytest.raises(ValueError, match="length must be >= 0"):
        kv_cache.rollback(cache, -1)


def test_prefill_then_rollback_equals_a_fresh_prefill():
    model = make_gpt(CFG, seed=1)
    tokens = jnp.asarray(np.random.default_rng(0).integers(2, 77, (1, 12)), jnp.int32)
    _, full = model(tokens, kv_cache.init(CFG, 1, 16))
    _, fresh = model(tokens[:, :5], kv_cache.init(CFG, 1, 16))
    back = kv_cache.rollback(full, 5, clear=True)
    for a, b in zip(back.keys + back.values, fresh.keys + fresh.values):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert int(back.length) == int(fresh.length) == 5


def test_bad_inputs():
    with pytest.raises(ValueError, match="batch must be a positive int"):
        kv_cache.init(CFG, batch=0)
    with pytest.raises(ValueError, match=r"size must be an int in \[1, context=64\]"):
        kv_cache.init(CFG, batch=1, size=65)
    with pytest.raises(ValueError, match=r"start must have shape \(2,\)"):
        kv_cache.init(CFG, batch=2, size=8, start=[0, 1, 2])
    assert dataclasses.is_dataclass(kv_cache.KVCache)
