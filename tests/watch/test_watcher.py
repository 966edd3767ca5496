"""The sweep watcher on real files: backfill, follow (inotify and polling), bad data."""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest
from watch_helpers import flat_run_columns, start_run, wait_for, write_flat_run

from grokwatch.alerts import AlarmSubscriber, AlertEngine, Rule, load_rules
from grokwatch.sim.simulate import simulate_sweep
from grokwatch.store import columns_to_ipc
from grokwatch.watch import SweepWatcher, is_network_fs, mount_of
from grokwatch.watch.runstate import RunState


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    return simulate_sweep(root, "s", runs=6, steps=4000, seed=1)


def test_backfill_matches_ground_truth(small_sweep):
    w = SweepWatcher(small_sweep, subscribers=[AlarmSubscriber(AlertEngine(load_rules()))], config=None)
    snap = w.cycle()
    assert snap.ready and len(snap.runs) == 6 and snap.version >= 1
    fates = {}
    for rid, v in snap.runs.items():
        truth = v.config.extra["simulated"]
        fates[truth["fate"]] = v
        assert (v.t_mem, v.t_grok) == (truth["t_mem"], truth["t_grok"]), rid
        assert v.seed is not None and v.weight_decay in (0.1, 0.3, 1.0)
        steps = v.scalars["step"]
        assert np.all(np.diff(steps) > 0) and v.step == steps[-1]
        assert len(v.scores["gai_z"]) == len(steps)
        assert len(v.scores["h0_entropy_z"]) == len(v.probes["step"])
    assert fates["anti_grok"].phase == "anti-grokking"
    assert fates["diverge"].phase == "diverged" and fates["diverge"].status == "diverged"
    assert fates["stall"].phase == "stalled" and fates["stall"].status == "running" and fates["stall"].stalled
    assert any(v.restarts == 1 for v in snap.runs.values())  # the preempted-and-resumed run
    firing = {(rid, a.rule) for rid, a in snap.active_alarms() if a.state == "firing"}
    assert (fates["stall"].run_id, "stalled") in firing
    assert (fates["anti_grok"].run_id, "anti_grokking") in firing


def test_follows_new_shards_with_inotify(tmp_path):
    sweep = tmp_path / "sw"
    write_flat_run(sweep, "done", n=500)
    updates: list[frozenset] = []
    w = SweepWatcher(sweep, poll=False, on_update=lambda s, changed: updates.append(changed))
    with w:
        assert w.wait_ready(10) and w.mode == "inotify"
        first = w.snapshot()
        assert set(first.runs) == {"done"}
        live = start_run(sweep, "live")
        for a in (1, 101, 201):
            live.write_shard("scalars", flat_run_columns(a, a + 100))
            assert wait_for(
                lambda a=a: (w.snapshot().runs.get("live") or None) and w.snapshot().runs["live"].step == a + 99, 5
            )
        snap = w.snapshot()
        assert snap.runs["done"] is first.runs["done"]  # unchanged runs keep their view object
        assert any("live" in c and "done" not in c for c in updates)
    assert not w.alive  # close() joined the thread


def test_polling_follows_and_rarely_rechecks_finished_runs(tmp_path, monkeypatch):
    sweep = tmp_path / "sw"
    for k in range(4):
        write_flat_run(sweep, f"fin{k}", n=300)
    live = start_run(sweep, "live")
    calls: dict[str, int] = {}
    orig = RunState.signature

    def counting(self):
        calls[self.run_id] = calls.get(self.run_id, 0) + 1
        return orig(self)

    monkeypatch.setattr(RunState, "signature", counting)
    w = SweepWatcher(sweep, poll=True, interval=0.02, finished_every=20)
    with w:
        assert w.wait_ready(10) and w.mode == "poll"
        live.write_shard("scalars", flat_run_columns(1, 101))
        assert wait_for(lambda: "live" in w.snapshot().runs and w.snapshot().runs["live"].step == 100, 5)
        live.write_shard("scalars", flat_run_columns(101, 201))
        assert wait_for(lambda: w.snapshot().runs["live"].step == 200, 5)
        wait_for(lambda: calls.get("live", 0) >= 60, 5)
    assert calls["live"] >= 60
    for k in range(4):  # finished runs: about one stat per `finished_every` polls
        assert calls[f"fin{k}"] <= calls["live"] / 20 + 2


