"""Frosting while it bakes: speculative decoding -- the commis drafts, the head chef verifies.

A chef writes one token per forward pass. A cheap *draft* model guesses the next k tokens;
the *target* scores all of them in **one** forward pass over its KV cache (k + 1 positions:
the last known token and the k guesses). Guesses the target agrees with are kept, the first
disagreement is replaced by the target's own choice, and when all k agree the target's
prediction after them comes free (the *bonus* token). Both caches roll back to the text
kept. A round costs k draft steps and one (k + 1)-token verify pass and yields 1 ... k + 1
tokens.

* **Greedy** (``temperature = 0``): a guess is kept iff it is the target's argmax, so the
  text is token for token the target's own greedy text.
* **Sampling** (``temperature > 0``): the rule of Leviathan et al. and Chen et al. (2023) on
  the tempered probabilities p (target) and q (draft): keep a drafted token d with
  probability min(1, p(d) / q(d)); at the first rejection draw from normalize(max(0, p - q));
  after k acceptances draw the bonus from p. Every token is then distributed exactly as the
  target's own sampling would draw it.

Greedy is the same rule with one-hot p and q, so one code path serves both.

Models are ``(step, params)`` pairs (``functools.partial(step, params)`` is the
``logits_fn(tokens, cache) -> (logits, cache)``): a TinyGPT (``kl.models.split_gpt``), the
n-gram commis, the perfect draft or a menu of drafts (``kl.drafts``) -- any step with a cache
that has a ``length``.

The loop (``speculative_loop``) is one ``jax.jit`` program, batch 1: prefill both caches,
then ``lax.while_loop`` over rounds. ``k`` is traced, up to the static ``k_max``: the draft
runs a loop of k steps, and the verify pass is one of k_max programs of widths 2 ... k_max + 1
(each a ``while_loop`` that runs 0 or 1 times), so every k shares one compiled program and
a verify pass costs what k + 1 tokens cost, never k_max + 1. Random numbers (one draw per
round) are only made when the temperature is above 0.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kitchenlab import drafts, generate, text
from kitchenlab.models import TinyGPT, split_gpt

K_MAX = 8  # the longest draft the compiled loop allows (k = 1 ... K_MAX share one program)
ACCEPTED, CORRECTED, BONUS = 1, 2, 3  # what each written token was (the transcript's colours)
KINDS = {ACCEPTED: "accepted draft", CORRECTED: "corrected by the chef", BONUS: "bonus"}


def as_pair(model, name: str = "model"):
    """A TinyGPT or a ``(step, params)`` pair -> ``(step, params)``."""
    if isinstance(model, TinyGPT):
        return split_gpt(model)
    if isinstance(model, tuple) and len(model) == 2 and callable(model[0]):
        return model
    raise TypeError(f"{name} must be a kl.models.TinyGPT or a (step, params) pair, got "
                    f"{type(model).__name__}")


def _probs(logits, temperature):
    """Tempered probabilities (..., V); temperature 0: one-hot at the argmax (greedy)."""
    return generate.Temperature(temperature).probs(logits)


def accepted(u, p_d, q_d):
    """Keep a drafted token d with probability min(1, p(d) / q(d)): u ~ U[0, 1) < p / q.

    Written u q < p (q(d) > 0 for any token the draft drew). Greedy passes u = 0 with
    one-hot p and q: kept iff the target's argmax is d.
    """
    return u * q_d < p_d


def residual(p, q):
    """What to draw from after rejecting a draft token: max(0, p - q) (unnormalised).

    Where the target likes a token more than the draft did, it gets the missing mass; the
    guess just rejected had p < q there, so it gets none. (When p == q, nothing is ever
    rejected; p stands in for the empty difference of rounding.)
    """
    r = jnp.maximum(p - q, 0.0)
    return jnp.where(jnp.sum(r) > 0, r, p)


# ---------------------------------------------------------------- one compiled loop
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Counts:
    """What one run did (arrays from the compiled loop)."""

    rounds: jax.Array  # verify passes of the target (its forward calls after the prefill)
    drafted: jax.Array  # draft tokens proposed (k per round, fewer at the very end)
    accepted: jax.Array  # draft tokens the target kept
    bonus: jax.Array  # rounds where all were kept and the bonus token came free


def _speculative_loop(target, t_params, draft, d_params, prompt, start, n_new, end_id, k,
                      temperature, key, *, max_new: int, k_max: int,
                      return_caches: bool = False):
    """Prompt (1, P) -> (tokens (max_new,), kinds (max_new,), count, Counts).

    ``return_caches=True`` also returns both final caches (for tests).

    With n tokens of text known (prompt + written), each round starts with the target's
    cache holding tokens 0 ... n-2 and the draft's 0 ... n-3, and ``last2`` = tokens n-2,
    n-1. The draft reads ``last2`` (rewriting slot n-2: always 2 tokens, a fixed shape) and
    proposes d1 ... dk; the target reads [token n-1, d1 ... dk]. Both caches then keep
    a + 1 of what they read (a = guesses accepted).
    """
    p = prompt.shape[1]
    size = p + max_new
    t_fn, d_fn = functools.partial(target, t_params), functools.partial(draft, d_params)
    _, t_cache = t_fn(prompt[:, : p - 1], drafts.init_cache(target, 1, size, start))
    _, d_cache = d_fn(prompt[:, : p - 2], drafts.init_cache(draft, 1, size, start))
    vocab = drafts._vocab(target)
    slots = jnp.arange(k_max + 1)
    hot = temperature > 0
    inv_t = jnp.where(hot, 1.0 / jnp.where(hot, temperature, 1.0), 1.0)  # 1 / T (greedy: 1)

    def noise(round_key):
        """Gumbel noise for k_max + 1 draws and k_max uniforms for the acceptance tests."""
        g = jax.random.gumbel(round_key, (k_max + 1, vocab))
        return g, jax.random.uniform(jax.random.fold_in(round_key, 1), (k_max,))

    def verify(width):
        def once(s):
            logits, cache = t_fn(s[1][None, :width], s[2])
            return s[0].at[:width].set(logits[0].astype(jnp.float32)), s[1], cache, jnp.bool_(True)
        return once

    def cond(c):
        return (c["n"] < n_new) & ~c["done"]

    def body(c):
        kk = jnp.minimum(k, max_new - c["n"])  # the verify pass must fit in the caches
        g, u = lax.cond(hot, noise, lambda _: (jnp.zeros((k_max + 1, vocab)), jnp.zeros(k_max)),
                        jax.random.fold_in(key, c["rounds"]))
        # 1) the commis drafts kk tokens, one at a time: a Gumbel-max draw from its tempered
        #    logits (greedy: g = 0, the argmax); q is computed for all of them afterwards
        logits, d_cache = d_fn(c["last2"][None], c["d_cache"])
        first = logits[0, 1].astype(jnp.float32)
        guesses = jnp.zeros((k_max + 1,), jnp.int32).at[0].set(
            jnp.argmax(first * inv_t + g[0]).astype(jnp.int32))
        d_logits = jnp.zeros((k_max + 1, vocab), jnp.float32).at[0].set(first)

        def draft_more(j, s):
            guesses, d_logits, d_cache = s
            logits, d_cache = d_fn(guesses[j - 1][None, None], d_cache)
            row = logits[0, 0].astype(jnp.float32)
            guess = jnp.argmax(row * inv_t + g[j]).astype(jnp.int32)
            return guesses.at[j].set(guess), d_logits.at[j].set(row), d_cache

        guesses, d_logits, d_cache = lax.fori_loop(1, kk, draft_more, (guesses, d_logits, d_cache))
        qs = _probs(d_logits, temperature)  # (k_max + 1, V); rows from kk on are unused
        # 2) the head chef tastes them all in one pass: [last token, d1 ... dk]
        tokens = jnp.concatenate([c["last2"][1:], guesses[:k_max]])  # (k_max + 1,)
        state = (jnp.zeros((k_max + 1, vocab), jnp.float32), tokens, c["t_cache"], jnp.bool_(False))
        for width in range(2, k_max + 2):
            # a while loop run 0 or 1 times rather than lax.switch: a conditional copied
            # every cache array in every branch, a while loop updates them in place
            state = lax.while_loop(lambda s, w=width: ~s[3] & (kk + 1 == w), verify(width), state)
        t_logits, _, t_cache, _ = state
        ps = _probs(t_logits, temperature)  # (k_max + 1, V)
        # 3) keep the agreeing prefix: d_i kept with probability min(1, p(d_i) / q(d_i))
        p_d = jnp.take_along_axis(ps[:k_max], guesses[:k_max, None], axis=1)[:, 0]
        q_d = jnp.take_along_axis(qs[:k_max], guesses[:k_max, None], axis=1)[:, 0]
        ok = accepted(u, p_d, q_d) & (slots[:k_max] < kk)
        a = jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))  # guesses kept
        # 4) the first rejection is replaced by a draw from normalize(max(0, p - q)); after
        #    kk acceptances q is 0 there, so that draw is from p: the bonus token
        resid = residual(ps[a], jnp.where(a < kk, qs[a], 0.0))
        new = jnp.argmax(jnp.log(resid) + g[k_max]).astype(jnp.int32)
        window = jnp.where(slots < a, guesses, jnp.where(slots == a, new, 0))
        kind = jnp.where(slots < a, ACCEPTED, jnp.where(a == kk, BONUS, CORRECTED))
        # 5) both caches back to the text kept: each read kk + 1 tokens and keeps a + 1
        prev = jnp.where(a > 0, guesses[jnp.maximum(a - 1, 0)], c["last2"][1])
        return dict(
            n=c["n"] + a + 1, t_cache=drafts.roll(t_cache, c["t_cache"].length + a + 1),
            d_cache=drafts.roll(d_cache, c["d_cache"].length + a + 1),
            last2=jnp.stack([prev, new]),
            out=lax.dynamic_update_slice(c["out"], window, (c["n"],)),
            kinds=lax.dynamic_update_slice(c["kinds"], kind.astype(jnp.int32), (c["n"],)),
            done=jnp.any((window == end_id) & (slots <= a)), rounds=c["rounds"] + 1,
            drafted=c["drafted"] + kk, accepted=c["accepted"] + a,
            bonus=c["bonus"] + (a == kk).astype(jnp.int32))

    zero, out = jnp.int32(0), jnp.zeros((max_new + k_max + 1,), jnp.int32)
    c = lax.while_loop(cond, body, dict(
        n=zero, t_cache=t_cache, d_cache=d_cache, last2=prompt[0, p - 2:], out=out, kinds=out,
        done=jnp.bool_(False), rounds=zero, drafted=zero, accepted=zero, bonus=zero))
    n = jnp.minimum(c["n"], jnp.asarray(n_new, jnp.int32))
    ends = (c["out"][:max_new] == end_id) & (jnp.arange(max_new) < n)
    count = jnp.where(jnp.any(ends), jnp.argmax(ends) + 1, n)
    kept = jnp.arange(max_new) < count
    result = (jnp.where(kept, c["out"][:max_new], 0), jnp.where(kept, c["kinds"][:max_new], 0),
              count, Counts(c["rounds"], c["drafted"], c["accepted"], c["bonus"]))
    return result + (c["t_cache"], c["d_cache"]) if return_caches else result


speculative_loop = jax.jit(_speculative_loop,
                           static_argnames=("target", "draft", "max_new", "k_max",
                                            "return_caches"))
speculative_loop.__doc__ = _speculative_loop.__doc__


# ---------------------------------------------------------------- host side: text in, text out
@dataclasses.dataclass(frozen=True)
class Speculation:
    """What one speculative run served, and how the kitchen worked for it."""

    prompt: str
    text: str  # the continuation (without the prompt, without <end>)
    tokens: np.ndarray  # (count,) ids written (<end> included when reached)
    kinds: np.ndarray  # (count,) ACCEPTED, CORRECTED or BONUS per token
    ended: bool  # the recipe reached <end>
    k: int  # draft tokens per round
    temperature: float
    rounds: int  # target verify passes
    drafted: int  # draft tokens proposed
    accepted: int  # ... and kept
    bonus: int  # rounds that ended with a free bonus token
    seconds: float  # wall time of the compiled loop (the first call includes compiling)

    @property
    def count(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def acceptance(self) -> float:
        """alpha: the fraction of drafted tokens the target kept."""
        return self.accepted / max(self.drafted, 1)

    @property
    def tokens_per_call(self) -> float:
        """Tokens written per target forward pass (plain decoding: exactly 1)."""
        return self.count / max(self.rounds, 1)


def _check_k(k, k_max: int, room: int):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1 (draft tokens per round), got {k!r}")
    if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
        raise ValueError(f"k_max must be an int >= 1, got {k_max!r}")
    if k > k_max:
        raise ValueError(f"k must be <= k_max={k_max} (the longest draft the compiled loop "
                         f"holds), got {k}")
    if k + 1 > room:
        raise ValueError(f"k + 1 = {k + 1} positions (a verify pass) must fit in the room the "
                         f"context leaves after the prompt ({room}): use a smaller k or a "
                         f"shorter order")


def prepare(target, draft, prompt: str, *, k: int = 4, max_new_tokens: int = 256,
            temperature: float = 0.0, seed: int = 0, stop_at_end: bool = True,
            buffer: int | None = None, k_max: int = K_MAX, errors: str = "strict"):
    """Check a request and build the arguments of ``speculative_loop``: ``(args, kwargs)``."""
    t_step, t_params = as_pair(target, "target")
    d_step, d_params = as_pair(draft, "draft")
    t_vocab, d_vocab = drafts._vocab(t_step), drafts._vocab(d_step)
    if t_vocab != d_vocab:
        raise ValueError(f"draft and target must share a vocabulary: the target scores "
                         f"{t_vocab} tokens, the draft {d_vocab}")
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str (one order, e.g. kl.text.prompt('Make a cake')), "
                        f"got {type(prompt).__name__}")
    generate._check("temperature", temperature, lambda t: t >= 0, ">= 0 (0 means greedy)")
    tokenizer = text.CharTokenizer()
    ids, start = generate.encode_prompts(prompt, tokenizer, errors=errors)
    context = t_step.config.context if hasattr(t_step, "config") else None
    context = context or ids.shape[1] + (buffer or max_new_tokens) + k_max + 1
    max_new = generate._buffer(ids.shape[1], max_new_tokens, context, buffer)
    _check_k(k, k_max, context - ids.shape[1])
    args = (t_step, t_params, d_step, d_params, jnp.asarray(ids), jnp.asarray(start),
            jnp.int32(max_new_tokens), jnp.int32(tokenizer.end_id if stop_at_end else -1),
            jnp.int32(k), jnp.float32(temperature), jax.random.key(seed))
    return args, dict(max_new=max_new, k_max=k_max)


def speculate(target, draft, prompt: str, *, k: int = 4, max_new_tokens: int = 256,
              temperature: float = 0.0, seed: int = 0, stop_at_end: bool = True,
              buffer: int | None = None, k_max: int = K_MAX,
              errors: str = "strict") -> Speculation:
    """Serve one order (raw text, e.g. ``kl.text.prompt(order)``) with speculative decoding.

    ``target`` and ``draft`` are TinyGPTs or ``(step, params)`` pairs sharing a vocabulary;
    ``k`` draft tokens per round (1 ... ``k_max``: all share one compiled program). Greedy at
    ``temperature=0`` (the target's own greedy text), else distribution-preserving sampling.
    """
    args, kwargs = prepare(target, draft, prompt, k=k, max_new_tokens=max_new_tokens,
                           temperature=temperature, seed=seed, stop_at_end=stop_at_end,
                           buffer=buffer, k_max=k_max, errors=errors)
    t0 = time.perf_counter()
    tokens, kinds, count, counts = jax.block_until_ready(speculative_loop(*args, **kwargs))
    seconds = time.perf_counter() - t0
    n = int(count)
    tokens, kinds = np.asarray(tokens)[:n], np.asarray(kinds)[:n]
    tokenizer = text.CharTokenizer()
    return Speculation(prompt, tokenizer.decode(tokens), tokens, kinds,
                       bool((tokens == tokenizer.end_id).any()), int(k), float(temperature),
                       int(counts.rounds), int(counts.drafted), int(counts.accepted),
                       int(counts.bonus), seconds)


# ---------------------------------------------------------------- what it should pay
def expected_tokens_per_call(alpha: float, k: int) -> float:
    """Tokens per verify pass if each guess is kept with probability alpha, independently:
    1 + alpha + ... + alpha**k = (1 - alpha**(k+1)) / (1 - alpha)."""
    _check_alpha(alpha)
    return float(k + 1) if alpha >= 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


def predicted_speedup(alpha: float, k: int, c: float, v: float) -> float:
    """(1 - alpha**(k+1)) / ((1 - alpha) (k c + v)): tokens per round over the round's cost.

    ``c`` is a draft step's cost and ``v`` a (k + 1)-token verify pass's cost, both in units
    of one plain one-token target step (Leviathan et al. 2023 take v = 1: a GPU's verify
    pass costs what one token costs).
    """
    for name, value in (("c", c), ("v", v)):
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    return expected_tokens_per_call(alpha, k) / (k * c + v)


def _check_alpha(alpha):
    if not (isinstance(alpha, (int, float, np.floating)) and 0 <= alpha <= 1):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")


@functools.partial(jax.jit, static_argnames=("step", "width", "slots", "n"))
def _passes(step, params, tokens, *, width: int, slots: int, n: int):
    """``n`` forward passes of ``width`` tokens at the same place of a half-full cache."""
    cache = drafts.roll(drafts.init_cache(step, 1, slots), slots // 2)

    def one(i, carry):
        cache, total = carry
        logits, new = step(params, (tokens + i % 2)[None, :width], cache)
        return drafts.roll(new, cache.length), total + logits[0, -1, 0]

    return lax.fori_loop(0, n, one, (cache, jnp.float32(0)))[1]


def pass_seconds(model, width: int, *, slots: int = 320, n: int = 100, repeats: int = 5) -> float:
    """Median seconds of one forward pass of ``width`` tokens through ``model``'s cache.

    Measured inside one compiled loop of ``n`` passes (no per-call overhead), the cache
    rolled back after each, ``slots`` slots as in a 256-token service. ``pass_seconds(m, 5) /
    pass_seconds(m, 1)`` is v(5); a draft's one-token pass over the target's is c.
    """
    step, params = as_pair(model)
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= slots // 2:
        raise ValueError(f"width must be an int in [1, {slots // 2}], got {width!r}")
    tokens = jnp.full((width,), 3, jnp.int32)
    jax.block_until_ready(_passes(step, params, tokens, width=width, slots=slots, n=n))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(_passes(step, params, tokens, width=width, slots=slots, n=n))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / n
