"""Auto-checks for the "Your turn" exercises: immediate, specific feedback.

Each ``check_*`` function prints what is right, or what to look at when it is not, and
returns ``True``/``False`` (never raises for a wrong answer, so a learner's notebook keeps
running). Per-notebook checks live in submodules and are re-exported here.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = ("tour", "recipe", "apprenticeship", "tasters", "rules", "service", "spice",
            "chatbot", "frosting", "complaints", "chain")


class Feedback:
    """Collects ✔/✘ lines for one exercise and prints them as one block."""

    def __init__(self, title: str):
        self.title = title
        self.lines: list[str] = []
        self.ok = True

    def expect(self, condition: bool, good: str, hint: str) -> bool:
        condition = bool(condition)
        self.lines.append(("✔ " + good) if condition else ("✘ " + hint))
        self.ok &= condition
        return condition

    def done(self) -> bool:
        verdict = "well done" if self.ok else "not yet — see the hints"
        print(f"{self.title}: {verdict}")
        for line in self.lines:
            print("  " + line)
        return self.ok


def close(a: Any, b: Any, *, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    import numpy as np

    try:
        return bool(np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                                rtol=rtol, atol=atol))
    except (TypeError, ValueError):
        return False


def __getattr__(name):
    for mod in _MODULES:
        m = importlib.import_module(f"kitchenlab.checks.{mod}")
        if hasattr(m, name):
            return getattr(m, name)
    raise AttributeError(f"module 'kitchenlab.checks' has no attribute {name!r}")


def __dir__():
    names = set(globals())
    for mod in _MODULES:
        names |= {n for n in dir(importlib.import_module(f"kitchenlab.checks.{mod}"))
                  if n.startswith("check_")}
    return sorted(names)
