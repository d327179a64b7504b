"""Serving layer by layer: sampling strategies and the generation loop compiled once.

A chatbot writes one token at a time: the model scores every possible next character
(logits), a *sampling strategy* picks one, and it is appended to the text. Strategies are
small frozen dataclasses with ``next_token(logits, key)`` and ``probs(logits)``:

* ``Greedy()``: always the most likely character (repeatable);
* ``Temperature(t)``: sample from softmax(logits / t); ``t = 0`` means greedy -- by a
  select, never a division by zero (a classic bug in popular samplers);
* ``TopK(k, temperature)``: only the k most likely characters may be drawn;
* ``TopP(p, temperature)``: only the smallest set holding probability mass p (nucleus).

Their numbers are traced (a JAX pytree), so moving a temperature slider never recompiles.

The loop (``decode_loop``) is one ``jax.jit`` program: prefill the prompt into the KV
cache, then ``lax.while_loop`` one token at a time until every row wrote the end-of-recipe
token or ``n_new`` tokens are out. Shapes are fixed per bucket (prompt length rounded up to
``PROMPT_BUCKET``, output buffer to ``OUTPUT_BUCKET``), so new prompts, temperatures, seeds
and lengths in a bucket reuse the compiled program. ``use_cache=False`` recomputes the full
forward pass over the text so far at every token, over windows of ``window`` positions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kitchenlab import kv_cache, text
from kitchenlab.models import GPTStep, TinyGPT, split_gpt

PROMPT_BUCKET = 32  # prompts are left-padded to a multiple of this many tokens
OUTPUT_BUCKET = 64  # the output buffer holds a multiple of this many tokens
WINDOW = 32  # recompute mode: the forward pass covers the text so far rounded up to this


# ---------------------------------------------------------------- sampling strategies
def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check(name: str, value, ok, expectation: str):
    """Validate a Python/NumPy number; arrays and tracers (inside jit) pass unchecked."""
    if isinstance(value, (bool, str)) or value is None:
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if _is_number(value) and not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {expectation}, got {value}")


def _tempered(logits: jax.Array, temperature) -> jax.Array:
    """logits / t with t = 0 replaced by 1 (its result is then thrown away for argmax)."""
    t = jnp.asarray(temperature, logits.dtype)
    return logits / jnp.where(t > 0, t, jnp.ones_like(t))


def _greedy_probs(logits: jax.Array) -> jax.Array:
    return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=logits.dtype)


def _sample(logits, temperature, key) -> jax.Array:
    """Draw from softmax(logits / t) per row, or argmax where t == 0. (B, V) -> (B,) int32."""
    drawn = jax.random.categorical(key, _tempered(logits, temperature), axis=-1)
    greedy = jnp.argmax(logits, axis=-1)
    return jnp.where(jnp.asarray(temperature) > 0, drawn, greedy).astype(jnp.int32)


def _mixed_probs(logits, temperature):
    t = jnp.asarray(temperature)
    return jnp.where(t > 0, jax.nn.softmax(_tempered(logits, temperature), axis=-1),
                     _greedy_probs(logits))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Greedy:
    """The strict chef: always the most likely next character."""

    def next_token(self, logits: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def probs(self, logits: jax.Array) -> jax.Array:
        return _greedy_probs(logits)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Temperature:
    """Sample from softmax(logits / temperature); temperature 0 is greedy."""

    temperature: float = 1.0  # 0: greedy; < 1 sharper; > 1 flatter (creative, then silly)

    def __post_init__(self):
        _check("temperature", self.temperature, lambda t: t >= 0, ">= 0 (0 means greedy)")

    def next_token(self, logits, key):
        return _sample(logits, self.temperature, key)

    def probs(self, logits):
        return _mixed_probs(logits, self.temperature)


def _top_k_logits(logits, k):
    """Keep the k largest logits per row (ties with the k-th are kept too), others -> -inf."""
    v = logits.shape[-1]
    k = jnp.clip(jnp.asarray(k, jnp.int32), 1, v)
    kth = jnp.take(jnp.sort(logits, axis=-1), v - k, axis=-1)[..., None]  # (B, 1)
    return jnp.where(logits >= kth, logits, -jnp.inf)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TopK:
    """Sample among the k most likely characters only (k = 1 is greedy)."""

    k: int = 10  # how many candidates stay on the menu (>= 1)
    temperature: float = 1.0  # applied to the k survivors; 0 means greedy

    def __post_init__(self):
        _check("k", self.k, lambda k: k >= 1 and float(k).is_integer(), "an integer >= 1")
        _check("temperature", self.temperature, lambda t: t >= 0, ">= 0 (0 means greedy)")

    def next_token(self, logits, key):
        return _sample(_top_k_logits(logits, self.k), self.temperature, key)

    def probs(self, logits):
        return _mixed_probs(_top_k_logits(logits, self.k), self.temperature)


def _top_p_logits(logits, p, temperature):
    """Keep the smallest set of tempered probabilities whose mass reaches p, others -> -inf."""
    probs = jax.nn.softmax(_tempered(logits, temperature), axis=-1)
    ordered = -jnp.sort(-probs, axis=-1)  # descending
    before = jnp.cumsum(ordered, axis=-1) - ordered  # mass of the strictly more likely ones
    n_keep = jnp.maximum(jnp.sum(before < jnp.asarray(p, probs.dtype), axis=-1), 1)  # (B,)
    cutoff = jnp.take_along_axis(ordered, (n_keep - 1)[..., None], axis=-1)  # (B, 1)
    return jnp.where(probs >= cutoff, logits, -jnp.inf)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TopP:
    """Nucleus sampling: the fewest candidates whose probabilities add up to p."""

    p: float = 0.9  # probability mass kept, in (0, 1]
    temperature: float = 1.0  # 0 means greedy

    def __post_init__(self):
        _check("p", self.p, lambda p: 0 < p <= 1, "in (0, 1]")
        _check("temperature", self.temperature, lambda t: t >= 0, ">= 0 (0 means greedy)")

    def next_token(self, logits, key):
        return _sample(_top_p_logits(logits, self.p, self.temperature), self.temperature, key)

    def probs(self, logits):
        return _mixed_probs(_top_p_logits(logits, self.p, self.temperature), self.temperature)


SAMPLERS = (Greedy, Temperature, TopK, TopP)


# ---------------------------------------------------------------- the compiled loop
def _window_sizes(p: int, max_new: int, window: int) -> tuple[int, ...]:
    """Recompute mode: the static forward lengths used while the text grows from p to p + max_new."""
    total = p + max_new
    first = -(-p // window)
    return tuple(sorted({min(j * window, total) for j in range(first, -(-total // window) + 1)}))


def _decode_loop(step: GPTStep, params, prompt, start, n_new, end_id, sampler, key, *,
                 max_new: int, use_cache: bool, window: int):
    """Prompt (B, P) -> up to ``n_new`` tokens per row, (B, max_new) int32, and their counts.

    ``step(params, tokens, cache)`` is the model; ``functools.partial(step, params)`` is the
    ``logits_fn(tokens, cache) -> (logits, cache)`` it stands for. Rows stop after
    ``end_id`` (pass -1 to never stop); the loop ends when all rows stopped.
    """
    b, p = prompt.shape
    size = p + max_new
    logits_fn = functools.partial(step, params)
    if use_cache:  # 1) prefill: the whole prompt in one call, into the fridge
        cache = kv_cache.init(step.config, b, size, start=start)
        logits, cache = logits_fn(prompt, cache)
        state = cache
    else:  # the text so far, padded to `size`, re-read from scratch at every token
        logits = step(params, prompt, start=start)
        state = jnp.zeros((b, size), jnp.int32).at[:, :p].set(prompt)
    token = sampler.next_token(logits[:, -1], jax.random.fold_in(key, 0))  # (B,)
    out = jnp.zeros((b, max_new), jnp.int32).at[:, 0].set(token)
    done = token == end_id

    sizes = _window_sizes(p, max_new, window)

    def recompute(buf, length):
        """Full forward over the smallest window holding `length` tokens; logits at length-1."""
        def at(w):
            return lambda buf: jnp.take(step(params, buf[:, :w], start=start), length - 1,
                                        axis=1)
        index = jnp.searchsorted(jnp.asarray(sizes), length)  # first window >= length
        return lax.switch(index, [at(w) for w in sizes], buf)  # (B, V)

    def cond(carry):
        i, _, _, _, done = carry
        return (i < n_new) & ~jnp.all(done)

    def body(carry):  # 2) decode: one token per row per iteration
        i, token, state, out, done = carry
        if use_cache:
            logits, state = logits_fn(token[:, None], state)
            logits = logits[:, 0]
        else:
            state = lax.dynamic_update_slice(state, token[:, None], (0, p + i - 1))
            logits = recompute(state, p + i)
        nxt = sampler.next_token(logits, jax.random.fold_in(key, i))
        nxt = jnp.where(done, jnp.int32(0), nxt)  # finished rows write <pad>
        out = lax.dynamic_update_slice(out, nxt[:, None], (0, i))
        return i + 1, nxt, state, out, done | (nxt == end_id)

    i, _, _, out, _ = lax.while_loop(cond, body, (jnp.int32(1), token, state, out, done))
    n_new = jnp.asarray(n_new, jnp.int32)
    written = jnp.arange(max_new)[None, :] < jnp.minimum(i, n_new)
    out = jnp.where(written, out, 0)
    ended = jnp.any(out == end_id, axis=1)
    count = jnp.where(ended, jnp.argmax(out == end_id, axis=1) + 1, jnp.minimum(i, n_new))
    return out, count


decode_loop = jax.jit(_decode_loop, static_argnames=("step", "max_new", "use_cache", "window"))
decode_loop.__doc__ = _decode_loop.__doc__


# ---------------------------------------------------------------- host side: text in, text out
def encode_prompts(prompts, tokenizer: text.CharTokenizer | None = None, *,
                   bucket: int = PROMPT_BUCKET, errors: str = "strict"):
    """Texts -> left-padded ids (B, P) and per-row padding ``start`` (B,); P a multiple of bucket."""
    tokenizer = tokenizer or text.CharTokenizer()
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"prompts must be a non-empty str or list of str, got {prompts!r}")
    encoded = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] must be a str, got {type(p).__name__}")
        if not p.strip():
            raise ValueError(f"prompts[{i}] is empty: write an order, e.g. "
                             f"kl.text.prompt('Make a birthday cake')")
        encoded.append(tokenizer.encode(p, errors=errors))
    longest = max(len(e) for e in encoded)
    width = -(-longest // bucket) * bucket
    ids = np.zeros((len(encoded), width), np.int32)
    start = np.array([width - len(e) for e in encoded], np.int32)
    for row, (e, s) in enumerate(zip(encoded, start)):
        ids[row, s:] = e
    return ids, start


@dataclasses.dataclass(frozen=True)
class Generation:
    """What the chef served: texts, raw ids, how many tokens, and whether each recipe ended."""

    prompts: tuple[str, ...]
    texts: tuple[str, ...]  # generated continuations (without the prompt, without <end>)
    tokens: np.ndarray  # (B, max_new) ids written, <pad> after the end
    counts: np.ndarray  # (B,) tokens generated per row (the <end> included)
    ended: np.ndarray  # (B,) True where the recipe reached <end>
    seconds: float  # wall time of the compiled loop (after compilation)

    @property
    def text(self) -> str:
        return self.texts[0]


def _check_model(model):
    if isinstance(model, TinyGPT):
        return split_gpt(model)
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], GPTStep):
        return model
    raise TypeError(f"model must be a kl.models.TinyGPT or a (step, params) pair, got "
                    f"{type(model).__name__}")


def _check_sampler(sampler):
    if not isinstance(sampler, SAMPLERS):
        raise TypeError(f"sampler must be one of {[c.__name__ for c in SAMPLERS]}, got "
                        f"{type(sampler).__name__}")


def plan(n_prompt: int, max_new_tokens, context: int, *, bucket: int = OUTPUT_BUCKET) -> int:
    """The output buffer for ``max_new_tokens`` (a multiple of ``bucket``, inside the context)."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
            or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if n_prompt >= context:
        raise ValueError(f"the prompt takes {n_prompt} tokens (padded), but the context holds "
                         f"{context}: shorten the order")
    room = context - n_prompt
    if max_new_tokens > room:
        raise ValueError(f"max_new_tokens must be <= {room} (context {context} minus the "
                         f"prompt's {n_prompt} padded tokens), got {max_new_tokens}")
    return min(-(-int(max_new_tokens) // bucket) * bucket, room)


def _buffer(n_prompt: int, max_new_tokens, context: int, buffer) -> int:
    size = plan(n_prompt, max_new_tokens, context)
    if buffer is None:
        return size
    if isinstance(buffer, bool) or not isinstance(buffer, (int, np.integer)) or \
            not max_new_tokens <= buffer <= context - n_prompt:
        raise ValueError(f"buffer must be an int in [max_new_tokens={max_new_tokens}, "
                         f"{context - n_prompt}], got {buffer!r}")
    return int(buffer)


def generate(model, prompts, *, max_new_tokens: int = 256, sampler=None, seed: int = 0,
             use_cache: bool = True, stop_at_end: bool = True, window: int = WINDOW,
             buffer: int | None = None, errors: str = "strict") -> Generation:
    """Serve ``prompts`` (raw texts, e.g. ``kl.text.prompt(order)``) with the compiled loop.

    ``model`` is a TinyGPT or a ``(step, params)`` pair. Every row gets the same sampler and
    its own random stream (seeded by ``seed``). ``stop_at_end=False`` always writes
    ``max_new_tokens`` (benchmarks). ``buffer`` fixes the output buffer (a static shape:
    calls with the same buffer share one compiled program); by default it is
    ``max_new_tokens`` rounded up to ``OUTPUT_BUCKET``. Bad input raises ValueError/TypeError.
    """
    step, params = _check_model(model)
    sampler = Greedy() if sampler is None else sampler
    _check_sampler(sampler)
    tokenizer = text.CharTokenizer()
    ids, start = encode_prompts(prompts, tokenizer, errors=errors)
    max_new = _buffer(ids.shape[1], max_new_tokens, step.config.context, buffer)
    args = (step, params, jnp.asarray(ids), jnp.asarray(start), jnp.int32(max_new_tokens),
            jnp.int32(tokenizer.end_id if stop_at_end else -1), sampler,
            jax.random.key(seed))
    kwargs = dict(max_new=max_new, use_cache=use_cache, window=window)
    t0 = time.perf_counter()
    out, counts = jax.block_until_ready(decode_loop(*args, **kwargs))
    seconds = time.perf_counter() - t0
    out, counts = np.asarray(out), np.asarray(counts)
    ended = (out == tokenizer.end_id).any(axis=1)
    prompts = (prompts,) if isinstance(prompts, str) else tuple(prompts)
    return Generation(prompts, tuple(tokenizer.decode(row) for row in out), out, counts, ended,
                      seconds)


def recipe(model, order: str, **kwargs) -> str:
    """The chef's recipe for one guest's order (greedy unless a sampler is given)."""
    return generate(model, text.prompt(order), **kwargs).text


# ---------------------------------------------------------------- streaming, token by token
@functools.partial(jax.jit, static_argnames=("step", "size"))
def prefill(step: GPTStep, params, prompt, start, *, size: int):
    """Fill a fresh cache of ``size`` slots with the prompt: (last logits (B, V), cache)."""
    cache = kv_cache.init(step.config, prompt.shape[0], size, start=start)
    logits, cache = step(params, prompt, cache)
    return logits[:, -1], cache


@functools.partial(jax.jit, static_argnames=("step",))
def decode_step(step: GPTStep, params, token, cache):
    """One token per row into the cache: token (B,) -> (logits (B, V), cache)."""
    logits, cache = step(params, token[:, None], cache)
    return logits[:, 0], cache


_next = jax.jit(lambda sampler, logits, key, i: sampler.next_token(logits, jax.random.fold_in(key, i)))


def stream(model, prompt: str, *, max_new_tokens: int = 256, sampler=None, seed: int = 0,
           buffer: int | None = None) -> Iterator[str]:
    """Yield the recipe one character at a time, as a chatbot shows it (batch 1).

    A Python loop around the jitted ``prefill`` and ``decode_step``: easy to read and to
    show live, slower than the compiled ``decode_loop``. Same cache size, same random
    stream (``fold_in(key, i)``), so its tokens are those of ``generate``.
    """
    step, params = _check_model(model)
    sampler = Greedy() if sampler is None else sampler
    _check_sampler(sampler)
    tokenizer = text.CharTokenizer()
    ids, start = encode_prompts(prompt, tokenizer)
    max_new = _buffer(ids.shape[1], max_new_tokens, step.config.context, buffer)
    key = jax.random.key(seed)
    logits, cache = prefill(step, params, jnp.asarray(ids), jnp.asarray(start),
                            size=ids.shape[1] + max_new)
    for i in range(max_new_tokens):
        token = _next(sampler, logits, key, i)
        t = int(token[0])
        if t == tokenizer.end_id:
            return
        yield tokenizer.decode([t])
        if i + 1 < max_new_tokens:
            logits, cache = decode_step(step, params, token, cache)


# ---------------------------------------------------------------- measuring the service
def cache_copies(hlo: str, slots: int) -> list[str]:
    """Shapes of the ``copy`` ops in compiled HLO text that carry a cache's slot axis.

    ``hlo`` is ``jax.jit(f).lower(...).compile().as_text()`` of a generation loop whose
    caches have ``slots`` slots. A healthy loop has none: a copy of the cache on every token
    costs a whole read and write of the fridge (see ``kl.kv_cache``'s layout notes).
    """
    shapes = re.findall(r"= (f32\[[0-9,]*\])\{[^}]*\} copy\(", hlo)
    return [shape for shape in shapes if str(slots) in shape[4:-1].split(",")]



def tokens_per_second(model, prompt: str, n_tokens: int, *, batch: int = 1,
                      use_cache: bool = True, repeats: int = 5, window: int = WINDOW,
                      buffer: int | None = None, warmup: bool = True) -> dict:
    """Median speed of the compiled loop writing exactly ``n_tokens`` per row (no early stop).

    Compilation is excluded by one untimed warm-up call (``warmup=False`` skips it when
    the same program already ran, e.g. for another ``n_tokens`` in the same buffer).
    Returns tokens_per_s (all rows together), seconds (median per call) and the timings.
    """
    step, params = _check_model(model)
    ids, start = encode_prompts([prompt] * batch)
    max_new = _buffer(ids.shape[1], n_tokens, step.config.context, buffer)
    args = (step, params, jnp.asarray(ids), jnp.asarray(start), jnp.int32(n_tokens),
            jnp.int32(-1), Greedy(), jax.random.key(0))
    kwargs = dict(max_new=max_new, use_cache=use_cache, window=window)
    if warmup:
        jax.block_until_ready(decode_loop(*args, **kwargs))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(decode_loop(*args, **kwargs))
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {"tokens_per_s": batch * n_tokens / median, "seconds": median, "times": times,
            "batch": batch, "n_tokens": n_tokens, "use_cache": use_cache}
