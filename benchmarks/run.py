"""Measure every speed claim of the course as a ratio in one run.

    python benchmarks/run.py          # a readable table
    python benchmarks/run.py --json   # one JSON object {"key": value, ...} on stdout

Each ``benchmarks/bench_<topic>.py`` module exposes ``measure() -> dict``; ratios are medians
of repeats, each against its baseline measured in the same process. The machine is described
under the key ``machine``. Progress goes to stderr so ``--json`` output stays clean.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOPICS = ("bench_train", "bench_regularize", "bench_serve", "bench_quant", "bench_prune",
          "bench_gen", "bench_spec", "bench_complaints", "bench_chain")  # run in this order


def machine() -> str:
    import jax

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"python {platform.python_version()}, jax {jax.__version__} on "
            f"{jax.devices()[0].platform} ({len(jax.devices())} XLA devices)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--only", nargs="*", help="topics to run, e.g. bench_train")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import jax

    jax.config.update("jax_num_cpu_devices", 2)  # as kl.setup() does for the notebooks
    results: dict = {"machine": machine()}
    start = time.perf_counter()
    for topic in args.only or TOPICS:
        if not (HERE / f"{topic}.py").exists():
            continue
        print(f"[bench] {topic} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results.update(importlib.import_module(topic).measure())
        print(f"[bench] {topic} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(results))
    else:
        width = max(map(len, results))
        for key, value in results.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
