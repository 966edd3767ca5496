"""Follow a sweep directory live and keep scores, phases and alarms per run.

Headless: numpy, pyarrow and watchdog only, never textual or rich. One
watcher serves both the alert daemon (``grokwatch alerts``) and the dashboard.

Use
---
::

    from grokwatch.watch import SweepWatcher
    from grokwatch.alerts import AlertEngine, load_rules

    w = SweepWatcher("/scratch/me/grok/sweep1", engine=AlertEngine(load_rules()),
                     on_update=lambda snap, changed: app.call_from_thread(...))
    w.start()            # a plain thread: backfill, then follow
    w.wait_ready(30)     # backfill done
    snap = w.snapshot()  # immutable; take it once per redraw
    ...
    w.close()            # stops and joins the thread and the inotify observer

Callbacks run in the watcher thread: keep them short (post a message, set a
flag). ``on_update(snapshot, changed)`` follows every published snapshot;
``on_alarms(events)`` every cycle that fed the engine; ``on_error(message,
exc)`` every warning (an unreadable shard, a vanished run, a failed cycle).
``mode`` is ``"inotify"`` or ``"poll"`` (network filesystems from
/proc/self/mounts, or ``poll=True``).

The snapshot (what a dashboard reads)
-------------------------------------
``SweepSnapshot`` (frozen): ``sweep``, ``path``, ``version`` (grows per
publication), ``time``, ``mode``, ``ready`` (backfill complete), ``runs``
(read-only mapping run id -> ``RunView``, sorted by id), ``changed`` and
``removed`` (run ids since the previous snapshot), ``warnings`` (recent,
newest last), ``planned`` (run id -> ``PlannedRun``: every run the sweep
manifest ``sweep.json`` declares, started or not; ``submitted`` when it
records a SLURM submission); ``not_started``, ``total`` (runs on disk plus
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
                   signal, since_step, fired_step, value, threshold, comparison)
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

from .fs import NETWORK_FS, is_network_fs, mount_of
from .runstate import SCALAR_COLUMNS, Batch, RunState
from .scores import PhaseTracker, ScoreConfig, gai_function
from .snapshot import EMPTY_SNAPSHOT, RunView, SweepSnapshot
from .watcher import SweepWatcher

__all__ = [
    "EMPTY_SNAPSHOT",
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
