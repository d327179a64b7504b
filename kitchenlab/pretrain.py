"""Culinary school: pretraining the chatbot chefs on the recipe corpus, and their shipped weights.

Next-token prediction: every window of the corpus is its own exam -- at each position the
chef must name the next character, and the judge (cross-entropy) scores it. Windows start
at the beginning of a recipe, so position 0 is always "Order: ...", as at serving time.

Training is fused: ``chunk`` optimizer steps run inside one ``lax.scan`` (one call into XLA),
and the Python loop around the chunks only reports progress.

    python -m kitchenlab.pretrain                 # both shipped chefs -> kitchenlab/weights/
    python -m kitchenlab.pretrain --which draft   # only the commis
    python -m kitchenlab.pretrain --tiny --steps 20 --out /tmp/chefs   # a smoke run

Run time of the shipped chefs on the project's machine (2 CPU cores, shared with other jobs,
so the wall clock is an upper bound): the target, 1 000 steps of 16 x 512 characters, took
88 min (up to 8 s per step while the cores were busy, 2.5 s in quieter spells); the draft, 800
steps, 4 min. Both records (``<name>.json``) hold their own ``train_seconds``.

The shipped weights are stored as float16 (``<name>.npz``, half the bytes) next to
``<name>.json``: config, seed, corpus hash, steps, batch, schedule, run time, machine and
the validation loss *of the stored float16 weights* (what ``load`` gives back in float32).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from kitchenlab import text
from kitchenlab.config import GPTConfig
from kitchenlab.models import TinyGPT, abstract_gpt, count_params

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CHEFS = ("target", "draft")
CHECK_WINDOWS = 32  # a quick re-check of the validation loss (tests): the first 32 windows


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """The culinary school's timetable."""

    steps: int = 1500  # optimizer steps (knob turns)
    batch_size: int = 16  # windows judged per step
    seq_len: int = 512  # characters per window (the chef's context)
    learning_rate: float = 2e-3  # peak step size, after warm-up
    warmup: int = 100  # steps of linear warm-up
    min_lr_ratio: float = 0.1  # cosine decay ends at this fraction of the peak
    weight_decay: float = 0.1  # AdamW decay on the weight matrices
    clip_norm: float = 1.0  # safety cap on the gas valve
    chunk: int = 50  # steps fused per XLA call (progress is reported between chunks)
    seed: int = 0  # initial knobs and the windows drawn

    def __post_init__(self):
        for name in ("steps", "batch_size", "seq_len", "warmup", "chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "warmup" else 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


# ---------------------------------------------------------------- the judge and the exam
def lm_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean next-character cross-entropy over non-padding targets. (B, T, V), (B, T) -> ().

    One-hot times log-softmax rather than ``take_along_axis``: the gather's gradient is a
    scatter, which is slow on CPU; with a vocabulary of 77 the one-hot costs nothing.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.sum(logp * jax.nn.one_hot(targets, logits.shape[-1], dtype=logp.dtype), axis=-1)
    mask = (targets != 0).astype(nll.dtype)  # <pad> (id 0) is never a target
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def windows(ids: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """Fixed exam windows (n, seq_len + 1), one per recipe start, padded with <pad> at the end."""
    padded = np.concatenate([ids, np.zeros(seq_len + 1, np.int32)])
    return np.stack([padded[s: s + seq_len + 1] for s in starts])


def _draw(key, ids, starts, batch_size: int, seq_len: int):
    """A batch of windows starting at random recipe starts: (B, seq_len + 1)."""
    pick = starts[jax.random.randint(key, (batch_size,), 0, starts.shape[0])]
    return jax.vmap(lambda s: jax.lax.dynamic_slice_in_dim(ids, s, seq_len + 1))(pick)


def make_optimizer(cfg: PretrainConfig) -> optax.GradientTransformation:
    """AdamW with warm-up + cosine decay, gradient clipping, decay on matrices only."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, max(cfg.warmup, 1), max(cfg.steps, cfg.warmup + 1),
        end_value=cfg.learning_rate * cfg.min_lr_ratio)
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim == 2, params)  # noqa: E731
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                       optax.adamw(schedule, b1=0.9, b2=0.99, weight_decay=cfg.weight_decay,
                                   mask=decay_mask))


def _loss(params, graphdef, batch):
    logits = nnx.merge(graphdef, params)(batch[:, :-1])
    return lm_loss(logits, batch[:, 1:])


def _train_chunk(graphdef, tx, n_steps: int, batch_size: int, seq_len: int,
                 params, opt_state, key, ids, starts):
    """``n_steps`` optimizer steps fused in one ``lax.scan``; returns the per-step losses."""
    def one(carry, step_key):
        params, opt_state = carry
        batch = _draw(step_key, ids, starts, batch_size, seq_len)
        loss, grads = jax.value_and_grad(_loss)(params, graphdef, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state),
                                               jax.random.split(key, n_steps))
    return params, opt_state, losses


_train_chunk_jit = jax.jit(_train_chunk, static_argnums=(0, 1, 2, 3, 4), donate_argnums=(5, 6))


@jax.jit
def _eval_batch(graphdef, params, batch):
    logits = nnx.merge(graphdef, params)(batch[:, :-1])
    targets = batch[:, 1:]
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.sum(logp * jax.nn.one_hot(targets, logits.shape[-1], dtype=logp.dtype), axis=-1)
    mask = (targets != 0).astype(nll.dtype)
    return jnp.sum(nll * mask), jnp.sum(mask)


def evaluate(model: TinyGPT, corpus: text.Corpus, *, split: str = "val", n_windows: int = 256,
             seq_len: int | None = None, batch_size: int = 16) -> float:
    """Mean next-character loss on the first ``n_windows`` recipes of ``split`` (fixed windows)."""
    seq_len = seq_len or model.config.context
    wins = windows(corpus.ids(split), corpus.starts(split)[:n_windows], seq_len)
    graphdef, params = nnx.split(model)
    total = count = 0.0
    for i in range(0, len(wins), batch_size):
        part = wins[i: i + batch_size]
        if len(part) < batch_size:  # pad the last batch with empty windows (masked out)
            part = np.concatenate([part, np.zeros((batch_size - len(part), part.shape[1]), np.int32)])
        s, c = _eval_batch(graphdef, params, jnp.asarray(part))
        total, count = total + float(s), count + float(c)
    return total / count


@dataclasses.dataclass
class PretrainResult:
    """What a pretraining run produced: the chef, its loss curve and its timings."""

    model: TinyGPT
    losses: np.ndarray  # training loss per step
    seconds: float  # wall time of the training loop (compile included)
    config: PretrainConfig


def pretrain(model_config: GPTConfig, cfg: PretrainConfig, corpus: text.Corpus, *,
             model: TinyGPT | None = None,
             on_chunk: Callable[[int, float], None] | None = None) -> PretrainResult:
    """Train a TinyGPT on ``corpus``; ``on_chunk(step, mean_loss)`` after each chunk.

    Starts from ``model`` (its knobs are copied, not changed) or, by default, from
    ``TinyGPT(model_config, rngs=nnx.Rngs(cfg.seed))`` -- the initialisation the shipped
    chefs were trained from.
    """
    if cfg.seq_len > model_config.context:
        raise ValueError(f"seq_len ({cfg.seq_len}) must be <= the model's context "
                         f"({model_config.context})")
    if model_config.vocab_size != corpus.tokenizer.vocab_size:
        raise ValueError(f"model vocab_size {model_config.vocab_size} != tokenizer's "
                         f"{corpus.tokenizer.vocab_size}")
    if model is None:
        model = TinyGPT(model_config, rngs=nnx.Rngs(cfg.seed))
    elif model.config != model_config:
        raise ValueError(f"model has config {model.config}, expected {model_config}")
    graphdef, params = nnx.split(model)
    params = jax.tree.map(jnp.copy, params)  # training donates its buffers: keep the caller's
    tx = make_optimizer(cfg)
    opt_state = tx.init(params)
    ids = jnp.asarray(np.concatenate([corpus.ids("train"), np.zeros(cfg.seq_len + 1, np.int32)]))
    starts = jnp.asarray(corpus.starts("train"))
    key = jax.random.key(cfg.seed)
    losses, done, t0 = [], 0, time.perf_counter()
    while done < cfg.steps:
        n = min(cfg.chunk, cfg.steps - done)
        key, sub = jax.random.split(key)
        params, opt_state, chunk_losses = _train_chunk_jit(
            graphdef, tx, n, cfg.batch_size, cfg.seq_len, params, opt_state, sub, ids, starts)
        chunk_losses = np.asarray(chunk_losses)
        if not np.all(np.isfinite(chunk_losses)):
            bad = done + int(np.argmax(~np.isfinite(chunk_losses)))
            raise FloatingPointError(f"loss became NaN at step {bad}: learning rate too bold?")
        losses.append(chunk_losses)
        done += n
        if on_chunk is not None:
            on_chunk(done, float(chunk_losses.mean()))
    return PretrainResult(nnx.merge(graphdef, params), np.concatenate(losses),
                          time.perf_counter() - t0, cfg)


# ---------------------------------------------------------------- the shelf: save and load
def to_float16(model: TinyGPT) -> TinyGPT:
    """The chef with every weight rounded to float16 and back (what the shipped file holds)."""
    graphdef, params = nnx.split(model)
    params = jax.tree.map(lambda p: p.astype(jnp.float16).astype(jnp.float32), params)
    return nnx.merge(graphdef, params)


def save(model: TinyGPT, name: str, provenance: dict, *, folder: str | Path = WEIGHTS_DIR) -> Path:
    """Write ``<name>.npz`` (float16 weights) and ``<name>.json`` (provenance) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    arrays = {"/".join(map(str, path)): np.asarray(v.get_value(), np.float16) for path, v in flat}
    np.savez(folder / f"{name}.npz", **arrays)
    record = dict(provenance, name=name, config=model.config.to_dict(),
                  n_params=count_params(model), dtype="float16",
                  bytes=(folder / f"{name}.npz").stat().st_size)
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder / f"{name}.npz"


def provenance(name: str, *, folder: str | Path = WEIGHTS_DIR) -> dict:
    """The shipped chef's record: config, seed, corpus hash, steps, validation loss..."""
    path = Path(folder) / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in Path(folder).glob("*.json"))
        raise ValueError(f"no chef named {name!r} in {folder}; shipped chefs: {known}")
    return json.loads(path.read_text())


def load(name: str = "target", *, folder: str | Path = WEIGHTS_DIR) -> TinyGPT:
    """A shipped chef (``"target"`` or ``"draft"``) with its float16 weights in float32."""
    record = provenance(name, folder=folder)
    config = GPTConfig(**record["config"])
    graphdef, state = nnx.split(abstract_gpt(config))  # shapes only: nothing to initialise
    with np.load(Path(folder) / f"{name}.npz") as data:
        stored = {k: data[k] for k in data.files}
    flat = nnx.to_flat_state(state)
    expected = {"/".join(map(str, path)) for path, _ in flat}
    if set(stored) != expected:
        raise ValueError(f"weights file for {name!r} does not match its config: missing "
                         f"{sorted(expected - set(stored))[:3]}, unexpected "
                         f"{sorted(set(stored) - expected)[:3]}")
    for path, var in flat:
        key = "/".join(map(str, path))
        if stored[key].shape != var.get_value().shape:
            raise ValueError(f"weight {key} has shape {stored[key].shape}, config expects "
                             f"{var.get_value().shape}")
        var.set_value(jnp.asarray(stored[key], jnp.float32))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


# ---------------------------------------------------------------- the command line
SHIPPED = {  # name -> (model config, timetable); both trained on text.corpus(seed=0)
    "target": (GPTConfig.default(), PretrainConfig(steps=1000, batch_size=16, seq_len=512, chunk=25)),
    "draft": (GPTConfig.draft(), PretrainConfig(steps=800, batch_size=16, seq_len=512, chunk=25,
                                                learning_rate=3e-3)),
}


def _machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"jax {jax.__version__} on {jax.devices()[0].platform}")


