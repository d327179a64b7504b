"""Notebook 08's experiments: speculative decoding measured, and its fairness tested.

Everything the notebook's panel draws and its checks grade is computed here from one
``Kitchen``: the shipped target chef, a menu of drafts (the n-gram commis, the shipped
draft chef, the perfect draft and an untrained apprentice) compiled into one program, and
the order every timing serves (256 greedy tokens, no early stop, batch 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from kitchenlab import drafts, generate, pretrain, speculative, text
from kitchenlab.config import GPTConfig
from kitchenlab.models import make_gpt, split_gpt

ORDER = "Make a birthday cake"  # the order every timing serves
N_TOKENS = 256  # tokens per timed service (the benchmark's count)
KS = tuple(range(1, speculative.K_MAX + 1))  # every k the compiled loop serves
GRID_KS = (1, 2, 3, 4, 6, 8)  # the k slider's stops: the k values timed (a 45 s notebook)
DRAFTS = ("commis", "chef", "perfect", "apprentice")  # the draft selector's choices
DRAFT_LABELS = {"commis": "n-gram commis", "chef": "draft chef (1-block GPT)",
                "perfect": "perfect draft (reads the answer)",
                "apprentice": "untrained apprentice (random knobs)"}
COMMIS_RECIPES = 2000  # recipes the commis counts (its guesses stop improving at ~1000)
MEMORY_BOUND = GPTConfig(n_layer=6, width=512, n_head=8, n_kv_head=2)  # 16.9 M knobs, 67 MB


@dataclasses.dataclass(frozen=True)
class Kitchen:
    """The head chef, the drafts on the menu, and the order every timing serves."""

    target: tuple  # (GPTStep, params)
    menu: tuple  # (DraftMenu, MenuParams): commis, chef and perfect in one compiled program
    stand_ins: dict  # draft name -> (menu slot, params): other knobs in a slot's place
    prompt: str  # the raw text the chefs read
    greedy: np.ndarray  # (N_TOKENS,) the target's own greedy continuation

    def draft(self, name: str):
        """The menu with ``name`` on duty: a ``(step, params)`` draft (same program for all)."""
        if name in self.stand_ins:
            slot, params = self.stand_ins[name]
            return drafts.choose(self.menu, slot, params)
        return drafts.choose(self.menu, name)

    def alone(self, name: str):
        """Draft ``name`` outside the menu: its own ``(step, params)`` (to time its step)."""
        slot, params = self.stand_ins.get(name, (name, None))
        step, menu_params = self.menu
        i = step.names.index(slot)
        return step.steps[i], menu_params.params[i] if params is None else params


def open_kitchen(order: str = ORDER, *, recipes: int = COMMIS_RECIPES, seed: int = 0) -> Kitchen:
    """Load the chefs, count the commis from ``recipes`` corpus recipes, build the menu.

    The apprentice (a draft chef with random knobs) stands in the draft chef's slot.
    """
    target = split_gpt(pretrain.load("target"))
    prompt = text.prompt(order)
    greedy = generate.generate(target, prompt, max_new_tokens=N_TOKENS, stop_at_end=False)
    ids, _ = generate.encode_prompts(prompt)
    menu = drafts.menu(
        commis=drafts.build_commis(text.make_corpus(recipes, seed=seed)),
        chef=split_gpt(pretrain.load("draft")),
        perfect=drafts.perfect_draft(np.concatenate([ids[0], greedy.tokens[0]])))
    apprentice = split_gpt(make_gpt(GPTConfig.draft(), seed=seed + 1))[1]
    return Kitchen(target, menu, {"apprentice": ("chef", apprentice)}, prompt,
                   greedy.tokens[0, :N_TOKENS])


def serve(kitchen: Kitchen, draft: str, k: int, *, prompt: str | None = None,
          temperature: float = 0.0, seed: int = 0, max_new_tokens: int = N_TOKENS,
          stop_at_end: bool = False) -> speculative.Speculation:
    """One speculative service with the kitchen's compiled program (any k, draft, seed)."""
    return speculative.speculate(kitchen.target, kitchen.draft(draft), prompt or kitchen.prompt,
                                 k=k, max_new_tokens=max_new_tokens, temperature=temperature,
                                 seed=seed, stop_at_end=stop_at_end, buffer=N_TOKENS)


