"""The light install: watching needs neither torch nor ripser nor scipy.

``pip install grokwatch`` (no extras) must run the dashboard, ``alerts
--once``, ``report``, ``predict`` and ``grokwatch.integrations.track`` with floats; the
training commands say in one line which extra they need. Checked two ways:
with torch, scipy, ripser and tensorboard made unimportable in this venv (a
``sitecustomize`` on PYTHONPATH installs a meta path finder that raises
ImportError for them), and (slow) in a fresh venv with ``pip install .`` and
no extras.
"""

from __future__ import annotations

import fcntl
import json
import os
import pkgutil
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
import tomllib
from pathlib import Path

import pytest

from grokwatch.store import list_runs

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "scipy", "ripser", "tensorboard")
TRAIN_ERROR = "needs the training extra: pip install 'grokwatch[train]'"

SITECUSTOMIZE = textwrap.dedent(f"""
    import sys

    BLOCKED = {BLOCKED!r}


    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: light install test)", name=name)
            return None


    sys.meta_path.insert(0, _Block())
""")


def _env(tmp: Path, pythonpath: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "GROKWATCH_TUI_CONFIG", "PYTHONPATH")}
    env.update(HOME=str(tmp / "home"), TERM="xterm-256color", PYTHONDONTWRITEBYTECODE="1")
    (tmp / "home").mkdir(exist_ok=True)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """(env, python, sweep): this venv's python with the training stack blocked, and a simulated sweep."""
    tmp = tmp_path_factory.mktemp("light")
    (tmp / "block").mkdir()
    (tmp / "block" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = _env(tmp, str(tmp / "block"))
    out = _run([sys.executable, "-m", "grokwatch", "simulate", str(tmp / "sim"), "--runs", "3", "--steps", "2000"], env)
    assert out.returncode == 0, out.stderr
    return env, sys.executable, tmp / "sim" / "sim", tmp


def _run(cmd, env, timeout=180, cwd=None):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_the_blocker_blocks(light):
    env, py, _, _ = light
    for mod in BLOCKED + ("scipy.stats", "torch.nn"):
        out = _run([py, "-c", f"import {mod}"], env)
        assert out.returncode != 0 and "blocked: light install test" in out.stderr, (mod, out.stderr)
    assert _run([py, "-c", "import numpy, pyarrow, textual, paramiko, matplotlib"], env).returncode == 0


def test_every_watching_module_imports_without_the_training_stack(light):
    env, py, _, _ = light
    names = [
        m.name
        for pkg in ("grokwatch", "observables", "slurm")
        for m in pkgutil.walk_packages([str(ROOT / pkg)], pkg + ".")
        if not m.name.endswith("__main__")
    ]
    assert "grokwatch.integrations.track" in names and "grokwatch.remote.ssh" in names and "grokwatch.tui.app" in names
    code = textwrap.dedent(f"""
        import importlib, sys
        bad = []
        for name in {names!r}:
            try:
                importlib.import_module(name)
            except Exception as exc:
                bad.append(f"{{name}}: {{exc!r}}")
        print("\\n".join(bad))
        print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}))
    """)
    out = _run([py, "-c", code], env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "loaded: []", out.stdout


def test_alerts_once(light):
    env, py, sweep, _ = light
    out = _run([py, "-m", "grokwatch", "alerts", str(sweep), "--once"], env)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert events and {e["run"] for e in events} <= {r.name for r in list_runs(sweep)}


def test_report(light):
    env, py, sweep, tmp = light
    out = _run([py, "-m", "grokwatch", "report", str(sweep), "--out", str(tmp / "report")], env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp / "report" / "report.json").read_text())["counts"]["runs"] == 3
    assert (tmp / "report" / "report.md").exists()


def test_predict_replay(light):
    env, py, sweep, _ = light
    out = _run([py, "-m", "grokwatch", "predict", str(sweep), "--replay"], env)
    assert out.returncode == 0, out.stderr


def test_sweep_plan_and_silence(light):
    env, py, sweep, tmp = light
    plan = _run([py, "-m", "grokwatch", "sweep", "plan", "--root", str(tmp / "planned"), "--sweep", "s"], env)
    assert plan.returncode == 0 and (tmp / "planned" / "s" / "sweep.json").exists(), plan.stderr
    run_id = list_runs(sweep)[0].name
    mute = _run([py, "-m", "grokwatch", "silence", run_id, "--for", "2h", "--source", str(sweep)], env)
    assert mute.returncode == 0 and json.loads(mute.stdout)["run"] == run_id, mute.stderr


def test_dashboard(light):
    env, py, sweep, _ = light
    rc, screen = dashboard_in_a_pty(
        [py, "-m", "grokwatch", str(sweep), "--no-follow"], env, [r.name for r in list_runs(sweep)]
    )
    assert rc == 0, screen[-3000:]


def test_track_with_floats_and_numpy_probes(light):
    env, py, _, tmp = light
    code = textwrap.dedent("""
        import sys, numpy as np, grokwatch
        run = grokwatch.init(root=sys.argv[1], sweep="t", run_id="r", config={"steps": 20})
        for s in range(1, 21):
            run.log(s, train_loss=1.0 / s, train_acc=min(1.0, s / 10))
        vals = run.log_probes(20, {"w": np.random.default_rng(0).standard_normal((40, 30))})
        run.finish()
        assert "htsr_alpha/w" in vals and "effective_rank/w" in vals, vals
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "scipy")]
        print("ok")
    """)
    out = _run([py, "-c", code, str(tmp / "track")], env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize(
    "cmd,name",
    [
        (["-m", "grokwatch", "demo", "--headless"], "grokwatch demo"),
        (["-m", "grokwatch", "probe", "somewhere"], "grokwatch probe"),
        (["-m", "trainer", "--steps", "10"], "python -m trainer"),
        (["-m", "trainer", "--pack", "--steps", "10"], "python -m trainer"),
    ],
)
def test_training_commands_name_the_extra(light, cmd, name):
    env, py, _, tmp = light
    out = _run([py, *cmd], env, cwd=tmp)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{name} {TRAIN_ERROR}" in lines[0], out.stderr


def test_tensorboard_import_names_its_extra(light):
    env, py, _, tmp = light
    logdir = tmp / "tb" / "run0"
    logdir.mkdir(parents=True)
    (logdir / "events.out.tfevents.1.host").write_bytes(b"")
    out = _run(
        [py, "-m", "grokwatch", "import", "tensorboard", str(tmp / "tb"), "--root", str(tmp / "x"), "--sweep", "s"], env
    )
    assert out.returncode == 2 and "pip install 'grokwatch[tensorboard]'" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_extras_in_pyproject():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {Requirement(r).name for r in project["dependencies"]}
    assert not core & set(BLOCKED), core
    extras = project["optional-dependencies"]
    train = {Requirement(r).name: Requirement(r) for r in extras["train"]}
    assert {"torch", "scipy", "ripser"} <= set(train)
    assert train["torch"].specifier.contains("2.13.0") and not train["torch"].specifier.contains("2.15.0")
    assert "tensorboard" in {Requirement(r).name for r in extras["tensorboard"]}
    dev_self = [Requirement(r) for r in extras["dev"] if Requirement(r).name == "grokwatch"]
    assert dev_self and {"train", "tensorboard"} <= dev_self[0].extras  # the README's `-e '.[dev]'` sets up everything


# -- a fresh venv ------------------------------------------------------------------------


def _unavailable(reason: str):
    if os.environ.get("GROKWATCH_REQUIRE_INFRA") == "1":
        pytest.fail(f"{reason} (GROKWATCH_REQUIRE_INFRA=1: required infrastructure is missing)", pytrace=False)
    print(f"SKIP: {reason}")
    pytest.skip(reason)


@pytest.mark.slow
def test_fresh_venv_without_extras(tmp_path):
    """``pip install .`` with no extras into a venv without system site-packages: no torch,
    scipy or ripser, and the watching commands work (about a minute with a package cache)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in ("grokwatch", "trainer", "observables", "slurm"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        _unavailable(f"cannot create a venv: {made.stderr.strip()[-300:]}")
    py = str(venv / "bin" / "python")
    env = _env(tmp_path, None)
    env.pop("VIRTUAL_ENV", None)
    env["HOME"] = os.environ.get("HOME", str(tmp_path / "home"))  # pip's cache
    pip = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if pip.returncode != 0:
        tail = pip.stdout[-1500:] + pip.stderr[-1500:]
        if re.search(
            r"No matching distribution|Could not find a version|connection|Network is unreachable|"
            r"Temporary failure in name resolution|ProxyError",
            tail,
            re.I,
        ):
            _unavailable(f"pip cannot reach a package index: {tail.strip()[-300:]}")
        pytest.fail(f"pip install of the source tree failed:\n{tail}")
    present = _run(
        [py, "-c", "import importlib.util as u; print([m for m in ('torch', 'scipy', 'ripser') if u.find_spec(m)])"],
        env,
    )
    assert present.stdout.strip() == "[]", present.stdout + present.stderr
    gw = str(venv / "bin" / "grokwatch")
    env = _env(tmp_path, None)
    sim = _run([gw, "simulate", str(tmp_path / "sim"), "--runs", "3", "--steps", "2000"], env, cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    sweep = tmp_path / "sim" / "sim"
    alerts = _run([gw, "alerts", str(sweep), "--once"], env, cwd=tmp_path)
    assert alerts.returncode == 0 and alerts.stdout.strip(), alerts.stderr
    report = _run([gw, "report", str(sweep), "--out", str(tmp_path / "rep")], env, timeout=300, cwd=tmp_path)
    assert report.returncode == 0 and (tmp_path / "rep" / "report.md").exists(), report.stderr
    rc, screen = dashboard_in_a_pty([gw, str(sweep), "--no-follow"], env, [r.name for r in list_runs(sweep)])
    assert rc == 0, screen[-3000:]
    demo = _run([gw, "demo", "--headless"], env, cwd=tmp_path)
    assert demo.returncode == 2 and f"grokwatch demo {TRAIN_ERROR}" in demo.stderr, demo.stderr


# -- the dashboard in a pseudo-terminal --------------------------------------------------

_ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>]")


def dashboard_in_a_pty(cmd, env, expect: list[str], timeout: float = 60.0) -> tuple[int | str, str]:
    """Run the dashboard in a 160x48 pseudo-terminal, wait until every string of
    ``expect`` is on screen, press q; returns (exit code, the text it drew)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    buf, sent, deadline = b"", None, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                buf += data
            text = _ANSI.sub(b"", buf).decode(errors="replace")
            if sent is None and all(s in text for s in expect):
                time.sleep(0.5)
                os.write(master, b"q")
                sent = time.monotonic()
            if proc.poll() is not None:
                break
        try:
            rc: int | str = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = "did not exit"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    text = _ANSI.sub(b"", buf).decode(errors="replace")
    if sent is None:
        missing = [s for s in expect if s not in text]
        pytest.fail(f"the dashboard never showed {missing} (exit {proc.returncode}):\n{text[-3000:]}")
    return rc, text
