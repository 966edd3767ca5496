"""Probes wired into the trainer (every DESIGN column, finite, switchable, sub-
cadences) and ``grokwatch probe`` over kept snapshots (post-hoc shards that
never clobber the live ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.train as tt
from grokwatch.commands.main import main as cli_main
from grokwatch.runs.training import PROBE_NAMES
from grokwatch.store import RunReader, ShardName, read_status
from trainer.config import ConfigError, TrainConfig
from trainer.model import Transformer
from trainer.probe_offline import POSTHOC_ATTEMPT_BASE, ProbeError, posthoc_attempt, probe_snapshots
from trainer.probes import (
    DEFAULT_PROBES,
    PROBES,
    SETTINGS,
    is_due,
    next_adamw_update,
    parse_spec,
    probe_context,
)
from trainer.task import loss_and_acc, make_dataset

ROOT = Path(__file__).resolve().parents[2]
MATRICES = ("embed", "attn.W_Q", "attn.W_K", "attn.W_V", "attn.W_O", "mlp.W_in", "mlp.W_out", "unembed")
PER_MATRIX = ("effective_rank", "htsr_alpha", "htsr_sigma", "htsr_ks", "htsr_n_tail", "htsr_n_evals", "htsr_traps")
GLOBAL = (
    "h0_total",
    "h0_effective_count",
    "h0_median",
    "h0_entropy",
    "commutator_defect",
    "defect_transverse_frac",
    "hessian_lambda_max",
    "hessian_lambda_min",
    "hessian_ratio",
    "hessian_trace",
    "update_cosine",
    "pca2_variance_share",
)
ALL_COLUMNS = {f"{c}/{m}" for c in PER_MATRIX for m in MATRICES} | set(GLOBAL)
WINDOWED = ("pca2_variance_share", "defect_transverse_frac")  # need 3 trajectory snapshots
EVERY_STEP = [f"{p}@1" for p in DEFAULT_PROBES]  # every probe at every probe step


def tiny(root: Path, run_id: str, **kw) -> TrainConfig:
    base = dict(steps=100, flush_steps=50, flush_seconds=1000.0, checkpoint_every=100, probe_every=25, threads=1)
    return TrainConfig.from_preset("tiny", root=str(root), sweep="s", run_id=run_id, **{**base, **kw})


def read(run_dir: Path) -> RunReader:
    r = RunReader(run_dir)
    r.refresh()
    assert r.failed_files == {}
    return r


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """A tiny run with every probe at every probe step (25, 50, 75, 100) and
    snapshots every 24 steps: the snapshot of step 24 holds the weights the
    live probe of step 25 saw. Smaller slice and fewer Hessian-vector
    products than the defaults, to keep the test short (for the post-hoc
    pass too: the patch holds for the module)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SETTINGS["h0"], "grid", 9)
        mp.setitem(SETTINGS["hessian"], "iters", 10)
        mp.setitem(SETTINGS["hessian_trace"], "samples", 4)
        cfg = tiny(tmp_path_factory.mktemp("probes"), "live", keep_every=24, probes=EVERY_STEP)
        assert tt.train(cfg) == 0
        yield cfg


# -- the live probes -------------------------------------------------------------------


@pytest.mark.slow
def test_every_probe_column_is_recorded_and_finite(live_run):
    p = read(live_run.run_dir).probes
    assert p["step"].tolist() == [25, 50, 75, 100]
    assert ALL_COLUMNS <= set(p), sorted(ALL_COLUMNS - set(p))
    for c in ALL_COLUMNS:
        v = p[c][2:] if c in WINDOWED else p[c]  # the window has 3 snapshots from the third probe step
        assert np.isfinite(v).all(), (c, v)
    for c in WINDOWED:
        assert np.isnan(p[c][:2]).all()  # undefined, so left out (NaN), never a made-up value
    assert ((p["update_cosine"] >= -1) & (p["update_cosine"] <= 1)).all()
    assert ((p["pca2_variance_share"][2:] > 0) & (p["pca2_variance_share"][2:] <= 1)).all()
    assert (p["hessian_lambda_max"] >= p["hessian_lambda_min"]).all()
    assert (p["h0_total"] >= 0).all() and (p["htsr_n_tail/mlp.W_in"] >= 8).all()
    er = p["effective_rank/mlp.W_in"]
    assert ((er >= 1) & (er <= 64)).all()  # between 1 and min(256, 64)


