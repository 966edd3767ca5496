"""Config, presets, validation and the CLI's dry run and error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.__main__ import main
from trainer.config import PRESETS, ConfigError, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def dry_run(capsys, *args: str) -> dict:
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "one JSON object on one line"
    return json.loads(out[0])


def test_dry_run_param_counts(capsys, tmp_path):
    canonical = dry_run(capsys, "--root", str(tmp_path), "--preset", "canonical")
    assert 295_000 <= canonical["n_params"] <= 310_000
    assert canonical["n_params"] == 302_260
    assert (canonical["p"], canonical["n_layers"], canonical["d_model"], canonical["n_heads"]) == (97, 1, 128, 4)
    assert (canonical["train_frac"], canonical["lr"], canonical["weight_decay"]) == (0.3, 1e-3, 1.0)
    assert (canonical["beta1"], canonical["beta2"], canonical["steps"]) == (0.9, 0.98, 100_000)
    nanda = dry_run(capsys, "--root", str(tmp_path), "--preset", "nanda")
    assert nanda["d_mlp"] == 512 and abs(nanda["n_params"] - 223_000) < 1_000
    tiny = dry_run(capsys, "--root", str(tmp_path), "--preset", "tiny")
    assert (tiny["p"], tiny["d_model"], tiny["d_mlp"], tiny["train_frac"], tiny["lr"], tiny["warmup"]) == (
        47,
        64,
        256,
        0.4,
        3e-3,
        10,
    )
    assert tiny["vocab_size"] == 49 and tiny["n_train"] + tiny["n_val"] == 47 * 47


def test_dry_run_applies_flags_over_the_preset(capsys, tmp_path):
    d = dry_run(
        capsys,
        "--root",
        str(tmp_path),
        "--preset",
        "tiny",
        "--weight-decay",
        "0.3",
        "--seed",
        "7",
        "--d-mlp",
        "128",
        "--op",
        "div",
        "--probes",
        "",
        "--stop-after-grok",
        "100",
        "--compile",
    )
    assert (d["weight_decay"], d["seed"], d["d_mlp"], d["op"], d["probes"], d["stop_after_grok"], d["compile"]) == (
        0.3,
        7,
        128,
        "div",
        [],
        100,
        True,
    )
    assert d["n_train"] + d["n_val"] == 47 * 46  # div: b in 1..p-1
    assert d["n_params"] == TrainConfig.from_dict(d).n_params
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == TrainConfig.from_dict(d)  # JSON round trip


@pytest.mark.parametrize(
    "args, words",
    [
        (["--train-frac", "0"], "--train-frac"),
        (["--train-frac", "1.5"], "--train-frac"),
        (["--op", "div", "--p", "96"], "prime"),
        (["--op", "pow"], "--op"),
        (["--run-id", "../escape"], "unsafe run id"),
        (["--run-id", "a/b"], "unsafe run id"),
        (["--sweep", ".."], "--sweep"),
        (["--steps", "0"], "--steps"),
        (["--steps", "-5"], "--steps"),
        (["--eval-every", "0"], "--eval-every"),
        (["--lr", "0"], "--lr"),
        (["--weight-decay", "-1"], "--weight-decay"),
        (["--d-model", "130", "--n-heads", "4"], "divisible"),
        (["--probes", "nope"], "unknown probe"),
        (["--device", "tpu"], "--device"),
        (["--preset", "huge"], "--preset"),
        (["--steps", "ten"], "--steps"),
        (["--no-such-flag"], "unrecognized"),
    ],
)
def test_validation_errors_are_one_line_exit_2(capsys, tmp_path, args, words):
    code = cli(["--root", str(tmp_path), *args, "--dry-run"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("trainer: error: "), lines
    assert words in lines[0]


def cli(argv: list[str]) -> int:
    """main() as the shell sees it: argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_root_not_writable(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--root", str(blocker / "runs"), "--dry-run"]) == 2
    assert "--root" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--root"):
        TrainConfig.from_preset("tiny", root="/proc/grokwatch-no-such-dir").validate()


def test_existing_run_needs_resume(capsys, tmp_path):
    run = tmp_path / "s" / "r"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    assert main(["--root", str(tmp_path), "--sweep", "s", "--run-id", "r", "--preset", "tiny", "--steps", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--resume" in err[0]


def test_presets_validate():
    for name in PRESETS:
        TrainConfig.from_preset(name).validate(check_root=False)


def test_cli_subprocess_exit_codes(tmp_path):
    """The real ``python -m trainer``: a dry run prints one JSON object, an error one line."""
    ok = subprocess.run(
        [sys.executable, "-m", "trainer", "--root", str(tmp_path), "--preset", "canonical", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["n_params"] == 302_260
    bad = subprocess.run(
        [sys.executable, "-m", "trainer", "--root", str(tmp_path), "--op", "div", "--p", "91"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("trainer: error: ")
