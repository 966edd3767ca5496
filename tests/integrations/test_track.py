"""grokwatch.integrations.track: a user's own loop writes runs the watcher, alerts and report read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import grokwatch
from grokwatch.store import RunReader, read_run_config, read_status, run_id_for
from grokwatch.watch import SweepWatcher

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plain_loop.py"
GROKWATCH = [sys.executable, "-m", "grokwatch"]


def _read(path):
    r = RunReader(path)
    r.refresh()
    return r


def test_floats_make_a_run_the_watcher_reads(tmp_path):
    cfg = {"lr": 1e-3, "weight_decay": 1.0, "seed": 3, "steps": 40}
    run = grokwatch.init(root=tmp_path, sweep="mine", run_id="wd1-s3", config=cfg, flush_steps=10)
    for step in range(1, 41):
        vals = {"val_loss": 2.0 / step, "val_acc": min(1.0, step / 30)} if step % 5 == 0 else {}
        run.log(
            step, train_loss=1.0 / step, train_acc=1.0 if step >= 10 else 0.5, grad_norm=0.1, weight_norm=3.0, **vals
        )
    shards_before_finish = sorted(p.name for p in (run.path / "shards").iterdir())
    run.finish()
    assert shards_before_finish == ["scalars-000000010.arrow", "scalars-000000020.arrow", "scalars-000000030.arrow"]
    r = _read(run.path)
    assert r.scalars["step"].tolist() == list(range(1, 41))
    np.testing.assert_allclose(r.scalars["train_loss"], 1.0 / np.arange(1, 41), rtol=1e-6)
    va = r.scalars["val_acc"]
    assert np.isnan(va[0]) and va[4] == pytest.approx(5 / 30)
    assert read_status(run.path)["state"] == "completed"
    saved = read_run_config(run.path)
    assert {k: saved[k] for k in cfg} == cfg and saved["run_id"] == "wd1-s3"

    snap = SweepWatcher(tmp_path / "mine", poll=True).cycle()
    view = snap.runs["wd1-s3"]
    assert (view.seed, view.weight_decay, view.step, view.total_steps) == (3, 1.0, 40, 40)
    assert view.t_mem == 10 and view.t_grok == 30 and view.phase == "grokked"
    assert view.status == "completed"


def test_repeated_step_merges_and_missing_train_loss_is_carried(tmp_path):
    run = grokwatch.init(root=tmp_path, sweep="s", run_id="r", flush_steps=1000)
    run.log(1, train_loss=2.0)
    run.log(1, train_acc=0.5)  # same step: one row
    run.log(2, val_acc=0.25)  # no train_loss: repeats 2.0 (a NaN would read as divergence)
    run.log(3, train_loss=1.0)
    run.flush()
    run.log(4, val_acc=0.5)  # a shard without any train_loss
    run.finish()
    sc = _read(run.path).scalars
    assert sc["step"].tolist() == [1, 2, 3, 4]
    assert sc["train_loss"].tolist() == [2.0, 2.0, 1.0, 1.0]
    assert sc["train_acc"][0] == 0.5 and np.isnan(sc["train_acc"][1])
    assert run.diverged is None and read_status(run.path)["state"] == "completed"


def test_nan_loss_marks_the_run_diverged(tmp_path):
    torch = pytest.importorskip("torch", reason="tensor values need torch (the train extra)")
    run = grokwatch.init(root=tmp_path, sweep="s", run_id="nan", flush_steps=5)
    for step in range(1, 13):
        loss = torch.tensor(1.0 / step) if step < 8 else torch.tensor(float("nan"))
        run.log(step, train_loss=loss, train_acc=torch.tensor(0.3))
    assert run.diverged == 8  # seen at the flush after step 10
    assert read_status(run.path)["state"] == "diverged"
    run.finish()
    status = read_status(run.path)
    assert status["state"] == "diverged" and "step 8" in status["message"]
    view = SweepWatcher(tmp_path / "s", poll=True).cycle().runs["nan"]
    assert view.phase == "diverged" and view.t_diverged == 8


def test_tensors_stay_on_the_device_until_a_flush(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="tensor values need torch (the train extra)")
    sys.path.insert(0, str(ROOT / "tests" / "trainer"))
    from host_sync_helpers import record_host_syncs

    import grokwatch.integrations.track as track

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0)
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    run = track.init(root=tmp_path, sweep="s", run_id="t", flush_steps=10, flush_seconds=3600)
    events = record_host_syncs(monkeypatch, track, ("_gather",))
    acc_total = torch.zeros(())
    for step in range(1, 36):
        opt.zero_grad()
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        acc = (logits.argmax(-1) == y).float().mean()
        acc_total += acc  # mutated after logging: the logged value must not change
        run.log(step, train_loss=loss, train_acc=acc, running=acc_total, lr=1e-2, **track.model_norms(model))
        opt.step()
    monkeypatch.undo()
    syncs = [e for e in events if e[0] == "sync"]
    assert syncs == [], syncs[:5]
    assert [e for e in events if e[0] == "start"] == [("start", "_gather")] * 3  # flushes through 10, 20, 30
    run.finish()
    sc = _read(run.path).scalars
    assert sc["step"].tolist() == list(range(1, 36))
    assert np.all(np.isfinite(sc["grad_norm"])) and np.all(sc["weight_norm"] > 0)
    # running was logged as acc_total at each step, before later additions
    np.testing.assert_allclose(sc["running"], np.cumsum(sc["train_acc"]), rtol=1e-5)
    assert sc["train_loss"][-1] < sc["train_loss"][0]


def test_probes_give_htsr_alpha_and_effective_rank(tmp_path):
    rng = np.random.default_rng(0)
    run = grokwatch.init(root=tmp_path, sweep="s", run_id="p", flush_steps=1000)
    run.log(100, train_loss=1.0)
    vals = run.log_probes(100, {"mlp.W_in": rng.standard_normal((64, 32)), "tiny": np.ones((4, 4))}, my_probe=7.0)
    run.log(101, train_loss=0.9)
    run.finish()
    pr = _read(run.path).probes
    assert pr["step"].tolist() == [100]
    assert 1.0 < pr["htsr_alpha/mlp.W_in"][0] < 20.0 and pr["htsr_n_tail/mlp.W_in"][0] >= 1
    assert 10 < pr["effective_rank/mlp.W_in"][0] <= 32
    assert pr["effective_rank/tiny"][0] == pytest.approx(1.0)  # rank one
    assert "htsr_alpha/tiny" not in pr  # too small for a fit: left out
    assert pr["my_probe"][0] == 7.0 and vals["my_probe"] == 7.0


def test_probe_of_a_model_names_its_matrices(tmp_path):
    torch = pytest.importorskip("torch", reason="run.probe(model=...) needs torch (the train extra)")
    model = torch.nn.Sequential(
        torch.nn.Embedding(20, 16), torch.nn.Flatten(), torch.nn.Linear(32, 24), torch.nn.Linear(24, 3)
    )
    run = grokwatch.init(root=tmp_path, sweep="s", run_id="m")
    vals = run.probe(5, model=model)
    run.finish()
    assert {k.split("/", 1)[1] for k in vals if k.startswith("effective_rank/")} == {"0", "2"}  # 24x3: too small
    assert "htsr_alpha/0" in vals


def test_context_manager_marks_failure_and_resume_is_a_new_attempt(tmp_path):
    with pytest.raises(RuntimeError):
        with grokwatch.init(root=tmp_path, sweep="s", run_id="r", flush_steps=1000) as run:
            run.log(1, train_loss=1.0)
            run.log(2, train_loss=0.5)
            raise RuntimeError("boom")
    assert read_status(run.path)["state"] == "failed" and "boom" in read_status(run.path)["message"]
    assert _read(run.path).scalars["step"].tolist() == [1, 2]
    with pytest.raises(FileExistsError):
        grokwatch.init(root=tmp_path, sweep="s", run_id="r")
    with grokwatch.init(root=tmp_path, sweep="s", run_id="r", resume=True) as again:
        again.log(3, train_loss=0.25)
    status = read_status(run.path)
    assert status["state"] == "completed" and status["attempt"] == 1
    assert _read(run.path).scalars["train_loss"].tolist() == [1.0, 0.5, 0.25]


SCRIPT = textwrap.dedent("""
    import sys, time, grokwatch
    run = grokwatch.init(root=sys.argv[1], sweep="s", run_id=sys.argv[2], flush_steps=10, flush_seconds=3600,
                         heartbeat_seconds=0.2)
    mode = sys.argv[2]
    for step in range(1, 10**6):
        run.log(step, train_loss=1.0 / step)
        if step == 25:
            print("flushed", flush=True)
            if mode == "raise":
                raise ValueError("bad batch")
            if mode == "exit":
                sys.exit(0)
        if step > 25:
            time.sleep(0.01)