def test_default_sub_cadences(tmp_path):
    """Default probes: the cheap ones at every probe step, h0 / hessian /
    hessian_trace at every 10th probe step (k = 10, 20, ...; k = step //
    probe_every); ``name@m`` overrides a sub-cadence."""
    assert set(DEFAULT_PROBES) == set(SETTINGS) == set(PROBES) == set(PROBE_NAMES)  # the config's checks know them all
    due = lambda name, every=None: [s for s in range(5, 121, 5) if is_due(name, every, s, 5)]  # noqa: E731
    assert due("htsr") == list(range(5, 121, 5))
    assert due("h0") == [50, 100] and due("hessian") == [50, 100] and due("hessian_trace") == [50, 100]
    assert due("h0", 4) == [20, 40, 60, 80, 100, 120]
    assert parse_spec("h0@4") == ("h0", 4) and parse_spec("h0") == ("h0", None)
    for bad in ("h0@0", "h0@", "h0@x"):
        with pytest.raises(ValueError):
            parse_spec(bad)
        assert bad not in PROBES
    assert "h0@4" in PROBES and "nope@4" not in PROBES
    TrainConfig.from_preset("tiny", root=str(tmp_path), probes=["h0@4", "htsr"]).validate()
    with pytest.raises(ConfigError, match="unknown probe"):
        TrainConfig.from_preset("tiny", root=str(tmp_path), probes=["h0@0"]).validate()


def test_switching_probes_off_removes_their_columns(tmp_path):
    cfg = tiny(tmp_path, "few", steps=40, probe_every=10, probes=["effective_rank", "htsr@2"])
    assert tt.train(cfg) == 0
    p = read(cfg.run_dir).probes
    assert p["step"].tolist() == [10, 20, 30, 40]
    assert set(p) == {"step", "attempt"} | {f"{c}/{m}" for c in PER_MATRIX[:6] for m in MATRICES}
    assert np.isfinite(p["htsr_alpha/embed"]).tolist() == [False, True, False, True]  # htsr@2: k = 2, 4
    none = tiny(tmp_path, "none", steps=20, probe_every=10, probes=[])
    assert tt.train(none) == 0
    assert not [n for n in os.listdir(none.run_dir / "shards") if n.startswith("probes-")]


