"""TinyGPT: cached decoding is the full forward pass, done one slice at a time.

Tolerance: logits agree to 2e-5 (absolute) between the cached and the full forward pass --
the same float32 arithmetic summed in a different order (a (B, T) matmul vs T matvecs).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from kitchenlab import generate, kv_cache
from kitchenlab.config import GPTConfig
from kitchenlab.models import GPTStep, TinyGPT, count_params, make_gpt, split_gpt

CFG = GPTConfig.tiny()
ATOL = 2e-5


@pytest.fixture(scope="module")
def model():
    return make_gpt(CFG, seed=3)


def _tokens(b, t, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(2, CFG.vocab_size, (b, t)), jnp.int32)


def test_shapes_and_size(model):
    tokens = _tokens(2, 10)
    assert model(tokens).shape == (2, 10, CFG.vocab_size)
    c, L, V, S, kv = CFG.width, CFG.n_layer, CFG.vocab_size, CFG.context, CFG.n_kv_head * CFG.head_dim
    per_block = 4 * c + (c * c + c) + (c * 2 * kv + 2 * kv) + (c * c + c) + 2 * (4 * c * c) + 5 * c
    assert count_params(model) == V * c + S * c + L * per_block + 2 * c


def test_cached_decoding_equals_the_full_forward_pass(model):
    tokens = _tokens(2, 20)
    full = model(tokens)
    cache = kv_cache.init(CFG, batch=2, size=24)
    outs = []
    for i in range(20):  # token by token
        logits, cache = model(tokens[:, i:i + 1], cache)
        outs.append(logits)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=ATOL)
    assert int(cache.length) == 20


def test_prefill_then_decode_equals_token_by_token(model):
    tokens = _tokens(1, 16, seed=1)
    one = kv_cache.init(CFG, 1, 16)
    step_logits = []
    for i in range(16):
        logits, one = model(tokens[:, i:i + 1], one)
        step_logits.append(logits)
    pre, cache = model(tokens[:, :11], kv_cache.init(CFG, 1, 16))  # prefill 11
    verify, cache = model(tokens[:, 11:16], cache)  # then a 5-token "verify" pass
    np.testing.assert_allclose(jnp.concatenate([pre, verify], 1),
                               jnp.concatenate(step_logits, 1), atol=ATOL)
    for a, b in zip(cache.keys + cache.values, one.keys + one.values):
        np.testing.assert_allclose(a, b, atol=ATOL)


def test_rollback_then_redecode_equals_never_having_decoded(model):
    tokens = _tokens(1, 12, seed=2)
    other = _tokens(1, 4, seed=9)
    _, cache = model(tokens[:, :8], kv_cache.init(CFG, 1, 16))
    _, wrong = model(other, cache)  # 4 tokens that will be rejected
    back = kv_cache.rollback(wrong, 8)
    redone, _ = model(tokens[:, 8:12], back)
    never, _ = model(tokens[:, 8:12], cache)
    np.testing.assert_allclose(redone, never, atol=1e-6)
    np.testing.assert_allclose(redone, model(tokens)[:, 8:12], atol=ATOL)


def test_left_padding_changes_nothing(model):
    tokens = _tokens(1, 9, seed=4)
    padded = jnp.concatenate([jnp.zeros((1, 7), jnp.int32), tokens], axis=1)
    start = jnp.array([7], jnp.int32)
    np.testing.assert_allclose(model(padded, start=start)[:, 7:], model(tokens), atol=ATOL)
    logits, cache = model(padded, kv_cache.init(CFG, 1, 20, start=start))
    np.testing.assert_allclose(logits[:, 7:], model(tokens), atol=ATOL)
    nxt = _tokens(1, 1, seed=5)
    logits, _ = model(nxt, cache)
    np.testing.assert_allclose(logits[:, 0], model(jnp.concatenate([tokens, nxt], 1))[:, -1],
                               atol=ATOL)


def test_classic_multi_head_attention_too():
    cfg = CFG.replace(n_kv_head=CFG.n_head)
    model = make_gpt(cfg, seed=0)
    tokens = _tokens(2, 8)
    logits, cache = model(tokens, kv_cache.init(cfg, 2, 8))
    np.testing.assert_allclose(logits, model(tokens), atol=ATOL)
    assert cache.values[0].shape == (2 * cfg.n_head, 8, cfg.head_dim)


def test_step_is_pure_and_hashable(model):
    step, params = split_gpt(model)
    again, _ = split_gpt(model)
    assert isinstance(step, GPTStep) and step == again and hash(step) == hash(again)
    logits_fn = jax.jit(lambda p, t, c: step(p, t, c))
    tokens = _tokens(1, 5)
    logits, cache = logits_fn(params, tokens, kv_cache.init(CFG, 1, 8))
    np.testing.assert_allclose(logits, model(tokens), atol=ATOL)
    with pytest.raises(TypeError, match="model must be a kl.models.TinyGPT"):
        split_gpt("chef")


def test_make_gpt_draws_what_the_constructor_draws():
    """make_gpt fills the weights on the host with the constructor's distributions."""
    cfg = GPTConfig.default()
    ours = split_gpt(make_gpt(cfg, seed=0))[1]
    ref = split_gpt(TinyGPT(cfg, rngs=nnx.Rngs(0)))[1]
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(ref)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        if a.std() == 0:
            np.testing.assert_array_equal(a, b)  # biases 0, norm scales 1
        else:
            assert abs(a.std() / b.std() - 1) < 0.05, jax.tree_util.keystr(path)
    again = split_gpt(make_gpt(cfg, seed=0))[1]
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(again)))


