"""Speculative decoding: greedy identity, exact acceptances, fair sampling, caches, compiles."""

import dataclasses
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitchenlab import drafts, generate, kv_cache, pretrain, speculative, text
from kitchenlab.config import GPTConfig
from kitchenlab.experiments import frosting
from kitchenlab.models import make_gpt, split_gpt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compile_count import count_compiles  # noqa: E402

ORDERS = ("Make a birthday cake", "Make some ginger cookies", "Soup for 4, with leeks",
          "Something quick with pears", "Cook me a rustic stew with beans",
          "I would like some pancakes with berries")
BUFFER = 192


@pytest.fixture(scope="module")
def target():
    return split_gpt(pretrain.load("target"))


@pytest.fixture(scope="module")
def chef():
    return split_gpt(pretrain.load("draft"))


@pytest.fixture(scope="module")
def kitchen(chef):
    """The commis and the draft chef on one menu: one compiled program for both."""
    return drafts.menu(commis=drafts.build_commis(text.make_corpus(1000, seed=0)), chef=chef)


# ---------------------------------------------------------------- greedy: the target's own text
def test_greedy_is_the_targets_own_text_for_every_k(target, kitchen):
    for order in ORDERS:
        prompt = text.prompt(order)
        plain = generate.generate(target, prompt, max_new_tokens=BUFFER).text
        for name in ("commis", "chef"):
            for k in range(1, 9):
                spec = speculative.speculate(target, drafts.choose(kitchen, name), prompt, k=k,
                                             max_new_tokens=BUFFER)
                assert spec.text == plain, (order, name, k)
                assert 0 < spec.acceptance <= 1 and 1 <= spec.tokens_per_call <= k + 1
                assert spec.drafted <= k * spec.rounds


def test_one_program_for_every_k_draft_order_temperature_and_seed(target, kitchen):
    speculative.speculate(target, drafts.choose(kitchen, "commis"), text.prompt(ORDERS[0]),
                          max_new_tokens=40, buffer=BUFFER)
    with count_compiles() as n:
        for i, k in enumerate(range(1, 9)):
            speculative.speculate(target, drafts.choose(kitchen, i % 2), text.prompt(ORDERS[i % 6]),
                                  k=k, max_new_tokens=30 + i, temperature=(0.0, 0.7, 1.0)[i % 3],
                                  seed=i, buffer=BUFFER)
    assert n[0] == 0, f"{n[0]} programs compiled for new k / draft / order / temperature / seed"


# ---------------------------------------------------------------- a fake pair, exactly known
def simulate(target_text, draft_text, p, n_new, k):
    """What greedy speculation must do when the target always writes target_text[slot] and
    the draft always guesses draft_text[slot]: (rounds, accepted, bonus, kinds)."""
    n, rounds, accepted, bonus, kinds = 0, 0, 0, 0, []
    while n < n_new:
        kk = min(k, n_new - n)
        a = 0
        while a < kk and draft_text[p + n + a] == target_text[p + n + a]:
            a += 1
        kinds += [speculative.ACCEPTED] * a + [speculative.BONUS if a == kk else speculative.CORRECTED]
        rounds, accepted, bonus, n = rounds + 1, accepted + a, bonus + (a == kk), n + a + 1
    return rounds, accepted, bonus, kinds[:n_new]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_fake_pair_accepts_exactly_what_agrees(k):
    rng = np.random.default_rng(k)
    p, n_new = 32, 60
    answer = rng.integers(2, 77, p + n_new + 1).astype(np.int32)
    guesses = answer.copy()
    wrong = rng.random(answer.size) < 0.3  # the draft is wrong at 30 % of the slots
    guesses[wrong] = (answer[wrong] - 1) % 75 + 2
    target, draft = drafts.perfect_draft(answer), drafts.perfect_draft(guesses)
    tokens, kinds, count, counts = speculative.speculative_loop(
        target[0], target[1], draft[0], draft[1], jnp.asarray(answer[None, :p]),
        jnp.zeros(1, jnp.int32), jnp.int32(n_new), jnp.int32(-1), jnp.int32(k), jnp.float32(0),
        jax.random.key(0), max_new=n_new, k_max=8)
    rounds, accepted, bonus, expected_kinds = simulate(answer, guesses, p, n_new, k)
    assert int(count) == n_new
    np.testing.assert_array_equal(np.asarray(tokens), answer[p: p + n_new])
    assert (int(counts.rounds), int(counts.accepted), int(counts.bonus)) == (rounds, accepted, bonus)
    np.testing.assert_array_equal(np.asarray(kinds), expected_kinds)


def test_a_draft_equal_to_the_target_is_always_right(chef):
    prompt = text.prompt("Make a plum pie, please")
    for temperature in (0.0, 1.0):
        spec = speculative.speculate(chef, chef, prompt, k=4, max_new_tokens=120,
                                     temperature=temperature, seed=3, stop_at_end=False)
        assert spec.accepted == spec.drafted and spec.acceptance == 1.0
        assert spec.bonus == spec.rounds and spec.tokens_per_call == 5.0
    greedy = generate.generate(chef, prompt, max_new_tokens=120, stop_at_end=False)
    assert speculative.speculate(chef, chef, prompt, k=4, max_new_tokens=120,
                                 stop_at_end=False).text == greedy.text


