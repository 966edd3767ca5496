"""No prediction ever reads data past the step it was made at."""

from __future__ import annotations

import numpy as np
import pytest

from grokwatch.predict import RunSeries, SweepPredictor, replay
from grokwatch.predict.series import COLUMNS


def truncate(run: RunSeries, t: int) -> RunSeries:
    """The run as a live reader saw it at step t: rows <= t (copies), still running unless over by then."""
    keep = run.steps <= t
    cols = {"step": run.steps[keep].copy(), **{k: np.array(run.cols[k][keep]) for k in COLUMNS}}
    over = run.last_step is not None and run.last_step <= t
    return RunSeries.from_columns(run.run_id, cols, _config(run), run.state if over else "running")


def mutate_after(run: RunSeries, t: int, rng) -> RunSeries:
    """The same run with every row after step t replaced by something else entirely."""
    after = run.steps > t
    cols = {"step": run.steps.copy()}
    n = int(after.sum())
    cols["train_acc"] = np.where(after, 1.0, run.cols["train_acc"])
    cols["val_acc"] = np.where(after, rng.uniform(0.9, 1.0, len(after)), run.cols["val_acc"])  # everyone groks at once
    cols["train_loss"] = np.where(after, rng.uniform(0, 5, len(after)), run.cols["train_loss"])
    cols["weight_norm"] = np.where(after, rng.uniform(1, 100, len(after)), run.cols["weight_norm"])
    cols["val_loss"] = np.where(after, rng.uniform(0, 30, len(after)), run.cols["val_loss"])
    assert n >= 0
    return RunSeries.from_columns(run.run_id, cols, _config(run), run.state)


def _config(run: RunSeries) -> dict:
    """What a live reader reads of the run's run.json: the same as the replay's."""
    return {
        "weight_decay": run.weight_decay,
        "total_steps": run.total_steps,
        "lr": run.lr,
        "seed": run.seed,
        "preset": run.preset,
    }


def _upto(preds, t):
    return [p for p in preds if p.step <= t]


@pytest.fixture(scope="module")
def full_preds(sim_runs):
    return replay(sim_runs)


@pytest.mark.slow
@pytest.mark.parametrize("t", [1500, 4000, 9000])
def test_truncated_data_gives_the_same_predictions(sim_runs, full_preds, t):
    cut = {rid: truncate(r, t) for rid, r in sim_runs.items()}
    got = replay(cut)
    assert got == _upto(full_preds, t)
    assert any(p.step == t for p in got)  # predictions made at t itself are among them


@pytest.mark.slow
@pytest.mark.parametrize("t", [2500, 7000])
def test_mutating_the_future_changes_nothing_before_it(sim_runs, full_preds, t):
    rng = np.random.default_rng(7)
    changed = {rid: mutate_after(r, t, rng) for rid, r in sim_runs.items()}
    got = replay(changed)
    assert _upto(got, t) == _upto(full_preds, t)
    assert got != full_preds  # the future did change what came after


@pytest.mark.slow
def test_live_updates_in_lockstep_equal_the_replay(sim_runs, full_preds):
    live = SweepPredictor()
    made = []
    for t in range(700, 20_001, 1_300):  # refreshes at arbitrary steps
        made += live.update({rid: truncate(r, t) for rid, r in sim_runs.items()})
    made += live.update(sim_runs)
    assert made == full_preds
    assert live.latest("wd0.1-s01") == [p for p in full_preds if p.run == "wd0.1-s01" and p.kind == "t_grok"][-1]


@pytest.mark.slow
def test_upto_equals_truncation(sim_runs):
    r = sim_runs["wd0.3-s04"]
    for t in (100, 400, 3000, 3950, 20_000):
        a, b = r.upto(t), truncate(r, t)
        assert np.array_equal(a.steps, b.steps)
        assert a.events() == b.events() == r.events_at(t)
        assert a.outcome_at(t) == b.outcome_at(t) == r.outcome_at(t)