# ---------------------------------------------------------------- the grid, measured once
@dataclasses.dataclass(frozen=True)
class Grid:
    """Every (draft, k) served once per repeat, each right after a plain service.

    Times are the fastest of the repeats: on a shared machine other work only ever adds
    time, so the minimum is the steadiest estimate, and each cell's speedup divides by the
    fastest of the plain services timed right before it (the same busy spells).

    ``v[T]`` is the measured cost of a verify round with the perfect draft (whose guesses
    cost almost nothing) over one plain decoding step: the (k + 1)-token pass plus the
    round's bookkeeping, as the loop really runs it. ``c[d]`` is draft d's one-token step
    over the target's (each timed alone), so the formula's round costs k c + v.
    """

    drafts: tuple[str, ...]
    ks: tuple[int, ...]
    baseline_s: float  # seconds of plain greedy decoding of N_TOKENS tokens (median of cells)
    seconds: np.ndarray  # (D, K) seconds of the speculative service (fastest repeat)
    acceptance: np.ndarray  # (D, K) alpha: drafted tokens kept
    tokens_per_call: np.ndarray  # (D, K) tokens per target pass
    rounds: np.ndarray  # (D, K) target verify passes
    kinds: np.ndarray  # (D, K, N_TOKENS) accepted / corrected / bonus, per token
    identical: np.ndarray  # (D, K) bool: the text equals the target's greedy text
    c: dict  # draft -> cost of its one-token step over the target's
    baseline: np.ndarray | None = None  # (D, K) the plain services timed before each cell

    @property
    def plain(self) -> np.ndarray:
        """(D, K) seconds of plain decoding paired with each cell."""
        return self.baseline if self.baseline is not None else np.full(self.seconds.shape,
                                                                       self.baseline_s)

    @property
    def speedup(self) -> np.ndarray:
        """(D, K) plain decoding's time over the speculative service's (same run)."""
        return self.plain / self.seconds

    def speedup_over_all_k(self, draft: str) -> float:
        """Plain decoding's total time over the draft's, all k together."""
        d = self.drafts.index(draft)
        return float(self.plain[d].sum() / self.seconds[d].sum())

    @property
    def v(self) -> dict:
        """Width T = k + 1 -> a verify round's cost in plain steps (from the perfect draft)."""
        d = self.drafts.index("perfect")
        return {k + 1: float(self.seconds[d, j] / self.rounds[d, j] / (self.plain[d, j] / N_TOKENS))
                for j, k in enumerate(self.ks)}

    def predicted(self, draft: str, k: int) -> float:
        """The formula's speedup from this cell's alpha, the draft's c and v(k + 1)."""
        d, j = self.drafts.index(draft), self.ks.index(k)
        return speculative.predicted_speedup(float(self.acceptance[d, j]), k, self.c[draft],
                                             self.v[k + 1])


def _baseline_call(kitchen: Kitchen) -> Callable[[], object]:
    """The fastest plain decoder: the whole greedy loop in one jit (notebook 07's)."""
    step, params = kitchen.target
    ids, start = generate.encode_prompts(kitchen.prompt)
    args = (step, params, jnp.asarray(ids), jnp.asarray(start), jnp.int32(N_TOKENS),
            jnp.int32(-1), generate.Greedy(), jax.random.key(0))
    kwargs = dict(max_new=N_TOKENS, use_cache=True, window=generate.WINDOW)
    return lambda: jax.block_until_ready(generate.decode_loop(*args, **kwargs))


def _spec_call(kitchen: Kitchen, draft: str, k: int) -> Callable[[], object]:
    args, kwargs = speculative.prepare(kitchen.target, kitchen.draft(draft), kitchen.prompt,
                                       k=k, max_new_tokens=N_TOKENS, stop_at_end=False,
                                       buffer=N_TOKENS)
    return lambda: jax.block_until_ready(speculative.speculative_loop(*args, **kwargs))


def pass_costs(model, widths, *, n: int = 40, repeats: int = 5) -> dict:
    """v(T): seconds of a T-token pass over a one-token pass, for each width T.

    Each timing is a compiled loop of ``n`` passes (``speculative.pass_seconds``'s); the
    widths take turns, ``repeats`` rounds on one core, and each keeps its fastest round:
    on a shared machine other work only ever adds time, so the minimum is the steadiest."""
    step, params = speculative.as_pair(model)
    widths = (1,) + tuple(int(w) for w in widths)
    for w in widths:
        if not 1 <= w <= 160:
            raise ValueError(f"widths must be ints in [1, 160], got {w!r}")

    def run(w):
        tokens = jnp.full((w,), 3, jnp.int32)
        jax.block_until_ready(speculative._passes(step, params, tokens, width=w, slots=320, n=n))

    for w in widths:
        run(w)  # compile (or reuse) each width's loop
    best = dict.fromkeys(widths, math.inf)
    with one_core():
        for _ in range(repeats):
            for w in widths:
                t0 = time.perf_counter()
                run(w)
                best[w] = min(best[w], time.perf_counter() - t0)
    return {w: best[w] / best[1] for w in widths[1:]}


