"""Checks for notebook 06 (spice packets and pans): packets per output channel, one global
pruning ranking over several layers, and which pruning makes the kitchen faster.

The lesson shows the per-tensor packet and the per-layer mask; the exercises ask for the
other variant of each, so copying a lesson cell does not pass.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from kitchenlab.checks import Feedback


def _samples():
    """2-D test kernels whose columns have very different spreads (per-channel scales then
    differ from one per-tensor scale), so neither a constant nor a per-tensor answer passes."""
    rng = np.random.default_rng(6)
    spread = np.geomspace(0.02, 3.0, 16).astype(np.float32)  # one spread per output column
    return [(rng.standard_normal((8, 16)) * spread).astype(np.float32),
            (0.03 * rng.standard_normal((32, 4)) * [1, 5, 0.2, 2]).astype(np.float32),
            rng.uniform(-5, 2, size=(5, 7)).astype(np.float32) * np.arange(1, 8, dtype=np.float32)]


def reference_quantize(w: np.ndarray, bits: int, *, per_channel: bool = False):
    """Symmetric quantization in numpy (equal to ``kl.quantize.quantize_tensor``, tested):
    ``(q int8, scale)``; the scale is a float, or a (1, N) row per output channel."""
    qmax = 2 ** (bits - 1) - 1
    amax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    scale = np.float32(amax) / np.float32(qmax)
    q = np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8)
    return q, (scale if per_channel else float(scale))


def check_quantize_per_channel(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(w, bits) -> (q, scale)``, one scale per output channel (column)."""
    fb = Feedback("Exercise 1 (a spice packet per output channel)")
    if not fb.expect(callable(fn), "my_quantize_per_channel is a function",
                     "define my_quantize_per_channel(w, bits) returning (q, scale) and pass it in"):
        return fb.done()
    wrong_shape, wrong_scale, wrong_q, wrong_range = [], [], [], []
    for k, w in enumerate(_samples()):
        for bits in (8, 4, 2):
            try:
                q, scale = fn(w, bits)
                q, scale = np.asarray(q, np.float64), np.asarray(scale, np.float64)
            except Exception as err:  # noqa: BLE001 - feedback, not a crash
                fb.expect(False, "", f"my_quantize_per_channel(w, {bits}) raised "
                          f"{type(err).__name__}: {err} (it should return a pair (q, scale))")
                return fb.done()
            ref_q, ref_scale = reference_quantize(w, bits, per_channel=True)
            m = 2 ** (bits - 1) - 1
            if scale.size != w.shape[1]:
                wrong_shape.append((k, bits, scale.shape))
                continue
            if not np.allclose(scale.reshape(-1), ref_scale.reshape(-1), rtol=1e-5):
                wrong_scale.append((k, bits))
            if q.shape != w.shape or np.abs(q).max() > m or not np.allclose(q, np.round(q)):
                wrong_range.append((k, bits))
            elif np.abs(q - ref_q).max() > 1 or np.mean(q != ref_q) > 0.01:
                # float64 arithmetic may round a rare x.5 the other way: tolerated
                wrong_q.append((k, bits))
    if not fb.expect(not wrong_shape, "one scale per output channel (a column of w)",
                     f"the scale should hold one number per column of w (w.shape[1] of them, "
                     f"e.g. shape (1, N)); got shapes {[s for *_, s in wrong_shape[:3]]}: "
                     "take max |w| over axis 0"):
        return fb.done()
    fb.expect(not wrong_scale, "scale = max |w| of each column / (2**(bits-1) - 1)",
              f"the scales are off for (tensor, bits) {wrong_scale[:3]}: each column's scale is "
              "its own max |w| / qmax (np.abs(w).max(axis=0, keepdims=True) / qmax)")
    fb.expect(not wrong_range, "q holds whole numbers in [-qmax, qmax], shaped like w",
              f"q must be integers in [-qmax, qmax] with w's shape; not so for {wrong_range[:3]}")
    fb.expect(not wrong_q, "q = round(w / scale) agrees with kl.quantize.quantize_tensor",
              f"q differs for (tensor, bits) {wrong_q[:3]}: divide each column by its own scale, "
              "then clip(round(...), -qmax, qmax)")
    return fb.done()


def _layer_sets():
    """Lists of kernels (one model's layers) with different magnitudes per layer, so one
    ranking over all of them removes different shares per layer than a per-layer ranking."""
    rng = np.random.default_rng(16)
    return [[rng.standard_normal((8, 16)).astype(np.float32),
             (0.1 * rng.standard_normal((16, 16))).astype(np.float32),
             (3.0 * rng.standard_normal((16, 2))).astype(np.float32)],
            [(0.5 * rng.standard_normal((4, 6))).astype(np.float32),
             rng.uniform(-2, 2, size=(6, 3)).astype(np.float32)]]


