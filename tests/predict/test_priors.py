"""Priors: stored runs of earlier sweeps (shipped per preset, or learned per root)."""

from __future__ import annotations

import json
import shutil

import numpy as np

from grokwatch.predict import PredictConfig, SweepPredictor, load_sweep, replay
from grokwatch.predict import priors as P
from grokwatch.store import read_run_config


def _set_preset(sweep_dir, preset="simpreset"):
    for d in sweep_dir.iterdir():
        if (d / "run.json").exists():
            cfg = json.loads((d / "run.json").read_text())
            cfg["preset"] = preset
            (d / "run.json").write_text(json.dumps(cfg))


def test_prior_file_round_trip_keeps_events_and_the_weight_norm_at_grok(sim_runs, tmp_path):
    path = tmp_path / "p.arrow"
    rows = P.write_prior(path, [("simA", r, "x") for r in sim_runs.values()])
    back, meta = P.read_prior(path)
    assert rows < sum(len(r.steps) for r in sim_runs.values()) / 5  # compact
    assert len(back) == len(sim_runs)
    by = {run.run_id.split("/", 1)[1]: run for _, run in back}
    for rid, r in sim_runs.items():
        b = by[rid]
        assert b.events().t_mem == r.events().t_mem
        assert b.events().t_grok == r.events().t_grok
        if r.events().t_grok is not None:
            i = int(np.searchsorted(r.steps, r.events().t_grok))
            j = int(np.searchsorted(b.steps, r.events().t_grok))
            assert b.cols["weight_norm"][j] == np.float32(r.cols["weight_norm"][i])


def test_a_corrupt_prior_file_is_ignored_with_a_warning(tmp_path, caplog):
    bad = tmp_path / "bad.arrow"
    bad.write_bytes(b"not arrow at all")
    assert P.read_prior(bad) == ([], {})
    assert "cannot read" in caplog.text


def test_first_run_of_a_fresh_sweep_gets_a_number_from_the_learned_prior(sim_sweep, tmp_path):
    """A finished sweep under the root teaches the next one: its very first
    predictions (before any of its own runs grokked) come from the prior."""
    root = tmp_path / "root"
    old = root / "old"
    shutil.copytree(sim_sweep, old)
    _set_preset(old)
    old_runs = load_sweep(old)
    assert all(r.is_over() for r in old_runs.values())
    configs = {rid: read_run_config(old / rid) for rid in old_runs}
    written = P.remember_sweep(old, old_runs, configs)
    assert written == root / ".grokwatch" / "priors" / "simpreset.arrow"

    new = root / "new"
    shutil.copytree(sim_sweep, new)
    _set_preset(new)
    runs = load_sweep(new)
    cfg = PredictConfig()
    with_prior = replay(runs, cfg, sweep_dir=new)
    alone = replay(runs, cfg, sweep_dir=new, auto_prior=False)
    first_grok = min(r.events().t_grok for r in runs.values() if r.events().t_grok is not None)
    early = [p for p in with_prior if p.kind == "t_grok" and p.step < first_grok and p.ok]
    assert early and all(p.source == "prior" for p in early)
    assert not [p for p in alone if p.kind == "t_grok" and p.step < first_grok and p.ok]


def test_a_sweep_never_learns_from_itself(sim_sweep, tmp_path):
    root = tmp_path / "root"
    sweep = root / "same"
    shutil.copytree(sim_sweep, sweep)
    _set_preset(sweep)
    runs = load_sweep(sweep)
    P.remember_sweep(sweep, runs, {rid: read_run_config(sweep / rid) for rid in runs})
    assert P.auto_prior("simpreset", sweep) == []  # its own entry is left out: no peeking
    other = root / "other"
    other.mkdir()
    assert len(P.auto_prior("simpreset", other)) == len(runs)


def test_an_unfinished_sweep_teaches_nothing(sim_sweep, tmp_path):
    sweep = tmp_path / "root" / "open"
    shutil.copytree(sim_sweep, sweep)
    _set_preset(sweep)
    runs = load_sweep(sweep)
    rid = sorted(runs)[0]
    r = runs[rid]
    cut = len(r.steps) // 4
    runs[rid] = type(r)(
        r.run_id,
        r.steps[:cut],
        {k: v[:cut] for k, v in r.cols.items()},
        r.weight_decay,
        r.total_steps,
        "running",
        preset=r.preset,
    )
    assert P.remember_sweep(sweep, runs, {k: read_run_config(sweep / k) for k in runs}) is None


