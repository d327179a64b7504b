"""Peak memory and wall time of one notebook's kernel, measured while nbval runs it.

``PeakMonitor(pid)`` samples the resident memory of a process and all its descendants
every 50 ms from a thread; ``stop()`` also reads the kernel's own high-water mark
(``VmHWM`` in ``/proc/<pid>/status``, Linux), which catches a spike between two samples.
The peak is the larger of the two. ``NotebookResources`` is the pytest plugin that
``tests/conftest.py`` registers: it meters every notebook nbval runs (see its docstring).

``pin_to_cores(pid, n)`` pins a freshly started kernel (every thread it has, and so every
thread and child process it starts later) to ``n`` CPU cores: the course promises each
notebook runs in 45 s on ONE core, as on Binder, and that is how it is measured.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

MB = 1024 * 1024


def vm_hwm(pid: int) -> int:
    """The kernel's own peak resident set (bytes) since it started; 0 where /proc lacks it."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory (bytes) of a process and all its descendants."""
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def pin_to_cores(pid: int, n: int) -> list[int] | None:
    """Pin process ``pid`` (all its threads) to the first ``n`` cores it may use.

    Returns the cores, or None where the system cannot pin (not Linux, or not allowed).
    Threads and child processes created afterwards inherit the pinning.
    """
    if n <= 0 or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cores = sorted(os.sched_getaffinity(pid))[:n]
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")] if os.path.isdir(
            f"/proc/{pid}/task") else [pid]
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cores)
            except ProcessLookupError:  # a thread that just ended
                pass
    except OSError:
        return None
    return cores


@dataclass
class Usage:
    name: str
    seconds: float
    peak_mb: float


class PeakMonitor:
    def __init__(self, pid: int, interval_s: float = 0.05):
        self.pid, self.interval_s = pid, interval_s
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self.start_time = time.perf_counter()
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.proc))
            self._stop.wait(self.interval_s)

    def stop(self) -> tuple[float, float]:
        """(seconds since start, peak MB); call while the kernel is still alive."""
        seconds = time.perf_counter() - self.start_time
        self.peak = max(self.peak, tree_rss(self.proc), vm_hwm(self.pid))
        self._stop.set()
        self._thread.join(timeout=5)
        return seconds, self.peak / MB


def markdown_table(rows: list[Usage], limit_mb: float, limit_s: float, cores: int = 1,
                   label: str = "") -> str:
    lines = ["| notebook | seconds | peak MB |", "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.seconds:.1f} | {r.peak_mb:.0f} |")
    lines.append("")
    pinned = f"pinned to {cores} CPU core{'s' if cores != 1 else ''}" if cores > 0 else "unpinned"
    lines.append(f"Each notebook in a fresh kernel under nbval, {pinned}, cold JAX compile "
                 f"cache{f' ({label})' if label else ''}; limits {limit_s:.0f} s and "
                 f"{limit_mb:.0f} MB (peak resident memory of the kernel and its children, "
                 f"MB = 2^20 bytes).")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# The pytest plugin (registered by tests/conftest.py, so that it also sees the nbval items
# under notebooks/, which a conftest in tests/ would not)
# --------------------------------------------------------------------------------------


def _nbval_file(item):
    """The nbval file collector of a cell item, or None for any other test."""
    parent = getattr(item, "parent", None)
    if type(item).__name__ == "IPyNbCell" and type(parent).__name__ == "IPyNbFile":
        return parent
    return None


def _kernel_pid(nbfile) -> int | None:
    km = getattr(getattr(nbfile, "kernel", None), "km", None)
    for get in (lambda: km.provisioner.pid, lambda: km.provisioner.process.pid,
                lambda: km.kernel.pid):
        try:
            pid = get()
        except AttributeError:
            continue
        if pid:
            return pid
    return None