def run(name: str, model_config: GPTConfig, cfg: PretrainConfig, corpus: text.Corpus, *,
        folder: Path, log=print) -> dict:
    """Train one chef, evaluate its float16 weights, save them with provenance."""
    log(f"[{name}] {model_config} | {cfg}")

    def report(step, loss):
        log(f"[{name}] step {step:5d}/{cfg.steps}  train loss {loss:.3f}  "
            f"({time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    result = pretrain(model_config, cfg, corpus, on_chunk=report)
    shipped = to_float16(result.model)
    val = evaluate(shipped, corpus)
    val_check = evaluate(shipped, corpus, n_windows=CHECK_WINDOWS)
    log(f"[{name}] done in {result.seconds:.0f} s; validation loss (float16 weights) {val:.4f}")
    record = {"seed": cfg.seed, "corpus": {"n_train": len(corpus.train_docs),
                                           "n_val": len(corpus.val_docs), "seed": corpus.seed,
                                           "sha256": corpus.sha256},
              "pretrain": dataclasses.asdict(cfg), "steps": cfg.steps,
              "final_train_loss": round(float(result.losses[-cfg.chunk:].mean()), 4),
              "val_loss": round(val, 4), "val_windows": 256,
              "val_loss_check": round(val_check, 4), "check_windows": CHECK_WINDOWS,
              "train_seconds": round(result.seconds, 1), "machine": _machine(),
              "command": f"python -m kitchenlab.pretrain --which {name}"}
    save(shipped, name, record, folder=folder)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Pretrain the chatbot chefs on the recipe corpus.")
    parser.add_argument("--which", choices=CHEFS + ("both",), default="both")
    parser.add_argument("--out", default=str(WEIGHTS_DIR), help="folder for <name>.npz/.json")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--tiny", action="store_true", help="tiny model and corpus (smoke test)")
    args = parser.parse_args(argv)
    names = CHEFS if args.which == "both" else (args.which,)
    corpus = text.corpus(200, 20) if args.tiny else text.corpus()
    for name in names:
        model_config, cfg = SHIPPED[name]
        if args.tiny:
            model_config = GPTConfig.tiny()
            cfg = dataclasses.replace(cfg, batch_size=4, seq_len=model_config.context, chunk=5,
                                      warmup=2, steps=10)
        if args.steps:
            cfg = dataclasses.replace(cfg, steps=args.steps, warmup=min(cfg.warmup, args.steps))
        run(name, model_config, cfg, corpus, folder=Path(args.out),
            log=lambda *a: print(*a, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
