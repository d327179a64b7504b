"""The commis brigade: cheap draft models for speculative decoding (notebook 08).

A draft is any ``(step, params)`` pair whose ``step(params, tokens, cache) -> (logits,
cache)`` reads T new tokens (shape (1, T)) at ``cache.length`` and scores the token after
each -- the same ``logits_fn`` shape as the GPT chefs -- plus ``step.init_cache(batch,
size, start)`` and ``step.vocab_size``. The shipped draft chef (a 1-block GPT) is one; this
module adds three more:

* **the commis** (``build_commis``): an n-gram model counted from the recipe corpus. For
  every context of the last 1 ... ``max_context`` characters seen in the corpus it knows
  the character that most often followed; to guess it tries the longest context it knows
  and backs off to shorter ones (an (``max_context`` + 1)-gram model). Its "cache" is the
  text so far (``NGramCache``), rolled back like a KV cache. Its logits are one-hot (0 for
  the guess, -1e30 elsewhere), so its probabilities are one-hot at any temperature: a
  deterministic draft. The table is a hash table counted on the host with NumPy and looked
  up inside the jitted loop: one vectorised hash of the ``max_context`` suffixes (FNV-style
  multiply / xor, the same uint32 arithmetic in NumPy and JAX) and one gather per guess. A
  slot shared by two contexts keeps the more frequent; a lookup checks the full 32-bit
  hash. A rare false match costs only a wrong guess: the head chef verifies every one.
* **the perfect draft** (``perfect_draft``): reads the answer off a known text -- the most
  any draft could give, at almost no cost (the ceiling of speculative decoding).
* **a menu of drafts** (``menu``): several drafts in one compiled program, the one used
  chosen by a traced number (``choose``), so switching drafts never recompiles.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from kitchenlab import kv_cache, text

_PRIME = 16777619  # FNV-1a 32-bit prime: h = (h ^ token) * prime
_BASIS = 2166136261  # FNV offset basis
_MIX = 0x9E3779B1  # golden-ratio constant, mixes the context length into the hash
_NEG = -1e30  # the logit of every character the commis does not guess


def _suffix_hashes_np(ids: np.ndarray, max_context: int) -> list[np.ndarray]:
    """Hashes of the contexts ids[i-L:i] for L = 1..max_context, for every i (uint32 arrays)."""
    n = ids.shape[0]
    padded = np.concatenate([np.zeros(max_context, np.uint32), ids.astype(np.uint32)])
    h = np.full(n, _BASIS, np.uint32)
    out = []
    with np.errstate(over="ignore"):
        for length in range(1, max_context + 1):
            prev = padded[max_context - length: max_context - length + n]  # ids[i - L]
            h = (h ^ prev) * np.uint32(_PRIME)
            out.append(_finish_np(h, length))
    return out


def _finish_np(h: np.ndarray, length: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = (h + np.uint32(length) * np.uint32(_MIX)).astype(np.uint32)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(12)
    return h | np.uint32(1)  # never 0: 0 marks an empty slot


def _finish(h: jax.Array, length: jax.Array) -> jax.Array:
    """The same finaliser as ``_finish_np``, in JAX uint32 arithmetic."""
    h = h + length.astype(jnp.uint32) * jnp.uint32(_MIX)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x2C1B3C6D)
    h = h ^ (h >> 12)
    return h | jnp.uint32(1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NGramTable:
    """What the commis remembers: a hash table from contexts to the usual next character."""

    keys: jax.Array  # (2**bits,) uint32: full hash of the context in each slot (0: empty)
    tokens: jax.Array  # (2**bits,) int32: the character that most often followed it
    fallback: jax.Array  # () int32: the guess when no context matches (the commonest character)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NGramCache:
    """The commis's notepad: the text read so far (a fixed buffer) and how much of it counts."""

    tokens: jax.Array  # (S,) int32: the text, slots [0, length) are real
    length: jax.Array  # () int32 (left padding is read as the <pad> it is)

    @property
    def size(self) -> int:
        return self.tokens.shape[0]


