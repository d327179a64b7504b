"""Notebook 06's checks: right answers pass; stubs, the lesson's other variant and
near-misses fail."""

import numpy as np
import pytest

import kitchenlab as kl
from kitchenlab.checks import spice as C


def good_per_channel(w, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(w).max(axis=0, keepdims=True) / qmax
    return np.clip(np.round(w / scale), -qmax, qmax), scale


def per_tensor(w, bits):  # the lesson's cell: one scale for the whole matrix
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(w).max() / qmax
    return np.clip(np.round(w / scale), -qmax, qmax), scale


def test_reference_equals_the_package():
    for w in C._samples():
        for bits in (8, 4, 2):
            for pc in (True, False):
                q, scale = C.reference_quantize(w, bits, per_channel=pc)
                t = kl.quantize.quantize_tensor(w, bits=bits, per_channel=pc)
                assert np.array_equal(q, np.asarray(t.q))
                assert np.allclose(np.ravel(scale), np.ravel(np.asarray(t.scale)), rtol=1e-6)


def test_check_quantize_per_channel(capsys):
    assert C.check_quantize_per_channel(good_per_channel)
    assert C.check_quantize_per_channel(  # a flat (N,) scale row and float64 are fine
        lambda w, b: (good_per_channel(np.asarray(w, np.float64), b)[0],
                      good_per_channel(w, b)[1].ravel()))
    assert not C.check_quantize_per_channel(None)
    assert not C.check_quantize_per_channel(per_tensor)
    assert "one number per column" in capsys.readouterr().out
    assert not C.check_quantize_per_channel(
        lambda w, b: (np.zeros_like(w), np.ones((1, w.shape[1]))))  # a constant
    assert not C.check_quantize_per_channel(  # scales over the rows instead of the columns
        lambda w, b: (good_per_channel(w, b)[0], np.abs(w).max(axis=1) / (2 ** (b - 1) - 1)))
    assert not C.check_quantize_per_channel(  # always 8 bits
        lambda w, b: good_per_channel(w, 8))
    assert not C.check_quantize_per_channel(  # floor, not round
        lambda w, b: (np.floor(w / good_per_channel(w, b)[1]), good_per_channel(w, b)[1]))
    assert not C.check_quantize_per_channel(lambda w, b: 1 / 0)


def good_global(kernels, sparsity):
    flat = np.concatenate([np.abs(w).ravel() for w in kernels])
    keep = np.ones(flat.size, bool)
    keep[np.argsort(flat, kind="stable")[: int(np.floor(sparsity * flat.size))]] = False
    masks, start = [], 0
    for w in kernels:
        masks.append(keep[start:start + w.size].reshape(w.shape))
        start += w.size
    return masks


def per_layer(kernels, sparsity):  # the lesson's cell, applied to every layer on its own
    out = []
    for w in kernels:
        keep = np.ones(w.size, bool)
        keep[np.argsort(np.abs(w), axis=None)[: int(np.floor(sparsity * w.size))]] = False
        out.append(keep.reshape(w.shape))
    return out


def test_check_global_masks(capsys):
    assert C.check_global_masks(good_global)
    package = lambda ks, s: list(kl.prune.magnitude_masks(  # noqa: E731
        {str(i): w for i, w in enumerate(ks)}, s, scope="global").values())
    assert C.check_global_masks(package)
    assert not C.check_global_masks(None)
    capsys.readouterr()
    assert not C.check_global_masks(per_layer)
    assert "rank the |w| of all kernels together" in capsys.readouterr().out
    assert not C.check_global_masks(lambda ks, s: [np.ones_like(w, bool) for w in ks])
    assert not C.check_global_masks(lambda ks, s: good_global(ks, s)[:1])
    assert not C.check_global_masks(  # the largest removed
        lambda ks, s: good_global([-np.abs(w) + np.abs(w).max() + 1 for w in ks], s))
    assert not C.check_global_masks(lambda ks, s: 1 / 0)


@pytest.mark.parametrize("answer", [
    "structured", "Structured pruning", "remove whole units", "drop neurons", "remove channels",
    "structured, not unstructured", "magnitude pruning of whole units", "structural pruning",
    "neuron pruning", "units", "make the layers narrower", "structured rather than unstructured",
    "structured pruning does not zero scattered weights, it removes units",
    "Not unstructured but structured", "prune half of the hidden units"])
def test_check_faster_pruning_accepts(answer):
    assert kl.checks.check_faster_pruning(answer), answer


@pytest.mark.parametrize("answer", [
    "", None, "unstructured", "magnitude pruning", "scattered weights",
    "zero the smallest weights in each unit", "unstructured rather than structured",
    "unstructured pruning, not structured", "not structured", "both", "weight pruning",
    "zero out small weights"])
def test_check_faster_pruning_rejects(answer):
    assert not kl.checks.check_faster_pruning(answer), answer