""")


@pytest.mark.parametrize("mode,state", [("raise", "failed"), ("exit", "completed")])
def test_interpreter_exit_finishes_the_run(tmp_path, mode, state):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == (1 if mode == "raise" else 0), out.stderr
    status = read_status(tmp_path / "s" / mode)
    assert status["state"] == state, status
    if mode == "raise":
        assert "ValueError: bad batch" in status["message"]
    assert _read(tmp_path / "s" / mode).scalars["step"].tolist() == list(range(1, 26))


def test_sigkill_keeps_what_was_flushed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), "kill"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "flushed"
        time.sleep(0.5)  # more flushes (every 10 steps) and heartbeats
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    path = tmp_path / "s" / "kill"
    steps = _read(path).scalars["step"]
    assert len(steps) >= 20 and len(steps) % 10 == 0 and steps.tolist() == list(range(1, len(steps) + 1))
    status = json.loads((path / "status.json").read_text())
    assert status["state"] == "running"  # no finish ran: the watcher shows it stalled once the heartbeat ages
    assert status["last_step"] in (int(steps[-1]), int(steps[-1]) - 10)  # a kill may fall between shard and status


@pytest.mark.slow
def test_example_plain_loop_is_watched_alerted_and_reported(tmp_path):
    pytest.importorskip("torch", reason="examples/plain_loop.py trains with torch (the train extra)")
    root = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--root", str(root), "--sweep", "mine", "--steps", "300"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    sweep = root / "mine"
    view = SweepWatcher(sweep, poll=True).cycle().runs[run_id_for(1.0, 0)]  # the example names runs like a sweep
    assert view.step == 300 and view.total_steps == 300 and view.status == "completed"
    assert view.t_mem is not None and view.t_mem < 300  # the MLP memorizes the training half early
    assert view.phase in ("memorized", "grokking", "grokked")
    assert view.signals["grad_norm"] > 0 and view.signals["weight_norm"] > 0
    assert view.signals["htsr_alpha_min"] is not None  # run.probe every 250 steps
    assert np.isfinite(view.scores["gai_z"]).any()  # the watcher's GAI from the logged grad_norm

    alerts = subprocess.run([*GROKWATCH, "alerts", str(sweep), "--once"], capture_output=True, text=True, timeout=120)
    assert alerts.returncode == 0, alerts.stderr
    events = [json.loads(line) for line in alerts.stdout.splitlines() if line.strip()]
    assert all(e["run"] == run_id_for(1.0, 0) for e in events)
    report = subprocess.run(
        [*GROKWATCH, "report", str(sweep), "--out", str(tmp_path / "rep")], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr
    counts = json.loads((tmp_path / "rep" / "report.json").read_text())["counts"]
    assert counts["runs"] == 1 and counts["memorized"] == 1, counts
    assert (tmp_path / "rep" / "report.md").exists()
