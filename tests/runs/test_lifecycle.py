"""restarted_from_scratch: resumed attempts that went back to the start."""

from __future__ import annotations

import numpy as np

from grokwatch.runs.lifecycle import attempt_reach_from_shards, restarted_from_scratch, scratch_restarts
from grokwatch.store import merge_newest


def _loss(steps):
    return 4.5 * np.exp(-np.asarray(steps, dtype=float) / 60.0) + 0.01  # falls from ~4.5 to ~0


def _chunk(first, last, attempt, loss=None):
    steps = np.arange(first, last + 1)
    return {
        "step": steps,
        "train_loss": _loss(steps) if loss is None else loss(steps),
        "attempt": np.full(len(steps), attempt),
    }


def _view(*chunks):
    return merge_newest(chunks)  # what RunReader holds: newest attempt per step


def test_fresh_run_and_proper_resume_are_fine():
    assert not restarted_from_scratch(_view(_chunk(1, 500, 0)), [{"attempt": 0, "start_step": 0}])
    view = _view(_chunk(1, 500, 0), _chunk(401, 900, 1))  # checkpoint at 400
    attempts = [{"attempt": 0, "start_step": 0}, {"attempt": 1, "start_step": 400}]
    assert scratch_restarts(view, attempts) == []


def test_resume_that_goes_back_to_step_one():
    view = _view(_chunk(1, 500, 0), _chunk(1, 300, 1))
    attempts = [{"attempt": 0, "start_step": 0}, {"attempt": 1, "start_step": 0}]
    found = scratch_restarts(view, attempts)
    assert len(found) == 1 and found[0].attempt == 1 and found[0].reason == "step" and found[0].step == 1
    assert found[0].reached == 500
    assert restarted_from_scratch(view, attempts)


def test_scratch_restart_past_the_old_reach_needs_shard_names():
    # Once the scratch attempt passes step 500, the merged view holds only its
    # rows; the shard names still tell how far attempt 0 got.
    view = _view(_chunk(1, 500, 0), _chunk(1, 800, 1))
    attempts = [{"attempt": 0, "start_step": 0}, {"attempt": 1, "start_step": 0}]
    assert not restarted_from_scratch(view, attempts)
    reach = attempt_reach_from_shards(
        [
            "scalars-000000250.arrow",
            "scalars-000000500.arrow",
            "scalars-000000800-a01.arrow",
            "probes-000000500.arrow",
            "junk.tmp",
        ]
    )
    assert reach == {0: 500, 1: 800}
    assert restarted_from_scratch(view, attempts, attempt_reach=reach)


def test_lost_progress_below_checkpoint_interval_is_expected():
    # Preempted at step 50 with checkpoints every 1000: starting over is by design.
    view = _view(_chunk(1, 50, 0), _chunk(1, 20, 1))
    attempts = [{"attempt": 0, "start_step": 0}, {"attempt": 1, "start_step": 0}]
    assert restarted_from_scratch(view, attempts)  # literally back to the start
    assert not restarted_from_scratch(view, attempts, checkpoint_every=1000)
    assert restarted_from_scratch(_view(_chunk(1, 1500, 0), _chunk(1, 20, 1)), attempts, checkpoint_every=1000)


def test_loss_jumps_back_to_its_initial_level():
    # Steps continue at the checkpoint, but the weights were not restored.
    fresh = lambda steps: _loss(np.asarray(steps) - 400)  # noqa: E731 - a model starting over at step 401
    view = _view(_chunk(1, 500, 0), _chunk(401, 600, 1, loss=fresh))
    attempts = [{"attempt": 0, "start_step": 0}, {"attempt": 1, "start_step": 400}]
    found = scratch_restarts(view, attempts)
    assert [f.reason for f in found] == ["loss"]
    assert found[0].loss_after > 4 and found[0].loss_before < 0.5 and found[0].step == 401


def test_loss_jump_before_any_progress_means_nothing():
    flat = lambda steps: np.full(len(steps), 4.5)  # noqa: E731
    view = _view(_chunk(1, 500, 0, loss=flat), _chunk(401, 600, 1, loss=flat))
    assert not restarted_from_scratch(view, [{"attempt": 0, "start_step": 0}, {"attempt": 1, "start_step": 400}])


def test_backwards_start_step_from_status_alone():
    # attempt 1 resumed at 400, attempt 2 started at 0: no rows needed to see it.
    attempts = [{"attempt": 0, "start_step": 0}, {"attempt": 1, "start_step": 400}, {"attempt": 2, "start_step": 0}]
    found = scratch_restarts({"step": np.zeros(0, dtype=np.int64)}, attempts)
    assert [(f.attempt, f.reason) for f in found] == [(2, "step")]


def test_empty_and_malformed_inputs():
    assert not restarted_from_scratch({}, None)
    assert not restarted_from_scratch({"step": np.arange(1, 4)}, [{"bogus": 1}, {"attempt": "x"}])
