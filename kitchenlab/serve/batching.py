"""One oven tray: many cakes baked together cost little more than one.

* ``batch_sweep``: latency and throughput (orders/s) of the whole pipeline for tray sizes
  1 ... 1024, each size compiled ahead of time.
* ``OrderQueue``: the pass between dining room and kitchen. Orders wait until the tray is
  full (``max_batch``) or the oldest order has waited ``max_wait`` seconds, then the whole
  tray is served. ``replay`` runs a stream of timed arrivals through it: the arrival clock
  is simulated (seeded, so runs are comparable) but every tray is really served and its
  measured time advances the clock (a trace-driven replay, as serving papers do).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, Sequence

import numpy as np

from kitchenlab.serve.service import tray_size

POWERS_OF_TWO = tuple(2 ** k for k in range(11))  # 1 ... 1024


def batch_sweep(service, x_raw: np.ndarray, *, batch_sizes: Sequence[int] = POWERS_OF_TWO,
                repeats: int = 25) -> list[dict]:
    """Median latency and throughput of ``service.predict`` per tray size.

    ``x_raw`` (N, F) raw orders with N >= max(batch_sizes). Each row: ``batch``,
    ``latency_s`` (one tray, whole pipeline), ``throughput`` (orders per second).
    """
    x_raw = np.asarray(x_raw, np.float32)
    if x_raw.ndim != 2 or x_raw.shape[0] < max(batch_sizes):
        raise ValueError(f"x_raw must have shape (N, F) with N >= {max(batch_sizes)}, "
                         f"got {x_raw.shape}")
    service.compile(batch_sizes)
    trays = {b: x_raw[:b] for b in batch_sizes}
    for tray in trays.values():
        service.predict(tray)  # warm caches outside the timing
    times: dict[int, list[float]] = {b: [] for b in batch_sizes}
    for _ in range(repeats):  # round-robin, so a noisy moment hits every size alike
        for b, tray in trays.items():
            t0 = time.perf_counter()
            service.predict(tray)
            times[b].append(time.perf_counter() - t0)
    rows = []
    for b in batch_sizes:
        latency = statistics.median(times[b])
        rows.append({"batch": b, "latency_s": latency, "throughput": b / latency})
    return rows


def tray_costs(rows: list[dict]) -> Callable[[int], float]:
    """``cost(n)``: seconds for a tray of ``n`` orders, from ``batch_sweep`` rows (medians).

    A tray of ``n`` is baked on the compiled tray the service pads it to
    (``kl.serve.service.tray_size``), so it costs what that tray size measured. A bigger
    tray holds more work and never bakes faster: where the medians of a busy machine dip
    with size (noise), neighbouring sizes are pooled into their mean (an isotonic fit), so
    the costs never fall as the tray grows.
    """
    sizes = sorted(int(r["batch"]) for r in rows)
    measured = {int(r["batch"]): float(r["latency_s"]) for r in rows}
    latency = dict(zip(sizes, _non_decreasing([measured[b] for b in sizes])))

    def cost(n: int) -> float:
        size = tray_size(n)
        if size not in latency:
            raise ValueError(f"no measured tray of {size} orders (a tray of {n} is padded to "
                             f"{size}); measured sizes: {sorted(latency)}")
        return latency[size]

    return cost


def _non_decreasing(values: list[float]) -> list[float]:
    """The closest non-decreasing sequence in least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [sum, count] of pooled neighbours
    for v in values:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    return [total / count for total, count in blocks for _ in range(count)]