@dataclasses.dataclass(frozen=True)
class NGramStep:
    """The commis as a pure, hashable step ``step(table, tokens, cache) -> (logits, cache)``."""


    max_context: int = 15  # longest context looked up (a 16-gram model)
    bits: int = 19  # the table has 2**bits slots
    vocab_size: int = text.CharTokenizer().vocab_size  # characters it can guess

    def init_cache(self, batch: int, size: int, start=None) -> NGramCache:
        """An empty notepad of ``size`` slots (``start`` is not needed: padding is <pad>)."""
        if batch != 1:
            raise ValueError(f"the n-gram commis serves one order at a time (batch 1), got {batch}")
        return NGramCache(jnp.zeros((size,), jnp.int32), jnp.int32(0))

    def __call__(self, table: NGramTable, tokens, cache: NGramCache):
        if tokens.ndim != 2 or tokens.shape[0] != 1:
            raise ValueError(f"tokens must have shape (1, T), got {tuple(tokens.shape)}")
        t, m = tokens.shape[1], self.max_context
        buf = jax.lax.dynamic_update_slice(cache.tokens, tokens[0].astype(jnp.int32), (cache.length,))
        # the m characters ending at each new token: (T, m), newest first; before 0 read <pad>
        pos = cache.length + jnp.arange(t)[:, None] - jnp.arange(m)[None, :]
        ctx = jnp.where(pos >= 0, buf[jnp.clip(pos, 0, buf.shape[0] - 1)], 0).astype(jnp.uint32)
        h = jnp.full((t,), _BASIS, jnp.uint32)
        hashes = []
        for length in range(1, m + 1):  # unrolled: m small vector ops
            h = (h ^ ctx[:, length - 1]) * jnp.uint32(_PRIME)
            hashes.append(_finish(h, jnp.int32(length)))
        hashes = jnp.stack(hashes, axis=1)  # (T, m): context lengths 1..m
        slot = (hashes >> (32 - self.bits)).astype(jnp.int32)
        found = table.keys[slot] == hashes  # (T, m)
        longest = m - 1 - jnp.argmax(found[:, ::-1], axis=1)  # the longest context known
        guess = jnp.where(jnp.any(found, axis=1),
                          jnp.take_along_axis(table.tokens[slot], longest[:, None], axis=1)[:, 0],
                          table.fallback)  # (T,)
        logits = jnp.where(jnp.arange(self.vocab_size)[None, :] == guess[:, None], 0.0, _NEG)
        return logits[None].astype(jnp.float32), dataclasses.replace(
            cache, tokens=buf, length=cache.length + jnp.int32(t))