# ---------------------------------------------------------------- sampling keeps the target's law
@dataclasses.dataclass(frozen=True)
class MarkovStep:
    """A fake chef on 4 tokens: the next token's logits depend on this token only."""

    vocab_size: int = 4

    def init_cache(self, batch, size, start=None):
        return drafts.PositionCache(jnp.int32(0))

    def __call__(self, table, tokens, cache):
        return table[tokens], drafts.PositionCache(cache.length + tokens.shape[1])


def sequence_counts(loop, t_table, d_table, temperature, n, k=2, n_new=3):
    """How often each 3-token continuation came out of ``n`` vmapped samples: (64,)."""
    step = MarkovStep()
    prompt = jnp.array([[0, 1, 2, 3]], jnp.int32)

    def one(key):
        tokens = loop(step, t_table, step, d_table, prompt, jnp.zeros(1, jnp.int32),
                      jnp.int32(n_new), jnp.int32(-1), jnp.int32(k), jnp.float32(temperature),
                      key, max_new=8, k_max=4)[0]
        return tokens[0] * 16 + tokens[1] * 4 + tokens[2]

    codes = jax.vmap(one)(jax.random.split(jax.random.key(42), n))
    return np.bincount(np.asarray(codes), minlength=64)


def exact_probs(t_table, temperature):
    p = np.asarray(jax.nn.softmax(t_table / temperature, axis=-1), np.float64)
    out = np.zeros(64)
    for a in range(4):
        for b in range(4):
            for c in range(4):
                out[a * 16 + b * 4 + c] = p[3, a] * p[a, b] * p[b, c]
    return out


TABLES = (jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)) * 1.5, jnp.float32),
          jnp.asarray(np.random.default_rng(1).normal(size=(4, 4)) * 1.5, jnp.float32))
N_SAMPLES = 40_000


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_sampling_draws_from_the_targets_distribution(temperature):
    t_table, d_table = TABLES
    counts = sequence_counts(speculative.speculative_loop, t_table, d_table, temperature, N_SAMPLES)
    stat, dof, p_value = frosting.chi_square(counts, exact_probs(t_table, temperature))
    assert p_value > 1e-3, (stat, dof, p_value)


@pytest.mark.parametrize("wrong_rule", ["resample from p", "keep every guess"])
def test_a_wrong_rule_fails_the_same_test(monkeypatch, wrong_rule):
    """The negative control: the same test, the same samples, a deliberately wrong rule."""
    if wrong_rule == "resample from p":  # the classic mistake: forget to subtract q
        monkeypatch.setattr(speculative, "residual", lambda p, q: p)
    else:  # the draft's own sampling: no test at all
        monkeypatch.setattr(speculative, "accepted", lambda u, p_d, q_d: jnp.ones(u.shape, bool))
    @functools.wraps(speculative._speculative_loop)  # its signature, but a new function:
    def fresh(*args, **kwargs):  # jit traces it anew, with the wrong rule
        return speculative._speculative_loop(*args, **kwargs)

    loop = jax.jit(fresh, static_argnames=("target", "draft", "max_new", "k_max"))
    t_table, d_table = TABLES
    counts = sequence_counts(loop, t_table, d_table, 1.0, N_SAMPLES)
    stat, dof, p_value = frosting.chi_square(counts, exact_probs(t_table, 1.0))
    assert p_value < 1e-6, (wrong_rule, stat, dof, p_value)


# ---------------------------------------------------------------- caches roll back cleanly
def test_caches_after_rollback_equal_fresh_ones(chef):
    """Target = the draft chef, draft = an untrained tiny GPT: almost every guess is rolled back."""
    apprentice = split_gpt(make_gpt(GPTConfig.tiny().replace(context=512), seed=3))
    args, kwargs = speculative.prepare(chef, apprentice, text.prompt("Make a lemon cake"), k=3,
                                       max_new_tokens=40, stop_at_end=False)
    tokens, _, count, counts, t_cache, d_cache = speculative.speculative_loop(
        *args, **kwargs, return_caches=True)
    assert int(counts.accepted) < int(counts.drafted)  # there were rejections to undo
    prompt, start = args[4], args[5]
    full = jnp.concatenate([prompt, tokens[None, : int(count)]], axis=1)  # the text served
    size = prompt.shape[1] + kwargs["max_new"]
    # the last round may run past the 40 tokens asked for: the caches then hold up to k more
    for (step, params), cache, behind in ((chef, t_cache, 1), (apprentice, d_cache, 2)):
        m = full.shape[1] - behind  # the target holds all but the last token, the draft 2 less
        assert m <= int(cache.length) <= m + 3
        _, fresh = step(params, full[:, :m], kv_cache.init(step.config, 1, size, start=start))
        mine = kv_cache.rollback(cache, m)
        pad = int(start[0])  # left-padding slots are never read (their deeper layers differ)
        for layer in range(step.config.n_layer):
            for which in ("keys", "values"):
                np.testing.assert_allclose(kv_cache.filled(mine, layer, which)[:, :, pad:],
                                           kv_cache.filled(fresh, layer, which)[:, :, pad:],
                                           atol=2e-5)
        # past `length` the rejected guesses stay, invisible; cleared, the caches are equal
        cleared = kv_cache.rollback(mine, m, clear=True)
        fresh_cleared = kv_cache.rollback(fresh, m, clear=True)
        for layer in range(step.config.n_layer):
            for which in ("keys", "values"):
                np.testing.assert_allclose(cleared.layer_view(layer, which)[:, :, pad:],
                                           fresh_cleared.layer_view(layer, which)[:, :, pad:],
                                           atol=2e-5)


