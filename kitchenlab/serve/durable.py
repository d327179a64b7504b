"""Writing safely: bytes that reach the disk, and folders replaced in one atomic step.

* ``write_durably``: write a file and ``fsync`` it; ``fsync_dir`` / ``fsync_tree`` make
  folder entries (creations, renames) durable too.
* ``replace_folder``: put a finished folder at its final path. A folder already there is
  swapped out in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``), so the
  path holds the old folder or the new one at every instant, never a mixture and never
  nothing. Where the atomic swap is unavailable (not Linux, or a file system without it)
  two renames are used and, for an instant, the path is empty.

The laminated recipe book (``artifact``) and the menu board (``registry``) both write this way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import uuid
from pathlib import Path


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk (``fsync``) before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (creations, renames) durable; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """``fsync`` every file and folder below ``root``."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system or the file system cannot (then nothing happened).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, musl)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"could not swap {str(a)!r} and {str(b)!r}: {os.strerror(err)}")


def replace_folder(tmp: Path, final: Path, *, on_swapped=None) -> None:
    """Put folder ``tmp`` at ``final``; an existing ``final`` is swapped out atomically, then
    removed. ``on_swapped()`` is called the moment ``final`` holds the new folder.

    Where the atomic exchange is unavailable, the old model is moved aside first and put
    back if the second rename fails (for an instant the path is empty, never half-written).
    """
    def swapped():
        if on_swapped is not None:
            on_swapped()

    if not final.exists():
        os.rename(tmp, final)
        swapped()
        return
    if exchange(tmp, final):  # now tmp holds the old model
        swapped()
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    swapped()
    shutil.rmtree(old, ignore_errors=True)
