"""What the predictors read of a run: a few scalar columns, its config, its events.

A :class:`RunSeries` holds *all* rows read so far; every predictor asks for
what was known at a step ``t`` (``events_at(t)``, ``upto(t)``) and never
reads a row past it. Events are first occurrences (t_mem, t_grok,
divergence), so computing them once on all rows and dropping those after
``t`` gives exactly what :func:`grokwatch.runs.phases.phase_of` says of the rows
up to ``t`` (tests check this against truncated data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.runs.phases import Thresholds, phase_of
from grokwatch.store import RunConfig

COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")
FINAL_STATES = ("completed", "diverged")  # a run in one of these is over: no grokking to come


@dataclass(frozen=True)
class Events:
    """Lifecycle steps known at some step (None: not reached by then)."""

    t_mem: int | None
    t_grok: int | None
    t_diverged: int | None


@dataclass(eq=False)
class RunSeries:
    """Scalar columns of one run (sorted by step, one row per step) and its config.

    ``state`` is the run's status.json state (running, completed, ...),
    ``last_step`` the newest step read. Float columns are kept as given
    (views); a missing column is all NaN.
    """

    run_id: str
    steps: np.ndarray
    cols: Mapping[str, np.ndarray]
    weight_decay: float | None = None
    total_steps: int | None = None
    state: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    preset: str | None = None  # run.json "preset" (the trainer's), for the shipped priors
    seed: int | None = None  # run.json "seed": with preset and weight decay, a run's twin key
    lr: float | None = None  # run.json "lr": the plateau scales as 1 / (lr x weight decay)
    _events: Events | None = field(default=None, repr=False)
    _wrows: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def from_columns(
        cls,
        run_id: str,
        scalars: Mapping[str, np.ndarray],
        config: RunConfig | Mapping[str, Any] | None = None,
        state: str | None = None,
        thresholds: Thresholds = Thresholds(),
    ) -> RunSeries:
        steps = np.asarray(scalars.get("step", np.zeros(0)), dtype=np.int64)
        n = len(steps)
        cols = {}
        for k in COLUMNS:
            v = scalars.get(k)
            if v is None:
                cols[k] = np.full(n, np.nan)
            else:  # floats as they are (a watcher's float32 views: no copy); the math widens slices
                v = np.asarray(v)
                cols[k] = v if v.dtype.kind == "f" else v.astype(np.float64)
        cfg = RunConfig.coerce(config)  # a mapping is read as run.json
        return cls(
            run_id=run_id,
            steps=steps,
            cols=cols,
            weight_decay=cfg.weight_decay,
            total_steps=cfg.steps,
            state=state,
            thresholds=thresholds,
            preset=cfg.preset,
            seed=cfg.seed,
            lr=cfg.lr,
        )

    @classmethod
    def from_reader(cls, reader, thresholds: Thresholds = Thresholds()) -> RunSeries:
        """From a refreshed :class:`grokwatch.store.RunReader`."""
        return cls.from_columns(
            reader.run_id, reader.scalars, reader.config, reader.status.state if reader.status else None, thresholds
        )

    @classmethod
    def from_view(cls, view, thresholds: Thresholds = Thresholds()) -> RunSeries:
        """From a watcher :class:`grokwatch.watch.RunView` (zero-copy where the dtypes allow)."""
        return cls.from_columns(view.run_id, view.scalars, view.config, view.status, thresholds)

    # -- what is known at step t ------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last_step(self) -> int | None:
        return int(self.steps[-1]) if len(self.steps) else None

    def rows_upto(self, t: int) -> int:
        """Number of rows with step <= t."""
        return int(np.searchsorted(self.steps, t, side="right"))

    def upto(self, t: int) -> RunSeries:
        """The run as it was at step ``t`` (rows with step <= t; views, no copies)."""
        k = self.rows_upto(t)
        return RunSeries(
            self.run_id,
            self.steps[:k],
            {c: v[:k] for c, v in self.cols.items()},
            self.weight_decay,
            self.total_steps,
            self.state_at(t),
            self.thresholds,
            preset=self.preset,
            seed=self.seed,
            lr=self.lr,
        )

    def weight_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, weight_norm) of the rows with a finite positive weight norm, float64 (cached)."""
        if self._wrows is None:
            w = np.asarray(self.cols["weight_norm"], dtype=np.float64)
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(w) & (w > 0)
            self._wrows = (self.steps[ok], w[ok])
        return self._wrows

    def events(self) -> Events:
        """t_mem, t_grok, divergence of all rows read (first occurrences)."""
        if self._events is None:
            info = phase_of({"step": self.steps, **self.cols}, self.thresholds)
            self._events = Events(info.t_mem, info.t_grok, info.t_diverged)
        return self._events

    def events_at(self, t: int) -> Events:
        e = self.events()
        cut = lambda x: x if x is not None and x <= t else None  # noqa: E731
        return Events(cut(e.t_mem), cut(e.t_grok), cut(e.t_diverged))

    def state_at(self, t: int) -> str | None:
        """status.json's state as it was at step t: final states only once the data ended by t."""
        if self.state in FINAL_STATES + ("failed",):
            last = self.last_step
            return self.state if last is not None and last <= t else "running"
        return self.state

    def outcome_at(self, t: int) -> bool | None:
        """Known at step t: True (grokked by t), False (over by t without grokking), None (open)."""
        e = self.events_at(t)
        if e.t_grok is not None:
            return True
        if e.t_diverged is not None:
            return False
        last = self.last_step
        if last is None or last > t:
            return None
        if self.state in FINAL_STATES:
            return False
        if self.total_steps is not None and last >= self.total_steps:
            return False
        return None

    def is_over(self) -> bool:
        """Finished: grokked or diverged, or out of steps or in a final state."""
        last = self.last_step
        return last is not None and self.outcome_at(last) is not None

    def on_plateau_at(self, t: int) -> bool:
        """Memorized and not (yet) grokked or diverged at step t, with data reaching t."""
        last = self.last_step
        if last is None or last < t:
            return False
        e = self.events_at(t)
        return e.t_mem is not None and e.t_grok is None and e.t_diverged is None


class PriorRun(RunSeries):
    """A finished run of an earlier sweep: all of it is known at any step of this one.

    Lends itself as a calibrator and as a training example (its outcome at its
    end); never predicted for. Its id is prefixed ``prior:`` so it cannot
    collide with a run of the sweep."""

    @classmethod
    def of(cls, run: RunSeries) -> PriorRun:
        return cls(
            f"prior:{run.run_id}",
            run.steps,
            run.cols,
            run.weight_decay,
            run.total_steps,
            run.state,
            run.thresholds,
            preset=run.preset,
            seed=run.seed,
            lr=run.lr,
        )

    def events_at(self, t: int) -> Events:
        return self.events()

    def rows_upto(self, t: int) -> int:
        return len(self.steps)

    def outcome_at(self, t: int) -> bool | None:
        return RunSeries.outcome_at(self, self.last_step if self.last_step is not None else 0)

    def on_plateau_at(self, t: int) -> bool:
        return False


def load_sweep(sweep_dir: Path | str, thresholds: Thresholds = Thresholds()) -> dict[str, RunSeries]:
    """Every run of a sweep directory, read once (RunReader; scalars only)."""
    from grokwatch.store import RunReader, list_runs

    out = {}
    for d in list_runs(sweep_dir):
        r = RunReader(d, kinds=("scalars",), columns=COLUMNS)
        r.refresh()
        out[r.run_id] = RunSeries.from_reader(r, thresholds)
    return out
