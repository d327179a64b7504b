"""The draft models: the n-gram commis, the perfect draft and a menu of drafts."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kitchenlab import drafts, text

TOK = text.CharTokenizer()


@pytest.fixture(scope="module")
def docs():
    return text.make_corpus(40, seed=0)


def reference_guesses(docs, query: np.ndarray, max_context: int) -> np.ndarray:
    """The n-gram rule with Python dicts: longest known context, most frequent next id
    (ties: the smallest id), else the corpus's commonest id."""
    ids = np.concatenate([np.concatenate([TOK.encode(d), [TOK.end_id]]) for d in docs])
    padded = [0] * max_context + ids.tolist()  # the corpus starts after <pad>s, as prompts do
    table = collections.defaultdict(collections.Counter)
    for i in range(len(ids)):
        for length in range(1, max_context + 1):
            table[tuple(padded[max_context + i - length: max_context + i])][int(ids[i])] += 1
    fallback = int(np.bincount(ids).argmax())
    out = []
    q = [0] * max_context + query.tolist()
    for i in range(len(query)):
        guess = fallback
        for length in range(max_context, 0, -1):
            ctx = tuple(q[max_context + i + 1 - length: max_context + i + 1])
            if ctx in table:
                counts = table[ctx]
                best = max(counts.values())
                guess = min(t for t, c in counts.items() if c == best)
                break
        out.append(guess)
    return np.array(out)


def test_commis_agrees_with_a_dictionary_reference(docs):
    step, table = drafts.build_commis(docs, max_context=6, bits=22)
    query = TOK.encode(text.make_corpus(3, seed=5)[2])
    cache = step.init_cache(1, len(query) + 4)
    logits, cache = jax.jit(step)(table, jnp.asarray(query)[None], cache)
    ours = np.asarray(logits[0]).argmax(-1)
    ref = reference_guesses(docs, query, 6)
    # a table slot shared by two contexts keeps one: the other backs off to a shorter context
    assert (ours == ref).mean() >= 0.99, (ours != ref).sum()
    assert int(cache.length) == len(query)
    assert np.all(np.asarray(logits[0]).max(-1) == 0) and np.sum(np.asarray(logits[0]) == 0) == len(query)


def test_commis_hashes_are_the_same_in_numpy_and_jax():
    ids = np.array([5, 9, 3, 70, 2, 2, 41, 8], np.int32)
    ref = drafts._suffix_hashes_np(ids, 4)  # for each i: contexts ids[i-L:i]
    step = drafts.NGramStep(max_context=4, bits=16)
    table = drafts.NGramTable(jnp.zeros(2 ** 16, jnp.uint32), jnp.zeros(2 ** 16, jnp.int32),
                              jnp.int32(0))
    # put every context ending at position 6 (ids[3:7] .. ids[6:7]) into the table -> token L
    keys = np.zeros(2 ** 16, np.uint32)
    toks = np.zeros(2 ** 16, np.int32)
    for length in range(1, 5):
        h = ref[length - 1][7]  # context ids[7-L:7], i.e. ending at position 6
        keys[h >> 16], toks[h >> 16] = h, 10 + length
    table = drafts.NGramTable(jnp.asarray(keys), jnp.asarray(toks), jnp.int32(0))
    logits, _ = step(table, jnp.asarray(ids[:7])[None], step.init_cache(1, 16))
    guesses = np.asarray(logits[0]).argmax(-1)
    assert guesses[6] == 14  # the longest context (4) wins
    assert guesses[0] == 0  # nothing known: the fallback


def test_commis_reads_its_notepad_across_calls(docs):
    step, table = drafts.build_commis(docs, max_context=5)
    ids = jnp.asarray(TOK.encode(docs[0][:60]))[None]
    once, _ = step(table, ids, step.init_cache(1, 64))
    cache = step.init_cache(1, 64)
    logits, cache = step(table, ids[:, :40], cache)
    pieces = [logits]
    for t in range(40, 60):
        logits, cache = step(table, ids[:, t: t + 1], cache)
        pieces.append(logits)
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), once)
    rolled = drafts.roll(cache, 50)  # forget 10 tokens, then read them again
    again, _ = step(table, ids[:, 50:60], rolled)
    np.testing.assert_array_equal(again, once[:, 50:60])


def test_perfect_draft_reads_the_answer():
    known = np.array([0, 0, 7, 8, 9, 10, 11, 12], np.int32)
    step, params = drafts.perfect_draft(known)
    cache = drafts.roll(step.init_cache(1, 8), 2)
    logits, cache = step(params, jnp.array([[7, 8]]), cache)  # slots 2, 3 -> guesses for 3, 4
    assert np.asarray(logits[0]).argmax(-1).tolist() == [8, 9] and int(cache.length) == 4
    with pytest.raises(ValueError, match="known must be a 1-D array of >= 2 token ids"):
        drafts.perfect_draft(np.zeros((2, 2), np.int32))


def test_menu_runs_only_the_chosen_draft(docs):
    commis = drafts.build_commis(docs, max_context=4)
    perfect = drafts.perfect_draft(np.arange(2, 40, dtype=np.int32))
    m = drafts.menu(commis=commis, perfect=perfect)
    tokens = jnp.asarray(TOK.encode("Heat the oven"))[None]
    for name, pair in (("commis", commis), ("perfect", perfect)):
        step, params = drafts.choose(m, name)
        cache = step.init_cache(1, 32)
        logits, cache = jax.jit(step)(params, tokens, cache)
        alone, _ = pair[0](pair[1], tokens, drafts.init_cache(pair[0], 1, 32))
        np.testing.assert_array_equal(logits, alone)
        assert all(int(c.length) == tokens.shape[1] for c in cache.caches)
        assert int(drafts.roll(cache, 3).length) == 3
    assert drafts.choose(m, 1)[1].choice == 1


def test_bad_drafts(docs):
    with pytest.raises(ValueError, match="docs must be a non-empty list of recipe texts"):
        drafts.build_commis("Order: cake")
    with pytest.raises(ValueError, match=r"max_context must be an int in \[1, 32\], got 0"):
        drafts.build_commis(docs, max_context=0)
    with pytest.raises(ValueError, match=r"bits must be an int in \[8, 26\], got 40"):
        drafts.build_commis(docs, bits=40)
    m = drafts.menu(commis=drafts.build_commis(docs[:2], max_context=2))
    with pytest.raises(ValueError, match=r"name must be one of \['commis'\], got 'chef'"):
        drafts.choose(m, "chef")
    with pytest.raises(TypeError, match="draft 'x' must be a \\(step, params\\) pair"):
        drafts.menu(x="commis")
    small = drafts.perfect_draft(np.arange(5), vocab_size=10)
    with pytest.raises(ValueError, match="the drafts' vocabularies differ"):
        drafts.menu(a=small, b=drafts.perfect_draft(np.arange(5)))
    with pytest.raises(ValueError, match="batch 1"):
        drafts.NGramStep().init_cache(2, 10)