def test_bad_inputs(model):
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, T\)"):
        model(jnp.zeros((5,), jnp.int32))
    with pytest.raises(ValueError, match="more than the context"):
        model(jnp.zeros((1, CFG.context + 1), jnp.int32))
    with pytest.raises(ValueError, match="cache holds 1 rows but tokens has 2"):
        model(jnp.zeros((2, 3), jnp.int32), kv_cache.init(CFG, 1, 8))
    with pytest.raises(ValueError, match="width must be divisible by n_head"):
        GPTConfig(width=100, n_head=6)
    with pytest.raises(ValueError, match="must be a multiple of n_kv_head"):
        GPTConfig(n_head=6, n_kv_head=4)
    with pytest.raises(ValueError, match="n_layer must be >= 1"):
        GPTConfig(n_layer=0)
    assert isinstance(make_gpt(CFG), TinyGPT)


@pytest.mark.parametrize("batch", [1, 4])
def test_the_compiled_loop_copies_no_cache(batch):
    """The generation loop of the shipped shape (4 blocks, width 192) holds no cache-sized copy.

    With a (1, H, S, hd) cache XLA CPU copied every cache array on every token (32 copies
    per token, ~2x slower); (B * H_kv, S, hd) does not (see kl.kv_cache).
    """
    cfg = GPTConfig.default()
    step, params = split_gpt(make_gpt(cfg, seed=0))
    ids, start = generate.encode_prompts(["Order: Make a cake\nRecipe: "] * batch)
    max_new = 96
    hlo = generate.decode_loop.lower(
        step, params, jnp.asarray(ids), jnp.asarray(start), jnp.int32(max_new), jnp.int32(-1),
        generate.Greedy(), jax.random.key(0), max_new=max_new, use_cache=True,
        window=generate.WINDOW).compile().as_text()
    slots = ids.shape[1] + max_new
    assert "while" in hlo
    assert generate.cache_copies(hlo, slots) == []
    # The check itself finds such copies: a (1, H, S, hd) cache written and read in a loop.
    def bad_loop(cache, q):
        def body(i, c):
            c = jax.lax.dynamic_update_slice(c, q[:, :, None, :] * i, (0, 0, i, 0))
            return c + 0 * jnp.einsum("bhd,bhsd->bhs", q, c).sum()
        return jax.lax.fori_loop(0, 10, body, cache)

    bad = jax.jit(bad_loop).lower(jnp.zeros((1, 6, slots, 32)), jnp.ones((1, 6, 32)))
    assert generate.cache_copies(bad.compile().as_text(), slots)
