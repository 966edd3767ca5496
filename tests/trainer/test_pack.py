"""Packed training (trainer.pack): K runs as one batched model, each run exactly as if alone."""

from __future__ import annotations

import json
import os
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
import trainer.pack as tp
import trainer.recording as tr
import trainer.train as tt
from grokwatch.store import RunReader, read_run_config, read_status
from trainer.__main__ import main as trainer_main
from trainer.config import TrainConfig
from trainer.model import ModelConfig, Transformer
from trainer.task import loss_and_acc, make_dataset

ROOT = Path(__file__).resolve().parents[2]
SPECS = (("a", 1.0, 0), ("b", 0.3, 1), ("c", 3.0, 2))  # run id, weight decay, seed


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def tiny(tmp_path: Path, sweep: str, run_id: str, wd: float, seed: int, **kw) -> TrainConfig:
    base = dict(
        steps=200,
        flush_steps=50,
        flush_seconds=1000.0,
        checkpoint_every=100,
        probe_every=100,
        threads=1,
        probes=["effective_rank"],
    )
    return TrainConfig.from_preset(
        "tiny", root=str(tmp_path), sweep=sweep, run_id=run_id, weight_decay=wd, seed=seed, **{**base, **kw}
    )


def pack_of(tmp_path: Path, sweep: str, specs=SPECS, **kw) -> list[TrainConfig]:
    return [tiny(tmp_path, sweep, r, wd, s, **kw) for r, wd, s in specs]


def alone(cfgs: list[TrainConfig], sweep: str = "alone") -> list[TrainConfig]:
    """Train each run by itself (trainer.train), in another sweep."""
    out = []
    for c in cfgs:
        c = c.replace(sweep=sweep)
        tt.train(c)
        out.append(c)
    return out


def read(run_dir: Path) -> RunReader:
    r = RunReader(run_dir)
    r.refresh()
    assert r.failed_files == {}
    return r


def same_columns(a: dict, b: dict, upto: int | None = None) -> None:
    """Same column names; the same values (bit for bit on this machine; a float
    tolerance allows for BLAS libraries whose batched and plain matmuls differ)."""
    assert sorted(a) == sorted(b)
    if not b:  # no shards of that kind (probes off)
        return
    n = len(b["step"]) if upto is None else upto
    assert np.array_equal(a["step"][:n], b["step"][:n])
    for k in a:
        if k not in ("attempt", "step"):
            np.testing.assert_allclose(a[k][:n], b[k][:n], rtol=1e-5, atol=1e-7, equal_nan=True, err_msg=k)


def same_run(packed: TrainConfig, lone: TrainConfig, ignore: tuple[str, ...] = ()) -> None:
    """What a watcher reads of the two runs is the same: columns, config, state."""
    rp, ra = read(packed.run_dir), read(lone.run_dir)
    same_columns(rp.scalars, ra.scalars)
    same_columns(rp.probes, ra.probes)
    cp, ca = read_run_config(packed.run_dir), read_run_config(lone.run_dir)
    ignore = ("sweep", "meta", *ignore)
    assert {k: v for k, v in cp.items() if k not in ignore} == {k: v for k, v in ca.items() if k not in ignore}
    sp, sa = read_status(packed.run_dir), read_status(lone.run_dir)
    assert (sp["state"], sp["last_step"], sp["t_mem"], sp["t_grok"]) == (
        sa["state"],
        sa["last_step"],
        sa["t_mem"],
        sa["t_grok"],
    )
    assert set(sp) == set(sa)


# -- the batched model and optimizer, against the single ones --------------------


