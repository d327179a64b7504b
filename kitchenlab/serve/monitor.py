"""The maître d's notebook: serve through a Service and keep rolling statistics (monitoring).

``Monitor`` wraps a running ``Service`` (it changes nothing in it: vary by wrapping) and
writes down, for the last ``window`` orders, what guests asked for (the raw ingredients)
and how sure the chef was (the confidence of each verdict). Every order gets a ticket
number; when a guest's review comes back later — the true verdict, as labels do in real
systems — ``review(tickets, labels)`` records whether the chef was right. ``report()``
compares the window with the reference orders the chef was trained on and fires the
alarm (``kl.drift.check_drift``): orders moved, or reviews got worse.
"""

from __future__ import annotations

import numpy as np

from kitchenlab.drift import AlarmConfig, DriftReport, check_drift
from kitchenlab.serve.service import Plated, Service, Verdict


class Monitor:
    """A ``Service`` plus rolling statistics of its orders, confidence and reviews."""

    def __init__(self, service: Service, reference, *, window: int = 500,
                 launch_accuracy: float | None = None, config: AlarmConfig = AlarmConfig()):
        """``reference``: raw orders (R, F) the chef was trained on (grams, °C, minutes);
        ``launch_accuracy``: the chef's accuracy before opening (for the outcome alarm)."""
        if not isinstance(service, Service):
            raise TypeError(f"service must be a kl.serve.Service, got {type(service).__name__}")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
            raise ValueError(f"window must be an int >= 2 (orders remembered), got {window!r}")
        if not isinstance(config, AlarmConfig):
            raise TypeError(f"config must be a kl.drift.AlarmConfig, got {type(config).__name__}")
        self.service = service
        self.reference = service.measure(reference)  # validated (R, F) raw amounts
        self.window = int(window)
        self.launch_accuracy = launch_accuracy
        self.config = config
        n_features = len(service.feature_names)
        self._orders = np.zeros((self.window, n_features), np.float32)  # ring buffer
        self._confidence = np.zeros(self.window, np.float32)
        self._label_ids = np.zeros(self.window, np.int64)  # the verdict served per slot
        self._correct = np.zeros(self.window, bool)  # reviews, a ring of their own
        self.requests = 0  # calls served
        self.orders = 0  # orders served (tickets 0 .. orders-1)
        self.reviews = 0  # reviews received
        self.last_tickets = np.zeros(0, np.int64)  # tickets of the last call

    # ------------------------------------------------------------ serving through
    def predict(self, orders) -> Plated:
        """``service.predict``, written down; tickets in ``last_tickets``."""
        raw = self.service.measure(orders)
        plated = self.service.predict(raw)
        self._record(raw, plated)
        return plated

    def serve(self, orders) -> list[Verdict]:
        """``service.serve``, written down; tickets in ``last_tickets``."""
        raw = self.service.measure(orders)
        verdicts = self.service.serve(raw)
        ids = np.array([self.service.labels.index(v.label) for v in verdicts])
        conf = np.array([v.confidence for v in verdicts], np.float32)
        self._remember(raw, ids, conf)
        return verdicts

    __call__ = serve

    def _record(self, raw, plated: Plated) -> None:
        self._remember(raw, plated.label_ids, plated.confidence)

    def _remember(self, raw, label_ids, confidence) -> None:
        n = raw.shape[0]
        tickets = np.arange(self.orders, self.orders + n)
        slots = tickets % self.window
        keep = slice(max(n - self.window, 0), n)  # a huge tray: only its last `window` orders
        self._orders[slots[keep]] = raw[keep]
        self._confidence[slots[keep]] = confidence[keep]
        self._label_ids[slots[keep]] = label_ids[keep]
        self.requests += 1
        self.orders += n
        self.last_tickets = tickets

    # ------------------------------------------------------------ late reviews
    def review(self, tickets, labels) -> int:
        """Reviews come back: the true verdict (label ids or names) for earlier tickets.
        Only tickets still in the window can be judged; returns how many were recorded."""
        tickets = np.asarray(tickets)
        if tickets.ndim != 1 or tickets.dtype.kind not in "iu":
            raise ValueError(f"tickets must be a 1-D int array, got dtype {tickets.dtype}, "
                             f"shape {tickets.shape}")
        names = self.service.labels
        labels = [names.index(v) if isinstance(v, str) and v in names else v
                  for v in (labels.tolist() if isinstance(labels, np.ndarray) else labels)]
        if len(labels) != len(tickets):
            raise ValueError(f"labels must give one verdict per ticket: {len(tickets)} tickets, "
                             f"{len(labels)} labels")
        n_classes = len(self.service.labels)
        for v in labels:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) \
                    or not 0 <= v < n_classes:
                raise ValueError(f"labels must be ids in [0, {n_classes}) or names "
                                 f"{list(names)}, got {v!r}")
        if tickets.size and (tickets.min() < 0 or tickets.max() >= self.orders):
            raise ValueError(f"tickets must be in [0, {self.orders}) (orders served so far), "
                             f"got [{tickets.min()}, {tickets.max()}]")
        fresh = tickets >= self.orders - self.window  # older ones left the notebook
        served = self._label_ids[tickets[fresh] % self.window]
        right = served == np.asarray(labels, np.int64)[fresh]
        n = int(right.shape[0])
        slots = (self.reviews + np.arange(n)) % self.window
        self._correct[slots] = right
        self.reviews += n
        return n

    # ------------------------------------------------------------ what the notebook says
    def window_orders(self) -> np.ndarray:
        """The last ``window`` raw orders (oldest first), (min(orders, window), F)."""
        return self._ring(self._orders, self.orders)

    def window_confidence(self) -> np.ndarray:
        return self._ring(self._confidence, self.orders)

    def window_correct(self) -> np.ndarray:
        """Whether the chef was right, for the last ``window`` reviews (oldest first)."""
        return self._ring(self._correct, self.reviews)

    def _ring(self, buf, count):
        if count <= self.window:
            return buf[:count].copy()
        start = count % self.window
        return np.concatenate([buf[start:], buf[:start]])

    def stats(self) -> dict:
        """Rolling statistics: counts, mean confidence, share of unsure verdicts (< 0.6),
        mean of each ingredient in the window next to the reference's."""
        conf = self.window_confidence()
        orders = self.window_orders()
        return {"requests": self.requests, "orders": self.orders, "reviews": self.reviews,
                "window": int(conf.shape[0]),
                "mean_confidence": float(conf.mean()) if conf.size else None,
                "unsure_share": float((conf < 0.6).mean()) if conf.size else None,
                "mean": dict(zip(self.service.feature_names,
                                 orders.mean(axis=0).tolist() if orders.size else [])),
                "reference_mean": dict(zip(self.service.feature_names,
                                           self.reference.mean(axis=0).tolist()))}

    def report(self) -> DriftReport:
        """Drift statistics of the window against the reference, and the alarm."""
        orders = self.window_orders()
        if orders.shape[0] < 2:
            raise ValueError(f"only {orders.shape[0]} order(s) served so far: serve at least 2 "
                             "before asking for a drift report")
        correct = self.window_correct() if self.reviews else None
        return check_drift(self.reference, orders, names=self.service.feature_names,
                           correct=correct, launch_accuracy=self.launch_accuracy,
                           config=self.config)

    def __repr__(self) -> str:
        return (f"Monitor({self.service!r}, window {self.window}: {self.orders} orders, "
                f"{self.reviews} reviews)")
