"""kitchenlab: how a neural network is trained (an apprenticeship) and served (a restaurant).

``import kitchenlab as kl`` gives the submodules (``kl.data``, ``kl.train``, ...) and
``kl.setup()``; nothing heavy happens at import.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("config", "data", "models", "optim", "train", "sweep", "evaluate", "regularize",
               "experiments", "quantize", "quant_speed", "onnx_export", "prune", "text",
               "kv_cache", "generate", "drafts", "speculative", "pretrain", "drift", "finetune", "distributed", "chain",
               "plots", "widgets", "checks", "serve")


def __getattr__(name):  # lazy submodules: `kl.train` imports jax only when first used
    if name in _SUBMODULES:
        return importlib.import_module(f"kitchenlab.{name}")
    raise AttributeError(f"module 'kitchenlab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))


def setup(seed: int = 0, *, cache_dir: str | None = None, cpu_devices: int = 2,
          quiet: bool = False) -> dict:
    """Open the kitchen: seed numpy/random, set the plot style, cache compiled programs.

    ``cpu_devices`` splits the CPU into that many XLA devices (before JAX starts its
    backend; afterwards it is left as it is): vmapped sweeps spread their runs over them,
    one per core on a 2-core laptop. A fixed number keeps results the same on every machine.

    The persistent compilation cache (``~/.cache/kitchenlab/jax`` unless ``cache_dir`` or
    ``$KITCHENLAB_CACHE`` says otherwise) makes a notebook's second run much faster: XLA
    programs compiled once are reloaded from disk. Returns a small report of the setup.
    """
    import os
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    import jax

    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized():
        jax.config.update("jax_num_cpu_devices", int(cpu_devices))
    cache = cache_dir or os.environ.get("KITCHENLAB_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "kitchenlab", "jax")
    try:
        os.makedirs(cache, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    except OSError:  # a read-only home: run without the cache
        cache = None
    from kitchenlab import plots

    plots.style()
    report = {"seed": seed, "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
              "compile_cache": cache}
    if not quiet:
        print(f"kitchenlab {__version__} | jax {jax.__version__} on {jax.devices()[0].platform} "
              f"({len(jax.devices())} devices) | seed {seed}")
    return report