def poisson_arrivals(n: int, rate: float, *, seed: int = 0) -> np.ndarray:
    """Arrival times (s) of ``n`` orders arriving at random at ``rate`` orders/s."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 orders per second, got {rate}")
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


@dataclasses.dataclass
class QueueReport:
    """What the guests experienced: per-order latency and how full the trays were."""

    max_batch: int
    max_wait: float  # seconds
    latencies: np.ndarray  # (N,) seconds from arrival to plated result
    tray_sizes: np.ndarray  # (number of trays,)
    tray_seconds: np.ndarray  # (number of trays,) measured time to serve each tray
    throughput: float  # orders served per second of (replayed) service time
    labels: np.ndarray  # (N,) predicted label ids, in arrival order

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.latencies, 95))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.latencies, 99))

    @property
    def mean_tray(self) -> float:
        return float(self.tray_sizes.mean())

    @property
    def busy(self) -> float:
        """Share of the replay (first arrival to last plate) the oven spent baking, in [0, 1]:
        fuller trays bake the same orders in fewer runs, which frees the oven."""
        span = len(self.latencies) / self.throughput  # seconds
        return float(self.tray_seconds.sum() / span)

    def __str__(self) -> str:
        return (f"max_batch {self.max_batch:>4}, max_wait {self.max_wait * 1e3:5.2f} ms: "
                f"p50 {self.p50 * 1e3:7.2f} ms, p95 {self.p95 * 1e3:7.2f} ms, "
                f"{self.throughput:9,.0f} orders/s, mean tray {self.mean_tray:5.1f}, "
                f"oven busy {self.busy:4.0%}")


class OrderQueue:
    """Group incoming orders into trays of up to ``max_batch``, waiting at most ``max_wait`` s.

    Every tray size up to ``max_batch`` is compiled when the queue opens (the service pads
    odd sizes up to the next power of two, ``kl.serve.service.tray_size``), so no guest ever
    waits for a compile.
    """

    def __init__(self, service, *, max_batch: int = 64, max_wait: float = 0.002):
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
        if not isinstance(max_wait, (int, float)) or not 0.0 <= max_wait < float("inf"):
            raise ValueError(f"max_wait must be a finite number of seconds >= 0, got {max_wait!r}")
        self.service, self.max_batch, self.max_wait = service, int(max_batch), float(max_wait)
        self.buckets = tuple(sorted({tray_size(b) for b in range(1, self.max_batch + 1)}))
        service.compile(self.buckets)

    def serve_tray(self, x_raw: np.ndarray) -> np.ndarray:
        """Serve one tray (k, F) of raw orders; label ids (k,)."""
        return self.service.predict(x_raw).label_ids

    def replay(self, x_raw: np.ndarray, arrivals: np.ndarray, *,
               tray_cost: Callable[[int], float] | None = None) -> QueueReport:
        """Serve orders ``x_raw`` (N, F) arriving at times ``arrivals`` (N,) seconds, sorted.

        Every tray is really served. Its measured time moves the clock on, unless
        ``tray_cost(n)`` gives the seconds a tray of ``n`` orders takes (e.g.
        ``tray_costs(batch_sweep(...))``, the median of many measured trays): then the
        replay is a deterministic simulation of this kitchen's measured speed, which a
        hiccup of a busy machine during the replay cannot tip.
        """
        if tray_cost is not None and not callable(tray_cost):
            raise TypeError(f"tray_cost must be a function (orders on the tray) -> seconds, "
                            f"got {type(tray_cost).__name__}")
        x_raw = self.service.measure(x_raw)
        arrivals = np.asarray(arrivals, np.float64)
        n = x_raw.shape[0]
        if arrivals.shape != (n,) or np.any(np.diff(arrivals) < 0):
            raise ValueError(f"arrivals must be sorted times with shape ({n},), got shape "
                             f"{arrivals.shape}")
        latencies, labels, trays, seconds = np.empty(n), np.empty(n, np.int64), [], []
        free_at, i = arrivals[0], 0
        while i < n:
            full = i + self.max_batch - 1  # the order that would fill the tray
            t_full = arrivals[full] if full < n else np.inf
            t_send = max(min(arrivals[i] + self.max_wait, t_full), free_at)
            j = min(int(np.searchsorted(arrivals, t_send, side="right")), i + self.max_batch)
            j = max(j, i + 1)
            t0 = time.perf_counter()
            labels[i:j] = self.serve_tray(x_raw[i:j])
            seconds.append(time.perf_counter() - t0 if tray_cost is None
                           else float(tray_cost(j - i)))
            done = t_send + seconds[-1]
            latencies[i:j] = done - arrivals[i:j]
            trays.append(j - i)
            free_at, i = done, j
        return QueueReport(self.max_batch, self.max_wait, latencies, np.asarray(trays),
                           np.asarray(seconds), throughput=n / (free_at - arrivals[0]),
                           labels=labels)
