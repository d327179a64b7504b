"""Count XLA compilations: every new program is lowered to MLIR once, cache hit or not."""

from __future__ import annotations

import contextlib

import jax

LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


@contextlib.contextmanager
def count_compiles():
    """``with count_compiles() as n: ...`` then ``n[0]`` is how many programs were compiled.

    Counted at lowering (jaxpr -> MLIR), which happens for every program jit has not seen in
    this process, whether or not the persistent disk cache then skips XLA's own compile.
    """
    count = [0]

    def listener(event, duration_secs, **kwargs):
        if event == LOWERING_EVENT:
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
