"""Every view of a sweep says the same thing about a run: its id and its phase.

A run that grokked and then got a non-finite loss is *diverged* for
grokwatch.runs.phases, the watcher (and its alarm), ``grokwatch sweep status``, the
dashboard and the report alike; and a (weight decay, seed) pair has one run id
wherever runs are named (sweep plan, packed trainer, demo, simulator).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from grokwatch.runs.phases import phase_of
from grokwatch.store import RunConfig, RunStatus, RunWriter
from grokwatch.store.layout import run_id_for

STEPS = 400
T_MEM, T_GROK, T_NAN = 100, 250, 350


def _write_run(sweep: Path, run_id: str, wd: float, seed: int, *, diverge: bool, grok: bool = True) -> None:
    steps = np.arange(1, STEPS + 1)
    train_acc = np.where(steps >= T_MEM, 1.0, steps / T_MEM * 0.9)
    val_acc = np.where(steps >= T_GROK, 1.0, 0.02) if grok else np.full(STEPS, 0.02)
    loss = np.exp(-steps / 100.0)
    if diverge:
        loss = np.where(steps >= T_NAN, np.nan, loss)
    cfg = {"run_id": run_id, "seed": seed, "weight_decay": wd, "total_steps": STEPS}
    w = RunWriter(sweep / run_id, cfg).open()
    w.write_shard(
        "scalars",
        {
            "step": steps,
            "train_acc": train_acc,
            "val_acc": val_acc,
            "train_loss": loss,
            "val_loss": loss,
            "grad_norm": np.ones(STEPS),
            "weight_norm": np.ones(STEPS),
        },
    )
    w.close("diverged" if diverge else "completed")


@pytest.fixture
def sweep(tmp_path) -> Path:
    d = tmp_path / "sw"
    _write_run(d, run_id_for(0.3, 22), 0.3, 22, diverge=True)  # grokked at 250, NaN loss from 350
    _write_run(d, run_id_for(1.0, 0), 1.0, 0, diverge=False)  # grokked, completed
    _write_run(d, run_id_for(0.1, 0), 0.1, 0, diverge=False, grok=False)  # memorized, never grokked
    return d


BAD, GOOD, PLATEAU = run_id_for(0.3, 22), run_id_for(1.0, 0), run_id_for(0.1, 0)
EXPECTED = {BAD: "diverged", GOOD: "grokked", PLATEAU: "memorized"}


def test_every_view_gives_a_run_the_same_phase(sweep):
    from grokwatch.alerts import AlarmSubscriber, AlertEngine, load_rules
    from grokwatch.commands.sweep import sweep_rows
    from grokwatch.report.build import counts
    from grokwatch.report.data import ANTI, DIVERGED, GROKKED, NEVER, load_runs
    from grokwatch.store import RunReader
    from grokwatch.tui.watcher_source import WatcherSource
    from grokwatch.watch import SweepWatcher

    # the one definition
    for rid, phase in EXPECTED.items():
        r = RunReader(sweep / rid)
        r.refresh()
        assert phase_of(r.scalars).phase == phase, rid

    # the watcher, and its lifecycle alarm
    events: list = []
    snap = SweepWatcher(
        sweep, subscribers=[AlarmSubscriber(AlertEngine(load_rules()), on_events=events.extend)], poll=True
    ).cycle()
    assert {rid: v.phase for rid, v in snap.runs.items()} == EXPECTED
    assert snap.runs[BAD].t_grok == T_GROK and snap.runs[BAD].t_diverged == T_NAN
    fired = {(e.run, e.rule) for e in events if e.state == "firing"}
    assert (BAD, "diverged") in fired and (BAD, "grokked") in fired
    assert not any(rule == "diverged" for run, rule in fired if run != BAD)

    # grokwatch sweep status
    rows = {r["run_id"]: r for r in sweep_rows(sweep, None, queue=None)}
    assert {rid: r["phase"] for rid, r in rows.items()} == EXPECTED
    assert rows[BAD]["state"] == "diverged"

    # the dashboard (its one source: the watcher)
    source = WatcherSource(sweep, poll=True)
    try:
        source.refresh()
        model = source.model()
    finally:
        source.close()
    assert {r.run_id: r.phase for r in model.rows} == EXPECTED
    assert model.phase_counts().get("diverged") == 1
    shown = {(a.run_id, a.rule) for a in model.alarms if a.state == "firing"}
    assert (BAD, "diverged") in shown and not any(rule == "diverged" for run, rule in shown if run != BAD)

    # the report: it files the run under diverged, not grokked
    runs = load_runs(sweep)
    assert runs[BAD].outcome == DIVERGED
    assert runs[GOOD].outcome == GROKKED
    assert runs[PLATEAU].outcome == NEVER
    c = counts(runs)
    assert (c[DIVERGED], c[GROKKED], c[ANTI], c[NEVER]) == (1, 1, 0, 1)
    assert c["grokked_total"] == 2  # both reached t_grok: the grokking event's positives


def test_report_outcome_follows_the_phase_for_every_phase():
    """outcome is phase_of's phase whenever the run's data settle it."""
    from grokwatch.report.data import ANTI, DIVERGED, GROKKED, RunData

    steps = np.arange(1, 301)
    base = {"step": steps, "train_acc": np.ones(300), "train_loss": np.full(300, 0.1)}
    cases = {
        # grokked, collapsed and stayed down: anti-grokking
        "anti": ({**base, "val_acc": np.where(steps < 100, 1.0, 0.1)}, ANTI),
        # grokked, collapsed, recovered: grokked (the collapse is an event, not the phase)
        "recovered": ({**base, "val_acc": np.where((steps >= 100) & (steps < 200), 0.1, 1.0)}, GROKKED),
        # grokked, then an infinite loss: diverged
        "inf": ({**base, "val_acc": np.ones(300), "train_loss": np.where(steps > 250, np.inf, 0.1)}, DIVERGED),
    }
    expected_phase = {ANTI: "anti-grokking", GROKKED: "grokked", DIVERGED: "diverged"}
    for name, (sc, outcome) in cases.items():
        info = phase_of(sc)
        run = RunData(name, RunConfig(), RunStatus(state="running"), sc, {}, info=info)
        assert info.phase == expected_phase[outcome], name
        assert run.outcome == outcome, name


def test_run_ids_are_the_same_wherever_runs_are_named(tmp_path, capsys):
    import json

    from grokwatch.commands.main import main
    from grokwatch.sim.demo import plan_demo
    from grokwatch.sim.simulate import plan_sweep
    from grokwatch.store.layout import MANIFEST
    from slurm.plan import MANIFEST as SLURM_MANIFEST

    wds, seeds = (1.0, 0.3, 3.0), 2
    want = {(wd, s): run_id_for(wd, s) for wd in wds for s in range(seeds)}
    assert want[(1.0, 0)] == "wd1.0-s00" and want[(0.3, 1)] == "wd0.3-s01"
    assert run_id_for(1, 0) == run_id_for(1.0, 0)  # an int weight decay names the same run
    assert run_id_for(1e-5, 3) == "wd1e-05-s03" and run_id_for(0.00012345678, 0) != run_id_for(0.0001234568, 0)

    # grokwatch sweep plan: the manifest it writes
    assert (
        main(
            [
                "sweep",
                "plan",
                "--root",
                str(tmp_path),
                "--sweep",
                "s",
                "--seeds",
                str(seeds),
                "--weight-decays",
                "1,0.3,3",
                "--gpus-per-task",
                "0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert MANIFEST == SLURM_MANIFEST
    tasks = json.loads((tmp_path / "s" / MANIFEST).read_text())["tasks"]
    planned = {(t["weight_decay"], t["seed"]): t["run_id"] for t in tasks}
    demo = {
        (r.weight_decay, r.seed): r.run_id for r in plan_demo(tmp_path, weight_decays=(1, 0.3, 3), seeds=seeds).runs
    }
    sim = {(p.weight_decay, p.seed): p.run_id for p in plan_sweep(runs=6, steps=1000, weight_decays=wds)}
    assert planned == demo == sim == want


@pytest.mark.slow
def test_packed_trainer_names_runs_like_the_plan():
    """trainer.cli imports torch (seconds): kept apart from the quick checks."""
    from trainer.cli import run_specs

    ns = argparse.Namespace(seeds="0-1", weight_decays="1,0.3")
    assert [rid for rid, _, _ in run_specs(ns, 1.0)] == [
        run_id_for(1.0, 0),
        run_id_for(1.0, 1),
        run_id_for(0.3, 0),
        run_id_for(0.3, 1),
    ]