# ---------------------------------------------------------------- no cache-sized copies
def test_neither_compiled_loop_copies_a_cache(target, kitchen):
    ids, start = generate.encode_prompts(text.prompt(ORDERS[0]))
    slots = ids.shape[1] + BUFFER
    plain = generate.decode_loop.lower(
        target[0], target[1], jnp.asarray(ids), jnp.asarray(start), jnp.int32(BUFFER),
        jnp.int32(-1), generate.Greedy(), jax.random.key(0), max_new=BUFFER, use_cache=True,
        window=generate.WINDOW).compile().as_text()
    args, kwargs = speculative.prepare(target, drafts.choose(kitchen, "chef"),
                                       text.prompt(ORDERS[0]), buffer=BUFFER,
                                       max_new_tokens=BUFFER)
    spec = speculative.speculative_loop.lower(*args, **kwargs).compile().as_text()
    for hlo in (plain, spec):
        assert "while" in hlo
        assert generate.cache_copies(hlo, slots) == []


# ---------------------------------------------------------------- bad requests, clear errors
def test_bad_requests(target, chef):
    prompt = text.prompt("Make a cake")
    with pytest.raises(ValueError, match=r"k must be an int >= 1 \(draft tokens per round\), got 0"):
        speculative.speculate(target, chef, prompt, k=0)
    with pytest.raises(ValueError, match=r"k must be <= k_max=8 .* got 9"):
        speculative.speculate(target, chef, prompt, k=9)
    long = "Order: " + "a" * 470 + "\nRecipe: "  # 485 characters: 512 slots padded, no room
    with pytest.raises(ValueError, match="the prompt takes 512 tokens"):
        speculative.speculate(target, chef, long, k=4)
    roomy = "Order: " + "a" * 440 + "\nRecipe: "  # padded to 480: 32 slots of room
    with pytest.raises(ValueError, match=r"k \+ 1 = 36 positions \(a verify pass\) must fit in "
                                         r"the room the context leaves after the prompt \(32\)"):
        speculative.speculate(target, chef, roomy, k=35, k_max=40, max_new_tokens=20)
    with pytest.raises(ValueError, match="draft and target must share a vocabulary: the target "
                                         "scores 77 tokens, the draft 50"):
        speculative.speculate(target, drafts.perfect_draft(np.arange(9), vocab_size=50), prompt)
    with pytest.raises(TypeError, match="draft must be a kl.models.TinyGPT or a"):
        speculative.speculate(target, "commis", prompt)
    with pytest.raises(TypeError, match="prompt must be a str"):
        speculative.speculate(target, chef, ["a", "b"])
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        speculative.speculate(target, chef, prompt, temperature=-1.0)


# ---------------------------------------------------------------- the cost model
def test_the_speedup_formula():
    assert speculative.expected_tokens_per_call(0.0, 4) == 1.0
    assert speculative.expected_tokens_per_call(1.0, 4) == 5.0
    assert speculative.expected_tokens_per_call(0.5, 2) == pytest.approx(1.75)
    # alpha = 0.8, k = 4: 1 + .8 + .64 + .512 + .4096 = 3.3616 tokens per round
    assert speculative.predicted_speedup(0.8, 4, 0.05, 1.6) == pytest.approx(3.3616 / 1.8)
    # a GPU's free verify pass (v = 1) and a free draft: the textbook's k + 1 ceiling
    assert speculative.predicted_speedup(1.0, 4, 1e-9, 1.0) == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\], got 1.5"):
        speculative.predicted_speedup(1.5, 4, 0.1, 1.0)
    with pytest.raises(ValueError, match="v must be a positive number, got 0"):
        speculative.predicted_speedup(0.5, 4, 0.1, 0)


def test_pass_seconds_measures_a_pass(chef):
    one = speculative.pass_seconds(chef, 1, n=10, repeats=2)
    assert 0 < one < 0.1
    with pytest.raises(ValueError, match=r"width must be an int in \[1, 160\], got 0"):
        speculative.pass_seconds(chef, 0)
