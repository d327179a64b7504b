"""Notebook 07's exercise checks: right answers pass, stubs and wrong answers get hints."""

import numpy as np

import kitchenlab as kl
from kitchenlab.checks import chatbot
from check_grading import ok as _ok, wrong as _wrong


def test_fridge_bytes(capsys):
    def right(n_layer, width, n_head, n_kv_head, slots, batch, dtype):
        head_dim = width // n_head
        return 2 * n_layer * n_kv_head * head_dim * slots * batch * np.dtype(
            "float16" if dtype == "bfloat16" else dtype).itemsize

    _ok(chatbot.check_fridge_bytes, right, capsys=capsys)
    for slip, hint in (
            (lambda *a: right(*a) // 2, "keys AND values"),  # keys only
            (lambda L, w, h, kv, s, b, d: right(L, w, h, h, s, b, d), "query heads are not"),
            (lambda L, w, h, kv, s, b, d: right(L, w, kv, kv, s, b, d), "query heads are not"),
            (lambda L, w, h, kv, s, b, d: right(L, w, h, kv, s, b, "float32"), "bytes per number"),
            (lambda L, w, h, kv, s, b, d: right(1, w, h, kv, s, b, d), "every layer"),
            (lambda L, w, h, kv, s, b, d: right(L, w, h, kv, s, 1, d), "every row")):
        _wrong(chatbot.check_fridge_bytes, slip, capsys=capsys)
    for stub in (lambda *a: 1_048_576, lambda *a: 1 / 0, lambda *a: "1 MiB", None,
                 lambda *a: True):  # constants, errors, strings and no function at all
        assert chatbot.check_fridge_bytes(stub) is False
    assert "not yet" in capsys.readouterr().out


def test_fridge_hints_name_the_slip(capsys):
    def keys_only(n_layer, width, n_head, n_kv_head, slots, batch, dtype):
        return n_layer * n_kv_head * (width // n_head) * slots * batch * 4

    chatbot.check_fridge_bytes(keys_only)
    out = capsys.readouterr().out
    assert "(keys AND values: two tensors per layer)" in out


def test_fridge_cases_match_kv_cache_nbytes():
    """The 7B-class card is the one the success message quotes: 4 GiB per guest."""
    card = [c for c in chatbot.FRIDGES if c[0].startswith("a 7B")][0]
    config = kl.config.GPTConfig(n_layer=32, width=4096, n_head=32, n_kv_head=8, context=32768)
    assert card[1:5] == (32, 4096, 32, 8)
    assert kl.kv_cache.nbytes(config, 1, 32768, bytes_per_number=2) == 4 * 2**30


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
    for answer in (4, "4", "four", "Quadruple", "4x", "×4", 4.1, "quadratic", "Squared",
                   "n²", "N^2", "4 times as much"):
        _ok(chatbot.check_quadratic, answer, capsys=capsys)
    for answer in (2, "twice", None, "8", "linear", 1):
        _wrong(chatbot.check_quadratic, answer, capsys=capsys)


def test_quadratic_explains_the_measured_ratio(capsys):
    """A learner who reads 2.0-2.7x off the table is told why the answer is 4, not 'wrong'."""
    for answer in (2.5, "2.4x", 2.7):
        assert chatbot.check_quadratic(answer) is False
        assert "what the table shows at these short lengths" in capsys.readouterr().out
    for answer in (2, "twice"):
        assert chatbot.check_quadratic(answer) is False
        assert "the chef WITH the fridge" in capsys.readouterr().out
    assert chatbot.check_quadratic(8) is False
    assert "N²/2" in capsys.readouterr().out


def test_checks_are_reachable_from_the_package():
    assert kl.checks.check_quadratic is chatbot.check_quadratic
