"""The order book: a deterministic, varied recipe corpus and the character tokenizer."""

import re

import numpy as np
import pytest

from kitchenlab import text


@pytest.fixture(scope="module")
def small():
    return text.corpus(600, 60, seed=0)


def test_corpus_is_deterministic_and_seeded(small):
    again = text.corpus(600, 60, seed=0)
    assert again.train_docs == small.train_docs and again.sha256 == small.sha256
    other = text.corpus(600, 60, seed=1)
    assert other.train_docs != small.train_docs and other.sha256 != small.sha256
    assert small.val_docs == tuple(text.make_corpus(60, seed=1)), "validation comes from seed + 1"


def test_corpus_uses_only_the_vocabulary(small):
    used = set("".join(small.train_docs + small.val_docs))
    assert used <= set(text.VOCAB), sorted(used - set(text.VOCAB))


def test_corpus_has_variety_not_copies(small):
    docs = small.train_docs
    assert len(set(docs)) / len(docs) > 0.97, "recipes must differ, not repeat"
    orders = {d.splitlines()[0] for d in docs}
    assert len(orders) > 300
    titles = {d.splitlines()[1] for d in docs}
    assert len(titles) > 150
    lengths = [len(d) for d in docs]
    assert 250 <= np.mean(lengths) <= 450 and max(lengths) < 512


def test_recipes_follow_their_orders(small):
    """The structure the chef must learn: servings, flavour and 'quick' carry over."""
    n_for = n_flavour = 0
    for doc in small.train_docs:
        lines = doc.splitlines()
        order, title, serves = lines[0], lines[1], lines[2]
        assert order.startswith(text.ORDER_PREFIX) and title.startswith(text.RECIPE_PREFIX)
        assert lines[3] == "Ingredients:" and "Steps:" in lines
        steps = lines[lines.index("Steps:") + 1:]
        assert [s.split(".")[0] for s in steps] == [str(i) for i in range(1, len(steps) + 1)]
        m = re.search(r"for (\d+), with (\w+)", order)
        if m:
            n_for += 1
            assert serves.startswith(f"Serves {m.group(1)},")
            assert m.group(2) in doc.split("Ingredients:")[1]
        m = re.search(r"with (\w+)", order)
        if m:  # the flavour asked for is among the ingredients and used in a step
            n_flavour += 1
            flavour = m.group(1)
            assert re.search(rf"- \d+ (\w+ )?({flavour}|{text._SINGULAR.get(flavour, flavour)})\n",
                             doc.split("Steps:")[0]), doc
            assert m.group(1) in doc.split("Steps:")[1]
        assert ("quick" in order.lower()) == title.startswith("Recipe: Quick")
    assert n_for > 20 and n_flavour > 100


def test_ids_and_starts(small):
    ids, starts = small.ids("train"), small.starts("train")
    tok = small.tokenizer
    assert ids.dtype == np.int32 and len(starts) == len(small.train_docs)
    assert tok.decode(ids[starts[5]: starts[6]], specials=True) == small.train_docs[5] + text.END
    assert (ids == tok.end_id).sum() == len(small.train_docs)
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        small.ids("test")


def test_tokenizer_round_trip_and_vocabulary():
    tok = text.CharTokenizer()
    assert tok.vocab_size == len(text.VOCAB) + 2 == 77
    assert tok.tokens()[:3] == [text.PAD, text.END, "\n"]
    s = "Order: Make a birthday cake\nRecipe: "
    ids = tok.encode(s)
    assert ids.dtype == np.int32 and len(ids) == len(s) and ids.min() >= 2
    assert tok.decode(ids) == s
    assert tok.decode([tok.pad_id, *ids[:3], tok.end_id]) == s[:3]
    assert tok.decode([*ids[:3], tok.end_id], specials=True) == s[:3] + text.END


def test_unknown_characters_raise_or_are_replaced():
    tok = text.CharTokenizer()
    with pytest.raises(ValueError, match=r"3 character.*'è' at 2, 'û' at 8, 'é' at 10.*errors='replace'"):
        tok.encode("Crème brûlée")
    ids = tok.encode("Crème", errors="replace")
    assert tok.decode(ids) == "Cr?me"
    with pytest.raises(ValueError, match="errors must be 'strict' or 'replace'"):
        tok.encode("cake", errors="ignore")
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(42)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 77\)"):
        tok.decode([3, 77])


def test_prompt_and_bad_orders():
    assert text.prompt("  Make a cake ") == "Order: Make a cake\nRecipe: "
    with pytest.raises(ValueError, match="order must not be empty"):
        text.prompt("   ")
    with pytest.raises(TypeError, match="order must be a str"):
        text.prompt(None)
    with pytest.raises(ValueError, match="n must be a positive int"):
        text.make_corpus(0)
