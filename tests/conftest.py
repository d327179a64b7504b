"""Shared test set-up: strict JAX.

Each notebook's run time and peak memory under nbval are metered by the plugin in
tests/nb_resources.py, which pyproject.toml loads for every pytest run (``-p nb_resources``),
so ``pytest notebooks`` alone (the second notebook pass) is metered too. nbval runs each
notebook in its own fresh kernel; the plugin pins that kernel to ``$KITCHENLAB_NB_CORES`` (1)
CPU core, as on Binder, gives it an empty JAX compile cache (``KITCHENLAB_NB_WARM_CACHE=1``
keeps the usual one), and polls its resident memory (kernel + children) from the setup of
its first cell to the teardown of its last. A notebook above ``$KITCHENLAB_NB_MAX_MB``
(1500) or ``$KITCHENLAB_NB_MAX_S`` (45) fails. ``$KITCHENLAB_NB_PASS`` names a pass (the
Makefile's second pass is "isa-avx"). The table is printed at the end of the run and written
to ``test-output/notebook_resources[-PASS].md``.
"""

from __future__ import annotations

import jax

# Strict, as equinox's test suite is: an implicit broadcast between arrays of different rank
# is a bug waiting in a shape (a (B,) loss against a (B, 1) weight), so it raises in tests.
jax.config.update("jax_numpy_rank_promotion", "raise")
