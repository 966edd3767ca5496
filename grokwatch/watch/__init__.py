"""Follow a sweep directory live and keep scores, phases and alarms per run.

Headless: numpy, pyarrow and watchdog only, never textual or rich. One
watcher serves both the alert daemon (``grokwatch alerts``) and the dashboard.

Use
---
::

    from grokwatch.watch import SweepWatcher
    from grokwatch.alerts import AlarmSubscriber, AlertEngine, load_rules

    alarms = AlarmSubscriber(AlertEngine(load_rules()), on_events=print)
    w = SweepWatcher("/scratch/me/grok/sweep1", subscribers=[alarms],
                     on_update=lambda snap, changed: app.call_from_thread(...))
    w.start()            # a plain thread: backfill, then follow
    w.wait_ready(30)     # backfill done
    snap = w.snapshot()  # immutable; take it once per redraw
    ...
    w.close()            # stops and joins the thread and the inotify observer

The watcher publishes; what acts on new points subscribes
(:mod:`grokwatch.watch.subscribe`): the alarm engine
(:class:`grokwatch.alerts.AlarmSubscriber`, whose ``on_events`` follows every
cycle that fed it), the onset predictor
(:class:`grokwatch.predict.subscriber.PredictorSubscriber`). SLURM's state comes from a
queue poller plugged in as ``queue=`` (:class:`grokwatch.watch.queue.SlurmQueue`).

Callbacks run in the watcher thread: keep them short (post a message, set a
flag). ``on_update(snapshot, changed)`` follows every published snapshot;
``on_error(message, exc)`` every warning (an unreadable shard, a vanished run, a failed cycle).
``mode`` is ``"inotify"`` or ``"poll"`` (network filesystems from
/proc/self/mounts, or ``poll=True``).

The snapshot (what a dashboard reads)
-------------------------------------
``SweepSnapshot`` (frozen): ``sweep``, ``path``, ``version`` (grows per
publication), ``time``, ``mode``, ``ready`` (backfill complete), ``runs``
(read-only mapping run id -> ``RunView``, sorted by id), ``changed`` and
``removed`` (run ids since the previous snapshot), ``warnings`` (recent,
newest last), ``planned`` (run id -> ``PlannedRun``: every run the sweep
manifest ``sweep.json`` declares, started or not, with its ``state`` word;
``submitted`` when it records a SLURM submission); ``not_started``, ``total`` (runs on disk plus
planned ones not started), ``phase_counts()``, ``active_alarms()``.

``RunView`` (frozen; the same object is reused while a run does not change):

=================  ==============================================================
run_id, path       the run directory
seed, weight_decay from run.json (None if absent)
step, total_steps  newest step read; total from run.json; ``progress`` in [0, 1]
phase              learning, memorized, grokking, grokked, anti-grokking,
                   diverged, or stalled (layered over ``run_phase``)
t_mem, t_grok      DESIGN section 4 (also t_anti, t_diverged); None until reached
train_acc, val_acc latest finite values (also train_loss, val_loss)
signals            latest grad_norm, weight_norm, gai_z, h0_entropy,
                   h0_entropy_z, htsr_alpha_min, htsr_traps (None if absent)
alarms             ``ActiveAlarm`` tuple (rule, state pending/firing, severity,
                   signal, since_step, fired_step, value, threshold, comparison),
                   from the alarm subscriber; () without one
prediction         ``OnsetPrediction`` (step, lo, hi, method, made_at): the
                   newest predicted t_grok, from the predictor subscriber
slurm_state        SLURM's state of the run's task (a queue poller plugged in)
state              the state column's word: SLURM task + status.json + heartbeat
status             status.json state (running, completed, failed, preempted,
                   diverged); ``stalled``, ``heartbeat_unix``, ``heartbeat_age``
restarts, message  from status.json; ``failed_files``: shards not readable yet
version            grows when this run's data, status or alarms changed
config             run.json
scalars, probes    read-only column arrays (zero-copy views), sorted by step
scores             gai_z (rows of scalars); h0_entropy_z, htsr_alpha_min,
                   htsr_traps (rows of probes)
=================  ==============================================================

Arrays in a view never change after publication (the buffers only grow past
them), so a reader may keep a view as long as it likes.
"""

# Names load on first use (PEP 562): the alarm engine takes ActiveAlarm from
# here without loading the watcher and pyarrow.
_LAZY = {
    "NETWORK_FS": "fs",
    "is_network_fs": "fs",
    "mount_of": "fs",
    "SCALAR_COLUMNS": "runstate",
    "Batch": "runstate",
    "RunState": "runstate",
    "PhaseTracker": "scores",
    "ScoreConfig": "scores",
    "gai_function": "scores",
    "EMPTY_SNAPSHOT": "snapshot",
    "ActiveAlarm": "snapshot",
    "OnsetPrediction": "snapshot",
    "PlannedRun": "snapshot",
    "RunView": "snapshot",
    "SweepSnapshot": "snapshot",
    "QueuePoller": "subscribe",
    "Subscriber": "subscribe",
    "SweepWatcher": "watcher",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EMPTY_SNAPSHOT",
    "ActiveAlarm",
    "OnsetPrediction",
    "PlannedRun",
    "QueuePoller",
    "Subscriber",
    "NETWORK_FS",
    "SCALAR_COLUMNS",
    "Batch",
    "PhaseTracker",
    "RunState",
    "RunView",
    "ScoreConfig",
    "SweepSnapshot",
    "SweepWatcher",
    "gai_function",
    "is_network_fs",
    "mount_of",
]
