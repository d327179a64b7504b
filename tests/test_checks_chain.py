"""The exercise checks of notebook 10: True for a right answer, False plus a hint (no raise)."""

import numpy as np

from kitchenlab.checks import chain
from check_grading import ok as _ok, wrong as _wrong


def test_local_rows(capsys):
    _ok(chain.check_local_rows,
        lambda p, n, b: np.arange(p * (b // n), (p + 1) * (b // n)), capsys=capsys)
    _ok(chain.check_local_rows, lambda p, n, b: list(range(p * b // n, (p + 1) * b // n)),
        capsys=capsys)
    _wrong(chain.check_local_rows, lambda p, n, b: np.arange(32), capsys=capsys)  # a constant
    _wrong(chain.check_local_rows, lambda p, n, b: np.arange(p, b, n), capsys=capsys)  # strided
    _wrong(chain.check_local_rows, lambda p, n, b: 1 / 0, capsys=capsys)  # raises: no crash
    _wrong(chain.check_local_rows, None, capsys=capsys)


def test_weighted_notes(capsys):
    _ok(chain.check_weighted_notes,
        lambda notes, sizes: sum(s * g for s, g in zip(sizes, notes)) / sum(sizes),
        capsys=capsys)
    out = _wrong(chain.check_weighted_notes, lambda notes, sizes: np.mean(notes, axis=0),
                 capsys=capsys)
    assert "plain average" in out
    _wrong(chain.check_weighted_notes, lambda notes, sizes: np.zeros(3), capsys=capsys)
    _wrong(chain.check_weighted_notes, lambda notes, sizes: notes[5], capsys=capsys)
    _wrong(chain.check_weighted_notes, "average", capsys=capsys)
