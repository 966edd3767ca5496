"""The headless entry points never load the UI (textual, rich), in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = [
    "grokwatch.watch",
    "grokwatch.alerts",
    "grokwatch.alerts.daemon",
    "grokwatch.alerts.notify",
    "grokwatch.sim.simulate",
    "grokwatch.remote.source",
    "grokwatch.commands.alerts",
    "grokwatch.commands.silence",
    "grokwatch.commands.simulate",
]
CHECK = "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')); print('UI:' + ','.join(bad))"


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1].removeprefix("UI:")


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_entry_point_imports_no_ui(module):
    assert _run(f"import sys, {module}\n{CHECK}") == ""


def test_running_the_core_loads_no_ui(tmp_path):
    """Simulate, watch, alert (through the CLI, as cron would) in one process: still no UI."""
    code = (
        "import sys\n"
        "from grokwatch.commands.main import main\n"
        f"assert main(['simulate', {str(tmp_path)!r}, '--runs', '4', '--steps', '1000']) == 0\n"
        f"assert main(['alerts', {str(tmp_path / 'sim')!r}, '--once']) == 0\n"
        "import apprise  # notification channels too\n"
        "from grokwatch.alerts.notify import Channel\n"
        "Channel('json://127.0.0.1:9/x')\n"
        f"{CHECK}\n"
    )
    assert _run(code) == ""
