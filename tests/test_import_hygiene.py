"""The headless core runs without the UI: statically (import-linter) and at run time."""

from __future__ import annotations

import importlib.util
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
    "observables",
    "trainer",
    "slurm",
]
OPTIONAL = [  # checked when importable
    "grokwatch.watch",
    "grokwatch.alerts",
    "grokwatch.sim.simulate",
    "grokwatch.predict",
    "grokwatch.remote",
    "trainer.train",
    "observables.htsr",
    "observables.topology",
]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("module", HEADLESS + [m for m in OPTIONAL if _importable(m)])
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
