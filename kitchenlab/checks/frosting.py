"""Checks for notebook 08 (speculative decoding): the head chef's verdict by hand, the
tokens a round yields, and when a draft stops paying."""

from __future__ import annotations

from typing import Callable

import numpy as np

from kitchenlab.checks import Feedback


def _call(fb: Feedback, fn, args, what: str):
    """Call a learner's function; a raise becomes a hint, not a crash."""
    try:
        return True, fn(*args)
    except Exception as err:  # noqa: BLE001 - feedback, not a crash
        fb.expect(False, "", f"{what} raised {type(err).__name__}: {err}")
        return False, None


def check_verdict(fn: Callable | None) -> bool:
    """``fn(guesses, choices)``: the commis guessed ``guesses`` (k tokens); the head chef's own
    choices at the k + 1 positions are ``choices``. Return (how many guesses are kept, the
    token the chef adds: its correction at the first disagreement, or the bonus)."""
    fb = Feedback("Exercise 1 (the head chef's verdict)")
    if not fb.expect(callable(fn), "verdict is a function",
                     "define verdict(guesses, choices) -> (kept, next_token)"):
        return fb.done()
    cases = {"all four right (a bonus)": ([5, 9, 9, 2], [5, 9, 9, 2, 7], (4, 7)),
             "the first one wrong": ([5, 9, 9, 2], [6, 9, 9, 2, 7], (0, 6)),
             "wrong in the middle": ([5, 9, 9, 2], [5, 9, 3, 2, 7], (2, 3)),
             "a later match does not count": ([1, 2, 3], [1, 4, 3, 8], (1, 4)),
             "k = 1, right": ([4], [4, 11], (1, 11)),
             "k = 1, wrong": ([4], [12, 11], (0, 12))}
    for name, (guesses, choices, want) in cases.items():
        ok, got = _call(fb, fn, (np.array(guesses), np.array(choices)), f"verdict on {name}")
        if not ok:
            return fb.done()
        try:
            got = (int(got[0]), int(got[1]))
        except (TypeError, ValueError, IndexError):
            fb.expect(False, "", f"{name}: return a pair (kept, next_token), got {got!r}")
            continue
        fb.expect(got == want, f"{name}: keep {want[0]}, then add token {want[1]}",
                  f"{name}: got {got}, expected {want} -- keep guesses while they equal the "
                  "chef's choice at the same position, stop at the first difference; the "
                  "chef's choice right there is the next token")
    return fb.done()


def check_tokens_per_round(fn: Callable | None) -> bool:
    """``fn(alpha, k)``: expected tokens per round when each guess is kept with probability
    alpha, independently, and the round stops at the first miss (a correction or bonus
    always adds one token)."""
    from kitchenlab.speculative import expected_tokens_per_call

    fb = Feedback("Exercise 2 (tokens per round)")
    if not fb.expect(callable(fn), "tokens_per_round is a function",
                     "define tokens_per_round(alpha, k)"):
        return fb.done()
    wrong = []
    for alpha, k in ((0.8, 4), (0.5, 2), (0.0, 3), (0.95, 8), (1.0, 4), (0.3, 1)):
        ok, got = _call(fb, fn, (alpha, k), f"tokens_per_round({alpha}, {k})")
        if not ok:
            return fb.done()
        want = expected_tokens_per_call(alpha, k)
        try:
            good = np.isclose(float(got), want, rtol=1e-6)
        except (TypeError, ValueError):
            good = False
        if not good:
            wrong.append(f"tokens_per_round({alpha}, {k}) = {got!r}, expected {want:.4f}")
    fb.expect(not wrong, "right for 6 cases, including alpha = 0 (always 1 token) and alpha = 1 "
              "(always k + 1)",
              "; ".join(wrong[:2]) + " -- the round yields 1 + (guesses kept): guess i is kept "
              "with probability alpha**i, so add them up (and mind alpha = 1)")
    return fb.done()


def check_break_even(fn: Callable | None) -> bool:
    """``fn(k, c, v)``: the smallest acceptance rate alpha at which speculative decoding
    with k guesses, draft cost c and verify cost v(k + 1) is no slower than plain decoding."""
    from kitchenlab.speculative import predicted_speedup

    fb = Feedback("Exercise 3 (when does a draft pay?)")
    if not fb.expect(callable(fn), "break_even is a function",
                     "define break_even(k, c, v) -> alpha"):
        return fb.done()
    cases = ((1, 0.01, 1.25), (4, 0.01, 1.6), (4, 0.15, 1.6), (8, 0.15, 2.4), (2, 0.001, 1.0))
    wrong = []
    for k, c, v in cases:
        ok, got = _call(fb, fn, (k, c, v), f"break_even({k}, {c}, {v})")
        if not ok:
            return fb.done()
        lo, hi = 0.0, 1.0  # the formula rises with alpha: bisect for speedup = 1
        if predicted_speedup(0.0, k, c, v) >= 1:
            want = 0.0
        else:
            for _ in range(60):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if predicted_speedup(mid, k, c, v) >= 1 else (mid, hi)
            want = hi
        try:
            good = abs(float(got) - want) < 2e-3
        except (TypeError, ValueError):
            good = False
        if not good:
            wrong.append(f"break_even({k}, {c}, {v}) = {got!r}, expected about {want:.3f}")
    fb.expect(not wrong, f"right for {len(cases)} kitchens (free drafts, costly drafts, a GPU's "
              "v = 1)",
              "; ".join(wrong[:2]) + " -- find the alpha where kl.speculative.predicted_speedup"
              "(alpha, k, c, v) = 1 (it rises with alpha: bisection works)")
    return fb.done()
