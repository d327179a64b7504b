"""Checks for notebook 07 (the chatbot kitchen: sampling and the KV cache)."""

from __future__ import annotations

import numpy as np

from kitchenlab.checks import Feedback


FRIDGES = (  # (what, n_layer, width, n_head, n_kv_head, slots, batch, dtype)
    ("the target chef", 4, 192, 6, 2, 512, 1, "float32"),
    ("the commis, a tray of 16", 1, 128, 4, 2, 256, 16, "float16"),
    ("a GPT-2-small-sized chef, a tray of 8", 12, 768, 12, 12, 1024, 8, "float16"),
    ("a 7B-class model card (GQA, 32k slots)", 32, 4096, 32, 8, 32768, 1, "bfloat16"),
    ("a tiny chef, a tray of 3", 2, 32, 4, 2, 40, 3, "float32"),
)
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def _fridge_mistake(got, case) -> str:
    """Name the usual slip behind a wrong count, if it is one of them."""
    _, n_layer, width, n_head, n_kv_head, slots, batch, dtype = case
    right = 2 * n_layer * batch * n_kv_head * slots * (width // n_head) * _ITEMSIZE[dtype]
    slips = {right // 2: "keys AND values: two tensors per layer",
             right * n_head // n_kv_head: "only the n_kv_head key/value heads are stored (the "
                                          "query heads are not), each width // n_head wide",
             right * 4 // _ITEMSIZE[dtype]: f"bytes per number: {dtype} takes "
                                             f"{_ITEMSIZE[dtype]} byte(s)",
             right // n_layer: "every layer keeps its own keys and values",
             right // batch: "every row of the tray has its own fridge"}
    slips.pop(right, None)  # a case where a slip changes nothing tells nothing
    return slips.get(got, "")


def check_fridge_bytes(fridge_bytes) -> bool:
    """Exercise 1: ``fridge_bytes(n_layer, width, n_head, n_kv_head, slots, batch, dtype)``:
    the bytes of a full KV cache, from a model card (``dtype`` a name such as "float16")."""
    from kitchenlab import kv_cache
    from kitchenlab.config import GPTConfig

    fb = Feedback("Exercise 1 (how big is the fridge?)")
    if not fb.expect(callable(fridge_bytes), "you wrote a function",
                     "define fridge_bytes(n_layer, width, n_head, n_kv_head, slots, batch, "
                     "dtype)"):
        return fb.done()
    wrong = []
    for case in FRIDGES:
        what, n_layer, width, n_head, n_kv_head, slots, batch, dtype = case
        config = GPTConfig(n_layer=n_layer, width=width, n_head=n_head, n_kv_head=n_kv_head,
                           context=max(slots, 64))
        expected = kv_cache.nbytes(config, batch, slots, bytes_per_number=_ITEMSIZE[dtype])
        try:
            got = fridge_bytes(n_layer, width, n_head, n_kv_head, slots, batch, dtype)
            number = None if isinstance(got, (bool, str)) else float(got)
        except Exception as err:  # a learner's function may raise anything: report it
            got, number = f"{type(err).__name__}: {err}", None
        if number != expected:
            slip = _fridge_mistake(number, case) if number is not None else ""
            wrong.append(f"{what}: fridge_bytes{case[1:]} gave {got!r}, expected {expected:,}"
                         + (f" ({slip})" if slip else ""))
    fb.expect(not wrong, f"right for all {len(FRIDGES)} fridges, from the target chef to a "
              f"7B-class model card (4 GiB per guest at 32k slots in bfloat16)",
              "not yet: " + "; ".join(wrong[:2]) + " -- head width = width // n_head; only "
              "the n_kv_head key/value heads are stored, keys AND values, for every layer and "
              "every row of the tray; 4 bytes per float32, 2 per float16 or bfloat16 "
              "(jnp.dtype(dtype).itemsize)")
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


_QUADRUPLE = ("4", "four", "quadruple", "4x", "x4", "4 times", "four times", "quadrupled",
              "quadruples", "4 times as much", "quadratic", "quadratically", "square",
              "squared", "the square", "n^2", "n**2", "n²", "n2", "o(n^2)", "o(n²)")


def check_quadratic(answer) -> bool:
    """Exercise 3: without the cache, a long recipe (N much longer than the order) made
    twice as long costs about how many times the work?"""
    fb = Feedback("Exercise 3 (why the fridge matters)")
    if not fb.expect(answer is not None, "you answered", "set answer = ... (a number or a word)"):
        return fb.done()
    given = " ".join(str(answer).strip().lower().replace("×", "x").rstrip(".").split())
    try:
        number = float(given.rstrip("x").lstrip("x").strip())
    except ValueError:
        number = None
    ok = given in _QUADRUPLE or (number is not None and 3.5 <= number <= 4.5)
    if ok:
        why = ("about 4 times: every new token re-reads all the text before it, so the work "
               "grows with the square of the length (the cache makes it grow linearly: 2 times)")
    elif number is not None and 1.9 <= number < 2.1 or given in ("twice", "double", "2x"):
        why = (f"{answer!r} is the chef WITH the fridge (linear work). Without it, token n "
               "re-reads all n tokens before it: 1 + 2 + ... + N ~ N²/2. What happens to N² "
               "when N doubles?")
    elif number is not None and 2.1 <= number < 3.5:
        why = (f"{answer!r} is what the table shows at these short lengths, where re-reading "
               "the 64-slot order is still most of the work (N(P + N/2) with P = 64). For a "
               "recipe much longer than its order the N²/2 term wins: what happens to N² "
               "when N doubles?")
    else:
        why = (f"{answer!r} is not it: token n re-reads n earlier tokens, so the total is "
               "1 + 2 + ... + N ~ N²/2. What happens to N² when N doubles?")
    fb.expect(ok, why, why)
    return fb.done()
