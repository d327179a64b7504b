"""Checks for notebook 06 (spice packets and pans): quantize by hand, a pruning mask, and
which pruning makes the kitchen faster."""

from __future__ import annotations

from typing import Callable

import numpy as np

from kitchenlab.checks import Feedback

_STRUCTURED = ("structured", "structural", "units", "unit", "neurons", "neuron",
               "whole units", "hidden units", "channels", "rows and columns", "width")
_UNSTRUCTURED = ("unstructured", "magnitude", "scattered", "individual", "weights")


def _samples():
    """Test tensors: several shapes and spreads, so no constant answer can pass."""
    rng = np.random.default_rng(6)
    return [rng.standard_normal((8, 16)).astype(np.float32),
            (0.03 * rng.standard_normal((32, 4))).astype(np.float32),
            rng.uniform(-5, 2, size=(5, 7)).astype(np.float32)]


def reference_quantize(w: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """Symmetric per-tensor quantization in numpy (equal to ``kl.quantize.quantize_tensor``
    with ``per_channel=False``, tested): the answer key, cheap to run many times."""
    qmax = 2 ** (bits - 1) - 1
    scale = np.float32(np.abs(w).max()) / np.float32(qmax)
    return np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8), float(scale)


def check_quantize(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(w, bits) -> (q, scale)``, symmetric per-tensor quantization."""
    fb = Feedback("Exercise 1 (a spice packet by hand)")
    if not fb.expect(callable(fn), "my_quantize is a function",
                     "define my_quantize(w, bits) returning (q, scale) and pass it in"):
        return fb.done()
    wrong_scale, wrong_q, wrong_range = [], [], []
    for k, w in enumerate(_samples()):
        for bits in (8, 4, 2):
            try:
                q, scale = fn(w, bits)
                q, scale = np.asarray(q, np.float64), float(np.asarray(scale))
            except Exception as err:  # noqa: BLE001 - feedback, not a crash
                fb.expect(False, "", f"my_quantize(w, {bits}) raised {type(err).__name__}: {err}"
                          " (it should return a pair (q, scale))")
                return fb.done()
            ref_q, ref_scale = reference_quantize(w, bits)
            m = 2 ** (bits - 1) - 1
            if not np.isclose(scale, ref_scale, rtol=1e-5):
                wrong_scale.append((k, bits))
            if q.shape != w.shape or np.abs(q).max() > m or not np.allclose(q, np.round(q)):
                wrong_range.append((k, bits))
            elif (np.abs(q - ref_q).max() > 1 or np.mean(q != ref_q) > 0.01):
                # float64 arithmetic may round a rare x.5 the other way: tolerated
                wrong_q.append((k, bits))
    fb.expect(not wrong_scale, "scale = max|w| / (2**(bits-1) - 1) for every tensor and width",
              f"the scale is off for (tensor, bits) {wrong_scale[:3]}: scale = max|w| / qmax, "
              "qmax = 2**(bits-1) - 1 (127 for 8 bits)")
    fb.expect(not wrong_range, "q holds whole numbers in [-qmax, qmax], shaped like w",
              f"q must be integers in [-qmax, qmax] with w's shape; not so for {wrong_range[:3]}")
    fb.expect(not wrong_q, "q = round(w / scale) agrees with kl.quantize.quantize_tensor",
              f"q differs for (tensor, bits) {wrong_q[:3]}: q = clip(round(w / scale), -qmax, qmax)")
    return fb.done()


def check_magnitude_mask(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(w, sparsity) -> mask``, keep all but the smallest-|w| fraction."""
    fb = Feedback("Exercise 2 (which pans to remove)")
    if not fb.expect(callable(fn), "my_mask is a function",
                     "define my_mask(w, sparsity) returning a boolean array shaped like w"):
        return fb.done()
    bad_count, bad_order = [], []
    for k, w in enumerate(_samples()):
        for sparsity in (0.0, 0.3, 0.75, 0.9):
            try:
                mask = np.asarray(fn(w, sparsity)).astype(bool)
            except Exception as err:  # noqa: BLE001
                fb.expect(False, "", f"my_mask(w, {sparsity}) raised {type(err).__name__}: {err}")
                return fb.done()
            if mask.shape != w.shape:
                fb.expect(False, "", f"the mask has shape {mask.shape}, w has {w.shape}")
                return fb.done()
            if int((~mask).sum()) != int(np.floor(sparsity * w.size)):
                bad_count.append((k, sparsity))
            elif mask.any() and (~mask).any() and np.abs(w[~mask]).max() > np.abs(w[mask]).min():
                bad_order.append((k, sparsity))
    fb.expect(not bad_count, "exactly floor(sparsity * size) weights removed",
              f"wrong number removed for (tensor, sparsity) {bad_count[:3]}: remove "
              "floor(sparsity * w.size) weights, keep the rest (True = kept)")
    fb.expect(not bad_order, "every removed weight is smaller in size than every kept one",
              f"for {bad_order[:3]} a removed weight is larger than a kept one: rank by |w|")
    return fb.done()


def check_faster_pruning(answer) -> bool:
    """Exercise 3: which kind of pruning makes a dense matmul faster (and why)."""
    fb = Feedback("Exercise 3 (smaller, or smaller and faster?)")
    text = str(answer or "").strip().lower()
    if not fb.expect(bool(text), "you answered", "answer with a word or a short sentence"):
        return fb.done()
    unstructured = any(w in text for w in _UNSTRUCTURED[:1]) or text.startswith(("magnitude",
                                                                                  "scattered"))
    structured = any(w in text for w in _STRUCTURED) and not unstructured
    fb.expect(structured, "structured pruning: removing whole hidden units shrinks the matrices",
              "zeroing scattered weights leaves every matrix its full size (the zeros are still "
              "multiplied); which pruning makes the matrices themselves smaller?")
    return fb.done()
