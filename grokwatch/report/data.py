"""Everything the report reads of a sweep, read once.

Each run is read through the watcher's own :class:`grokwatch.watch.RunState`
(the same readers and the same scores -- GAI z, robust z of H0 entropy, HTSR
alpha min and traps -- that the alarm daemon feeds its rules), so onsets
computed here are the ones the daemon would have raised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grokwatch.predict import RunSeries
from grokwatch.runs.phases import PhaseInfo, Thresholds, phase_of
from grokwatch.store import RunConfig, RunStatus

log = logging.getLogger("grokwatch.report")

# Final outcome of a run, for scoring (see ``outcome``).
GROKKED, ANTI, NEVER, DIVERGED, CENSORED = "grokked", "anti-grokked", "never", "diverged", "censored"


@dataclass(eq=False)
class RunData:
    run_id: str
    config: RunConfig
    status: RunStatus
    scalars: Mapping[str, np.ndarray]
    probes: Mapping[str, np.ndarray]
    batches: list = field(default_factory=list)  # alarm-engine input (grokwatch.watch.Batch)
    info: PhaseInfo | None = None
    series: RunSeries | None = None

    @property
    def weight_decay(self) -> float | None:
        return self.series.weight_decay if self.series else None

    @property
    def seed(self) -> int | None:
        return self.config.seed

    @property
    def last_step(self) -> int | None:
        s = self.scalars.get("step")
        return int(s[-1]) if s is not None and len(s) else None

    @property
    def state(self) -> str | None:
        return self.status.state

    @property
    def outcome(self) -> str:
        """The run's phase (:func:`grokwatch.runs.phases.phase_of`, the one definition
        the watcher, the alarms, ``sweep status`` and the dashboard use) as an
        outcome: diverged (a non-finite loss, whether or not it had grokked
        before) / anti-grokked (phase anti-grokking: grokked, then val acc fell
        and stayed down) / grokked / never (over without grokking) / censored
        (still running, stalled, failed or preempted: outcome unknown)."""
        phase = self.info.phase if self.info is not None else None
        if phase == "diverged" or self.state == "diverged":
            return DIVERGED
        if phase == "anti-grokking":
            return ANTI
        if phase == "grokked":
            return GROKKED
        over = self.state == "completed"
        total = self.series.total_steps if self.series else None
        if total is not None and self.last_step is not None and self.last_step >= total:
            over = True
        return NEVER if over else CENSORED

    @property
    def over(self) -> bool:
        """The run's data is final (it cannot grok or anti-grok any more)."""
        total = self.series.total_steps if self.series else None
        return (
            self.state in ("completed", "diverged")
            or self.outcome == DIVERGED
            or (total is not None and self.last_step is not None and self.last_step >= total)
        )


def load_runs(sweep_dir: Path | str, thresholds: Thresholds = Thresholds()) -> dict[str, RunData]:
    from grokwatch.store import list_runs
    from grokwatch.watch import RunState, ScoreConfig

    cfg = ScoreConfig(phases=thresholds)
    out = {}
    for d in list_runs(sweep_dir):
        rs = RunState(d, cfg)
        batches = rs.refresh()
        config = rs.config
        if config is None or set(config.to_json()) <= {"contract_version"}:  # a stray directory: nothing to score it by
            why = rs.scalars.contract_errors.get("run.json", "its run.json is empty")
            log.warning("skipping %s: %s", d, why.replace(str(d / "run.json"), "run.json"))
            continue
        sc = {k: np.asarray(v) for k, v in rs.scalars.scalars.items()}
        pr = {k: np.asarray(v) for k, v in rs.probes.probes.items()}
        status = rs.status or RunStatus()
        series = RunSeries.from_columns(rs.run_id, sc, config, status.state, thresholds)
        info = phase_of(sc, thresholds) if len(sc.get("step", ())) else PhaseInfo("learning", None, None, None, None)
        out[rs.run_id] = RunData(rs.run_id, config, status, sc, pr, batches, info, series)
    return out
