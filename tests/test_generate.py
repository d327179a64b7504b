"""Sampling strategies and the compiled generation loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitchenlab import generate, text
from kitchenlab.config import GPTConfig
from kitchenlab.models import make_gpt, split_gpt

CFG = GPTConfig.tiny().replace(context=160)
PROMPT = text.prompt("Make a birthday cake")


@pytest.fixture(scope="module")
def model():
    return make_gpt(CFG, seed=0)


def _logits(b=4, v=12, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(b, v)) * 2, jnp.float32)


# ---------------------------------------------------------------- samplers
def test_greedy_and_temperature_zero_and_top_k_one_agree():
    logits = _logits(8, 20)
    best = np.argmax(np.asarray(logits), axis=-1)
    key = jax.random.key(0)
    for sampler in (generate.Greedy(), generate.Temperature(0.0), generate.TopK(1),
                    generate.TopK(1, temperature=2.0), generate.TopP(1e-6),
                    generate.TopK(5, temperature=0.0), generate.TopP(0.9, temperature=0.0)):
        np.testing.assert_array_equal(sampler.next_token(logits, key), best, err_msg=str(sampler))
        probs = np.asarray(sampler.probs(logits))
        np.testing.assert_array_equal(probs.argmax(-1), best)
        np.testing.assert_allclose(probs.max(-1), 1.0, err_msg=str(sampler))


def test_temperature_zero_never_divides_by_zero():
    logits = _logits(2, 6)
    out = jax.jit(lambda s, l: s.probs(l))(generate.Temperature(0.0), logits)
    assert np.all(np.isfinite(np.asarray(out)))
    grads = jax.grad(lambda t: generate.Temperature(t).probs(logits)[0, 0])(0.0)
    assert np.isfinite(grads), "the t = 0 branch must not poison gradients with inf/nan either"


def test_probabilities_follow_the_textbook():
    logits = _logits(3, 10, seed=1)
    np.testing.assert_allclose(generate.Temperature(1.0).probs(logits), jax.nn.softmax(logits),
                               rtol=1e-6)
    np.testing.assert_allclose(generate.Temperature(0.5).probs(logits),
                               jax.nn.softmax(logits / 0.5), rtol=1e-5)
    top3 = np.asarray(generate.TopK(3).probs(logits))
    assert ((top3 > 0).sum(-1) == 3).all()
    kept = np.sort(np.asarray(logits), -1)[:, -3:]
    ref = np.exp(kept - kept.max(-1, keepdims=True))
    np.testing.assert_allclose(np.sort(top3, -1)[:, -3:], ref / ref.sum(-1, keepdims=True), rtol=1e-5)
    p = np.asarray(jax.nn.softmax(logits))
    nucleus = np.asarray(generate.TopP(0.8).probs(logits))
    for row, prow in zip(nucleus, p):
        order = np.argsort(-prow)
        n = int(np.searchsorted(np.cumsum(prow[order]), 0.8) + 1)  # fewest reaching 0.8
        assert set(np.flatnonzero(row)) == set(order[:n].tolist())
    for s in (generate.Greedy(), generate.Temperature(1.3), generate.TopK(4, 0.7), generate.TopP(0.5)):
        np.testing.assert_allclose(np.asarray(s.probs(logits)).sum(-1), 1.0, rtol=1e-5)


def test_sampling_draws_from_the_stated_distribution():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    keys = jax.random.split(jax.random.key(1), 20000)
    for sampler, expected in ((generate.Temperature(1.0), [0.5, 0.3, 0.15, 0.05]),
                              (generate.TopK(2), [0.625, 0.375, 0, 0])):
        draws = jax.vmap(lambda k: sampler.next_token(logits, k)[0])(keys)
        freq = np.bincount(np.asarray(draws), minlength=4) / len(keys)
        np.testing.assert_allclose(freq, expected, atol=0.015)  # ~4 standard errors


def test_sampler_settings_are_traced_not_compiled_in():
    traces = []

    @jax.jit
    def pick(sampler, logits, key):
        traces.append(1)
        return sampler.next_token(logits, key)

    logits, key = _logits(), jax.random.key(0)
    for t in (0.0, 0.5, 1.0, 2.0):
        pick(generate.TopK(3, t), logits, key)
    pick(generate.TopK(7, 1.0), logits, key)
    assert len(traces) == 1


def test_bad_sampler_settings():
    with pytest.raises(ValueError, match=r"temperature must be >= 0 \(0 means greedy\), got -0.5"):
        generate.Temperature(-0.5)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        generate.TopK(0)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\], got 0"):
        generate.TopP(0.0)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\], got 1.5"):
        generate.TopP(1.5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate.TopP(0.5, temperature=float("nan"))
    with pytest.raises(TypeError, match="temperature must be a number"):
        generate.Temperature("hot")


# ---------------------------------------------------------------- the loop
def test_generation_is_reproducible_and_seeded(model):
    hot = generate.Temperature(1.5)
    a = generate.generate(model, PROMPT, max_new_tokens=40, sampler=hot, seed=7)
    b = generate.generate(model, PROMPT, max_new_tokens=40, sampler=hot, seed=7)
    c = generate.generate(model, PROMPT, max_new_tokens=40, sampler=hot, seed=8)
    assert a.text == b.text and np.array_equal(a.tokens, b.tokens)
    assert a.text != c.text


def test_cache_and_recompute_modes_and_stream_agree(model):
    with_cache = generate.generate(model, PROMPT, max_new_tokens=50, stop_at_end=False)
    without = generate.generate(model, PROMPT, max_new_tokens=50, stop_at_end=False,
                                use_cache=False)
    assert with_cache.text == without.text and len(with_cache.text) == 50
    assert "".join(generate.stream(model, PROMPT, max_new_tokens=50)) == with_cache.text


def test_batch_rows_equal_single_generation(model):
    prompts = [PROMPT, text.prompt("Something quick with apples, for 4 people"), "Order: x\n"]
    batch = generate.generate(model, prompts, max_new_tokens=30, stop_at_end=False)
    for row, p in enumerate(prompts):
        single = generate.generate(model, p, max_new_tokens=30, stop_at_end=False)
        assert batch.texts[row] == single.text
    assert batch.tokens.shape == (3, 64) and (batch.counts == 30).all()


def test_stops_at_the_end_of_the_recipe():
    """A model that always says <end> after 3 characters: rows stop and pad."""
    m = make_gpt(CFG, seed=0)
    step, params = split_gpt(m)
    end = text.CharTokenizer().end_id
    # bias the output towards <end> through the final norm's bias and the tied embedding
    embedding = params["token_embed"]["embedding"]
    embedding[...] = embedding[...].at[end].set(5.0)
    params["norm"]["bias"][...] = jnp.full((CFG.width,), 5.0)
    out = generate.generate((step, params), [PROMPT, PROMPT + "x"], max_new_tokens=20)
    assert out.ended.all() and (out.counts == 1).all() and out.texts == ("", "")
    assert (out.tokens[:, 1:] == 0).all()


def test_one_compilation_per_shape_bucket(model):
    """Different prompts, temperatures, seeds and lengths in one bucket: no recompilation.

    Buckets: prompts padded to 33-64 tokens, outputs of 33-64 tokens.
    """
    hot = generate.TopK(5, 1.0)
    generate.generate(model, PROMPT, max_new_tokens=40, sampler=hot)
    before = generate.decode_loop._cache_size()
    for i, (order, t, n) in enumerate([("Make a plum pie, please", 0.0, 40),
                                       ("Soup for 2, with leeks", 0.7, 33),
                                       ("Something quick with pears", 1.9, 64)]):
        generate.generate(model, text.prompt(order), max_new_tokens=n,
                          sampler=generate.TopK(3 + i, t), seed=i)
    assert generate.decode_loop._cache_size() == before
    generate.generate(model, PROMPT, max_new_tokens=65, sampler=hot)  # a bigger output bucket
    assert generate.decode_loop._cache_size() == before + 1


def test_window_sizes_cover_the_text():
    assert generate._window_sizes(32, 64, 32) == (32, 64, 96)
    assert generate._window_sizes(20, 30, 16) == (32, 48, 50)
    assert generate.plan(32, 1, 512) == 64 and generate.plan(32, 65, 512) == 128
    assert generate.plan(448, 64, 512) == 64


def test_bad_requests(model):
    with pytest.raises(ValueError, match=r"prompts\[0\] is empty"):
        generate.generate(model, "  ")
    with pytest.raises(ValueError, match=r"character\(s\) outside the tokenizer's vocabulary"):
        generate.generate(model, "Order: crème brûlée\n")
    replaced = generate.generate(model, "Order: crème\n", max_new_tokens=2, errors="replace")
    assert replaced.prompts == ("Order: crème\n",)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1, got 0"):
        generate.generate(model, PROMPT, max_new_tokens=0)
    with pytest.raises(ValueError, match=r"the prompt takes 192 tokens \(padded\), but the context"):
        generate.generate(model, "a" * 170)
    with pytest.raises(ValueError, match=r"max_new_tokens must be <= 96 \(context 160 minus the "
                                         r"prompt's 64 padded tokens\), got 97"):
        generate.generate(model, PROMPT, max_new_tokens=97)
    with pytest.raises(ValueError, match=r"buffer must be an int in \[max_new_tokens=40, 96\]"):
        generate.generate(model, PROMPT, max_new_tokens=40, buffer=20)
    with pytest.raises(TypeError, match="sampler must be one of"):
        generate.generate(model, PROMPT, sampler="greedy")
    with pytest.raises(TypeError, match="model must be a kl.models.TinyGPT"):
        generate.generate("chef", PROMPT)
    with pytest.raises(ValueError, match="prompts must be a non-empty str or list"):
        generate.generate(model, [])


def test_tokens_per_second_reports_a_measurement(model):
    fast = generate.tokens_per_second(model, PROMPT, 32, repeats=2)
    assert fast["tokens_per_s"] > 0 and len(fast["times"]) == 2 and fast["n_tokens"] == 32