def draft_costs(kitchen: Kitchen, names=DRAFTS, *, n: int = 40, repeats: int = 3) -> dict:
    """c: each draft's one-token step over the target's (both measured alone)."""
    one = speculative.pass_seconds(kitchen.target, 1, n=n, repeats=repeats)
    return {name: speculative.pass_seconds(kitchen.alone(name), 1, n=n, repeats=repeats) / one
            for name in names}


@contextlib.contextmanager
def one_core():
    """Pin every thread of this process to one CPU while timing (then restore them).

    On a shared 2-core machine both loops ran faster and steadier on one core than on two,
    so the grid is timed as the benchmark times it; where pinning is not possible (not
    Linux) this does nothing."""
    tasks = "/proc/self/task"
    if not (hasattr(os, "sched_setaffinity") and os.path.isdir(tasks)):
        yield
        return
    before, core = {}, {min(os.sched_getaffinity(0))}
    for tid in map(int, os.listdir(tasks)):
        try:
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, core)
        except OSError:  # a thread that ended meanwhile
            pass
    try:
        yield
    finally:
        for tid, cpus in before.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass


def measure_grid(kitchen: Kitchen, *, names=DRAFTS, ks=GRID_KS, repeats: int = 2,
                 c: dict | None = None, progress: Callable[[str], None] | None = None) -> Grid:
    """Serve every (draft, k) ``repeats`` times, each time right after a plain service, so a
    busy spell of the machine slows both alike; each keeps its fastest repeat (the first run
    of each k ran up to 2x slower: a warm-up the minimum discards). A cell more than 3x
    as slow as plain decoding the first time is not repeated (it clearly does not pay). Everything is timed on
    one core (``one_core``)."""
    names, ks = tuple(names), tuple(ks)
    if "perfect" not in names:
        raise ValueError(f"names must include 'perfect' (it measures v), got {names}")
    baseline = _baseline_call(kitchen)
    baseline()  # compile (or reuse) the plain loop
    calls = {(d, k): _spec_call(kitchen, d, k) for d in names for k in ks}
    first = {}  # what each cell served (every run serves the same)
    base_times, times = {key: [] for key in calls}, {key: [] for key in calls}
    with one_core():
        for r in range(repeats):
            for key, call in calls.items():
                if r and times[key][0] > 3 * base_times[key][0]:
                    continue  # 3x as slow as plain decoding (a warm-up is <= 2x): no repeat
                t0 = time.perf_counter()
                baseline()
                t1 = time.perf_counter()
                first.setdefault(key, call())
                times[key].append(time.perf_counter() - t1)
                base_times[key].append(t1 - t0)
            if progress:
                done = sum(len(t) > r for t in times.values())
                progress(f"round {r + 1}/{repeats}: {done} speculative and {done} plain "
                         f"services timed")
        c = c if c is not None else draft_costs(kitchen, names)
    shape = (len(names), len(ks))
    seconds, alpha, per_call, rounds, plain = (np.zeros(shape) for _ in range(5))
    kinds = np.zeros(shape + (N_TOKENS,), np.int8)
    identical = np.zeros(shape, bool)
    for (d, k), (tokens, kind, count, counts) in first.items():
        i, j = names.index(d), ks.index(k)
        seconds[i, j] = min(times[(d, k)])
        plain[i, j] = min(base_times[(d, k)])
        alpha[i, j] = int(counts.accepted) / max(int(counts.drafted), 1)
        per_call[i, j] = int(count) / max(int(counts.rounds), 1)
        rounds[i, j] = int(counts.rounds)
        kinds[i, j] = np.asarray(kind)
        identical[i, j] = bool((np.asarray(tokens) == kitchen.greedy).all())
    return Grid(names, ks, float(np.median(plain)), seconds, alpha, per_call, rounds,
                kinds, identical, c, plain)


