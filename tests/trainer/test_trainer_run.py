"""The training loop end to end: shards, resume, signals, kills, host syncs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from host_sync_helpers import record_host_syncs

import trainer.loop as tl
import trainer.train as tt
from grokwatch.store import RunReader, read_run_config, read_status
from trainer.config import TrainConfig
from trainer.probes import PROBES

ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("embed", "pos", "attn", "mlp", "unembed")
DESIGN_SCALARS = (
    ["step", "train_loss", "train_acc", "val_loss", "val_acc", "grad_norm", "weight_norm", "update_norm", "lr"]
    + [f"grad_norm/{g}" for g in GROUPS]
    + [f"weight_norm/{g}" for g in GROUPS]
)


def tiny(tmp_path: Path, run_id: str = "r", **kw) -> TrainConfig:
    base = dict(steps=200, flush_steps=50, flush_seconds=1000.0, checkpoint_every=100, probe_every=100, threads=1)
    return TrainConfig.from_preset("tiny", root=str(tmp_path), sweep="s", run_id=run_id, **{**base, **kw})


def cli_args(cfg: TrainConfig, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trainer",
        "--root",
        cfg.root,
        "--sweep",
        cfg.sweep,
        "--run-id",
        cfg.run_id,
        "--preset",
        cfg.preset,
        "--steps",
        str(cfg.steps),
        "--flush-steps",
        str(cfg.flush_steps),
        "--flush-seconds",
        str(cfg.flush_seconds),
        "--checkpoint-every",
        str(cfg.checkpoint_every),
        "--probe-every",
        str(cfg.probe_every),
        "--keep-every",
        str(cfg.keep_every),
        "--threads",
        "1",
        *extra,
    ]


def read(run_dir: Path) -> RunReader:
    r = RunReader(run_dir)
    r.refresh()
    assert r.failed_files == {}
    return r


def same_columns(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        if k != "attempt":
            assert np.array_equal(a[k], b[k], equal_nan=True), k


def test_smoke_cli_tiny(tmp_path):
    cfg = tiny(tmp_path, steps=240, flush_steps=64, probe_every=100, keep_every=120)
    proc = subprocess.run(cli_args(cfg), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = cfg.run_dir
    r = read(run)
    s = r.scalars
    assert set(DESIGN_SCALARS) <= set(s)
    assert np.array_equal(s["step"], np.arange(1, 241))
    for k in DESIGN_SCALARS:
        if not k.startswith("val_"):
            assert np.isfinite(s[k]).all(), k
    evals = np.isfinite(s["val_loss"])
    assert np.array_equal(s["step"][evals], np.arange(10, 241, 10))  # val every eval_every steps, NaN between
    assert np.array_equal(evals, np.isfinite(s["val_acc"]))
    assert s["lr"][0] == pytest.approx(3e-4) and s["lr"][9:].tolist() == pytest.approx([3e-3] * 231)  # warm-up
    assert s["train_loss"][-1] < 0.1 * s["train_loss"][0] and s["train_acc"][-1] >= 0.99  # memorized
    total = np.sqrt(sum(s[f"weight_norm/{g}"].astype(np.float64) ** 2 for g in GROUPS))
    assert np.allclose(total, s["weight_norm"], rtol=1e-4)
    p = r.probes
    assert p["step"].tolist() == [100, 200]
    assert {f"effective_rank/{m}" for m in ("embed", "attn.W_Q", "mlp.W_in", "mlp.W_out", "unembed")} <= set(p)
    # a shard every 64 steps, and at each checkpoint (100, 200): the counter restarts there
    assert sorted(os.listdir(run / "shards")) == [f"probes-{n:09d}.arrow" for n in (100, 200)] + [
        f"scalars-{n:09d}.arrow" for n in (64, 100, 164, 200, 240)
    ]
    st = read_status(run)
    assert st["state"] == "completed" and st["last_step"] == 240 and st["t_mem"] is not None
    cfg_json = read_run_config(run)
    assert cfg_json["n_params"] == 56_000 and cfg_json["weight_decay"] == 1.0 and cfg_json["preset"] == "tiny"
    assert sorted(os.listdir(run / "snapshots")) == ["weights-000000120.pt", "weights-000000240.pt"]
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 240 and ck["config"]["run_id"] == "r" and set(ck) >= {"model", "optimizer", "rng", "metrics"}
    snap = torch.load(run / "snapshots" / "weights-000000240.pt", weights_only=True)
    assert all(torch.equal(snap["model"][k], ck["model"][k]) for k in ck["model"])


def test_exact_resume_after_a_step_limit(tmp_path):
    """A run stopped at step 130 and resumed to 300 records exactly what an
    uninterrupted 300-step run records: losses, norms, probes."""
    a = tiny(tmp_path, "a", steps=300, probe_every=60)
    assert tt.train(a) == 0
    b = tiny(tmp_path, "b", steps=130, probe_every=60)
    assert tt.train(b) == 0
    assert tt.train(b.replace(steps=300, resume=True)) == 0
    ra, rb = read(a.run_dir), read(b.run_dir)
    same_columns(ra.scalars, rb.scalars)
    same_columns(ra.probes, rb.probes)
    assert read_status(b.run_dir)["attempt"] == 1


def test_resume_refuses_another_trajectory(tmp_path):
    cfg = tiny(tmp_path, steps=20, probe_every=0)
    assert tt.train(cfg) == 0
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match="weight_decay"):
        tt.train(cfg.replace(steps=40, resume=True, weight_decay=0.3))


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    cfg = tiny(tmp_path, steps=30, probe_every=0, resume=True)
    assert tt.train(cfg) == 0
    assert read(cfg.run_dir).scalars["step"].tolist() == list(range(1, 31))


@pytest.mark.slow
def test_exact_resume_after_sigterm(tmp_path):
    """SIGTERM mid-run: flush, checkpoint, status preempted, exit 75; --resume
    then reproduces the uninterrupted run exactly."""
    a = tiny(tmp_path, "a", steps=500, flush_steps=20, probe_every=50, checkpoint_every=1000)
    b = a.replace(run_id="b")
    proc = subprocess.Popen(cli_args(b), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (read_status(b.run_dir) or {}).get("last_step", 0) >= 100, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 75, proc.stderr.read()
    finally:
        proc.kill()
    st = read_status(b.run_dir)
    assert st["state"] == "preempted" and "SIGTERM" in st["message"]
    stopped = torch.load(b.run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert 100 <= stopped < 500 and st["last_step"] == stopped  # every row up to the checkpoint is on disk
    assert read(b.run_dir).scalars["step"].tolist() == list(range(1, stopped + 1))
    again = subprocess.run(cli_args(b, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert tt.train(a) == 0
    same_columns(read(a.run_dir).scalars, read(b.run_dir).scalars)
    same_columns(read(a.run_dir).probes, read(b.run_dir).probes)
    assert read_status(b.run_dir)["state"] == "completed"


@pytest.mark.slow
def test_sigkill_at_a_random_moment_leaves_a_readable_run(tmp_path):
    rng = random.Random()
    for i in range(2):
        cfg = tiny(tmp_path, f"k{i}", steps=3000, flush_steps=7, checkpoint_every=13, probe_every=11, keep_every=17)
        proc = subprocess.Popen(cli_args(cfg), cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            # Past the first checkpoint, so there is one to resume from below.
            run_dir = cfg.run_dir
            wait_for(
                lambda run_dir=run_dir: (
                    (read_status(run_dir) or {}).get("last_step", 0) > 0 and (run_dir / "checkpoint.pt").exists()
                ),
                proc,
            )
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            proc.kill()  # SIGKILL
            proc.wait()
        r = read(cfg.run_dir)  # no exception, no unreadable shard
        steps = r.scalars["step"]
        assert len(steps) and np.array_equal(steps, np.arange(1, len(steps) + 1))
        assert read_status(cfg.run_dir)["state"] == "running"
        assert json.loads((cfg.run_dir / "run.json").read_text())["run_id"] == f"k{i}"
        ck = torch.load(cfg.run_dir / "checkpoint.pt", weights_only=True)  # whole: the old one or the new one
        for snap in (cfg.run_dir / "snapshots").glob("*.pt"):
            torch.load(snap, weights_only=True)
        # and it resumes from there
        assert tt.train(cfg.replace(steps=ck["step"] + 20, resume=True)) == 0
        steps = read(cfg.run_dir).scalars["step"]
        assert np.array_equal(steps, np.arange(1, max(len(steps), ck["step"] + 20) + 1))


def test_no_device_to_host_transfer_between_flushes(tmp_path, monkeypatch):
    """Between two flushes the loop calls none of .item/.cpu/.tolist/.numpy/
    __float__/__int__/__index__/__bool__: metrics stay on the device. Flushes,
    probes, checkpoints and snapshots (their own cadences) are fenced off."""
    events = record_host_syncs(monkeypatch, tl, ("flush_shards", "probe_run", "save_run", "keep_snapshot"))
    torch.ones(1).item()  # the counter counts
    assert events == [("sync", f"item from {__file__}:test_no_device_to_host_transfer_between_flushes")]
    events.clear()
    cfg = tiny(tmp_path, steps=100, flush_steps=20, eval_every=5, probe_every=30, checkpoint_every=40, keep_every=50)
    assert tt.train(cfg) == 0
    monkeypatch.undo()
    flushes = [i for i, e in enumerate(events) if e == ("start", "flush_shards")]
    assert len(flushes) == 5
    first_end = events.index(("end", "flush_shards"))
    between = [e for e in events[first_end : flushes[-1]] if e[0] == "sync"]
    assert between == []
    assert ("start", "probe_run") in events and ("start", "keep_snapshot") in events
    assert ("start", "save_run") in events


def test_probes_that_misbehave_do_not_change_training(tmp_path, monkeypatch):
    """A probe that raises is skipped; one that resets grads to None or moves a
    parameter's storage is repaired before the next step: the losses match a run
    without them exactly."""

    def rude(ctx):
        ctx.model.zero_grad(set_to_none=True)
        for p in ctx.model.parameters():
            p.data = p.data.clone()
        return {"rude": 1.0}

    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setitem(PROBES, "rude", rude)
    monkeypatch.setitem(PROBES, "broken", broken)
    plain = tiny(tmp_path, "plain", steps=60, probe_every=0)
    odd = tiny(tmp_path, "odd", steps=60, probe_every=7, probes=["broken", "rude", "effective_rank"])
    assert tt.train(plain) == 0 and tt.train(odd) == 0
    a, b = read(plain.run_dir).scalars, read(odd.run_dir).scalars
    for k in ("train_loss", "val_loss", "grad_norm", "weight_norm", "update_norm"):
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    probes = read(odd.run_dir).probes
    assert probes["step"].tolist() == list(range(7, 61, 7)) and (probes["rude"] == 1).all()


def test_divergence_exits_3(tmp_path):
    cfg = tiny(tmp_path, steps=200, lr=1e30, warmup=0, probe_every=0)
    assert tt.train(cfg) == 3
    st = read_status(cfg.run_dir)
    assert st["state"] == "diverged" and "non-finite" in st["message"]
    loss = read(cfg.run_dir).scalars["train_loss"]
    assert not np.isfinite(loss).all()


def test_exception_marks_the_run_failed(tmp_path, monkeypatch):
    calls = [0]
    real = tt.loss_and_acc

    def flaky(logits, y):
        calls[0] += 1
        if calls[0] > 30:
            raise RuntimeError("device fell over")
        return real(logits, y)

    monkeypatch.setattr(tt, "loss_and_acc", flaky)
    cfg = tiny(tmp_path, steps=100, probe_every=0, eval_every=1000)
    with pytest.raises(RuntimeError, match="device fell over"):
        tt.train(cfg)
    st = read_status(cfg.run_dir)
    assert st["state"] == "failed" and "device fell over" in st["message"]
    assert read(cfg.run_dir).scalars["step"].tolist() == list(range(1, 31))  # the buffer was flushed


def wait_for(cond, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early with {proc.returncode}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_compile_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch, capsys):
    def no_compiler(model, **kw):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", no_compiler)
    cfg = tiny(tmp_path, steps=20, probe_every=0, compile=True)
    assert tt.train(cfg) == 0
    err = capsys.readouterr().err
    assert "trainer: warning: --compile failed" in err and "running eager" in err
    assert read(cfg.run_dir).scalars["step"].tolist() == list(range(1, 21))


def test_cli_resume_takes_the_run_settings_from_run_json(tmp_path, capsys):
    from trainer.__main__ import main

    base = ["--root", str(tmp_path), "--sweep", "s", "--run-id", "r", "--probe-every", "0"]
    assert main([*base, "--preset", "tiny", "--steps", "20", "--weight-decay", "0.3"]) == 0
    # a requeue passes only --resume (and maybe new steps): the rest comes from run.json
    assert main([*base, "--resume", "--steps", "40"]) == 0
    st = read_status(tmp_path / "s" / "r")
    assert st["state"] == "completed" and st["last_step"] == 40 and st["attempt"] == 1
    capsys.readouterr()
    assert main([*base, "--resume", "--steps", "60", "--weight-decay", "1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trainer: error: --resume") and "weight_decay" in err[0]
    assert main([*base, "--preset", "tiny", "--steps", "60"]) == 2  # exists, and no --resume
