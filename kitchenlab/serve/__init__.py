"""The restaurant: laminate a trained model, open it for service, compile, batch.

* ``laminate(model, folder, normalizer=...)`` / ``load_model`` / ``read_manifest``
  (``kl.serve.artifact``: orbax weights + ``jax.export`` recipe + manifest);
* ``open_restaurant(folder)`` -> ``Service`` (preprocess -> forward -> postprocess);
* ``compare_compile_modes`` (mise-en-place: eager vs jit vs ahead-of-time);
* ``batch_sweep`` and ``OrderQueue`` (one oven tray: throughput and latency);
* ``Registry`` (the menu board: versions, aliases, history) and ``Monitor`` (rolling
  statistics of a running Service and the drift alarm).
"""

from __future__ import annotations

from kitchenlab.serve.batching import (OrderQueue, QueueReport, batch_sweep, poisson_arrivals,
                                       tray_costs)
from kitchenlab.serve.compilation import compare_compile_modes, time_call
from kitchenlab.serve.artifact import (FORMAT_VERSION, checksum, is_laminated, laminate,
                                       load_model, read_manifest)
from kitchenlab.serve.orders import CONVERSIONS, to_default_unit
from kitchenlab.serve.service import (Plated, Service, Verdict, open_restaurant,
                                      predict_in_fresh_process, softmax)
from kitchenlab.serve.monitor import Monitor
from kitchenlab.serve.registry import Registry

__all__ = ["laminate", "load_model", "read_manifest", "is_laminated", "checksum",
           "FORMAT_VERSION", "Service", "open_restaurant", "Plated", "Verdict", "softmax",
           "predict_in_fresh_process", "compare_compile_modes", "time_call", "batch_sweep",
           "OrderQueue", "QueueReport", "poisson_arrivals", "tray_costs", "CONVERSIONS",
           "to_default_unit",
           "Registry", "Monitor"]