def _without_preset(run, lr=True):
    from grokwatch.predict.series import RunSeries

    return RunSeries(
        run.run_id, run.steps, run.cols, run.weight_decay, run.total_steps, run.state, lr=run.lr if lr else None
    )


def test_a_run_of_no_preset_gets_every_real_presets_prior_on_the_lr_wd_scale(sim_runs):
    """No preset of its own (a plain loop): the shipped priors of the real presets,
    put on one scale by lr x weight decay -- never the simulator's; without lr, none."""
    runs = {rid: _without_preset(r) for rid, r in sim_runs.items()}
    pred = SweepPredictor(PredictConfig())
    pred.update(runs, backfill=False)
    presets = {p.preset for p in pred.prior}
    assert presets and "sim" not in presets and presets <= {"tiny", "canonical"}
    assert all(p.lr and p.weight_decay for p in pred.prior)
    assert "lr x weight decay" in pred.prior_sources[0]
    bare = SweepPredictor(PredictConfig())
    bare.update({rid: _without_preset(r, lr=False) for rid, r in sim_runs.items()}, backfill=False)
    assert bare.prior == [] and bare.prior_sources == []


def _as_preset(run, preset):
    from grokwatch.predict.series import RunSeries

    return RunSeries(
        run.run_id, run.steps, run.cols, run.weight_decay, run.total_steps, run.state, preset=preset, lr=run.lr
    )


def test_a_small_preset_prior_is_joined_by_the_other_presets_on_the_lr_wd_scale(sim_runs):
    """The canonical prior has fewer than SMALL_PRIOR grokked runs: the tiny runs join it
    (never the simulator's); the tiny prior is large enough to stand alone."""
    canon = SweepPredictor(PredictConfig())
    canon.update({rid: _as_preset(r, "canonical") for rid, r in sim_runs.items()}, backfill=False)
    by = {}
    for r in canon.prior:
        by[r.preset] = by.get(r.preset, 0) + 1
    n_canon = sum(1 for r in P.auto_prior("canonical", None) if r.events().t_grok is not None)
    assert 0 < n_canon < P.SMALL_PRIOR
    assert set(by) == {"canonical", "tiny"} and by["tiny"] >= P.SMALL_PRIOR
    assert len(canon.prior_sources) == 2 and "other presets" in canon.prior_sources[1]
    tiny = SweepPredictor(PredictConfig())
    tiny.update({rid: _as_preset(r, "tiny") for rid, r in sim_runs.items()}, backfill=False)
    assert {r.preset for r in tiny.prior} == {"tiny"} and len(tiny.prior_sources) == 1


def test_a_prior_run_never_calibrates_its_twin(sim_sweep, tmp_path):
    """Same preset, seed and weight decay train identically on a CPU: such a prior
    run would hand the target its own t_grok, so it is left out for that target."""
    from grokwatch.predict.series import PriorRun

    sweep = tmp_path / "root" / "s"
    shutil.copytree(sim_sweep, sweep)
    _set_preset(sweep)
    runs = load_sweep(sweep)
    grokked = sorted(rid for rid, r in runs.items() if r.events().t_grok is not None)
    target = runs[grokked[0]]
    twin = PriorRun.of(target)
    other = [PriorRun.of(runs[rid]) for rid in grokked[1:4]]
    assert twin.seed is not None and twin.preset == "simpreset"
    cfg = PredictConfig(min_calibrators=1)
    alone = {target.run_id: target}
    with_twin = [p for p in replay(alone, cfg, prior=[twin], auto_prior=False) if p.kind == "t_grok"]
    assert with_twin and not any(p.ok for p in with_twin)  # its twin is all the prior had: no number
    with_others = [p for p in replay(alone, cfg, prior=other, auto_prior=False) if p.kind == "t_grok"]
    assert any(p.ok and p.source == "prior" for p in with_others)