# ---------------------------------------------------------------- is sampling fair?
def first_token_counts(kitchen: Kitchen, draft: str, prefix: str, *, n: int = 1000, k: int = 4,
                       temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """How often each token came first in ``n`` speculative samples after ``prefix``: (V,)."""
    args, kwargs = speculative.prepare(kitchen.target, kitchen.draft(draft),
                                       kitchen.prompt + prefix, k=k, max_new_tokens=1,
                                       temperature=temperature, buffer=N_TOKENS)
    counts = np.zeros(drafts._vocab(kitchen.target[0]), np.int64)
    for s in range(n):
        out = speculative.speculative_loop(*args[:-1], jax.random.key(seed + s), **kwargs)
        counts[int(out[0][0])] += 1
    return counts


def next_token_probs(kitchen: Kitchen, prefix: str, *, temperature: float = 1.0) -> np.ndarray:
    """The target's own next-token probabilities after ``prefix`` (V,), from a prefill."""
    step, params = kitchen.target
    ids, start = generate.encode_prompts(kitchen.prompt + prefix)
    logits, _ = generate.prefill(step, params, jnp.asarray(ids), jnp.asarray(start),
                                 size=ids.shape[1] + N_TOKENS)
    return np.asarray(generate.Temperature(temperature).probs(logits), np.float64)[0]


def _pool(counts: np.ndarray, expected: np.ndarray, min_expected: float):
    """Merge the categories expected fewer than ``min_expected`` times into one bin."""
    small = expected < min_expected
    if small.any():
        counts = np.append(counts[..., ~small], counts[..., small].sum(-1, keepdims=True), -1)
        expected = np.append(expected[..., ~small], expected[..., small].sum(-1, keepdims=True), -1)
    return counts, expected


def chi_square(counts, probs, *, min_expected: float = 5.0) -> tuple[float, int, float]:
    """Goodness of fit of ``counts`` to ``probs``: (statistic, degrees of freedom, p-value).

    Categories expected fewer than ``min_expected`` times are pooled (the usual rule).
    """
    counts, probs = np.asarray(counts, np.float64), np.asarray(probs, np.float64)
    observed, expected = _pool(counts, counts.sum() * probs / probs.sum(), min_expected)
    stat = float(np.sum((observed - expected) ** 2 / np.maximum(expected, 1e-300)))
    dof = max(observed.size - 1, 1)
    return stat, dof, _chi2_sf(stat, dof)


def chi_square_two(counts_a, counts_b, *, min_expected: float = 5.0) -> tuple[float, int, float]:
    """Two samples from one distribution? The 2 x K contingency test: (statistic, dof, p)."""
    table = np.stack([np.asarray(counts_a, np.float64), np.asarray(counts_b, np.float64)])
    rows, cols = table.sum(1, keepdims=True), table.sum(0, keepdims=True)
    expected = rows * cols / table.sum()
    keep = cols[0] > 0
    observed, expected = table[:, keep], expected[:, keep]
    small = (expected < min_expected).any(axis=0)  # pool the rare columns into one
    if small.any():
        observed = np.concatenate([observed[:, ~small], observed[:, small].sum(1, keepdims=True)], 1)
        expected = np.concatenate([expected[:, ~small], expected[:, small].sum(1, keepdims=True)], 1)
    stat = float(np.sum((observed - expected) ** 2 / expected))
    dof = max(observed.shape[1] - 1, 1)
    return stat, dof, _chi2_sf(stat, dof)


def _chi2_sf(stat: float, dof: int) -> float:
    """P(chi-square with ``dof`` degrees of freedom >= stat) = Q(dof / 2, stat / 2), the
    regularised upper incomplete gamma, in float64 Python (the same on every machine):
    a series below a + 1, a continued fraction above (Numerical Recipes, 6.2)."""
    a, x = dof / 2.0, max(stat, 0.0) / 2.0
    if x == 0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:  # P(a, x) by its series, then Q = 1 - P
        term = total = 1.0 / a
        for n in range(1, 1000):
            term *= x / (a + n)
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    b, c, d = x + 1.0 - a, 1e300, 1.0 / (x + 1.0 - a)  # Q(a, x) by Lentz's continued fraction
    h = d
    for n in range(1, 1000):
        an = -n * (n - a)
        b += 2.0
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h


# ---------------------------------------------------------------- where the CPU gets closer
def memory_bound_target(seed: int = 0):
    """A 6-block, width-512 chef with random knobs (67 MB: more than the CPU's caches hold).

    Its cost does not depend on what it learned, so random knobs time it honestly."""
    return split_gpt(make_gpt(MEMORY_BOUND, seed=seed))


def ceiling(v: dict, k: int) -> float:
    """A perfect, free draft's speedup: k + 1 tokens for the price of one (k + 1)-token pass."""
    return (k + 1) / v[k + 1] if math.isfinite(v[k + 1]) else float("nan")
