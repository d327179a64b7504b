"""The laminated recipe book: freeze a trained model into a folder nobody can write on.

A laminated folder holds three things, written together or not at all:

* ``weights/``: the knob settings, saved with orbax (async save, then waited for);
* ``forward.jax_export``: the recipe itself, the inference function ``(params, x) -> logits``
  serialized by ``jax.export`` as StableHLO with a symbolic batch dimension ``b``, so it
  runs for any tray size without the Python model code. It is lowered for the platforms in
  ``PLATFORMS`` (CPU and CUDA GPUs); a process on any other backend is refused at open time
  with a clear error, not deep inside the call;
* ``manifest.json``: config, feature names/units/ranges, normalization statistics, label
  names, library versions and SHA-256 checksums of the weights and of the export.

Everything is first written into a hidden temporary sibling folder, flushed to disk
(``fsync`` of every file and folder), and then renamed into place; replacing an existing
model (``force=True``) swaps the two folders in one atomic step (Linux ``renameat2`` with
``RENAME_EXCHANGE``). So a crash, even a killed process, leaves the old model or the new
one at the path, never a half-written one and never nothing (tested by killing a laminate
between its steps). Where the atomic swap is unavailable (not Linux, or a file system
without it) two renames are used and, for an instant, the path is empty. A crash can leave
a hidden ``.<name>.*.tmp`` folder beside the model; it is never read and safe to delete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kitchenlab.serve.durable import fsync_dir, fsync_tree, replace_folder, write_durably

FORMAT = "kitchenlab-laminated-model"
# The folder layout's version. A loader reads every version from 1 up to its own and refuses
# a newer one (laminated by a newer kitchenlab: upgrade to open it). Version 1 exported for
# CPU only; version 2 exports for ``PLATFORMS``. Both read the same way; the export's own
# platform list is checked against the process's backend at open time.
FORMAT_VERSION = 2
OLDEST_READABLE = 1
PLATFORMS = ("cpu", "cuda")  # backends the exported recipe is lowered for
MANIFEST, WEIGHTS, EXPORT = "manifest.json", "weights", "forward.jax_export"
_LIBRARIES = ("kitchenlab", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def quiet_orbax() -> None:
    """Keep orbax's INFO chatter out of notebooks; its warnings and errors still show."""
    for name in ("absl", "orbax"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ---------------------------------------------------------------- params as a flat dict
def flat_params(model) -> dict[str, np.ndarray]:
    """The model's weights as ``{"hidden.0.kernel": array, ...}`` (string keys, sorted).

    ``jax.export`` serializes only string-keyed dicts and nnx lists use int keys, so the
    path parts are joined with dots.
    """
    import jax
    from flax import nnx

    _, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError("model has state besides its Params (batch statistics, RNG "
                         "counters); laminate() handles parameter-only models")
    return {k: np.asarray(v) for k, v in _flatten(nnx.to_pure_dict(params)).items()}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(_flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return dict(sorted(flat.items()))


def nested_params(flat: dict[str, Any]) -> dict:
    """Inverse of ``flat_params``: ``{"hidden": {0: {"kernel": ...}}}`` for ``nnx.merge``."""
    nested: dict = {}
    for key, value in flat.items():
        parts = [int(p) if p.isdigit() else p for p in key.split(".")]
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def abstract_params(config) -> dict[str, Any]:
    """Shapes and dtypes ``{"hidden.0.kernel": ShapeDtypeStruct, ...}`` the config implies."""
    import jax
    from flax import nnx

    _, params = nnx.split(_abstract_model(config), nnx.Param)
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
            for k, v in _flatten(nnx.to_pure_dict(params)).items()}


def make_forward(config):
    """The pure inference function ``forward(params, x) -> logits`` for an MLP ``config``.

    ``params`` is the flat dict of ``flat_params``; the recipe book is rebuilt from its
    graph definition inside the trace, which costs nothing once compiled.
    """
    from flax import nnx

    graphdef, _ = nnx.split(_abstract_model(config), nnx.Param)

    def forward(params, x):
        return nnx.merge(graphdef, nested_params(params))(x)  # (B, F) -> (B, C)

    return forward


def checksum(params: dict[str, Any]) -> str:
    """SHA-256 over names, dtypes, shapes and little-endian bytes of every weight."""
    h = hashlib.sha256()
    for key in sorted(params):
        a = np.ascontiguousarray(np.asarray(params[key]))
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"{key}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _own_version() -> str:
    from kitchenlab import __version__

    return __version__


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "unknown"
    return out


# ---------------------------------------------------------------- writing
def laminate(model, folder, *, normalizer, force: bool = False,
             features: Sequence | None = None, labels: Sequence[str] | None = None,
             note: str = "") -> Path:
    """Laminate a trained ``model`` into ``folder`` (made absolute); returns the folder.

    Args:
      model: a trained ``kl.models.MLP``.
      folder: where the laminated model goes; its parent is created if needed.
      normalizer: the ``kl.data.Normalizer`` fitted on the training table (orders are
        normalized with it at service time, so it is part of the model).
      force: ``False`` refuses to touch an existing folder (``FileExistsError``);
        ``True`` replaces an existing *laminated model* (never any other folder).
      features, labels: defaults ``kl.data.FEATURES`` / ``kl.data.LABELS``.
    """
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from kitchenlab import __version__
    from kitchenlab.config import MLPConfig
    from kitchenlab.data import FEATURES, LABELS, Normalizer
    from kitchenlab.models import MLP

    if not isinstance(model, MLP):
        raise TypeError(f"model must be a kl.models.MLP, got {type(model).__name__}")
    if not isinstance(normalizer, Normalizer):
        raise TypeError(f"normalizer must be a kl.data.Normalizer, got {type(normalizer).__name__}")
    if not isinstance(force, bool):
        raise TypeError(f"force must be True or False, got {force!r}")
    config: MLPConfig = model.config
    features = [dict(f._asdict()) if hasattr(f, "_asdict") else dict(f)
                for f in (features if features is not None else FEATURES)]
    labels = list(labels if labels is not None else LABELS)
    if len(features) != config.n_features:
        raise ValueError(f"features lists {len(features)} ingredients, but the model expects "
                         f"{config.n_features}")
    if normalizer.mean.shape != (config.n_features,):
        raise ValueError(f"normalizer has statistics for {normalizer.mean.shape[0]} features, "
                         f"but the model expects {config.n_features}")
    if len(labels) != config.n_classes:
        raise ValueError(f"labels has {len(labels)} names, but the model has "
                         f"{config.n_classes} classes")
    params = flat_params(model)
    for key, a in params.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"model weight {key!r} contains NaN/inf: refusing to laminate a "
                             "diverged model")
    final = target_path(folder, "folder")
    if final.exists():
        if not force:
            raise FileExistsError(f"folder {str(final)!r} already exists; pass force=True to "
                                  "replace the laminated model there")
        if not (is_laminated(final) or (final.is_dir() and not any(final.iterdir()))):
            raise ValueError(f"folder {str(final)!r} exists and is not a laminated model: "
                             "refusing to replace it even with force=True")
    final.parent.mkdir(parents=True, exist_ok=True)
    quiet_orbax()
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        # 1) weights: orbax writes asynchronously; wait before anything reads them
        ckptr = ocp.StandardCheckpointer()
        try:
            ckptr.save(tmp / WEIGHTS, {k: jnp.asarray(v) for k, v in params.items()})
            ckptr.wait_until_finished()
        finally:
            ckptr.close()
        _reached("weights")
        # 2) the recipe: StableHLO with a symbolic batch size "b", for CPU and CUDA
        forward = make_forward(config)
        (b,) = jax.export.symbolic_shape("b")
        x_spec = jax.ShapeDtypeStruct((b, config.n_features), jnp.float32)
        p_spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()}
        exported = jax.export.export(jax.jit(forward), platforms=PLATFORMS)(p_spec, x_spec)
        write_durably(tmp / EXPORT, bytes(exported.serialize()))
        _reached("export")
        # 3) the manifest, written last: a folder with a manifest is complete
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": {"class": "MLP", "config": dataclasses.asdict(config)},
            "features": features, "labels": labels,
            "normalizer": normalizer.to_dict(),
            "weights": {"path": WEIGHTS, "sha256": checksum(params),
                        "shapes": {k: list(v.shape) for k, v in params.items()},
                        "dtypes": {k: str(v.dtype) for k, v in params.items()}},
            "export": {"path": EXPORT, "sha256": _sha256_file(tmp / EXPORT),
                       "input": f"x: float32[b, {config.n_features}] (normalized)",
                       "output": f"logits: float32[b, {config.n_classes}]",
                       "platforms": list(exported.platforms),
                       "calling_convention_version": exported.calling_convention_version},
            "versions": library_versions() | {"kitchenlab": __version__},
            "note": note,
        }
        write_durably(tmp / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False)
                       .encode("utf-8"))
        _make_read_only(tmp)
        fsync_tree(tmp)  # every byte on disk before the model becomes visible
        _reached("manifest")
        replace_folder(tmp, final, on_swapped=lambda: _reached("swapped"))
        fsync_dir(final.parent)  # the rename itself on disk
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _reached(step: str) -> None:
    """Called after each step of ``laminate`` ("weights", "export", "manifest", "swapped").

    Does nothing; the durability test replaces it in a child process with a hard kill, to
    interrupt a real laminate between its steps.
    """