def test_update_cosine_uses_the_update_the_step_applies(tmp_path):
    """next_adamw_update (AdamW's update from the optimizer state and this
    step's gradient, not applied) equals the update the trainer's step makes."""
    cfg = tiny(tmp_path, "u")
    torch.manual_seed(0)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    model = Transformer(cfg.model_config())
    flat, slices, _ = tt.flatten_parameters(model)
    opt = tt.make_optimizer(flat, cfg)
    for step in range(1, 13):
        lr = cfg.lr * min(1.0, step / cfg.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        ctx = probe_context(step, model, flat, slices, data, cfg, lr, optimizer=opt)
        predicted = next_adamw_update(ctx) if step in (1, 2, 12) else None
        flat.grad.zero_()
        loss_and_acc(model(data.train_x), data.train_y)[0].backward()
        before = flat.detach().clone()
        opt.step()
        if predicted is not None:
            actual = (flat.detach() - before).double()
            assert float((predicted - actual).norm() / actual.norm()) < 1e-4, step


# -- grokwatch probe: post hoc over kept snapshots ---------------------------------------


@pytest.mark.slow
def test_posthoc_probes_match_live_and_never_clobber(live_run):
    run = live_run.run_dir
    before = read(run).probes
    live_files = {n: (run / "shards" / n).read_bytes() for n in os.listdir(run / "shards")}
    status = (run / "status.json").read_bytes()
    assert sorted(n for n in os.listdir(run / "snapshots")) == [f"weights-{s:09d}.pt" for s in (24, 48, 72, 96)]

    res = probe_snapshots(run)  # the defaults that work post hoc: all but update_cosine
    assert res.attempt == POSTHOC_ATTEMPT_BASE and res.steps == [25, 49, 73, 97]
    assert [p.name for p in res.shards] == ["probes-000000097-a1000.arrow"]
    assert ALL_COLUMNS - {"update_cosine"} == set(res.columns)
    # the live shards and status.json are untouched, byte for byte
    assert {n: (run / "shards" / n).read_bytes() for n in live_files} == live_files
    assert (run / "status.json").read_bytes() == status
    assert read_status(run)["attempt"] == 0

    after = read(run).probes
    assert after["step"].tolist() == [25, 49, 50, 73, 75, 97, 100]
    assert after["attempt"].tolist() == [1000, 1000, 0, 1000, 0, 1000, 0]
    live_rows = np.isin(after["step"], [50, 75, 100])
    for c in before:
        if c not in ("step", "attempt"):
            assert np.array_equal(after[c][live_rows], before[c][1:], equal_nan=True), c
    # step 25: the same weights as the live probe (snapshot 24), the same seeds: the same values
    i = int(np.flatnonzero(after["step"] == 25)[0])
    for c in ALL_COLUMNS - set(WINDOWED):
        assert after[c][i] == pytest.approx(before[c][0], rel=1e-5, abs=1e-6), c
    assert after["update_cosine"][i] == before["update_cosine"][0]  # kept from the live row
    for c in ALL_COLUMNS - {"update_cosine"} - set(WINDOWED):
        assert np.isfinite(after[c][after["attempt"] == 1000]).all(), c
    assert np.isfinite(after["pca2_variance_share"][after["step"] >= 73]).all()

    # a second pass gets the next attempt; its rows win; nothing is lost
    assert posthoc_attempt(run) == POSTHOC_ATTEMPT_BASE + 1
    out = _cli(["probe", str(run), "--probes", "effective_rank,htsr", "--every", "48", "--json", "-q"])
    info = json.loads(out)
    assert info["attempt"] == 1001 and info["steps"] == [49, 97] and info["shards"] == ["probes-000000097-a1001.arrow"]
    again = read(run).probes
    assert again["attempt"].tolist() == [1000, 1001, 0, 1000, 0, 1001, 0]
    for c in after:
        if c != "attempt":
            assert np.array_equal(again[c], after[c], equal_nan=True), c
    assert ShardName.parse("probes-000000097-a1001.arrow").attempt == 1001


def _cli(argv: list[str]) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(argv) == 0
    return buf.getvalue()


def test_probe_command_errors(tmp_path, capsys):
    cfg = tiny(tmp_path, "bare", steps=12, probe_every=0, keep_every=6)
    assert tt.train(cfg) == 0
    cases = [
        ([str(tmp_path / "nowhere")], "not a run directory"),
        ([str(cfg.run_dir), "--probes", "update_cosine"], "live optimizer"),
        ([str(cfg.run_dir), "--probes", "nope"], "unknown probe"),
        ([str(cfg.run_dir), "--every", "5"], "no snapshot step is a multiple"),
        ([str(cfg.run_dir), "--grid", "1"], "--grid"),
        ([str(cfg.run_dir), "--probes", "h0@2"], "no name@N post hoc"),
        ([str(cfg.run_dir), "--device", "tpu"], "--device tpu"),
    ]
    for args, msg in cases:
        assert cli_main(["probe", *args]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    nosnap = tiny(tmp_path, "nosnap", steps=5, probe_every=0)
    assert tt.train(nosnap) == 0
    with pytest.raises(ProbeError, match="no weight snapshots"):
        probe_snapshots(nosnap.run_dir)


def test_probe_command_is_headless(tmp_path):
    """``grokwatch probe`` loads trainer and observables, never the UI."""
    cfg = tiny(tmp_path, "h", steps=12, probe_every=0, keep_every=12)
    assert tt.train(cfg) == 0
    code = (
        "import sys; from grokwatch.commands.main import main; "
        f"rc = main(['probe', {str(cfg.run_dir)!r}, '--probes', 'effective_rank', '-q']); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich') or m.startswith('grokwatch.tui')]; "
        "print(rc, bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 []"
    assert read(cfg.run_dir).probes["step"].tolist() == [13]
