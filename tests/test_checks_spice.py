"""Notebook 06's checks: right answers pass, stubs and near-misses fail."""

import numpy as np

import kitchenlab as kl


def good_quantize(w, bits):
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(w).max() / qmax
    return np.clip(np.round(w / scale), -qmax, qmax), scale


def test_check_quantize(capsys):
    assert kl.checks.check_quantize(good_quantize)
    assert kl.checks.check_quantize(lambda w, b: good_quantize(np.asarray(w, np.float64), b))
    assert not kl.checks.check_quantize(None)
    assert not kl.checks.check_quantize(lambda w, b: (np.zeros_like(w), 1.0))  # a constant
    assert not kl.checks.check_quantize(lambda w, b: (np.floor(w / (np.abs(w).max() / 127)),
                                                      np.abs(w).max() / 127))  # 8 bits always
    assert not kl.checks.check_quantize(lambda w, b: (np.floor(w / good_quantize(w, b)[1]),
                                                      good_quantize(w, b)[1]))  # floor, not round
    assert not kl.checks.check_quantize(lambda w, b: 1 / 0)
    assert "scale" in capsys.readouterr().out


def good_mask(w, sparsity):
    order = np.argsort(np.abs(w), axis=None)
    keep = np.ones(w.size, bool)
    keep[order[:int(np.floor(sparsity * w.size))]] = False
    return keep.reshape(w.shape)


def test_check_magnitude_mask():
    assert kl.checks.check_magnitude_mask(good_mask)
    assert not kl.checks.check_magnitude_mask(None)
    assert not kl.checks.check_magnitude_mask(lambda w, s: np.ones_like(w, bool))
    def largest_removed(w, sparsity):
        keep = np.ones(w.size, bool)
        keep[np.argsort(-np.abs(w), axis=None)[:int(np.floor(sparsity * w.size))]] = False
        return keep.reshape(w.shape)

    assert not kl.checks.check_magnitude_mask(largest_removed)
    assert not kl.checks.check_magnitude_mask(lambda w, s: good_mask(w, s)[:1])
    assert not kl.checks.check_magnitude_mask(lambda w, s: np.abs(w) > np.quantile(np.abs(w), s) + 1)


def test_check_faster_pruning():
    for answer in ("structured", "Structured pruning", "remove whole units", "drop neurons",
                   "remove channels"):
        assert kl.checks.check_faster_pruning(answer), answer
    for answer in ("unstructured", "magnitude pruning", "", None, "scattered weights"):
        assert not kl.checks.check_faster_pruning(answer), answer
