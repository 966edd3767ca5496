"""``grokwatch import tensorboard``: SummaryWriter logs become runs the watcher reads."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from grokwatch.integrations.tensorboard import ImportProblem, default_column, import_tensorboard, parse_map
from grokwatch.store import RunReader, read_run_config, read_status
from grokwatch.watch import SweepWatcher

GROKWATCH = [sys.executable, "-m", "grokwatch"]


@pytest.mark.parametrize(
    "tag,column",
    [
        ("train/loss", "train_loss"),
        ("Loss/train", "train_loss"),
        ("train_loss", "train_loss"),
        ("loss", "train_loss"),
        ("train/acc", "train_acc"),
        ("Accuracy/train", "train_acc"),
        ("val/loss", "val_loss"),
        ("Loss/test", "val_loss"),
        ("val/acc", "val_acc"),
        ("Accuracy/validation", "val_acc"),
        ("eval_accuracy", "val_acc"),
        ("grad_norm", "grad_norm"),
        ("norms/grad", "grad_norm"),
        ("train/gradient_norm", "grad_norm"),
        ("weight_norm", "weight_norm"),
        ("param_norm", "weight_norm"),
        ("lr", "lr"),
        ("learning_rate", "lr"),
        ("epoch", None),
        ("charts/throughput", None),
    ],
)
def test_default_column(tag, column):
    assert default_column(tag) == column


def test_parse_map():
    assert parse_map(["gn=grad_norm", "a/b=c=d", "x=-"]) == {"gn": "grad_norm", "a/b=c": "d", "x": "-"}
    for bad in (["gn"], ["=x"], ["gn="], ["s=step"]):
        with pytest.raises(ImportProblem):
            parse_map(bad)


def _write_logdir(logdir):
    tb = pytest.importorskip("torch.utils.tensorboard", reason="writing event files needs torch and tensorboard")
    # run A: standard tags, memorizes at step 10, groks at step 30
    w = tb.SummaryWriter(str(logdir / "wd1-s0"))
    for s in range(1, 41):
        w.add_scalar("train/loss", 1.0 / s, s)
        w.add_scalar("train/acc", 1.0 if s >= 10 else 0.5, s)
        if s % 5 == 0:
            w.add_scalar("val/loss", 2.0 / s, s)
            w.add_scalar("val/acc", 0.97 if s >= 30 else 0.1, s)
        w.add_scalar("grad_norm", 0.5 + 0.01 * s, s)
        w.add_scalars("norms", {"weight": 10.0 - 0.1 * s}, s)
        w.add_scalar("charts/throughput", 123.0, s)
    w.close()
    # run B: other names, one needing --map, one dropped
    w = tb.SummaryWriter(str(logdir / "wd0.1-s1"))
    for s in range(0, 20, 2):
        w.add_scalar("Loss/train", 3.0 - 0.1 * s, s)
        w.add_scalar("Accuracy/test", 0.01 * s, s)
        w.add_scalar("gn", 2.0 * s, s)
        w.add_scalar("debug/junk", -1.0, s)
    w.close()


def test_import_writes_runs_the_watcher_reads(tmp_path):
    logdir = tmp_path / "tb"
    _write_logdir(logdir)
    out = subprocess.run(
        [
            *GROKWATCH,
            "import",
            "tensorboard",
            str(logdir),
            "--root",
            str(tmp_path / "gw"),
            "--sweep",
            "tb",
            "--map",
            "gn=grad_norm",
            "--map",
            "debug/junk=-",
            "--set",
            "weight_decay=1.0",
            "--set",
            "note=from tb",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 runs written" in out.stdout
    sweep = tmp_path / "gw" / "tb"
    snap = SweepWatcher(sweep, poll=True).cycle()
    assert set(snap.runs) == {"wd1-s0", "wd0.1-s1"}

    a = snap.runs["wd1-s0"]
    assert (a.step, a.total_steps, a.weight_decay, a.status) == (40, 40, 1.0, "completed")
    assert (a.t_mem, a.t_grok, a.phase) == (10, 30, "grokked")
    sc = a.scalars
    assert sc["step"].tolist() == list(range(1, 41))
    np.testing.assert_allclose(sc["train_loss"], 1.0 / np.arange(1, 41), rtol=1e-6)
    np.testing.assert_allclose(sc["grad_norm"], 0.5 + 0.01 * np.arange(1, 41), rtol=1e-6)
    np.testing.assert_allclose(sc["weight_norm"], 10.0 - 0.1 * np.arange(1, 41), rtol=1e-6)  # add_scalars part
    assert (
        np.isnan(sc["val_acc"][0])
        and sc["val_acc"][4] == pytest.approx(0.1)
        and sc["val_acc"][29] == pytest.approx(0.97)
    )
    raw = RunReader(a.path)
    raw.refresh()
    assert np.all(
        raw.scalars["charts/throughput"] == 123.0
    )  # an unknown tag keeps its name (the watcher keeps only its own)
    cfg = read_run_config(a.path)
    assert cfg["note"] == "from tb" and cfg["imported_from"]["tags"]["norms/weight"] == "weight_norm"

    b = snap.runs["wd0.1-s1"]
    sc = b.scalars
    assert sc["step"].tolist() == list(range(0, 20, 2))
    np.testing.assert_allclose(sc["grad_norm"], 2.0 * np.arange(0, 20, 2), rtol=1e-6)  # --map gn=grad_norm
    np.testing.assert_allclose(sc["val_acc"], 0.01 * np.arange(0, 20, 2), rtol=1e-5, atol=1e-7)
    raw = RunReader(b.path)
    raw.refresh()
    assert "debug/junk" not in raw.scalars and "gn" not in raw.scalars
    assert b.phase == "learning" and b.status == "completed"

    again = subprocess.run(
        [*GROKWATCH, "import", "tensorboard", str(logdir), "--root", str(tmp_path / "gw"), "--sweep", "tb"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert again.stderr.count("\n") == 1  # one line


def test_single_run_logdir_nan_loss_and_missing_files(tmp_path):
    tb = pytest.importorskip("torch.utils.tensorboard", reason="writing event files needs torch and tensorboard")
    logdir = tmp_path / "only-run"
    w = tb.SummaryWriter(str(logdir))
    for s in range(1, 11):
        w.add_scalar("loss", 1.0 if s < 6 else float("nan"), s)
    w.close()
    [path] = import_tensorboard(logdir, tmp_path / "gw", "s")
    assert path.name == "only-run"
    assert read_status(path)["state"] == "diverged"
    r = RunReader(path)
    r.refresh()
    assert np.isnan(r.scalars["train_loss"][5])
    with pytest.raises(ImportProblem, match="no TensorBoard event files"):
        import_tensorboard(tmp_path / "gw", tmp_path / "gw2", "s")
    with pytest.raises(ImportProblem, match="not a directory"):
        import_tensorboard(tmp_path / "nope", tmp_path / "gw2", "s")
