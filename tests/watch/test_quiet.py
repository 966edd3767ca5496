"""The quiet window: background threads step aside while a key press repaints."""

from __future__ import annotations

import threading
import time

from grokwatch.sim.simulate import simulate_sweep
from grokwatch.watch import SweepWatcher
from grokwatch.watch.quiet import QuietWindow


def test_pause_returns_at_once_without_a_window():
    q = QuietWindow()
    t0 = time.monotonic()
    assert q.pause() == 0.0 and not q.held
    assert time.monotonic() - t0 < 0.05 and q.pauses == 0


def test_pause_waits_for_the_window_but_at_most_max_pause():
    q = QuietWindow(max_pause=0.2, grace=0.0)
    q.hold(0.1)
    assert q.held
    slept = q.pause()
    assert 0.07 <= slept < 0.19, slept
    assert not q.held and q.pauses == 1
    q.hold(5.0)  # a window longer than max_pause: the thread goes on after max_pause
    slept = q.pause()
    assert 0.17 <= slept < 1.0, slept


def test_a_thread_that_just_paused_is_not_starved_by_key_repeat():
    q = QuietWindow(max_pause=0.1, grace=0.3)
    q.hold(10.0)
    assert q.pause() > 0.05
    assert q.pause() == 0.0  # within its grace period: runs on while the window is still held
    slept = []
    t = threading.Thread(target=lambda: slept.append(q.pause()))  # another thread has no grace yet
    t.start()
    t.join(5)
    assert slept and slept[0] > 0.05


def test_release_wakes_a_paused_thread_early():
    q = QuietWindow(max_pause=2.0)
    q.hold(2.0)
    threading.Timer(0.1, q.release).start()
    slept = q.pause()
    assert 0.05 <= slept < 1.0, slept


def test_the_watcher_pauses_before_each_run_it_reads(tmp_path):
    sweep = simulate_sweep(tmp_path, "q", runs=4, steps=300, seed=1)
    calls = []
    w = SweepWatcher(sweep, poll=True, pause=lambda: calls.append(threading.current_thread().name))
    snap = w.cycle()
    assert len(snap.runs) == 4
    assert len(calls) >= 4  # one per run read (plus one before predictions when a predictor is set)
