"""Sweep planning and the batch script: mapping, validation, quoting, shell checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grokwatch.commands.main import main
from grokwatch.store.layout import run_id_for
from slurm.plan import PlanError, SweepOptions, make_manifest, parse_time, plan_runs, record_submission, validate
from slurm.script import render_script

REPO = Path(__file__).resolve().parents[2]


def _plan_cli(tmp_path, *extra):
    return main(["sweep", "plan", "--root", str(tmp_path), "--sweep", "sw", *extra])


def test_default_plan_is_90_tasks_covering_every_pair_once(tmp_path, capsys):
    assert _plan_cli(tmp_path) == 0
    script = capsys.readouterr().out
    manifest = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert manifest["n_tasks"] == 90 and manifest["array"] == "0-89"
    assert "#SBATCH --array=0-89\n" in script
    pairs = [(t["weight_decay"], t["seed"]) for t in manifest["tasks"]]
    assert sorted(pairs) == sorted((wd, s) for wd in (0.1, 0.3, 1.0) for s in range(30))
    assert len(set(pairs)) == 90
    assert sorted(t["index"] for t in manifest["tasks"]) == list(range(90))
    by_index = {t["index"]: t for t in manifest["tasks"]}
    assert by_index[37]["run_id"] == f"wd{by_index[37]['weight_decay']}-s{by_index[37]['seed']:02d}"
    assert {t["run_id"] for t in manifest["tasks"]} >= {"wd0.3-s07", "wd0.1-s00", "wd1.0-s29"}
    # The script's case table agrees with the manifest, entry by entry.
    for t in manifest["tasks"]:
        assert f"  {t['index']}) RUNS=('{t['run_id']} {t['weight_decay']!r} {t['seed']}') ;;" in script
    assert (tmp_path / "sw" / "sweep.sbatch").read_text() == script
    assert (tmp_path / "sw" / "logs").is_dir()
    for line in (
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        "#SBATCH --signal=B:USR1@300",
        "#SBATCH --gpus-per-task=1",
        "--device cuda",
        "--resume",
        'scontrol requeue "$SELF"',
    ):
        assert line in script


def test_script_resolves_each_task_to_its_runs(tmp_path, capsys):
    """Run the script's table part under bash for a few task ids (no SLURM)."""
    assert _plan_cli(tmp_path, "--pack", "4", "--gpus-per-task", "0") == 0
    script = capsys.readouterr().out
    manifest = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    head = script.split('cd -- "$WORKDIR"')[0]
    for task in (0, 7, 22):
        out = subprocess.run(
            ["bash", "-c", head + '\nprintf "%s\\n" "${RUNS[@]}"'],
            capture_output=True,
            text=True,
            env={**os.environ, "SLURM_ARRAY_TASK_ID": str(task)},
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        want = [f"{t['run_id']} {t['weight_decay']!r} {t['seed']}" for t in manifest["tasks"] if t["index"] == task]
        assert out.stdout.split("\n")[:-1] == want
    assert manifest["n_tasks"] == 23 and manifest["pack"] == 4  # ceil(90 / 4)
    out = subprocess.run(
        ["bash", "-c", head],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "99"},
        timeout=30,
    )
    assert out.returncode == 2 and "not part of sweep" in out.stderr


def test_cpu_only_script(tmp_path, capsys):
    assert (
        _plan_cli(
            tmp_path,
            "--gpus-per-task",
            "0",
            "--seeds",
            "2",
            "--weight-decays",
            "0.5",
            "--steps",
            "300",
            "--cpus",
            "2",
            "--mem",
            "2G",
            "--time",
            "1:00:00",
            "--partition",
            "debug",
            "--account",
            "lab",
            "--max-concurrent",
            "5",
            "--preset",
            "tiny",
        )
        == 0
    )
    script = capsys.readouterr().out
    assert "--gpus-per-task" not in script and "--device cpu" in script and "--device cuda" not in script
    for line in (
        "--array=0-1%5",
        "--cpus-per-task=2",
        "--mem=2G",
        "--time=1:00:00",
        "--partition=debug",
        "--account=lab",
        "--preset tiny",
        "--steps 300",
    ):
        assert line in script


