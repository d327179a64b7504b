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
