"""Notebook 07's exercise checks: right answers pass, stubs and wrong answers get hints."""

import numpy as np

import kitchenlab as kl
from kitchenlab.checks import chatbot


def _ok(check, *args, capsys):
    assert check(*args) is True
    assert "well done" in capsys.readouterr().out


def _wrong(check, *args, capsys):
    assert check(*args) is False
    out = capsys.readouterr().out
    assert "not yet" in out and "✘" in out


def test_fridge_bytes(capsys):
    def right(n_layer, n_kv_head, head_dim, slots, batch, bytes_per_number):
        return 2 * n_layer * n_kv_head * head_dim * slots * batch * bytes_per_number

    _ok(chatbot.check_fridge_bytes, right, capsys=capsys)
    _wrong(chatbot.check_fridge_bytes, lambda *a: right(*a) // 2, capsys=capsys)  # keys only
    _wrong(chatbot.check_fridge_bytes, lambda *a: 1_572_864, capsys=capsys)  # a constant
    _wrong(chatbot.check_fridge_bytes, lambda *a: 1 / 0, capsys=capsys)
    _wrong(chatbot.check_fridge_bytes, None, capsys=capsys)


def test_sampler_probs(capsys):
    def right(logits, temperature, top_k):
        if temperature == 0:
            return np.eye(len(logits))[np.argmax(logits)]
        z = logits / temperature
        z = np.where(z >= np.sort(z)[-top_k], z, -np.inf)
        e = np.exp(z - z.max())
        return e / e.sum()

    def divides_by_zero(logits, temperature, top_k):
        with np.errstate(divide="ignore", invalid="ignore"):
            return right(logits, temperature if temperature else 0.0 + 1e-300, top_k) * np.nan

    _ok(chatbot.check_sampler_probs, right, capsys=capsys)
    _wrong(chatbot.check_sampler_probs, lambda l, t, k: np.exp(l) / np.exp(l).sum(), capsys=capsys)
    _wrong(chatbot.check_sampler_probs, divides_by_zero, capsys=capsys)
    _wrong(chatbot.check_sampler_probs, lambda l, t, k: np.full(len(l), 1 / len(l)), capsys=capsys)
    assert not chatbot.check_sampler_probs(
        lambda l, t, k: right(l, t, k) if t else np.full(len(l), np.nan))
    assert "never divide by 0" in capsys.readouterr().out


def test_quadratic(capsys):
    for answer in (4, "4", "four", "Quadruple", "4x", "×4", 4.1):
        _ok(chatbot.check_quadratic, answer, capsys=capsys)
    for answer in (2, "twice", None, "8"):
        _wrong(chatbot.check_quadratic, answer, capsys=capsys)


def test_checks_are_reachable_from_the_package():
    assert kl.checks.check_quadratic is chatbot.check_quadratic