@pytest.mark.filterwarnings("ignore:grad and param do not obey the gradient layout contract")
@pytest.mark.parametrize("n_layers", [1, 2])
def test_packed_model_is_the_model_run_by_run(n_layers):
    """Logits, losses and every gradient of the batched model are each run's own."""
    mc = ModelConfig(vocab_size=13, n_layers=n_layers, d_model=32, n_heads=4, d_mlp=64)
    models, flats, xs, ys = [], [], [], []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        split = make_dataset("add", 11, 0.5, seed)
        models.append(Transformer(mc))
        flat, slices, groups = tt.flatten_parameters(models[-1])
        flats.append(flat)
        xs.append(split.train_x)
        ys.append(split.train_y)
    shapes = {n: p.shape for n, p in models[0].named_parameters()}
    T = {"flat": torch.stack([f.detach() for f in flats])}
    for k in ("grad", "prev", "delta"):
        T[k] = torch.zeros_like(T["flat"])
    params, norm_views = tp.bind_params(T, slices, shapes, groups)
    assert len(norm_views) == 3 * 3 * len(groups)
    logits = tp.packed_logits(params, torch.stack(xs), mc)
    loss, acc = tp.packed_loss_and_acc(logits, torch.stack(ys))
    loss.sum().backward()
    for k, m in enumerate(models):
        single = m(xs[k])
        l1, a1 = loss_and_acc(single, ys[k])
        l1.backward()
        torch.testing.assert_close(logits[k], single, rtol=1e-6, atol=1e-7)
        assert loss[k].item() == pytest.approx(l1.item(), rel=1e-12) and acc[k].item() == a1.item()
        torch.testing.assert_close(T["grad"][k], flats[k].grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("fused", [True, False])
def test_batched_adamw_is_torch_adamw_with_a_mask(fused):
    """adamw_step == torch.optim.AdamW per run (the fused kernel: bit for bit),
    with per-run weight decay; a masked run is left exactly as it was."""
    if fused and not hasattr(torch, "_fused_adamw_"):
        pytest.skip("no fused AdamW in this torch")
    K, P, lr, b1, b2 = 3, 1001, 3e-3, 0.9, 0.98
    wds = [1.0, 0.3, 3.0]
    torch.manual_seed(0)
    start = torch.randn(K, P)
    ps = [torch.nn.Parameter(start[k].clone()) for k in range(K)]
    kind = {"fused": True} if fused else {"foreach": True}
    opts = [torch.optim.AdamW([p], lr=lr, betas=(b1, b2), weight_decay=w, **kind) for p, w in zip(ps, wds)]
    T = {
        "flat": start.clone(),
        "grad": torch.zeros(K, P),
        "exp_avg": torch.zeros(K, P),
        "exp_avg_sq": torch.zeros(K, P),
        "n": torch.zeros(K),
    }
    for step in range(1, 40):
        g = torch.randn(K, P) * (0.1 + step % 7)
        if step == 25:
            g[1] = float("nan")  # a diverging run: masked below, so nothing of it leaks
        active = torch.tensor([True, not (20 <= step < 30), True])
        T["grad"].copy_(g)
        before = {k: T[k][1].clone() for k in ("flat", "exp_avg", "exp_avg_sq", "n")}
        tp.adamw_step(T, active, lr * min(1.0, step / 10), wds, b1, b2, fused=fused)
        if not active[1]:
            assert all(torch.equal(T[k][1], before[k]) for k in before)
        for k, (p, o) in enumerate(zip(ps, opts)):
            if active[k]:
                p.grad = g[k].clone()
                for group in o.param_groups:
                    group["lr"] = lr * min(1.0, step / 10)
                o.step()
    for k, (p, o) in enumerate(zip(ps, opts)):
        st = o.state[p]
        if fused:
            assert torch.equal(T["flat"][k], p.detach()) and torch.equal(T["exp_avg_sq"][k], st["exp_avg_sq"])
        torch.testing.assert_close(T["flat"][k], p.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(T["exp_avg"][k], st["exp_avg"], rtol=1e-6, atol=1e-9)
        assert T["n"][k].item() == st["step"].item() == (39 if k != 1 else 29)
    assert torch.isfinite(T["flat"]).all()


# -- whole runs: packed == alone -------------------------------------------------


def test_two_packed_runs_equal_themselves_alone(tmp_path):
    cfgs = pack_of(tmp_path, "pack", SPECS[:2], steps=40, flush_steps=15, checkpoint_every=25, probe_every=20)
    assert tp.train_pack(cfgs) == 0
    for p, a in zip(cfgs, alone(cfgs)):
        same_run(p, a)
        assert read_run_config(p.run_dir)["meta"]["pack"] == {"size": 2, "runs": ["a", "b"]}


def test_without_a_fused_adamw_both_trainers_use_foreach_math(tmp_path, monkeypatch):
    """Where torch has no fused AdamW for the device, the single-run trainer
    falls back to foreach and the pack to adamw_ (the same math): still equal."""

    def foreach(flat, cfg):
        return torch.optim.AdamW(
            [flat], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay, foreach=True
        )

    monkeypatch.setattr(tt, "make_optimizer", foreach)
    monkeypatch.setattr(tp, "make_optimizer", foreach)
    cfgs = pack_of(tmp_path, "pack", SPECS[:2], steps=40, flush_steps=15, checkpoint_every=25, probe_every=0)
    assert tp.train_pack(cfgs) == 0
    for p, a in zip(cfgs, alone(cfgs)):
        same_run(p, a)
        ck = torch.load(p.run_dir / "checkpoint.pt", weights_only=True)
        assert ck["optimizer"]["param_groups"][0]["foreach"] is True and ck["optimizer"]["state"][0]["step"] == 40


@pytest.mark.slow
def test_three_packed_runs_equal_themselves_alone_for_300_steps(tmp_path):
    """K = 3, mixed seeds and weight decays, probes and checkpoints on: each
    run's shards, probes, checkpoint and status are those of the run alone."""
    cfgs = pack_of(tmp_path, "pack", steps=300, keep_every=150, probes=list(TrainConfig().probes))  # the defaults
    assert tp.train_pack(cfgs) == 0
    for p, a in zip(cfgs, alone(cfgs)):
        same_run(p, a)
        assert read(p.run_dir).scalars["step"].tolist() == list(range(1, 301))
        assert sorted(os.listdir(p.run_dir / "snapshots")) == sorted(os.listdir(a.run_dir / "snapshots"))
        ckp, cka = (torch.load(c.run_dir / "checkpoint.pt", weights_only=True) for c in (p, a))
        assert ckp["step"] == cka["step"] == 300 and set(ckp) == set(cka)
        for name, t in cka["model"].items():
            torch.testing.assert_close(ckp["model"][name], t, rtol=1e-5, atol=1e-7)
        sp, sa = ckp["optimizer"]["state"][0], cka["optimizer"]["state"][0]
        assert sp["step"].item() == sa["step"].item() == 300
        torch.testing.assert_close(sp["exp_avg_sq"], sa["exp_avg_sq"], rtol=1e-5, atol=1e-12)
        assert ckp["optimizer"]["param_groups"] == cka["optimizer"]["param_groups"]
        assert ckp["metrics"] == cka["metrics"]


def test_a_diverging_run_is_marked_and_the_others_go_on(tmp_path):
    """Weight decay 3000 at lr 3e-3 blows run b up: it stops at its first
    non-finite loss (the same step as alone), is marked diverged, and the
    others are still exactly their lone selves."""
    specs = (("a", 1.0, 0), ("b", 3000.0, 1), ("c", 0.3, 2))
    cfgs = pack_of(tmp_path, "pack", specs, steps=120, flush_steps=40, checkpoint_every=1000, probe_every=0)
    assert tp.train_pack(cfgs) == 3
    lone = [c.replace(sweep="alone") for c in cfgs]
    assert [tt.train(c) for c in lone] == [0, 3, 0]
    st = read_status(cfgs[1].run_dir)
    loss = read(cfgs[1].run_dir).scalars["train_loss"]
    bad = int(np.flatnonzero(~np.isfinite(loss))[0]) + 1
    assert st["state"] == "diverged" and st["message"] == f"non-finite train_loss at step {bad}"
    assert len(loss) == bad == st["last_step"] < 120  # no rows after the divergence
    lone_loss = read(lone[1].run_dir).scalars["train_loss"]
    assert int(np.flatnonzero(~np.isfinite(lone_loss))[0]) + 1 == bad
    same_columns(read(cfgs[1].run_dir).scalars, read(lone[1].run_dir).scalars, upto=bad - 1)
    assert read(cfgs[1].run_dir).scalars["update_norm"][-1] == 0.0  # its update at that step was masked
    for i in (0, 2):
        same_run(cfgs[i], lone[i])
        assert read_status(cfgs[i].run_dir)["state"] == "completed"


def test_a_run_that_stops_after_grokking_leaves_the_pack(tmp_path, monkeypatch):
    """Run b 'groks' (forced) and stops N steps later; it is checkpointed and
    completed there, the pack shrinks to two runs, and they go on unchanged."""
    real = tr.scan_flushed

    def b_groks_at_40(cols, metrics, cfg, step):
        out = real(cols, metrics, cfg, step)
        if cfg.run_id == "b" and metrics["t_grok"] is None:
            metrics["t_grok"], metrics["stop_at"] = 40, max(40 + cfg.stop_after_grok, step)
        return out

    monkeypatch.setattr(tr, "scan_flushed", b_groks_at_40)
    cfgs = pack_of(
        tmp_path, "pack", steps=100, flush_steps=25, checkpoint_every=1000, probe_every=30, stop_after_grok=10
    )
    assert tp.train_pack(cfgs) == 0
    st = read_status(cfgs[1].run_dir)
    assert st["state"] == "completed" and st["last_step"] == 50 and "stopped 10 steps after" in st["message"]
    assert torch.load(cfgs[1].run_dir / "checkpoint.pt", weights_only=True)["step"] == 50
    monkeypatch.undo()
    lone = alone([c.replace(stop_after_grok=None) for c in cfgs])
    assert read(cfgs[1].run_dir).scalars["step"].tolist() == list(range(1, 51))
    same_columns(read(cfgs[1].run_dir).scalars, read(lone[1].run_dir).scalars, upto=50)
    for i in (0, 2):
        same_columns(read(cfgs[i].run_dir).scalars, read(lone[i].run_dir).scalars)
        same_columns(read(cfgs[i].run_dir).probes, read(lone[i].run_dir).probes)
        assert read_status(cfgs[i].run_dir)["last_step"] == 100


@pytest.mark.slow
def test_resume_per_pack_alone_and_packed_in_any_mix(tmp_path):
    """Checkpoints are per run and in the single-run format: a pack stopped at
    130 resumes with a run last checkpointed alone at 100 (the pack catches up
    with it first), then one run finishes alone and the others packed; all
    equal uninterrupted lone runs."""
    ref = alone(pack_of(tmp_path, "x", steps=300), sweep="ref")
    ab = pack_of(tmp_path, "mix", SPECS[:2], steps=130)
    assert tp.train_pack(ab) == 0
    c = tiny(tmp_path, "mix", *SPECS[2], steps=100)
    assert tt.train(c) == 0
    abc = [x.replace(steps=220, resume=True) for x in ab + [c]]
    assert tp.train_pack(abc) == 0
    assert [read_status(x.run_dir)["last_step"] for x in abc] == [220] * 3
    assert tt.train(abc[0].replace(steps=300)) == 0  # a: alone, from the pack's checkpoint
    assert tp.train_pack([x.replace(steps=300) for x in abc[1:]]) == 0  # b, c: packed again
    for x, r in zip(abc, ref):
        same_run(x, r, ignore=("steps",))  # run.json keeps the first attempt's steps, as for a lone run
        assert read_status(x.run_dir)["attempt"] == 2


def test_no_device_to_host_transfer_between_flushes(tmp_path, monkeypatch):
    """Between two flushes the pack loop calls none of .item/.cpu/.tolist/.numpy/
    __float__/__int__/__index__/__bool__; flushes, probes, checkpoints and
    snapshots (their own cadences) are fenced off."""
    events = record_host_syncs(monkeypatch, tl, ("flush_shards", "probe_run", "save_run", "keep_snapshot"))
    torch.ones(1).item()
    assert events and events[0][0] == "sync"
    events.clear()
    cfgs = pack_of(
        tmp_path,
        "pack",
        SPECS[:2],
        steps=100,
        flush_steps=20,
        eval_every=5,
        probe_every=30,
        checkpoint_every=40,
        keep_every=50,
    )
    assert tp.train_pack(cfgs) == 0
    monkeypatch.undo()
    flushes = [i for i, e in enumerate(events) if e == ("start", "flush_shards")]
    assert len(flushes) == 5
    between = [e for e in events[events.index(("end", "flush_shards")) : flushes[-1]] if e[0] == "sync"]
    assert between == []
    assert ("start", "probe_run") in events and ("start", "save_run") in events and ("start", "keep_snapshot") in events


def test_compile_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch, capsys):
    def no_compiler(fn, **kw):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", no_compiler)
    cfgs = pack_of(tmp_path, "pack", SPECS[:2], steps=20, probe_every=0, compile=True)
    assert tp.train_pack(cfgs) == 0
    err = capsys.readouterr().err
    assert "trainer: warning: --compile failed" in err and "running eager" in err
    assert all(read(c.run_dir).scalars["step"].tolist() == list(range(1, 21)) for c in cfgs)


# -- the command line --------------------------------------------------------------


def test_cli_seeds_times_weight_decays_and_errors(tmp_path, capsys):
    base = [
        "--pack",
        "--root",
        str(tmp_path),
        "--sweep",
        "s",
        "--preset",
        "tiny",
        "--steps",
        "20",
        "--probe-every",
        "0",
    ]
    assert trainer_main([*base, "--seeds", "0-1", "--weight-decays", "0.3,1", "--dry-run"]) == 0
    runs = json.loads(capsys.readouterr().out)["pack"]
    assert [(r["run_id"], r["weight_decay"], r["seed"]) for r in runs] == [
        ("wd0.3-s00", 0.3, 0),
        ("wd0.3-s01", 0.3, 1),
        ("wd1.0-s00", 1.0, 0),
        ("wd1.0-s01", 1.0, 1),
    ]
    assert trainer_main([*base, "--runs", "x:0.5:3,y:2:4"]) == 0
    for run_id, wd, seed in (("x", 0.5, 3), ("y", 2.0, 4)):
        cfg = read_run_config(tmp_path / "s" / run_id)
        assert (cfg["weight_decay"], cfg["seed"], cfg["steps"]) == (wd, seed, 20)
        assert read_status(tmp_path / "s" / run_id)["state"] == "completed"
    # a requeue passes --resume: each run's settings come from its run.json
    assert (
        trainer_main(
            ["--pack", "--root", str(tmp_path), "--sweep", "s", "--runs", "x:0.5:3,y:2:4", "--resume", "--steps", "30"]
        )
        == 0
    )
    assert read_status(tmp_path / "s" / "y")["last_step"] == 30 and read_status(tmp_path / "s" / "y")["attempt"] == 1
    capsys.readouterr()
    for extra, msg in (
        (["--runs", "x:0.5:3", "--run-id", "z"], "--run-id is per run"),
        (["--runs", "x:0.5"], "is not RUN_ID:WEIGHT_DECAY:SEED"),
        (["--runs", "p:0.5:3,p:1:4"], "listed twice"),
        (["--runs", "x:0.5:3"], "already exists"),
        (["--runs", "q:0.5:1", "--seeds", "0"], "not both"),
        (["--seeds", "zero"], "--seeds"),
        (["--runs", "x:1.0:3", "--resume", "--steps", "40"], "weight_decay"),
    ):
        assert trainer_main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("trainer: error:") and msg in err[0], (extra, err)


def cli(tmp_path: Path, sweep: str, runs: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trainer",
        "--pack",
        "--root",
        str(tmp_path),
        "--sweep",
        sweep,
        "--preset",
        "tiny",
        "--runs",
        runs,
        "--steps",
        "400",
        "--flush-steps",
        "20",
        "--flush-seconds",
        "1000",
        "--checkpoint-every",
        "1000",
        "--probe-every",
        "50",
        "--threads",
        "1",
        *extra,
    ]


def wait_for(cond, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early with {proc.returncode}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_checkpoints_every_run_and_resume_is_exact(tmp_path):
    runs = "a:1.0:0,b:0.3:1"
    proc = subprocess.Popen(cli(tmp_path, "p", runs), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (read_status(tmp_path / "p" / "b") or {}).get("last_step", 0) >= 60, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 75, proc.stderr.read()
    finally:
        proc.kill()
    stopped = set()
    for r in ("a", "b"):
        st = read_status(tmp_path / "p" / r)
        step = torch.load(tmp_path / "p" / r / "checkpoint.pt", weights_only=True)["step"]
        assert st["state"] == "preempted" and "SIGTERM" in st["message"] and st["last_step"] == step
        assert read(tmp_path / "p" / r).scalars["step"].tolist() == list(range(1, step + 1))
        stopped.add(step)
    assert len(stopped) == 1 and 60 <= stopped.pop() < 400  # one step for the whole pack
    again = subprocess.run(cli(tmp_path, "p", runs, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    lone = alone(
        [
            TrainConfig.from_preset(
                "tiny",
                root=str(tmp_path),
                sweep="p",
                run_id=r,
                weight_decay=w,
                seed=s,
                steps=400,
                flush_steps=20,
                flush_seconds=1000.0,
                checkpoint_every=1000,
                probe_every=50,
                threads=1,
            )
            for r, w, s in SPECS[:2]
        ]
    )
    for r, a in zip("ab", lone):
        same_columns(read(tmp_path / "p" / r).scalars, read(a.run_dir).scalars)
        same_columns(read(tmp_path / "p" / r).probes, read(a.run_dir).probes)
        assert read_status(tmp_path / "p" / r)["state"] == "completed"


# -- the sweep: one packed trainer per array task -----------------------------------


@pytest.mark.slow
def test_sweep_plan_pack_runs_one_packed_trainer_per_task(tmp_path, capsys):
    """The batch script of `grokwatch sweep plan --pack 3`, run under bash with
    SLURM's variables: one trainer process trains the task's three runs; USR1
    stops it (requeue), the next attempt resumes them."""
    from grokwatch.commands.main import main as gw_main

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text('#!/bin/bash\necho "$*" >> "$FAKE_DIR/scontrol.calls"\n')
    (fake / "scontrol").chmod(0o755)
    root = tmp_path / "root"
    assert (
        gw_main(
            [
                "sweep",
                "plan",
                "--root",
                str(root),
                "--sweep",
                "sw",
                "--seeds",
                "3",
                "--weight-decays",
                "0.3",
                "--pack",
                "3",
                "--gpus-per-task",
                "0",
                "--preset",
                "tiny",
                "--steps",
                "300",
                "--flush-steps",
                "20",
                "--python",
                sys.executable,
                "--workdir",
                str(ROOT),
                "--trainer-arg=--probe-every",
                "--trainer-arg=0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    env = {
        **os.environ,
        "FAKE_DIR": str(tmp_path),
        "PATH": f"{fake}:{os.environ['PATH']}",
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_ARRAY_JOB_ID": "77",
        "SLURM_JOB_ID": "78",
        "SLURM_CPUS_PER_TASK": "1",
    }
    sweep = root / "sw"
    runs = ["wd0.3-s00", "wd0.3-s01", "wd0.3-s02"]
    proc = subprocess.Popen(
        ["bash", str(sweep / "sweep.sbatch")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: all((read_status(sweep / r) or {}).get("last_step", 0) >= 40 for r in runs), proc)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert "3 runs in one packed trainer" in err and (sweep / "logs" / "task0.r0.log").exists()
    assert (tmp_path / "scontrol.calls").read_text().split("\n")[0] == "requeue 77_0"
    sts = [read_status(sweep / r) for r in runs]
    assert {s["state"] for s in sts} == {"preempted"} and len({s["pid"] for s in sts}) == 1  # one process
    env["SLURM_RESTART_COUNT"] = "1"
    done = subprocess.run(["bash", str(sweep / "sweep.sbatch")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for r in runs:
        st = read_status(sweep / r)
        assert st["state"] == "completed" and st["attempt"] == 1 and st["last_step"] == 300
        assert read(sweep / r).scalars["step"].tolist() == list(range(1, 301))
