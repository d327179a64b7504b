"""The menu board: numbered laminated versions, which one is served, and why (model registry).

A registry is one folder::

    menu/
      v1/  v2/  v3/ ...     laminated models, never changed once published
      aliases.json          {"current": "v3", "previous": "v1", "seq": 4}
      history.jsonl         append-only: every promotion and rollback, when, by whom, why

* ``publish`` laminates a model as the next version. The version is built in a hidden
  staging folder (with its *lineage* — parent version and the data it was tuned on —
  written into its manifest) and renamed into place, so ``menu/vN`` is complete or absent.
* ``promote`` / ``rollback`` move the aliases. Both aliases live in ONE small file that is
  swapped atomically: a new file is written beside it, flushed to disk (``fsync``) and
  renamed over the old one. A service that (re)opens ``current`` always finds a complete
  version, whatever instant a crash hits (tested by killing a promote between its steps).
* ``history`` reads the log. The log entry is written *before* the swap (write-ahead):
  an entry whose swap never happened is reported as interrupted, never as done.

A running ``Service`` holds its weights in memory and versions are never modified, so it
keeps serving its version until it is reopened (``registry.open("current")``).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from kitchenlab.serve import artifact as lam
from kitchenlab.serve.durable import fsync_dir, write_durably

ALIASES, HISTORY, STAGING = "aliases.json", "history.jsonl", ".staging"
ALIAS_NAMES = ("current", "previous")
_VERSION = re.compile(r"^v([1-9][0-9]*)$")


def _reached(step: str) -> None:
    """Called after each step of ``promote``/``rollback`` ("logged", "written", "swapped")
    and of ``publish`` ("staged", "published"). Does nothing; the durability tests replace
    it in a child process with a hard kill."""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


class Registry:
    """Versioned laminated models under ``root`` (created if missing), with aliases."""

    def __init__(self, root, *, create: bool = True):
        self.root = lam.target_path(root, "root")
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"root must be a folder, got a file: {str(self.root)!r}")
        if not self.root.exists():
            if not create:
                raise FileNotFoundError(f"registry {str(self.root)!r} does not exist")
            self.root.mkdir(parents=True)
            fsync_dir(self.root.parent)

    def __repr__(self) -> str:
        return (f"Registry({str(self.root)!r}: versions {self.versions()}, "
                f"current {self.current!r})")

    # ------------------------------------------------------------ versions
    def versions(self) -> list[str]:
        """Complete versions (folders ``vN`` with a laminated manifest), oldest first."""
        found = [p.name for p in self.root.iterdir()
                 if _VERSION.match(p.name) and lam.is_laminated(p)]
        return sorted(found, key=lambda v: int(v[1:]))

    def path(self, name: str) -> Path:
        """The folder of a version (``"v2"``) or of what an alias (``"current"``) points to."""
        version = self.resolve(name)
        return self.root / version

    def resolve(self, name: str) -> str:
        """An alias or version name -> a complete version name (clear errors otherwise)."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a version ('v1') or an alias {ALIAS_NAMES}, "
                            f"got {type(name).__name__}")
        if name in ALIAS_NAMES:
            version = self._aliases().get(name)
            if version is None:
                raise ValueError(f"alias {name!r} points to no version yet in "
                                 f"{str(self.root)!r}: promote one first")
            return version
        if not _VERSION.match(name):
            raise ValueError(f"name must be a version like 'v1' or an alias {ALIAS_NAMES}, "
                             f"got {name!r}")
        if name not in self.versions():
            raise ValueError(f"version {name!r} does not exist in {str(self.root)!r} "
                             f"(versions: {self.versions()})")
        return name

    def manifest(self, name: str) -> dict:
        return lam.read_manifest(self.path(name))

    def lineage(self, name: str) -> dict:
        """Where a version came from: its parent version and the data used (or {})."""
        return dict(self.manifest(name).get("lineage", {}))

    def publish(self, model, *, normalizer, parent: str | None = None,
                data: dict | None = None, note: str = "", version: str | None = None) -> str:
        """Laminate ``model`` as a new version (the next number unless ``version`` says);
        its manifest records ``lineage = {"version", "parent", "data"}``. Returns the name.

        Refuses (``FileExistsError``) a version folder that already exists, and a
        ``parent`` that is not a complete version; nothing existing is touched either way.
        A publish killed midway leaves at most an empty ``vN`` folder (never listed as a
        version, its number never reused) and a hidden staging folder, safe to delete.
        """
        if parent is not None:
            parent = self.resolve(parent)
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"data must be a dict describing the data used, got "
                            f"{type(data).__name__}")
        if version is None:
            taken = [int(p.name[1:]) for p in self.root.iterdir() if _VERSION.match(p.name)]
            version = f"v{max(taken, default=0) + 1}"
        elif not isinstance(version, str) or not _VERSION.match(version):
            raise ValueError(f"version must be a name like 'v3', got {version!r}")
        final = self.root / version
        try:
            final.mkdir()  # reserve the name atomically; refuses an existing folder
        except FileExistsError:
            raise FileExistsError(f"version folder {str(final)!r} already exists; versions "
                                  "are never overwritten: publish under a new name") from None
        staging = self.root / STAGING / uuid.uuid4().hex[:12]
        try:
            staging.mkdir(parents=True)
            built = lam.laminate(model, staging / version, normalizer=normalizer, note=note)
            lineage = {"version": version, "parent": parent, "data": data or {},
                       "published": _dt.datetime.now(_dt.timezone.utc).isoformat(
                           timespec="seconds")}
            self._add_lineage(built, lineage)
            _reached("staged")
            os.rename(built, final)  # replaces the empty reserved folder in one step
            fsync_dir(self.root)
            _reached("published")
        except BaseException:
            if final.is_dir() and not any(final.iterdir()):
                final.rmdir()  # give the name back
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            try:
                staging.parent.rmdir()  # only when no other publish is under way
            except OSError:
                pass
        return version

    @staticmethod
    def _add_lineage(folder: Path, lineage: dict) -> None:
        path = folder / lam.MANIFEST
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["lineage"] = lineage
        tmp = folder / f".{lam.MANIFEST}.tmp"
        write_durably(tmp, json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8"))
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
        fsync_dir(folder)

    # ------------------------------------------------------------ aliases
    def _aliases(self) -> dict:
        path = self.root / ALIASES
        if not path.exists():
            return {"current": None, "previous": None, "seq": 0}
        try:
            aliases = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{str(path)!r} is not valid JSON ({err})") from None
        return aliases

    @property
    def current(self) -> str | None:
        return self._aliases().get("current")

    @property
    def previous(self) -> str | None:
        return self._aliases().get("previous")

    def promote(self, version: str, *, reason: str, by: str | None = None) -> None:
        """Serve ``version`` from now on; the version served until now becomes ``previous``."""
        self._move("promote", version, reason, by)

    def rollback(self, to: str | None = None, *, reason: str, by: str | None = None) -> str:
        """Serve ``to`` (default: ``previous``) again; returns the version now current."""
        if to is None:
            to = self.previous
            if to is None:
                raise ValueError("nothing to roll back to: no previous version (pass to='vN')")
        self._move("rollback", to, reason, by)
        return self.current

    def _move(self, event: str, name: str, reason: str, by: str | None) -> None:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"reason must say why (a non-empty string), got {reason!r}")
        version = self.resolve(name)
        lam.load_params(self.root / version)  # complete: every checksum holds
        aliases = self._aliases()
        if aliases.get("current") == version:
            raise ValueError(f"{version!r} is already current: nothing to {event}")
        new = {"current": version, "previous": aliases.get("current"),
               "seq": int(aliases.get("seq", 0)) + 1}
        entry = {"seq": new["seq"], "event": event, "version": version,
                 "replaced": aliases.get("current"), "reason": reason.strip(),
                 "by": by or _user(),
                 "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        # 1) the log first (write-ahead): an entry whose swap never happens reads as
        #    interrupted, never as done
        log = self.root / HISTORY
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        if log.exists() and log.stat().st_size and not log.read_bytes().endswith(b"\n"):
            line = "\n" + line  # a line cut short by a crash stays alone on its line
        with open(log, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        _reached("logged")
        # 2) the new pointer file beside the old one, on disk before it becomes visible
        tmp = self.root / f".{ALIASES}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            write_durably(tmp, json.dumps(new).encode("utf-8"))
            _reached("written")
            # 3) one rename swaps both aliases at once; then the rename itself is made durable
            os.replace(tmp, self.root / ALIASES)
        finally:
            if tmp.exists():
                tmp.unlink()
        fsync_dir(self.root)
        _reached("swapped")

    # ------------------------------------------------------------ history
    def history(self) -> list[dict]:
        """Every promotion and rollback, oldest first, each with ``status``: "done", or
        "interrupted" for a logged move whose swap never happened (a crash in between)."""
        path = self.root / HISTORY
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash: its swap never ran
                continue
        applied = int(self._aliases().get("seq", 0))
        last_of_seq = {e["seq"]: i for i, e in enumerate(entries)}
        return [dict(e, status="done" if e["seq"] <= applied and last_of_seq[e["seq"]] == i
                     else "interrupted") for i, e in enumerate(entries)]

    def open(self, name: str = "current", **kwargs):
        """Open a version (or what an alias points to) for service: a ``Service``."""
        from kitchenlab.serve.service import Service

        return Service(self.path(name), **kwargs)
