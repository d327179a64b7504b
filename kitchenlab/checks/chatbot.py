"""Checks for notebook 07 (the chatbot kitchen: sampling and the KV cache)."""

from __future__ import annotations

import numpy as np

from kitchenlab.checks import Feedback


def check_fridge_bytes(fridge_bytes) -> bool:
    """Exercise 1: ``fridge_bytes(n_layer, n_kv_head, head_dim, slots, batch, bytes_per_number)``."""
    from kitchenlab import kv_cache
    from kitchenlab.config import GPTConfig

    fb = Feedback("Exercise 1 (how big is the fridge?)")
    if not fb.expect(callable(fridge_bytes), "you wrote a function",
                     "define fridge_bytes(n_layer, n_kv_head, head_dim, slots, batch, "
                     "bytes_per_number)"):
        return fb.done()
    cases = [(GPTConfig.default(), 1, 512, 4), (GPTConfig.draft(), 16, 256, 2),
             (GPTConfig(n_layer=12, width=768, n_head=12, n_kv_head=12), 8, 1024, 2),
             (GPTConfig.tiny(), 3, 40, 4)]
    wrong = []
    for cfg, batch, slots, nbytes in cases:
        expected = kv_cache.nbytes(cfg, batch, slots, bytes_per_number=nbytes)
        try:
            got = fridge_bytes(cfg.n_layer, cfg.n_kv_head, cfg.head_dim, slots, batch, nbytes)
        except Exception as err:  # a learner's function may raise anything: report it
            got = f"{type(err).__name__}: {err}"
        if not (isinstance(got, (int, float, np.integer, np.floating)) and got == expected):
            wrong.append((cfg.n_layer, cfg.n_kv_head, cfg.head_dim, slots, batch, nbytes, got,
                          expected))
    fb.expect(not wrong, f"right for all {len(cases)} fridges (target, draft, a GPT-2-sized "
              "one, a tiny one)",
              "not yet: " + "; ".join(f"fridge_bytes{w[:6]} gave {w[6]!r}, expected {w[7]:,}"
                                      for w in wrong[:2])
              + " -- remember keys AND values, for every layer")
    return fb.done()


def check_sampler_probs(sampler_probs) -> bool:
    """Exercise 2: ``sampler_probs(logits, temperature, top_k)`` for one row of logits."""
    from kitchenlab import generate

    fb = Feedback("Exercise 2 (temperature and top-k by hand)")
    if not fb.expect(callable(sampler_probs), "you wrote a function",
                     "define sampler_probs(logits, temperature, top_k) -> probabilities"):
        return fb.done()
    rng = np.random.default_rng(7)
    cases = [(rng.normal(size=12) * 2, t, k) for t, k in
             ((1.0, 12), (0.5, 12), (2.0, 4), (1.0, 1), (0.7, 3))]
    greedy_case = (rng.normal(size=12), 0.0, 12)
    bad = []
    for logits, t, k in cases + [greedy_case]:
        expected = np.asarray(generate.TopK(k, t).probs(logits[None].astype(np.float32)))[0]
        try:
            got = np.asarray(sampler_probs(logits.copy(), t, k), dtype=float)
        except Exception as err:  # report, do not crash the learner's notebook
            got = err
        if not (isinstance(got, np.ndarray) and got.shape == expected.shape
                and np.all(np.isfinite(got)) and np.allclose(got, expected, atol=1e-5)):
            bad.append((t, k))
    plain = [c for c in bad if c[0] > 0]
    fb.expect(not plain, "temperature and top-k match kl.generate.TopK on 5 cases",
              f"different from kl.generate.TopK(k, t).probs at (t, k) = {plain[:3]}: divide the "
              "logits by t, keep the k largest (others get probability 0), then softmax")
    fb.expect(greedy_case[1:] not in bad, "temperature 0 gives all probability to the best "
              "character (no division by zero)",
              "at temperature 0 return a one-hot vector at argmax(logits) -- never divide by 0")
    return fb.done()


_QUADRUPLE = ("4", "four", "quadruple", "4x", "x4", "4 times", "four times", "quadrupled")


def check_quadratic(answer) -> bool:
    """Exercise 3: without the cache, twice as long a recipe costs about how many times the work?"""
    fb = Feedback("Exercise 3 (why the fridge matters)")
    if not fb.expect(answer is not None, "you answered", "set answer = ... (a number or a word)"):
        return fb.done()
    given = str(answer).strip().lower().replace("×", "x").rstrip(".")
    try:
        number = float(given.rstrip("x").lstrip("x"))
    except ValueError:
        number = None
    ok = given in _QUADRUPLE or (number is not None and 3.5 <= number <= 4.5)
    fb.expect(ok, "about 4 times: every new token re-reads all the text before it, so the work "
              "grows with the square of the length (the cache makes it grow linearly: 2 times)",
              f"{answer!r} is not it: token n re-reads n earlier tokens, so the total is "
              "1 + 2 + ... + N ~ N²/2. What happens to N² when N doubles?")
    return fb.done()