def check_global_masks(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(kernels, sparsity) -> masks``, one magnitude ranking over all layers."""
    fb = Feedback("Exercise 2 (one ranking for the whole kitchen)")
    if not fb.expect(callable(fn), "my_global_masks is a function",
                     "define my_global_masks(kernels, sparsity) returning a list of boolean "
                     "masks, one per kernel"):
        return fb.done()
    bad_count, bad_order = [], []
    for k, kernels in enumerate(_layer_sets()):
        for sparsity in (0.0, 0.3, 0.75, 0.9):
            try:
                masks = [np.asarray(m).astype(bool) for m in fn([w.copy() for w in kernels],
                                                                sparsity)]
            except Exception as err:  # noqa: BLE001
                fb.expect(False, "", f"my_global_masks(kernels, {sparsity}) raised "
                          f"{type(err).__name__}: {err}")
                return fb.done()
            shapes = [m.shape for m in masks]
            if shapes != [w.shape for w in kernels]:
                fb.expect(False, "", f"expected one mask per kernel with its shape "
                          f"{[w.shape for w in kernels]}, got {shapes}")
                return fb.done()
            w = np.concatenate([np.abs(x).ravel() for x in kernels])
            keep = np.concatenate([m.ravel() for m in masks])
            if int((~keep).sum()) != int(np.floor(sparsity * w.size)):
                bad_count.append((k, sparsity))
            elif keep.any() and (~keep).any() and w[~keep].max() > w[keep].min():
                bad_order.append((k, sparsity))
    fb.expect(not bad_count, "exactly floor(sparsity * all weights) removed in total",
              f"wrong number removed for (model, sparsity) {bad_count[:3]}: remove "
              "floor(sparsity * total size of all kernels) weights, keep the rest (True = kept)")
    fb.expect(not bad_order, "every removed weight is smaller than every kept one, across layers",
              f"for {bad_order[:3]} a removed weight is larger than a kept one in another layer: "
              "rank the |w| of all kernels together (concatenate them), not layer by layer")
    return fb.done()


# Exercise 3: words for removing whole units (structured) and for scattered zeros. A word
# after a negation in its clause ("not unstructured", "rather than scattered weights")
# counts for the other side, so "structured, not unstructured" is right and "unstructured
# rather than structured" is wrong.
_STRUCTURED = (
    r"(?<!un)structur",  # structured, structural
    r"\b(whole|entire|complete|full)\s+(hidden\s+)?(units?|neurons?|channels?|rows?|columns?"
    r"|filters?|stations?|heads?)\b",
    r"\b(remov|drop|prun|cut|delet|slic)\w*\s+(the\s+|some\s+|half\s+|of\s+|hidden\s+|whole\s+)*"
    r"(units?|neurons?|channels?|filters?|stations?|heads?)\b",
    r"\b(units?|neurons?|channels?|filters?|width)\s+pruning\b",
    r"\b(narrower|thinner)\b|\bsmaller\s+(matrices|layers)\b|\bfewer\s+(units|neurons|channels)\b",
    r"^\s*(units?|neurons?|channels?|hidden units?)\s*[.!]?\s*$",
)
_UNSTRUCTURED = (
    r"unstructur",
    r"\bscattered\b",
    r"\b(individual|single|small|smallest|tiny|separate)\s+(weights?|knobs?|connections?)\b",
    r"\b(zero|zeroing|zeroes|zeros)\s+(out\s+)?(the\s+)?(smallest\s+|small\s+|individual\s+)?"
    r"(weights?|knobs?)\b",
    r"\bweights?\s+pruning\b",
    r"\bsparse\b",
)
_NEGATION = r"\b(not|no|never|nor|neither|instead|rather|than|without|isn'?t|doesn'?t|won'?t)\b"


def _clauses(text: str) -> list[str]:
    return [c for c in re.split(r"[,;:.!?()]|\bbut\b|\bwhile\b|\bwhereas\b", text) if c.strip()]


def pruning_answer_kind(answer) -> str:
    """``"structured"``, ``"unstructured"`` or ``"unclear"`` for a free-text answer."""
    text = " ".join(str(answer or "").lower().split())
    votes = {"structured": 0, "unstructured": 0}
    for clause in _clauses(text):
        negation = re.search(_NEGATION, clause)
        for kind, patterns in (("structured", _STRUCTURED), ("unstructured", _UNSTRUCTURED)):
            found = [m.start() for p in patterns for m in [re.search(p, clause)] if m]
            if found:
                negated = negation is not None and min(found) > negation.start()
                other = "unstructured" if kind == "structured" else "structured"
                votes[other if negated else kind] += 1
    if votes["structured"] and not votes["unstructured"]:
        return "structured"
    if votes["unstructured"] and not votes["structured"]:
        return "unstructured"
    if re.search(r"\bmagnitude\b", text) and not votes["structured"]:
        return "unstructured"  # plain "magnitude pruning" ranks single weights
    return "unclear"


def check_faster_pruning(answer) -> bool:
    """Exercise 3: which kind of pruning makes a dense matmul faster (and why)."""
    fb = Feedback("Exercise 3 (smaller, or smaller and faster?)")
    text = str(answer or "").strip()
    if not fb.expect(bool(text), "you answered", "answer with a word or a short sentence"):
        return fb.done()
    kind = pruning_answer_kind(text)
    hint = {"unstructured": "zeroing scattered weights leaves every matrix its full size (the "
                            "zeros are still multiplied); which pruning makes the matrices "
                            "themselves smaller?",
            "unclear": "your answer names both kinds (or neither): which one removes whole hidden "
                       "units, so that every matrix gets smaller?"}.get(kind, "")
    fb.expect(kind == "structured",
              "structured pruning: removing whole hidden units shrinks the matrices", hint)
    return fb.done()
