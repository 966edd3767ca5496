"""grokwatch.watch.memory: the watcher pins glibc's mmap threshold, in a fresh process."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_a_watcher_pins_the_mmap_threshold_once(tmp_path):
    code = (
        "import grokwatch.watch.memory as m\n"
        "assert m._done is None\n"
        "from grokwatch.watch import SweepWatcher\n"
        f"SweepWatcher({str(tmp_path)!r}, poll=True)\n"
        "assert m._done is True, m._done\n"
        "assert m.pin_mmap_threshold() is True\n"
        "print('pinned')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "pinned" in out.stdout, out.stderr
