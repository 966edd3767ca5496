"""The report and the predictor stay headless: no UI, no torch, matplotlib only when drawing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module,banned",
    [
        ("grokwatch.predict", ("textual", "rich", "torch", "matplotlib", "scipy")),
        ("grokwatch.commands.predict", ("textual", "rich", "torch", "matplotlib")),
        ("grokwatch.report", ("textual", "rich", "torch", "matplotlib")),
        ("grokwatch.commands.report", ("textual", "rich", "torch", "matplotlib")),
    ],
)
def test_imports_stay_light(module, banned):
    code = (
        f"import sys, {module}\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(banned)!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"


def test_figures_use_the_agg_backend_without_a_display(tmp_path):
    code = (
        "import os; os.environ.pop('DISPLAY', None); os.environ['MPLBACKEND'] = 'TkAgg'\n"
        "from grokwatch.report.figures import _plt\n"
        "import matplotlib; _plt(); print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "agg"
