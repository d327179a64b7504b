"""The notebook memory meter measures what it claims (the meter itself; tests/conftest.py
applies it to every notebook during the nbval run)."""

from __future__ import annotations

import subprocess
import sys
import time

from nb_resources import PeakMonitor, Usage, markdown_table


def test_peak_monitor_sees_a_short_spike_in_a_child():
    # A parent whose child holds 200 MB for a moment: the peak must include the child.
    code = ("import subprocess, sys, time;"
            "subprocess.run([sys.executable, '-c', "
            "'b = bytearray(200 * 2**20); b[::4096] = b\"x\" * len(b[::4096]); "
            "import time; time.sleep(0.5)']); time.sleep(0.2)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        monitor = PeakMonitor(proc.pid)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    seconds, peak_mb = monitor.stop()
    assert peak_mb >= 200, peak_mb
    assert 0.5 <= seconds < 60


def test_markdown_table():
    table = markdown_table([Usage("notebooks/02_x.ipynb", 12.34, 678.9)], 1500, 45)
    assert "| notebooks/02_x.ipynb | 12.3 | 679 |" in table
    assert table.startswith("| notebook | seconds | peak MB |")


def test_pin_to_cores_pins_every_thread_and_later_children():
    """A pinned process, its threads and a child it starts afterwards all run on 1 core."""
    import os

    import pytest

    from nb_resources import pin_to_cores

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("CPU pinning needs Linux")
    code = ("import os, subprocess, sys, threading, time\n"
            "threading.Thread(target=time.sleep, args=(3,), daemon=True).start()\n"
            "time.sleep(1.0)\n"  # the parent pins us meanwhile
            "child = subprocess.run([sys.executable, '-c', "
            "'import os; print(len(os.sched_getaffinity(0)))'], capture_output=True, text=True)\n"
            "threads = [len(os.sched_getaffinity(int(t))) for t in os.listdir('/proc/self/task')]\n"
            "print(child.stdout.strip(), max(threads))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    cores = pin_to_cores(proc.pid, 1)
    out, _ = proc.communicate(timeout=60)
    assert cores is not None and len(cores) == 1
    assert out.split() == ["1", "1"], out