def build_commis(docs, *, max_context: int = 15, bits: int = 19,
          tokenizer: text.CharTokenizer | None = None) -> tuple[NGramStep, NGramTable]:
    """Count the commis's table from recipes (texts, each followed by <end>): ``(step, table)``.

    Each recipe is read as the chefs see it at serving time: its text, then <end>. For every
    context of 1 ... ``max_context`` characters the most frequent next character is kept; a
    table slot shared by two contexts keeps the more frequent one.
    """
    tokenizer = tokenizer or text.CharTokenizer()
    if isinstance(docs, str) or not isinstance(docs, (list, tuple)) or not docs:
        raise ValueError(f"docs must be a non-empty list of recipe texts, got {type(docs).__name__}")
    for name, value, lo, hi in (("max_context", max_context, 1, 32), ("bits", bits, 8, 26)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    end = np.array([tokenizer.end_id], np.int32)
    ids = np.concatenate([np.concatenate([tokenizer.encode(d), end]) for d in docs])
    nxt = ids.astype(np.uint64)
    best_keys, best_tokens, best_counts = [], [], []
    for h in _suffix_hashes_np(ids, max_context):
        pair, counts = np.unique((h.astype(np.uint64) << np.uint64(8)) | nxt, return_counts=True)
        key = (pair >> np.uint64(8)).astype(np.uint32)
        # per context: the most frequent next character (ties: the smallest id, stable)
        order = np.lexsort((-counts, key))
        key, pair, counts = key[order], pair[order], counts[order]
        first = np.concatenate([[True], key[1:] != key[:-1]])
        total = np.add.reduceat(counts, np.flatnonzero(first))  # how often the context occurred
        best_keys.append(key[first])
        best_tokens.append((pair[first] & np.uint64(255)).astype(np.int32))
        best_counts.append(total)
    keys, tokens, counts = (np.concatenate(a) for a in (best_keys, best_tokens, best_counts))
    slots = (keys >> np.uint32(32 - bits)).astype(np.int64)
    order = np.lexsort((-counts, slots))  # per slot, the most frequent context first
    slots, keys, tokens = slots[order], keys[order], tokens[order]
    first = np.concatenate([[True], slots[1:] != slots[:-1]])
    table_keys = np.zeros(2 ** bits, np.uint32)
    table_tokens = np.zeros(2 ** bits, np.int32)
    table_keys[slots[first]] = keys[first]
    table_tokens[slots[first]] = tokens[first]
    fallback = int(np.bincount(ids, minlength=tokenizer.vocab_size).argmax())
    step = NGramStep(max_context=max_context, bits=bits, vocab_size=tokenizer.vocab_size)
    return step, NGramTable(jnp.asarray(table_keys), jnp.asarray(table_tokens), jnp.int32(fallback))


def _one_hot_logits(guess: jax.Array, vocab: int) -> jax.Array:
    """(T,) guesses -> (1, T, V) logits: 0 at the guess, -1e30 elsewhere."""
    return jnp.where(jnp.arange(vocab)[None, :] == guess[:, None], 0.0, _NEG)[None].astype(
        jnp.float32)


# ---------------------------------------------------------------- the perfect draft
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PositionCache:
    """A draft that needs no memory but where it is: ``length`` tokens read so far."""

    length: jax.Array  # () int32


@dataclasses.dataclass(frozen=True)
class PerfectStep:
    """A draft that reads the next token off a known text (its params): always right there."""

    vocab_size: int = text.CharTokenizer().vocab_size

    def init_cache(self, batch: int, size: int, start=None) -> PositionCache:
        if batch != 1:
            raise ValueError(f"the perfect draft serves one order at a time (batch 1), got {batch}")
        return PositionCache(jnp.int32(0))

    def __call__(self, known, tokens, cache: PositionCache):
        t = tokens.shape[1]
        after = cache.length + 1 + jnp.arange(t)  # the slot each guess is for
        guess = known[jnp.clip(after, 0, known.shape[0] - 1)]
        return _one_hot_logits(guess, self.vocab_size), PositionCache(cache.length + t)


def perfect_draft(known, *, vocab_size: int | None = None) -> tuple[PerfectStep, jax.Array]:
    """A draft that knows the answer: ``known`` is the whole text, slot by slot (the padded
    prompt followed by what the target will write, e.g. its greedy continuation)."""
    known = np.asarray(known)
    if known.ndim != 1 or known.size < 2 or not np.issubdtype(known.dtype, np.integer):
        raise ValueError(f"known must be a 1-D array of >= 2 token ids, got shape {known.shape} "
                         f"and dtype {known.dtype}")
    step = PerfectStep(vocab_size or text.CharTokenizer().vocab_size)
    return step, jnp.asarray(known, jnp.int32)


# ---------------------------------------------------------------- a menu of drafts
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MenuCache:
    """Every draft's cache, side by side (only the chosen draft's moves)."""

    caches: tuple

    @property
    def length(self) -> jax.Array:
        return self.caches[0].length

    def roll(self, length) -> "MenuCache":
        """All caches back (or on) to ``length`` tokens."""
        return MenuCache(tuple(roll(c, length) for c in self.caches))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MenuParams:
    """The drafts' params and which draft is on duty (traced: switching never recompiles)."""

    choice: jax.Array  # () int32: index into the menu
    params: tuple  # each draft's params


@dataclasses.dataclass(frozen=True)
class DraftMenu:
    """Several drafts as one step; ``params.choice`` picks the one that runs."""

    steps: tuple  # the drafts' steps (hashable)
    names: tuple  # their names, for choose() and plots

    @property
    def vocab_size(self) -> int:
        return _vocab(self.steps[0])

    def init_cache(self, batch: int, size: int, start=None) -> MenuCache:
        return MenuCache(tuple(init_cache(s, batch, size, start) for s in self.steps))

    def __call__(self, params: MenuParams, tokens, cache: MenuCache):
        logits = jnp.zeros((1, tokens.shape[1], self.vocab_size), jnp.float32)
        caches = list(cache.caches)
        for i, step in enumerate(self.steps):
            # a while loop run 0 or 1 times rather than lax.switch: a conditional copied
            # every cache array it was handed, a while loop updates them in place
            def once(s, i=i, step=step):
                out, c = step(params.params[i], tokens, s[1])
                return out.astype(jnp.float32), c, jnp.bool_(True)

            logits, caches[i], _ = jax.lax.while_loop(
                lambda s, i=i: ~s[2] & (params.choice == i), once,
                (logits, caches[i], jnp.bool_(False)))
        # every cache moves on together, so ``length`` and ``roll`` mean the same for all
        length = cache.length + jnp.int32(tokens.shape[1])
        return logits, MenuCache(tuple(roll(c, length) for c in caches))


def menu(**drafts) -> tuple[DraftMenu, MenuParams]:
    """``menu(commis=(step, params), chef=...)``: one draft step holding all; the first is on duty."""
    if not drafts:
        raise ValueError("menu needs at least one draft, e.g. menu(commis=kl.drafts.build_commis(docs))")
    steps, params = [], []
    for name, pair in drafts.items():
        if not (isinstance(pair, tuple) and len(pair) == 2 and callable(pair[0])):
            raise TypeError(f"draft {name!r} must be a (step, params) pair, got {type(pair).__name__}")
        steps.append(pair[0])
        params.append(pair[1])
    sizes = {name: _vocab(s) for name, s in zip(drafts, steps)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the drafts' vocabularies differ: {sizes}")
    return DraftMenu(tuple(steps), tuple(drafts)), MenuParams(jnp.int32(0), tuple(params))


def choose(draft_menu: tuple[DraftMenu, MenuParams], name: str | int, params=None):
    """The same menu with draft ``name`` (or its index) on duty: a ``(step, params)`` pair.

    ``params`` swaps that draft's knobs for others of the same shapes (e.g. an untrained
    draft chef in the trained one's place): still the same compiled program.
    """
    step, menu_params = draft_menu
    index = step.names.index(name) if name in step.names else name
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(step.names):
        raise ValueError(f"name must be one of {list(step.names)}, got {name!r}")
    chosen = list(menu_params.params)
    if params is not None:
        old, new = jax.tree.structure(chosen[index]), jax.tree.structure(params)
        shapes = [getattr(x, "shape", ()) for x in jax.tree.leaves(chosen[index])]
        if old != new or shapes != [getattr(x, "shape", ()) for x in jax.tree.leaves(params)]:
            raise ValueError(f"params for {step.names[index]!r} must have the structure and "
                             f"shapes of the draft's own")
        chosen[index] = params
    return step, MenuParams(jnp.int32(index), tuple(chosen))


# ---------------------------------------------------------------- any model's cache
def _vocab(step) -> int:
    config = getattr(step, "config", None)  # a GPTStep: its config says
    return int(config.vocab_size if config is not None else step.vocab_size)


def init_cache(step, batch: int, size: int, start=None):
    """An empty cache for ``step``: a KV cache for a GPT, the step's own otherwise."""
    if hasattr(step, "init_cache"):
        return step.init_cache(batch, size, start)
    return kv_cache.init(step.config, batch, size, start=start)


def roll(cache, length):
    """The cache back (or on) to ``length`` tokens: the entries after it are forgotten."""
    length = jnp.asarray(length, jnp.int32)
    if hasattr(cache, "roll"):
        return cache.roll(length)
    return dataclasses.replace(cache, length=length)
