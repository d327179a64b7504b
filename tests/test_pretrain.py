"""Culinary school: the loss, a short pretraining run, and the shipped chefs.

The shipped chefs must reproduce the validation loss recorded in their provenance to within
0.002 nats per character: the weights are exact (float16 files), only float32 summation
order may differ between machines.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kitchenlab import pretrain, text
from kitchenlab.config import GPTConfig
from kitchenlab.models import make_gpt

TOLERANCE = 0.002  # nats per character


def test_loss_matches_optax_and_skips_padding():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
    targets = jnp.asarray(rng.integers(1, 7, (2, 5)), jnp.int32).at[1, 3:].set(0)
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    mask = np.asarray(targets) != 0
    np.testing.assert_allclose(pretrain.lm_loss(logits, targets), np.asarray(ref)[mask].mean(),
                               rtol=1e-6)


def test_windows_start_at_recipes():
    corpus = text.corpus(5, 2)
    wins = pretrain.windows(corpus.ids("val"), corpus.starts("val"), 64)
    assert wins.shape == (2, 65)
    assert corpus.tokenizer.decode(wins[0]).startswith("Order: ")
    tail = pretrain.windows(corpus.ids("val"), corpus.starts("val")[-1:], 600)
    assert (tail[0, -100:] == 0).all(), "padded with <pad> past the end"


def test_pretrain_script_runs_a_few_steps(tmp_path, capsys):
    assert pretrain.main(["--tiny", "--which", "draft", "--steps", "4", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "draft.json").read_text())
    assert record["steps"] == 4 and record["config"] == GPTConfig.tiny().to_dict()
    assert record["corpus"]["sha256"] == text.corpus(200, 20).sha256
    assert np.isfinite(record["val_loss"]) and record["val_loss"] < 5.0
    model = pretrain.load("draft", folder=tmp_path)
    again = pretrain.evaluate(model, text.corpus(200, 20), n_windows=record["check_windows"])
    assert abs(again - record["val_loss_check"]) < 1e-4
    assert "step     4/4" in capsys.readouterr().err


def test_training_lowers_the_loss_and_leaves_the_start_untouched():
    corpus = text.corpus(100, 10)
    cfg = pretrain.PretrainConfig(steps=30, batch_size=4, seq_len=64, warmup=5, chunk=10,
                                  learning_rate=3e-3)
    start = make_gpt(GPTConfig.tiny(), seed=2)
    before = np.asarray(start.token_embed.embedding[...]).copy()
    result = pretrain.pretrain(GPTConfig.tiny(), cfg, corpus, model=start)
    assert result.losses.shape == (30,)
    assert result.losses[-5:].mean() < result.losses[:5].mean() - 0.5
    np.testing.assert_array_equal(start.token_embed.embedding[...], before)
    assert not np.array_equal(result.model.token_embed.embedding[...], before)
    with pytest.raises(ValueError, match="model has config"):
        pretrain.pretrain(GPTConfig.default(), cfg, corpus, model=start)


def test_float16_round_trip(tmp_path):
    model = pretrain.to_float16(make_gpt(GPTConfig.tiny(), seed=1))
    pretrain.save(model, "chef", {"seed": 1}, folder=tmp_path)
    loaded = pretrain.load("chef", folder=tmp_path)
    tokens = jnp.arange(2, 12)[None]
    np.testing.assert_array_equal(loaded(tokens), model(tokens))


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="no chef named 'sous' in"):
        pretrain.load("sous", folder=tmp_path)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        pretrain.PretrainConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        pretrain.PretrainConfig(steps=0)
    with pytest.raises(ValueError, match=r"seq_len \(128\) must be <= the model's context \(64\)"):
        pretrain.pretrain(GPTConfig.tiny(), pretrain.PretrainConfig(seq_len=128), text.corpus(5, 2))


# ---------------------------------------------------------------- the shipped chefs
@pytest.mark.parametrize("name", pretrain.CHEFS)
def test_shipped_chef_reproduces_its_validation_loss(name):
    record = pretrain.provenance(name)
    corpus = text.corpus(record["corpus"]["n_train"], record["corpus"]["n_val"],
                         seed=record["corpus"]["seed"])
    assert corpus.sha256 == record["corpus"]["sha256"], "the corpus changed since training"
    model = pretrain.load(name)
    assert model.config == GPTConfig(**record["config"])
    loss = pretrain.evaluate(model, corpus, n_windows=record["check_windows"])
    assert abs(loss - record["val_loss_check"]) < TOLERANCE, (loss, record["val_loss_check"])
    assert record["val_loss"] < (0.45 if name == "target" else 0.8)
    for key in ("seed", "steps", "pretrain", "train_seconds", "machine", "command"):
        assert key in record


def test_shipped_weights_are_small():
    sizes = {p.name: p.stat().st_size for p in pretrain.WEIGHTS_DIR.glob("*.npz")}
    assert set(sizes) == {f"{n}.npz" for n in pretrain.CHEFS}
    assert all(s < 4_000_000 for s in sizes.values()), sizes
    assert sum(sizes.values()) <= 8_000_000
    assert pretrain.provenance("target")["config"] == GPTConfig.default().to_dict()
    assert pretrain.provenance("draft")["config"] == GPTConfig.draft().to_dict()
    assert jax.tree.leaves(pretrain.load("draft"))[0].dtype == jnp.float32
