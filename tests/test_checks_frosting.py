"""Notebook 08's exercise checks: right answers pass; stubs, constants and crashes get hints."""

import numpy as np

import kitchenlab as kl
from kitchenlab.checks import frosting
from check_grading import ok as _ok, wrong as _wrong


def right_verdict(guesses, choices):
    kept = 0
    while kept < len(guesses) and guesses[kept] == choices[kept]:
        kept += 1
    return kept, choices[kept]


def test_verdict(capsys):
    _ok(frosting.check_verdict, right_verdict, capsys=capsys)
    # a list is fine
    _ok(frosting.check_verdict, lambda g, c: list(right_verdict(g, c)), capsys=capsys)

    def counts_every_match(guesses, choices):  # a later match must not count
        kept = int(np.sum(np.asarray(guesses) == np.asarray(choices)[: len(guesses)]))
        return kept, choices[kept]

    for wrong in (lambda g, c: (0, c[0]),  # the notebook's stub
                  lambda g, c: (len(g), c[-1]),  # a constant verdict: keep all
                  counts_every_match,
                  lambda g, c: right_verdict(g, c)[0],  # not a pair
                  lambda g, c: 1 / 0, None, "verdict"):
        _wrong(frosting.check_verdict, wrong, capsys=capsys)


def test_tokens_per_round(capsys):
    _ok(frosting.check_tokens_per_round, lambda a, k: sum(a ** i for i in range(k + 1)),
        capsys=capsys)
    _ok(frosting.check_tokens_per_round,
        lambda a, k: k + 1 if a == 1 else (1 - a ** (k + 1)) / (1 - a), capsys=capsys)
    for wrong in (lambda a, k: 1 + a * k,  # the notebook's stub
                  lambda a, k: 3.3616,  # a constant: right for one case only
                  lambda a, k: (1 - a ** (k + 1)) / (1 - a),  # divides by 0 at alpha = 1
                  lambda a, k: sum(a ** i for i in range(1, k + 1)),  # forgets the +1
                  lambda a, k: "many", None):
        _wrong(frosting.check_tokens_per_round, wrong, capsys=capsys)


def test_break_even(capsys):
    def bisect(k, c, v):
        lo, hi = 0.0, 1.0
        if kl.speculative.predicted_speedup(0.0, k, c, v) >= 1:
            return 0.0
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if kl.speculative.predicted_speedup(mid, k, c, v) >= 1 else (mid, hi)
        return hi

    _ok(frosting.check_break_even, bisect, capsys=capsys)
    for wrong in (lambda k, c, v: 0.5,  # the notebook's stub: a constant
                  lambda k, c, v: 0.0,
                  lambda k, c, v: 1 - 1 / v,  # forgets k and c
                  lambda k, c, v: bisect(k, c, v) + 0.05,
                  lambda k, c, v: None, lambda k, c, v: [][0], None):
        _wrong(frosting.check_break_even, wrong, capsys=capsys)


def test_checks_are_reachable_from_the_package():
    assert kl.checks.check_verdict is frosting.check_verdict
    assert kl.checks.check_break_even is frosting.check_break_even