def _script_checks(path: Path) -> None:
    out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_default_script_passes_bash_n_and_shellcheck(tmp_path, capsys, shellcheck):
    assert _plan_cli(tmp_path) == 0
    path = tmp_path / "sw" / "sweep.sbatch"
    _script_checks(path)
    out = subprocess.run([shellcheck, "--shell=bash", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        _plan_cli(
            tmp_path,
            "--sweep",
            "packed",
            "--pack",
            "3",
            "--gpus-per-task",
            "0",
            "--trainer-arg=--probe-every",
            "--trainer-arg",
            "100",
        )
        == 0
    )
    out = subprocess.run(
        [shellcheck, "--shell=bash", str(tmp_path / "packed" / "sweep.sbatch")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


HOSTILE = 'x\'; touch {p}; echo "$(touch {p})" `touch {p}` $HOME * \\ ; #'


def test_hostile_values_are_quoted_not_run(tmp_path, capsys):
    """Text options go into the script quoted; running its preamble creates nothing."""
    pwned = tmp_path / "PWNED"
    hostile = HOSTILE.format(p=pwned)
    root = tmp_path / f"root {hostile}"
    rc = main(
        [
            "sweep",
            "plan",
            "--root",
            str(root),
            "--sweep",
            "sw",
            "--python",
            f"/bin/echo {hostile}",
            "--workdir",
            str(tmp_path),
            "--trainer-arg",
            hostile,
            "--gpus-per-task",
            "0",
        ]
    )
    assert rc == 0
    capsys.readouterr()
    _script_checks(root / "sw" / "sweep.sbatch")
    # The whole script with a fake python that only echoes its arguments: the
    # hostile text arrives as single arguments, nothing is executed.
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/bash\nif [ "$1" = -c ]; then exit 0; fi\nprintf \'<%s>\\n\' "$@"\nexit 0\n')
    fake.chmod(0o755)
    rc = main(
        [
            "sweep",
            "plan",
            "--root",
            str(root),
            "--sweep",
            "sw2",
            "--python",
            str(fake),
            "--seeds",
            "1",
            "--weight-decays",
            "0.1",
            "--workdir",
            str(tmp_path),
            "--trainer-arg",
            hostile,
            "--gpus-per-task",
            "0",
        ]
    )
    assert rc == 0
    capsys.readouterr()
    out = subprocess.run(
        ["bash", str(root / "sw2" / "sweep.sbatch")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"},
    )
    assert out.returncode == 0, out.stderr
    assert not pwned.exists()
    log = (root / "sw2" / "logs" / "wd0.1-s00.r0.log").read_text()
    assert f"<{hostile}>" in log.splitlines()
    assert f"<{root}>" in log.splitlines()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sweep", "../evil"], "--sweep"),
        (["--sweep", "a b"], "--sweep"),
        (["--preset", "tiny;rm"], "--preset"),
        (["--partition", "debug\n#SBATCH --uid=0"], "--partition"),
        (["--partition", "a b"], "--partition"),
        (["--account", "x$(id)"], "--account"),
        (["--mem", "4G; rm"], "--mem"),
        (["--time", "1:00:00\n#SBATCH"], "--time"),
        (["--time", "0"], "--time"),
        (["--seeds", "0"], "--seeds"),
        (["--seeds", "-3"], "--seeds"),
        (["--weight-decays", "0.1,abc"], "--weight-decays"),
        (["--weight-decays", "0.1,nan"], "--weight-decays"),
        (["--weight-decays", "-1"], "--weight-decays"),
        (["--weight-decays", "0.1,0.10"], "--weight-decays"),
        (["--steps", "0"], "--steps"),
        (["--gpus-per-task", "-1"], "--gpus-per-task"),
        (["--max-concurrent", "0"], "--max-concurrent"),
        (["--pack", "0"], "--pack"),
        (["--pack", "91"], "--pack"),
        (["--python", "py\nthon"], "--python"),
        (["--trainer-arg", "a\nb"], "--trainer-arg"),
        (["--flush-seconds", "inf"], "--flush-seconds"),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path, capsys, args, fragment):
    base = {"--sweep": "sw"}
    argv = ["sweep", "plan", "--root", str(tmp_path)]
    if "--sweep" not in args:
        argv += ["--sweep", base["--sweep"]]
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokwatch: error: ") and fragment in err
    assert err.count("\n") == 1
    assert not (tmp_path / "sw" / "sweep.json").exists()


def test_time_parsing_and_signal_lead():
    assert parse_time("90") == 5400
    assert parse_time("1:30") == 90
    assert parse_time("2:00:00") == 7200
    assert parse_time("1-2") == 93600
    assert parse_time("1-0:30:05") == 86400 + 1805
    opts = validate(SweepOptions(root="/r", sweep="s", time="1"))
    assert opts.effective_signal_seconds == 30  # never the whole limit
    opts = validate(SweepOptions(root="/r", sweep="s", time="4:00:00"))
    assert opts.effective_signal_seconds == 300


def test_pack_mapping_and_manifest_submissions():
    opts = validate(SweepOptions(root="/r", sweep="s", seeds=5, weight_decays=(0.1, 1.0), pack=3))
    runs = plan_runs(opts, run_id_for)
    assert [r.index for r in runs] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert [r.slot for r in runs] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    script = render_script(opts, runs)
    assert "#SBATCH --array=0-3\n" in script
    m = record_submission(make_manifest(opts, runs), "123")
    assert m["array_job_id"] == "123" and [s["array_job_id"] for s in m["submissions"]] == ["123"]
    # Planning the same runs again keeps the submissions; other runs are refused.
    again = make_manifest(opts, runs, previous=m)
    assert again["array_job_id"] == "123"
    other = validate(SweepOptions(root="/r", sweep="s", seeds=6, weight_decays=(0.1, 1.0), pack=3))
    with pytest.raises(PlanError, match="already submitted"):
        make_manifest(other, plan_runs(other, run_id_for), previous=m)


def test_sweep_help_is_cheap():
    code = (
        "import sys; from grokwatch.commands.main import build_parser; build_parser(); "
        "print(int('pyarrow' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_slurm_package_stands_alone():
    """slurm imports nothing of grokwatch (the arrow points grokwatch -> slurm)."""
    code = (
        "import sys, slurm, slurm.plan, slurm.script, slurm.queue, slurm.states, slurm.submit\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grokwatch', 'paramiko', 'numpy', 'textual')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
