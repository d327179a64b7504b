"""The restaurant service: a laminated model behind measure -> bake -> plate.

``Service`` opens a laminated folder (in any process) and runs every order through

1. ``preprocess``: validate, convert units, normalize (measuring the ingredients);
2. ``forward``: the exported StableHLO recipe, compiled for the tray size (baking);
3. ``postprocess``: softmax -> probabilities, argmax -> label, confidence (plating).

It holds no optimizer and refuses to be trained: the recipe book is laminated. For a
trainable copy use ``kl.serve.load_model(folder)``.
"""

from __future__ import annotations

import dataclasses
import time
import types
from typing import Iterable

import numpy as np

from kitchenlab.data import check_features
from kitchenlab.serve import artifact as lam
from kitchenlab.serve import orders as measuring


@dataclasses.dataclass(frozen=True)
class Plated:
    """A tray of results as arrays: logits (B, C), probs (B, C), label ids (B,), confidence (B,)."""

    logits: np.ndarray
    probs: np.ndarray
    label_ids: np.ndarray
    confidence: np.ndarray
    label_names: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        return [self.label_names[i] for i in self.label_ids]

    def __len__(self) -> int:
        return int(self.label_ids.shape[0])


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One plated order: the verdict, how sure the chef is, and any warnings."""

    label: str
    confidence: float  # probability of the chosen label, in [1/C, 1]
    probabilities: dict[str, float]
    notes: tuple[str, ...] = ()  # e.g. ingredients outside the range the chef trained on

    def __str__(self) -> str:
        text = f"{self.label} ({self.confidence:.0%} sure)"
        return text + (f" — careful: {'; '.join(self.notes)}" if self.notes else "")


DRY_RUNS = 3  # test cakes baked on each compiled tray size before the doors open
MAX_TRAY = 1024  # the largest tray compiled; bigger orders are served in several trays


def tray_size(n: int) -> int:
    """The compiled tray an order of ``n`` cakes is baked on: the next power of two, at most
    ``MAX_TRAY``. Odd sizes are padded up, so at most 11 programs are ever compiled."""
    return min(1 << max(int(n) - 1, 0).bit_length(), MAX_TRAY)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax in float32 on the host (B, C) -> (B, C)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=-1, keepdims=True)


class Service:
    """The restaurant: open a laminated model folder and serve orders.

    ``batch_sizes`` are compiled ahead of time when the restaurant opens (mise-en-place),
    each followed by a few dry-run bakes: a fresh XLA executable's first runs pay one-time
    setup (memory, thread pools), and that should not be a guest's wait.
    Any other number of orders is padded up to the next power-of-two tray (``tray_size``),
    compiled on first use: the kitchen never holds more than 11 compiled programs, however
    many different tray sizes guests bring. More than ``MAX_TRAY`` orders are served in
    several trays.
    """

    laminated = True  # a flag training code can check before touching a model

    def __init__(self, folder, *, batch_sizes: Iterable[int] = (1,), warm: bool = True):
        import jax

        manifest = lam.read_manifest(folder)
        params = lam.load_params(folder, manifest)
        exported = lam.load_exported(manifest)
        s = object.__setattr__
        s(self, "folder", manifest["folder"])
        s(self, "manifest", types.MappingProxyType(manifest))
        s(self, "config", manifest["config"])
        s(self, "features", tuple(types.MappingProxyType(f) for f in manifest["features"]))
        s(self, "feature_names", tuple(f["name"] for f in manifest["features"]))
        s(self, "feature_units", types.MappingProxyType(
            {f["name"]: f["unit"] for f in manifest["features"]}))
        s(self, "labels", tuple(manifest["labels"]))
        s(self, "_mean", np.asarray(manifest["normalizer"]["mean"], np.float32))
        s(self, "_std", np.asarray(manifest["normalizer"]["std"], np.float32))
        s(self, "_params_np", types.MappingProxyType(params))
        s(self, "_params", {k: jax.device_put(v) for k, v in params.items()})
        s(self, "exported", exported)
        s(self, "_jit", jax.jit(exported.call))  # one trace per new tray size
        s(self, "_compiled", {})
        s(self, "_model", None)
        s(self, "open_seconds", {})
        self.compile(batch_sizes, warm=warm)

    # ------------------------------------------------------------ read-only
    def __setattr__(self, name, value):
        raise AttributeError(f"a laminated Service is read-only: cannot set {name!r}")

    @property
    def params(self) -> types.MappingProxyType:
        """The weights as read-only numpy arrays (a view; nothing here can be written)."""
        return self._params_np

    def fit(self, *args, **kwargs):
        raise TypeError("a laminated model refuses to be trained: it has no optimizer. Get a "
                        "trainable copy with kl.serve.load_model(folder), train that, and "
                        "laminate it again")

    train = update = fit

    # ------------------------------------------------------------ mise-en-place
    def compile(self, batch_sizes: Iterable[int], *, warm: bool = True) -> dict[int, float]:
        """Compile ahead of time for these tray sizes; returns seconds spent per size."""
        import jax
        import jax.numpy as jnp

        spent = {}
        for b in batch_sizes:
            if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
                raise ValueError(f"batch_sizes must be positive ints, got {b!r}")
            b = int(b)
            if b in self._compiled:
                continue
            t0 = time.perf_counter()
            x_spec = jax.ShapeDtypeStruct((b, self.config.n_features), jnp.float32)
            compiled = self._jit.lower(self._params, x_spec).compile()
            if warm:  # dry-run bakes: first-run setup happens now, not for a guest
                dry = jnp.zeros(x_spec.shape, x_spec.dtype)
                for _ in range(DRY_RUNS):
                    jax.block_until_ready(compiled(self._params, dry))
            self._compiled[b] = compiled
            spent[b] = time.perf_counter() - t0
        self.open_seconds.update(spent)
        return spent

    @property
    def compiled_batch_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self._compiled))

    def cost_analysis(self, batch_size: int = 1) -> dict:
        """XLA's own estimate for one tray of ``batch_size``: flops, bytes accessed, ..."""
        if batch_size not in self._compiled:
            self.compile([batch_size])
        cost = self._compiled[batch_size].cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax: a list
        return {k: float(v) for k, v in (cost or {}).items() if "{" not in k}

    # ------------------------------------------------------------ the pipeline
    def measure(self, orders) -> np.ndarray:
        """Orders -> raw amounts (B, F) in default units (validated, converted)."""
        return measuring.measure(orders, self.feature_names, self.feature_units)

    def preprocess(self, orders) -> np.ndarray:
        """Orders -> normalized features (B, F) float32, exactly as in training."""
        return ((self.measure(orders) - self._mean) / self._std).astype(np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalized features (B, F) -> logits (B, C) on compiled trays (padded, see class)."""
        n_features = self.config.n_features
        x = check_features(x, "x", n_features=n_features, item="order")
        out = []
        for start in range(0, x.shape[0], MAX_TRAY):
            part = x[start:start + MAX_TRAY]
            b = part.shape[0]
            size = b if b in self._compiled else tray_size(b)
            if size not in self._compiled:
                self.compile([size])
            if size > b:  # pad with mean orders (zeros after normalization), drop them after
                part = np.concatenate([part, np.zeros((size - b, n_features), np.float32)])
            out.append(np.asarray(self._compiled[size](self._params, part))[:b])
        return out[0] if len(out) == 1 else np.concatenate(out)

    def eager_forward(self, x: np.ndarray) -> np.ndarray:
        """The same recipe followed op by op (``jax.disable_jit``), for comparison only."""
        import jax
        import jax.numpy as jnp

        if self._model is None:
            object.__setattr__(self, "_model", lam.load_model(self.folder))
        with jax.disable_jit():
            return np.asarray(self._model(jnp.asarray(x, jnp.float32)))

    def postprocess(self, logits: np.ndarray) -> Plated:
        """Plating: probabilities, the most likely label, and its probability."""
        logits = np.asarray(logits, np.float32)
        probs = softmax(logits)
        ids = probs.argmax(axis=-1)
        return Plated(logits, probs, ids, probs[np.arange(len(ids)), ids], self.labels)

    def predict(self, orders) -> Plated:
        """The whole pipeline on a tray of orders, results as arrays."""
        return self.postprocess(self.forward(self.preprocess(orders)))

    def serve(self, orders) -> list[Verdict]:
        """The whole pipeline, one ``Verdict`` per order (with out-of-range warnings)."""
        raw = self.measure(orders)
        plated = self.postprocess(self.forward(((raw - self._mean) / self._std).astype(np.float32)))
        notes = measuring.out_of_range(raw, self.features)
        return [Verdict(label=plated.label_names[i], confidence=float(c),
                        probabilities={n: float(p) for n, p in zip(self.labels, row)},
                        notes=tuple(note))
                for i, c, row, note in zip(plated.label_ids, plated.confidence, plated.probs,
                                           notes)]

    __call__ = serve

    def __repr__(self) -> str:
        c = self.config
        return (f"Service({self.folder!r}: MLP {c.n_features}->{c.width}x{c.depth}->"
                f"{c.n_classes}, compiled trays {list(self.compiled_batch_sizes)})")


def open_restaurant(folder, *, batch_sizes: Iterable[int] = (1,), warm: bool = True) -> Service:
    """Open a laminated model folder for service (see ``Service``)."""
    return Service(folder, batch_sizes=batch_sizes, warm=warm)


def predict_in_fresh_process(folder, x, *, timeout: float = 120.0) -> np.ndarray:
    """Open ``folder`` in a brand-new Python process, return its logits for raw orders ``x``.

    Proves the laminated folder is self-contained: nothing from this process (model object,
    compiled functions, caches in memory) reaches the other one. ``x``: (B, F) raw amounts.
    """
    import os
    import subprocess
    import sys
    import tempfile

    x = np.asarray(x, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "orders.npy"), os.path.join(tmp, "logits.npy")
        np.save(src, x)
        code = ("import sys, numpy as np, kitchenlab as kl\n"
                "s = kl.serve.open_restaurant(sys.argv[1], batch_sizes=())\n"
                "np.save(sys.argv[3], s.predict(np.load(sys.argv[2])).logits)\n")
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [pkg_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        proc = subprocess.run([sys.executable, "-c", code, str(lam.target_path(folder, "folder")),
                               src, dst], capture_output=True, text=True, timeout=timeout,
                              env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"the fresh process could not serve {folder!r}:\n"
                               f"{proc.stderr[-2000:]}")
        return np.load(dst)