class NotebookResources:
    """Times each nbval notebook and meters its kernel's peak memory; fails one over the limits.

    From the setup of a notebook's first cell (nbval has just started its kernel) to the
    teardown of its last cell (before nbval stops the kernel). A notebook over the limits
    is reported as an error at the teardown of its last cell.
    """

    def __init__(self, repo: Path, max_mb: float, max_s: float, cold_cache: bool = True,
                 cores: int = 1, label: str = ""):
        self.repo, self.max_mb, self.max_s, self.cold_cache = repo, max_mb, max_s, cold_cache
        self.cores, self.label = cores, label
        self.usage: list[Usage] = []
        self._monitors: dict[int, PeakMonitor] = {}
        self._cache_root: str | None = None

    def _name(self, nbfile) -> str:
        path = Path(str(nbfile.path))
        try:
            return str(path.relative_to(self.repo))
        except ValueError:
            return str(path)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item):
        nbfile = _nbval_file(item)
        first = nbfile is not None and nbfile.kernel is None and id(nbfile) not in self._monitors
        saved = os.environ.get("KITCHENLAB_CACHE")
        if first and self.cold_cache:
            # The kernel nbval starts now inherits os.environ: give it an empty compile cache,
            # as on a first Binder visit. The path ends in .cache/kitchenlab/jax so that
            # tests/nbval_sanitize.cfg hides it in outputs.
            if self._cache_root is None:
                self._cache_root = tempfile.mkdtemp(prefix="kl-nbcache-")
            os.environ["KITCHENLAB_CACHE"] = os.path.join(
                self._cache_root, Path(str(nbfile.path)).stem, ".cache", "kitchenlab", "jax")
        try:
            result = yield
        finally:
            if first and self.cold_cache:
                if saved is None:
                    os.environ.pop("KITCHENLAB_CACHE", None)
                else:
                    os.environ["KITCHENLAB_CACHE"] = saved
        if first:
            pid = _kernel_pid(nbfile)
            if pid:
                pin_to_cores(pid, self.cores)  # before the first cell runs
                self._monitors[id(nbfile)] = PeakMonitor(pid)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        nbfile = _nbval_file(item)
        usage = None
        last = nbfile is not None and (nextitem is None
                                       or getattr(nextitem, "parent", None) is not nbfile)
        if last and id(nbfile) in self._monitors:
            seconds, peak_mb = self._monitors.pop(id(nbfile)).stop()
            usage = Usage(self._name(nbfile), seconds, peak_mb)
            self.usage.append(usage)
        result = yield
        if usage is not None:
            problems = []
            if usage.peak_mb > self.max_mb:
                problems.append(f"peak memory {usage.peak_mb:.0f} MB > {self.max_mb:.0f} MB "
                                f"(a Binder session has about 2 GB)")
            if usage.seconds > self.max_s:
                problems.append(f"run time {usage.seconds:.1f} s > {self.max_s:.0f} s")
            if problems:
                pytest.fail(f"{usage.name}: " + "; ".join(problems), pytrace=False)
        return result

    def pytest_terminal_summary(self, terminalreporter):
        if self._cache_root:
            shutil.rmtree(self._cache_root, ignore_errors=True)
        if not self.usage:
            return
        table = markdown_table(self.usage, self.max_mb, self.max_s, self.cores, self.label)
        out = self.repo / "test-output" / f"notebook_resources{self.label and '-' + self.label}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)
        terminalreporter.section(f"notebooks: run time and peak memory {self.label}".strip())
        for line in table.splitlines():
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"(written to {out})")


def pytest_configure(config):
    """Loaded for every pytest run by pyproject.toml (``-p nb_resources``): register the meter.

    A plugin, not conftest hooks: a conftest's hooks only see the items under its own
    folder, and the notebooks live in notebooks/.
    """
    if not config.pluginmanager.has_plugin("kitchenlab-notebook-resources"):
        config.pluginmanager.register(
            NotebookResources(Path(__file__).resolve().parents[1],
                              max_mb=float(os.environ.get("KITCHENLAB_NB_MAX_MB", 1500)),
                              max_s=float(os.environ.get("KITCHENLAB_NB_MAX_S", 45)),
                              cold_cache=not os.environ.get("KITCHENLAB_NB_WARM_CACHE"),
                              cores=int(os.environ.get("KITCHENLAB_NB_CORES", 1)),
                              label=os.environ.get("KITCHENLAB_NB_PASS", "")),
            "kitchenlab-notebook-resources")
