"""Named experiments the notebooks, their panels and their checks share, one module per notebook.

A panel (``kl.widgets.<topic>``) draws what ``kl.experiments.<topic>`` computes, and a check
(``kl.checks``) grades an answer by running the same experiment, so neither imports the
other: the arrows point down (experiments -> lessons' code), never up into the UI.
"""

from __future__ import annotations

import importlib

_TOPICS = ("apprenticeship", "clipping", "tasters", "rules", "complaints", "frosting")


def __getattr__(name):
    if name in _TOPICS:
        return importlib.import_module(f"kitchenlab.experiments.{name}")
    raise AttributeError(f"module 'kitchenlab.experiments' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_TOPICS))