def target_path(folder, name: str) -> Path:
    """``folder`` as an absolute path; a clear TypeError names ``name`` if it is no path."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or pathlib.Path), got {type(folder).__name__}")
    return Path(os.path.abspath(os.path.expanduser(os.fspath(folder))))


def _make_read_only(root: Path) -> None:
    """Laminate physically: files become read-only (folders stay removable by their owner)."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            os.chmod(p, os.stat(p).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


# ---------------------------------------------------------------- reading
def is_laminated(folder) -> bool:
    """Whether ``folder`` looks like a laminated model (has a kitchenlab manifest)."""
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(folder) -> dict:
    """Read and validate ``folder/manifest.json``; returns it with ``config`` as an MLPConfig."""
    from kitchenlab.config import MLPConfig

    root = target_path(folder, "folder")
    if not root.exists():
        raise FileNotFoundError(f"folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"folder must be a laminated model folder, got a file: {str(root)!r}")
    path = root / MANIFEST
    if not path.exists():
        raise ValueError(f"folder {str(root)!r} is not a laminated model: no {MANIFEST} "
                         f"(found {sorted(p.name for p in root.iterdir())[:5]})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): a corrupted manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"folder {str(root)!r} is not a laminated model: manifest format "
                         f"expected {FORMAT!r}, got {got!r}")
    version = manifest.get("format_version")
    by = manifest.get("versions", {}).get("kitchenlab", "?") if isinstance(
        manifest.get("versions"), dict) else "?"
    if isinstance(version, bool) or not isinstance(version, int) or version < OLDEST_READABLE:
        raise ValueError(f"manifest format_version must be an int from {OLDEST_READABLE} to "
                         f"{FORMAT_VERSION}, got {version!r}: not a folder kitchenlab wrote")
    if version > FORMAT_VERSION:
        raise ValueError(f"manifest format_version is {version}, newer than the "
                         f"{FORMAT_VERSION} this kitchenlab {_own_version()} reads: it was "
                         f"laminated by kitchenlab {by}; upgrade kitchenlab to open it")
    for key in ("model", "features", "labels", "normalizer", "weights", "export"):
        if key not in manifest:
            raise ValueError(f"manifest in {str(root)!r} lacks the {key!r} section")
    model = manifest["model"]
    if model.get("class") != "MLP":
        raise ValueError(f"manifest model class expected 'MLP', got {model.get('class')!r}")
    try:
        config = MLPConfig(**model["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"manifest config is not a valid MLPConfig: {err}") from None
    n_features, n_classes = config.n_features, config.n_classes
    checks = (("features", len(manifest["features"]), n_features),
              ("normalizer mean", len(manifest["normalizer"].get("mean", [])), n_features),
              ("normalizer std", len(manifest["normalizer"].get("std", [])), n_features),
              ("labels", len(manifest["labels"]), n_classes))
    for what, got, expected in checks:
        if got != expected:
            raise ValueError(f"manifest {what} has {got} entries, but config "
                             f"{config} implies {expected}: an incompatible manifest")
    expected = {k: list(v.shape) for k, v in abstract_params(config).items()}
    if manifest["weights"].get("shapes") != expected:
        raise ValueError(f"manifest weight shapes {manifest['weights'].get('shapes')} do not "
                         f"match config {config}, which expects {expected}")
    manifest = dict(manifest, config=config, folder=str(root))
    return manifest


def load_params(folder, manifest: dict | None = None) -> dict[str, np.ndarray]:
    """Restore the weights with orbax and verify their checksum; read-only numpy arrays."""
    import jax
    import orbax.checkpoint as ocp

    manifest = manifest or read_manifest(folder)
    path = Path(manifest["folder"]) / manifest["weights"]["path"]
    if not path.is_dir():
        raise ValueError(f"laminated model {manifest['folder']!r} has no weights folder "
                         f"{path.name!r}: an incomplete copy")
    quiet_orbax()
    target = abstract_params(manifest["config"])
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(path, target)
    except Exception as err:  # orbax/tensorstore raise many types for damaged files
        raise ValueError(f"weights in {str(path)!r} could not be read (corrupted or truncated "
                         f"file?): {type(err).__name__}: {str(err)[:300]}") from err
    params = {k: np.asarray(jax.device_get(restored[k])) for k in sorted(target)}
    got = checksum(params)
    if got != manifest["weights"]["sha256"]:
        raise ValueError(f"weights checksum mismatch in {str(path)!r}: manifest expects "
                         f"{manifest['weights']['sha256'][:12]}…, the files give {got[:12]}…; "
                         "the weights were changed or corrupted after laminating")
    for a in params.values():
        a.setflags(write=False)
    return params


def load_exported(manifest: dict):
    """Deserialize the exported forward function after checking its checksum."""
    import jax

    path = Path(manifest["folder"]) / manifest["export"]["path"]
    if not path.is_file():
        raise ValueError(f"laminated model {manifest['folder']!r} has no exported function "
                         f"{path.name!r}: an incomplete copy")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["export"]["sha256"]:
        raise ValueError(f"exported function {str(path)!r} does not match its checksum in the "
                         "manifest: corrupted or replaced after laminating")
    try:
        exported = jax.export.deserialize(bytearray(blob))
    except Exception as err:
        raise ValueError(f"exported function {str(path)!r} could not be deserialized by jax "
                         f"{jax.__version__}: {type(err).__name__}: {err}") from err
    here = backend_platform()
    if here not in exported.platforms:
        raise ValueError(
            f"laminated model {manifest['folder']!r} was exported for platforms "
            f"{list(exported.platforms)}, but this process runs JAX on {here!r}: re-laminate "
            f"it with this kitchenlab (which exports for {list(PLATFORMS)}), or run this "
            f"process with JAX_PLATFORMS={exported.platforms[0]}")
    return exported


def backend_platform() -> str:
    """The platform name ``jax.export`` uses for this process's default backend
    ("cpu", "cuda", "rocm", "tpu")."""
    import jax

    backend = jax.default_backend()
    if backend == "gpu":
        version = str(getattr(jax.devices()[0].client, "platform_version", "")).lower()
        return "rocm" if "rocm" in version else "cuda"
    return backend


def load_model(folder):
    """A *trainable copy* of a laminated model (a fresh ``kl.models.MLP``), e.g. to fine-tune.

    The laminated folder itself is never changed; laminate the fine-tuned copy elsewhere.
    """
    from flax import nnx

    manifest = read_manifest(folder)
    params = load_params(folder, manifest)
    import jax.numpy as jnp

    graphdef, _ = nnx.split(_abstract_model(manifest["config"]), nnx.Param)
    return nnx.merge(graphdef, nested_params({k: jnp.array(v) for k, v in params.items()}))


def _abstract_model(config):
    from flax import nnx

    from kitchenlab.models import MLP

    return nnx.eval_shape(lambda: MLP(config, rngs=nnx.Rngs(0)))
