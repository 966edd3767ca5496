"""The headless core runs without the UI: statically (import-linter) and at run time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Entry points of the headless core; each must leave textual and rich unloaded.
HEADLESS = [
    "grokwatch",
    "grokwatch.store",
    "grokwatch.runs.phases",
    "grokwatch.commands.main",
    "grokwatch.watch",
    "grokwatch.watch.watcher",  # grokwatch.watch loads its names on first use: the watcher itself
    "grokwatch.alerts",
    "grokwatch.alerts.daemon",
    "grokwatch.predict",
    "grokwatch.report",
    "grokwatch.remote",
    "grokwatch.sim.simulate",
    "grokwatch.sim.demo",
    "grokwatch.integrations.track",
    "observables",
    "observables.htsr",
    "observables.topology",
    "trainer",
    "trainer.train",
    "slurm",
]


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_module_loads_no_ui(module):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"


def test_package_root_is_cheap():
    code = (
        "import sys, grokwatch, grokwatch.commands.main; "
        "print(int('torch' in sys.modules), int('pyarrow' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0"]


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    assert os.path.exists(exe), "import-linter is a dev dependency: pip install -e '.[dev]'"
    out = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "0 broken" in out.stdout