def test_network_filesystems_are_detected(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\nserver:/export /scratch nfs4 rw 0 0\nfs@tcp:/lus /lus\\040space lustre rw 0 0\n"
    )
    assert is_network_fs("/scratch/me/sweep", str(mounts))
    assert mount_of("/scratch/me", str(mounts)) == ("/scratch", "nfs4")
    assert is_network_fs("/lus space/x", str(mounts))
    assert not is_network_fs("/home/me", str(mounts))
    assert not is_network_fs("/scratchy", str(mounts))


def test_bad_data_warns_and_other_runs_carry_on(tmp_path):
    sweep = tmp_path / "sw"
    for rid in ("good", "corrupt", "nan", "doomed", "unreadable"):
        write_flat_run(sweep, rid, n=400, shard=200, state=None)
    warnings: list[str] = []
    w = SweepWatcher(sweep, poll=False, retry_every=0.1, on_error=lambda msg, exc: warnings.append(msg))
    with w:
        assert w.wait_ready(10)
        # a corrupt shard (garbage bytes), NaN metrics, a file that cannot be read at all
        bad = sweep / "corrupt" / "shards" / "scalars-000000600.arrow"
        bad.write_bytes(b"not an arrow file")
        nan = flat_run_columns(401, 601)
        nan["train_loss"][:] = np.nan
        nan["grad_norm"][:] = np.nan
        (sweep / "nan" / "shards" / "scalars-000000600.arrow").write_bytes(columns_to_ipc(nan))
        (sweep / "unreadable" / "shards" / "scalars-000000600.arrow").mkdir()  # open() fails even for root
        shutil.rmtree(sweep / "doomed")
        assert wait_for(lambda: "doomed" not in w.snapshot().runs and w.snapshot().runs["nan"].step == 600, 5)
        assert wait_for(lambda: w.snapshot().runs["corrupt"].failed_files == 1, 5)
        snap = w.snapshot()
        assert snap.runs["good"].step == 400 and snap.runs["corrupt"].step == 400
        assert snap.runs["nan"].phase == "diverged"
        assert snap.runs["unreadable"].failed_files == 1
        assert any("corrupt" in m and "will retry" in m for m in warnings)
        assert any("unreadable" in m for m in warnings)
        assert any("doomed" in m and "disappeared" in m for m in warnings)
        # The corrupt shard is tried again later: once fixed, it is read.
        tmp = bad.with_name("fixed.tmp")
        tmp.write_bytes(columns_to_ipc(flat_run_columns(401, 601)))
        os.replace(tmp, bad)
        assert wait_for(lambda: w.snapshot().runs["corrupt"].step == 600, 5)
        assert w.snapshot().runs["corrupt"].failed_files == 0
        assert w.alive
        assert sum("corrupt" in m for m in warnings) == 1  # one warning, not one per retry


def test_snapshot_views_never_change(tmp_path):
    sweep = tmp_path / "sw"
    w0 = write_flat_run(sweep, "r", n=300, state=None)
    w = SweepWatcher(sweep, subscribers=[AlarmSubscriber(AlertEngine(load_rules()))])
    old = w.cycle().runs["r"]
    kept = {k: v.copy() for k, v in old.scalars.items()}
    with pytest.raises(ValueError):
        old.scalars["grad_norm"][0] = 5.0
    with pytest.raises(TypeError):
        old.signals["gai_z"] = 1.0
    w0.write_shard("scalars", flat_run_columns(301, 1301))
    new = w.cycle(full=True).runs["r"]
    assert new.step == 1300 and new is not old and new.version > old.version
    for k, v in kept.items():
        np.testing.assert_array_equal(old.scalars[k], v)


