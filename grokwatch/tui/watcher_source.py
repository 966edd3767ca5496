"""The dashboard's one source: the sweep watcher (:mod:`grokwatch.watch`).

One :class:`~grokwatch.watch.SweepWatcher` (a plain thread) follows the sweep;
its ``on_update`` callback only tells the dashboard's feed that something
changed. The alarms come from one place, the same as ``grokwatch alerts``'s:

- no alarm daemon on the sweep: an in-process
  :class:`~grokwatch.alerts.AlertEngine` on the rules
  :func:`grokwatch.alerts.load_rules` gives for ``rules`` (the defaults,
  merged with the file of ``grokwatch tui --rules FILE``);
- a ``grokwatch alerts`` running on the sweep (its lock is live): no engine
  here; the alarms are the daemon's journal, ``<sweep>/.grokwatch/alarms.jsonl``
  (:class:`~grokwatch.tui.journal.DaemonJournal`), and the header says so.

``model()`` maps the watcher's immutable snapshot to the view-model:

==========================  ===================================================
RunView                     RunRow
==========================  ===================================================
run_id, seed, weight_decay  same (seed / wd from the run id when run.json lacks them)
step, total_steps           same (step 0 before the first shard)
phase                       same ("stalled" layered by the watcher), plus
                            "failed" / "diverged" when status.json says so
state                       state (:func:`grokwatch.watch.queue.run_state`:
                            the SLURM task, status.json and the heartbeat)
snapshot.planned            a row per planned run not started yet: phase
                            "waiting", its state planned / submitted / pending ...
train_acc, val_acc          same
scalars step/val_acc        val_spark (10 values, decimated; cached per version)
signals gai_z               gai_z
signals htsr_alpha_min      alpha_min
signals h0_entropy_z        h0_entropy_z
(the loaded rules)          over: which of those three are past the threshold
                            of a rule on their signal (the table's red)
alarms (firing)             alarms (rule names; the journal's, with a daemon)
t_mem, t_grok               same
restarts                    restarts; restart_steps from status.json attempts
prediction                  prediction (t_grok, interval, method)
slurm_state                 slurm_state
==========================  ===================================================

Rows are rebuilt only for runs whose ``RunView`` object changed (the watcher
reuses the object while a run does not change). The alarm feed is the
engine's events (its subscriber's ``on_events``), or the daemon's journal,
newest first.

The wiring is here: the watcher publishes; an in-process onset predictor
(:class:`grokwatch.predict.subscriber.PredictorSubscriber`: resumed from the
sweep's prediction log, not writing to it -- the alarm daemon owns the log --
and predicting each run's newest due step) and the alarm engine
(:class:`grokwatch.alerts.AlarmSubscriber`) subscribe; SLURM's queue
(:class:`grokwatch.watch.queue.SlurmQueue`) is plugged in as the watcher's
queue poller. Predictions and SLURM states reach the table through the
snapshot, as they reach ``grokwatch alerts`` and ``grokwatch sweep status``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from grokwatch.runs.defaults import STALL_TIMEOUT

from ..alerts import AlarmSubscriber, AlertEngine, Rule, load_rules
from ..predict import SweepPredictor, read_predictions
from ..predict.subscriber import PredictorSubscriber
from ..store import ContractError, RunStatus
from ..watch import ScoreConfig, SweepWatcher
from ..watch.queue import SlurmQueue
from ..watch.snapshot import shown_phase
from .curves import RunCurves, build_series
from .journal import DaemonJournal
from .model import AlarmRow, DetailPlot, RunRow, SweepModel, fin, newest_first, restart_steps
from .series import sparkline_values

SPARK_WIDTH = 10  # values in a row's val_acc sparkline
# RunRow fields the table highlights, and the signal whose rules judge them.
HIGHLIGHTED = {"gai_z": "gai_z", "alpha_min": "htsr_alpha_min", "h0_entropy_z": "h0_entropy_z"}


class WatcherSource:
    def __init__(
        self,
        sweep_dir: Path | str,
        *,
        stall_timeout: float = STALL_TIMEOUT,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        rules: str | os.PathLike | None = None,
        poll: bool | None = None,
        pause: Callable[[], object] | None = None,
    ):
        """``rules``: a rules file merged over the defaults, as ``grokwatch alerts
        --rules`` reads it (a bad one raises :class:`grokwatch.alerts.RuleError`)."""
        self.sweep_dir = Path(sweep_dir)
        self.clock = clock
        self.stall_timeout = stall_timeout
        self.rules_path = Path(rules) if rules is not None else None
        self.rules = load_rules(self.rules_path)
        # A live `grokwatch alerts` on this sweep: show its journal, run no engine of our own.
        self.daemon = DaemonJournal(self.sweep_dir, every=interval)
        self.engine = None if self.daemon.following else AlertEngine(self.rules)
        # GAI spikes in the detail view: where the gai_spike rule's condition holds (none without the rule).
        self.gai_spike: Rule | None = self.rules.get("gai_spike")
        # The table's red: a value past the threshold of an enabled rule on its signal (the rule's
        # comparison, threshold and `absolute`; whether it fires -- for_steps, when -- is the alarm column's).
        self.highlight: dict[str, list[Rule]] = {
            field: [r for r in self.rules.values() if r.signal == sig] for field, sig in HIGHLIGHTED.items()
        }
        alpha = self.rules.get("htsr_alpha_below_2")
        self.alpha_line = alpha.threshold if alpha is not None else None  # the detail view's alpha line
        # The watcher publishes; the predictor (first: its onset signal feeds the
        # engine in the same cycle) and the engine subscribe; SLURM's queue is plugged in.
        alarms = AlarmSubscriber(self.engine, on_events=self._on_alarms) if self.engine is not None else None
        self.predict = PredictorSubscriber(
            SweepPredictor(resume=read_predictions(self.sweep_dir), sweep_dir=self.sweep_dir),
            feed=alarms,
            backfill=False,
        )
        self.slurm = SlurmQueue(self.sweep_dir)
        self.watcher = SweepWatcher(
            self.sweep_dir,
            subscribers=[self.predict] + ([alarms] if alarms is not None else []),
            queue=self.slurm,
            config=ScoreConfig(stall_timeout=stall_timeout),
            poll=poll,
            interval=interval,
            on_update=self._on_update,
            on_error=self._on_error,
            pause=pause,
        )
        self.pause = pause
        self._lock = threading.Lock()
        self._events: list[AlarmRow] = []
        self._alarms: tuple[AlarmRow, ...] = ()
        self._rows: dict[str, tuple[object, RunRow]] = {}  # run id -> (RunView, row)
        self._on_change: Callable[[], None] | None = None
        self._updated: float | None = None
        self._started = False
        self._closed = False
        self.error: BaseException | None = None
        self._prediction_error: str | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._started = True
        self.daemon.start(on_change)
        self.watcher.start()  # and its queue poller

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.watcher.close()  # and its queue poller
        self.daemon.close()

    def refresh(self) -> bool:
        """One watcher cycle in this thread (the read-once mode and tests)."""
        before = self.watcher.snapshot().version
        self.watcher.cycle()  # asks the queue poller first
        journal = self.daemon.poll()
        return self.watcher.snapshot().version != before or journal

    def request_refresh(self) -> None:
        self.watcher.request_refresh()

    # -- callbacks (watcher thread) ------------------------------------------------------
    def _on_update(self, snapshot, changed) -> None:
        self._updated = self.clock()
        if self._on_change is not None:
            self._on_change()

    def _on_error(self, message: str, exc: BaseException | None) -> None:
        if message.startswith(f"{self.predict.name} failed"):
            self._prediction_error = message  # the header shows it

    def _on_alarms(self, events: list) -> None:
        if not events:
            return
        with self._lock:
            for e in events:
                self._events.append(
                    AlarmRow(
                        run_id=e.run,
                        rule=e.rule,
                        step=int(e.step),
                        value=fin(e.value),
                        threshold=fin(e.threshold),
                        severity=e.severity,
                        state=e.state,
                        time=e.time,
                        seq=len(self._events),
                    )
                )
            self._alarms = newest_first(self._events)

    # -- the view-model (feed thread or a worker) ------------------------------------------
    def _row(self, view) -> RunRow:
        sc = view.scalars
        steps = sc.get("step")
        spark: tuple[float, ...] = ()
        if steps is not None and len(steps) and "val_acc" in sc:
            spark = sparkline_values(steps, sc["val_acc"], SPARK_WIDTH)
        sig = view.signals
        values = {
            "gai_z": fin(sig.get("gai_z")),
            "alpha_min": fin(sig.get("htsr_alpha_min")),
            "h0_entropy_z": fin(sig.get("h0_entropy_z")),
        }
        over = tuple(
            f
            for f, v in values.items()
            if v is not None and any(bool(r.test(np.array([v]))[0]) for r in self.highlight[f])
        )
        phase = shown_phase(view)
        restarts = int(view.restarts or 0)
        rsteps: tuple[int, ...] = ()
        if restarts:
            try:
                rsteps = restart_steps(RunStatus.read(view.path))
            except ContractError:
                rsteps = ()
        return RunRow(
            run_id=view.run_id,
            seed=view.seed,
            weight_decay=view.weight_decay,
            step=int(view.step or 0),
            total_steps=view.total_steps,
            phase=phase,
            state=view.state or "unknown",
            train_acc=fin(view.train_acc),
            val_acc=fin(view.val_acc),
            val_spark=spark,
            gai_z=values["gai_z"],
            alpha_min=values["alpha_min"],
            h0_entropy_z=values["h0_entropy_z"],
            over=over,
            alarms=tuple(a.rule for a in view.alarms if a.state == "firing"),
            t_mem=view.t_mem,
            t_grok=view.t_grok,
            restarts=restarts,
            restart_steps=rsteps,
            slurm_state=view.slurm_state,
            prediction=view.prediction,
        )

    def model(self) -> SweepModel:
        snap = self.watcher.snapshot()
        rows = []
        cache = {}
        built = 0
        for rid, view in snap.runs.items():
            hit = self._rows.get(rid)
            if hit is not None and hit[0] is view:
                row = hit[1]
            else:
                if self.pause is not None and built % 16 == 15:
                    self.pause()  # a key press waiting for its repaint goes first
                row = self._row(view)
                built += 1
            cache[rid] = (view, row)
            rows.append(row)
        self._rows = cache
        if self.daemon.following:  # the alarm daemon's journal says which rules fire
            active = self.daemon.active()
            rows = [
                r if r.alarms == active.get(r.run_id, ()) else replace(r, alarms=active.get(r.run_id, ())) for r in rows
            ]
        # Runs the manifest plans that have not started: every run of the sweep shows.
        rows += planned_rows(snap)
        if self.daemon.following:
            alarms = self.daemon.alarms()
        else:
            with self._lock:
                alarms = self._alarms
        errors = tuple(e for e in (self._prediction_error, self.slurm.last_error, self.daemon.error) if e)
        if self._started and not self._closed and not self.watcher.alive:
            errors += ("the watcher thread stopped",)
        return SweepModel(
            sweep=self.sweep_dir.name,
            path=str(self.sweep_dir),
            rows=tuple(rows),
            alarms=alarms,
            generation=snap.version,
            updated=self._updated if self._updated is not None else (self.clock() if snap.version else None),
            errors=errors,
            alarm_source=self.alarm_source,
        )

    @property
    def alarm_source(self) -> str | None:
        """Where the alarms come from, when not from the built-in rules alone."""
        if self.daemon.following:
            return self.daemon.note
        return f"rules: {self.rules_path.name}" if self.rules_path is not None else None

    def series(self, run_ids: Sequence[str], smoothing: float = 0.0) -> DetailPlot:
        snap = self.watcher.snapshot()
        model_rows = {rid: row for rid, (view, row) in self._rows.items()}
        if self.daemon.following:
            events = list(self.daemon.alarms())
        else:
            with self._lock:
                events = list(self._events)
        data = []
        for rid in run_ids:
            view = snap.runs.get(rid)
            if view is None:
                continue
            row = model_rows.get(rid) or self._row(view)
            spikes = np.zeros(0)
            z = view.scores.get("gai_z")
            steps = view.scalars.get("step")
            if self.gai_spike is not None and z is not None and steps is not None and len(z) == len(steps):
                spikes = np.asarray(steps[self.gai_spike.test(z)], dtype=np.float64)
            data.append(
                RunCurves(
                    row,
                    view.scalars,
                    view.probes,
                    gai_spikes=spikes,
                    alarms=[e for e in events if e.run_id == rid and e.state == "firing"],
                )
            )
        return build_series(data, smoothing, snap.version, alpha_line=self.alpha_line)


def planned_rows(snap) -> list[RunRow]:
    """Rows for the runs the sweep manifest plans that have no directory yet
    (``snap.planned``, with the state words the watcher joined in)."""
    return [
        RunRow(
            run_id=rid,
            seed=p.seed,
            weight_decay=p.weight_decay,
            step=0,
            total_steps=p.total_steps,
            phase="waiting",
            state=p.state or "planned",
            slurm_state=p.slurm_state,
        )
        for rid, p in snap.planned.items()
        if rid not in snap.runs
    ]
