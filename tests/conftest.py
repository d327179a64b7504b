"""Shared test set-up: strict JAX, and each notebook's run time and peak memory under nbval.

No notebook is run twice: nbval already runs each notebook in its own fresh kernel, and the
``NotebookResources`` plugin (tests/nb_resources.py) polls that kernel's resident memory
(kernel + children, every 50 ms, plus the kernel's high-water mark) from the setup of the
first cell to the teardown of the last, with the kernel pinned to ``$KITCHENLAB_NB_CORES``
(1) CPU core, as on Binder. A notebook above ``$KITCHENLAB_NB_MAX_MB`` (1500) or
``$KITCHENLAB_NB_MAX_S`` (45) fails (an error at its last cell's teardown).
``$KITCHENLAB_NB_PASS`` names a pass (the Makefile's second pass under another XLA code
path is "isa-avx") in the table and its file name. Each kernel
gets an empty JAX compile cache, as on a first Binder visit (``KITCHENLAB_NB_WARM_CACHE=1``
keeps the usual one). The table (notebook, seconds, peak MB) is printed at the end of the
run and written to ``test-output/notebook_resources.md`` for the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from nb_resources import NotebookResources

# Strict, as equinox's test suite is: an implicit broadcast between arrays of different rank
# is a bug waiting in a shape (a (B,) loss against a (B, 1) weight), so it raises in tests.
jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # Registered as a plugin, not written as conftest hooks: a conftest's hooks only see the
    # items under its own folder, and the notebooks live in notebooks/.
    if not config.pluginmanager.has_plugin("kitchenlab-notebook-resources"):
        config.pluginmanager.register(
            NotebookResources(REPO, max_mb=float(os.environ.get("KITCHENLAB_NB_MAX_MB", 1500)),
                              max_s=float(os.environ.get("KITCHENLAB_NB_MAX_S", 45)),
                              cold_cache=not os.environ.get("KITCHENLAB_NB_WARM_CACHE"),
                              cores=int(os.environ.get("KITCHENLAB_NB_CORES", 1)),
                              label=os.environ.get("KITCHENLAB_NB_PASS", "")),
            "kitchenlab-notebook-resources")