def test_one_step_spike_fires_on_the_raw_point(tmp_path):
    sweep = tmp_path / "sw"
    write_flat_run(sweep, "r", n=2000, shard=500, spike_at=1234)
    rules = {
        "gai_spike": Rule("gai_spike", "gai_z", ">", 3.5, for_steps=0, when="memorized"),
        "grad_jump": Rule("grad_jump", "grad_norm", ">", 2.0),
    }
    events = []
    w = SweepWatcher(sweep, subscribers=[AlarmSubscriber(AlertEngine(rules), on_events=events.extend)])
    w.cycle()
    fired = sorted((e.rule, e.step) for e in events if e.state == "firing")
    assert ("grad_jump", 1234) in fired
    assert ("gai_spike", 1234) in fired
    resolved = {(e.rule, e.step) for e in events if e.state == "resolved"}
    assert ("grad_jump", 1235) in resolved


def test_engine_state_survives_a_restart_without_repeats(small_sweep):
    e1 = AlertEngine(load_rules())
    ev1 = []
    SweepWatcher(small_sweep, subscribers=[AlarmSubscriber(e1, on_events=ev1.extend)]).cycle()
    assert ev1
    e2 = AlertEngine(load_rules())
    e2.load_dict(e1.to_dict())
    ev2 = []
    SweepWatcher(small_sweep, subscribers=[AlarmSubscriber(e2, on_events=ev2.extend)]).cycle()
    assert [e for e in ev2 if e.rule != "stalled"] == []


def test_close_joins_even_when_idle(tmp_path):
    sweep = tmp_path / "sw"
    sweep.mkdir()
    w = SweepWatcher(sweep, poll=True, interval=30.0).start()
    assert w.wait_ready(5)
    before = threading.active_count()
    w.close()
    assert not w.alive and threading.active_count() <= before


def test_older_shards_arriving_later_are_evaluated_once(tmp_path):
    """A mirror of a remote sweep fetches the newest shard first and backfills the
    older ones: every alarm of the whole history comes out, each once, as when all
    shards were there from the start."""
    spikes = (300, 1234, 1800)

    def cols(a, b):
        c = flat_run_columns(a, b)
        c["grad_norm"][np.isin(c["step"], spikes)] = 3.0
        return c

    bounds = [(1, 501), (501, 1001), (1001, 1501), (1501, 2001)]
    rules = [Rule("grad_jump", "grad_norm", ">", 2.0), Rule("mem", "memorized", ">=", 1, once=True)]

    whole = tmp_path / "whole"
    w = start_run(whole, "r")
    for a, b in bounds:
        w.write_shard("scalars", cols(a, b))
    w.close("completed")
    ref = []
    SweepWatcher(whole, subscribers=[AlarmSubscriber(AlertEngine(rules), on_events=ref.extend)]).cycle()
    want = sorted((e.rule, e.state, e.step) for e in ref if e.rule == "grad_jump")
    assert [s for r, st, s in want if st == "firing"] == list(spikes)

    late = tmp_path / "late"
    w = start_run(late, "r")
    got = []
    engine = AlertEngine(rules)
    watcher = SweepWatcher(late, subscribers=[AlarmSubscriber(engine, on_events=got.extend)])
    for a, b in reversed(bounds):  # newest first, as the mirror fetches
        w.write_shard("scalars", cols(a, b))
        watcher.cycle()
    w.close("completed")
    watcher.cycle()
    jumps = sorted((e.rule, e.state, e.step) for e in got if e.rule == "grad_jump")
    assert jumps == want  # each once: nothing repeated, nothing older lost
    assert len({e.id for e in got}) == len(got)
    # memorized: first seen at the newest shard's first row, then found at its true step
    assert ("mem", 50) in {(e.rule, e.step) for e in got}
    assert [e.state for e in engine.active("r")] == []  # the state is the whole history's
