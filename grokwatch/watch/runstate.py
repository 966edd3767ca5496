"""Per-run state held by the watcher: columns, phase, scores, heartbeat.

Only the watcher thread touches a :class:`RunState`; what other threads see
is the frozen :class:`~grokwatch.watch.snapshot.RunView` built from it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from grokwatch.runs.lifecycle import attempt_reach_from_shards, restarted_from_scratch
from grokwatch.store import RunConfig, RunStatus
from grokwatch.store.layout import SHARDS_DIR, STATUS_JSON

from .fastread import BatchReader
from .scores import (
    AlphaCrossing,
    GrowBuf,
    PhaseTracker,
    PlateauRise,
    ScoreConfig,
    gai_tail,
    htsr_summary,
    robust_z_tail,
    trainer_matrix_evals,
)
from .snapshot import RunView

# Lifecycle indicator of a resumed attempt that went back to the start.
SCRATCH_SIGNAL = "restarted_from_scratch"
SCRATCH_SETTLE_ROWS = 5  # rows of a new attempt after which its loss check is decided (lifecycle's window)

# Scalar columns the watcher keeps (to bound memory: a 90 x 100K sweep).
SCALAR_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "grad_norm", "weight_norm")
FINAL_STATES = frozenset({"completed", "failed", "diverged"})


@dataclass(frozen=True)
class Batch:
    """New points of one cadence for the alarm engine: steps and signals by name."""

    steps: np.ndarray
    signals: Mapping[str, np.ndarray]
    gates: Mapping[str, np.ndarray]  # lifecycle indicators at these steps, for rules' `when`
    repeat_last: bool = False  # re-test the engine's last evaluated step (a one-point indicator)
    rewound: bool = False  # the run's whole history again: older rows than before came (a late shard, a resume)


class RunState:
    def __init__(self, run_dir: Path, cfg: ScoreConfig):
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.cfg = cfg
        self.scalars = BatchReader(self.run_dir, kinds=("scalars",), columns=SCALAR_COLUMNS)
        self.probes = BatchReader(self.run_dir, kinds=("probes",))
        self.version = 0
        self.view: RunView | None = None
        # heartbeat, as seen from this host
        self._hb_remote: float | None = None
        self._hb_local: float | None = None
        self.stalled = False
        # polling bookkeeping
        self.poll_sig: tuple | None = None
        self.polls_skipped = 0
        self.reported_failures: set[str] = set()
        self._scratch_settled = 0  # newest attempt whose restart-from-scratch check is decided
        self._w_crit: float | None | bool = False  # False: not looked up yet
        self._reset_scalar_scores()
        self._reset_probe_scores()

    def _reset_scalar_scores(self) -> None:
        self.phase = PhaseTracker(self.cfg.phases)
        self.gai = GrowBuf()

    def _reset_probe_scores(self) -> None:
        self.h0z = GrowBuf()
        self.alpha_min = GrowBuf()
        self.alpha_cross = GrowBuf()
        self._crossing = AlphaCrossing(self.cfg)  # its n_evals fallback comes with run.json (_score_probes)
        self.h0_rise = GrowBuf()
        self._h0_rise = PlateauRise()
        self.defect_z = GrowBuf()
        self.traps = GrowBuf()

    def critical_norm(self) -> float | None:
        """The preset's critical weight norm (grokwatch.runs.presets), looked up once the config is read."""
        if self._w_crit is False:
            cfg = self.config
            if cfg is None:
                return None
            from grokwatch.runs.presets import critical_norm

            own = cfg.critical_weight_norm  # a run may name its own (grokwatch.integrations.track, the simulator)
            self._w_crit = own if own and own > 0 else critical_norm(cfg.preset, cfg.weight_decay)
        return self._w_crit

    # -- reading -----------------------------------------------------------------
    @property
    def status(self) -> RunStatus | None:
        return self.scalars.status

    @property
    def config(self) -> RunConfig | None:
        return self.scalars.config

    @property
    def state(self) -> str | None:
        st = self.status
        return st.state if st else None

    @property
    def failed_files(self) -> dict[str, int]:
        return {**self.scalars.failed_files, **self.probes.failed_files}

    def exists(self) -> bool:
        return os.path.isdir(self.run_dir)

    def signature(self) -> tuple | None:
        """Cheap change detector for polling: mtimes of shards/ and status.json."""
        sig: list[tuple[int, int, int] | None] = []
        for p in (self.run_dir / SHARDS_DIR, self.run_dir / STATUS_JSON):
            try:
                st = os.stat(p)
                sig.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                sig.append(None)
        return tuple(sig)

    def refresh(self, now: float | None = None) -> list[Batch]:
        """Read what is new; return the new points for the alarm engine."""
        now = time.time() if now is None else now
        failed_before = self.failed_files
        ds = self.scalars.refresh(status=True)
        dp = self.probes.refresh(status=False)
        if self.probes.config is None:
            self.probes.config = self.scalars.config
        status_changed = self._observe_status(now)
        if status_changed and self.state in FINAL_STATES:
            self.scalars.compact()  # finished: its columns will not grow again
            self.probes.compact()
        batches = []
        if "scalars" in ds.rewritten:
            self._reset_scalar_scores()
        if "probes" in dp.rewritten:
            self._reset_probe_scores()
        b = self._score_scalars()
        if b is not None:
            batches.append(replace(b, rewound=True) if "scalars" in ds.rewritten else b)
        b = self._score_probes()
        if b is not None:
            batches.append(replace(b, rewound=True) if "probes" in dp.rewritten else b)
        if status_changed or ds:
            b = self._check_scratch_restart()
            if b is not None:
                batches.append(b)
        if batches or status_changed or self.failed_files.keys() != failed_before.keys():
            self.version += 1
        return batches

    def _score_scalars(self) -> Batch | None:
        sc = self.scalars.scalars
        n = len(sc.get("step", ()))
        n0 = len(self.gai)
        if n <= n0:
            return None
        steps = sc["step"]
        nan = np.full(n - n0, np.nan)
        col = lambda k: sc[k][n0:] if k in sc else nan  # noqa: E731
        if "grad_norm" in sc:
            z = gai_tail(sc["grad_norm"], n0, self.cfg)
        else:
            z = nan
        self.gai.append(z)
        life = self.phase.update(steps[n0:], col("train_acc"), col("val_acc"), col("train_loss"))
        signals: dict[str, np.ndarray] = {k: col(k) for k in SCALAR_COLUMNS}
        signals["gai_z"] = self.gai.view()[n0:]
        w_crit = self.critical_norm()
        signals["weight_norm_ratio"] = np.asarray(col("weight_norm"), dtype=np.float64) / w_crit if w_crit else nan
        signals.update(life)
        return Batch(steps[n0:], signals, life)

    def _score_probes(self) -> Batch | None:
        pr = self.probes.probes
        n = len(pr.get("step", ()))
        n0 = len(self.h0z)
        if n <= n0:
            return None
        if "h0_entropy" in pr:
            hz = robust_z_tail(pr["h0_entropy"], n0, self.cfg.entropy_baseline, self.cfg.entropy_min_baseline)
        else:
            hz = np.full(n - n0, np.nan)
        amin, traps = htsr_summary(pr, slice(n0, n), self.cfg)
        self.h0z.append(hz)
        self.alpha_min.append(amin)
        if not self._crossing.n_evals and self.config:  # run.json is read by now
            self._crossing.n_evals = trainer_matrix_evals(self.config)
        self.alpha_cross.append(self._crossing.update(pr, slice(n0, n)))
        self.traps.append(traps)
        t_mem = self.phase.t_mem
        if "h0_entropy" in pr and t_mem is not None:
            self.h0_rise.append(self._h0_rise.update(pr["step"][n0:], pr["h0_entropy"][n0:], t_mem))
        else:  # rows before t_mem are never part of the plateau: nothing to remember
            self.h0_rise.append(np.full(n - n0, np.nan))
        if "commutator_defect" in pr:
            self.defect_z.append(
                robust_z_tail(pr["commutator_defect"], n0, self.cfg.entropy_baseline, self.cfg.entropy_min_baseline)
            )
        else:
            self.defect_z.append(np.full(n - n0, np.nan))
        signals: dict[str, np.ndarray] = {k: v[n0:] for k, v in pr.items() if k not in ("step", "attempt")}
        signals["h0_entropy_z"] = self.h0z.view()[n0:]
        signals["h0_entropy_rise"] = self.h0_rise.view()[n0:]
        signals["commutator_defect_z"] = self.defect_z.view()[n0:]
        signals["htsr_alpha_min"] = self.alpha_min.view()[n0:]
        signals["htsr_alpha_cross"] = self.alpha_cross.view()[n0:]
        signals["htsr_traps"] = self.traps.view()[n0:]
        ph = self.phase  # lifecycle indicators at probe steps, for rules gated with `when`
        gates = {}
        for name, t in (("memorized", ph.t_mem), ("grokked", ph.t_grok), ("diverged", ph.t_diverged)):
            gates[name] = (pr["step"][n0:] >= t).astype(float) if t is not None else np.zeros(n - n0)
        return Batch(pr["step"][n0:], signals, gates)

    def _check_scratch_restart(self) -> Batch | None:
        """Once status.json shows a new attempt: did it restart from scratch?

        Checked on every refresh until decided -- at once when it did, else
        when the attempt has written a few rows (the loss criterion needs
        them). Returns a one-point batch of ``restarted_from_scratch`` (1/0)
        at the newest step, or None while undecided."""
        attempts = self.status.attempts if self.status else ()
        newest = max((_as_int(a.get("attempt")) or 0 for a in attempts), default=0)
        if newest <= self._scratch_settled:
            return None
        step = self.last_step()
        if step is None:
            return None
        sc = self.scalars.scalars
        try:
            names = os.listdir(self.run_dir / SHARDS_DIR)
        except OSError:
            names = []
        every = self.config.checkpoint_every if self.config else None
        hit = restarted_from_scratch(
            sc,
            attempts,
            attempt_reach=attempt_reach_from_shards(names),
            checkpoint_every=every if every and every > 0 else None,
        )
        att = sc.get("attempt")
        rows = int(np.count_nonzero(att == newest)) if att is not None else 0
        if not hit and rows < SCRATCH_SETTLE_ROWS:
            return None
        self._scratch_settled = newest
        return Batch(
            np.array([step], dtype=np.int64), {SCRATCH_SIGNAL: np.array([1.0 if hit else 0.0])}, {}, repeat_last=True
        )

    # -- heartbeat -------------------------------------------------------------------
    def _observe_status(self, now: float) -> bool:
        hb = _heartbeat_unix(self.status)
        changed = hb != self._hb_remote
        if changed and self._hb_remote is not None:
            # Seen to change: from now on measure age on this host's clock, so a
            # trainer whose clock is skewed is neither stalled nor immortal.
            self._hb_local = now
        self._hb_remote = hb
        return changed

    def heartbeat_age(self, now: float) -> float | None:
        if self._hb_local is not None:
            return max(0.0, now - self._hb_local)
        if self._hb_remote is not None:
            return max(0.0, now - self._hb_remote)
        return None

    def check_stalled(self, now: float) -> bool:
        """Update and return ``stalled``: running, and no heartbeat within the timeout."""
        age = self.heartbeat_age(now)
        self.stalled = self.state == "running" and age is not None and age > self.cfg.stall_timeout
        return self.stalled

    def last_step(self) -> int | None:
        steps = self.scalars.scalars.get("step")
        return int(steps[-1]) if steps is not None and len(steps) else None

    # -- the frozen view ------------------------------------------------------------------
    def build_view(self, now: float, *, alarms: tuple = (), **fields) -> RunView:
        """This run's view as of ``now``; ``alarms`` and ``fields`` (prediction,
        slurm_state, state) are what the watcher joins in (its subscribers' and
        its queue poller's)."""
        cfg = self.config or RunConfig()
        status = self.status or RunStatus()
        sc = _readonly(self.scalars.scalars)
        pr = _readonly(self.probes.probes)
        scores_s = {"gai_z": self.gai.view()}
        scores_p = {
            "h0_entropy_z": self.h0z.view(),
            "htsr_alpha_min": self.alpha_min.view(),
            "htsr_traps": self.traps.view(),
        }
        step = self.last_step()
        total = cfg.steps
        phase = self.phase.phase
        latest = {
            "grad_norm": _last(sc.get("grad_norm")),
            "weight_norm": _last(sc.get("weight_norm")),
            "gai_z": _last(scores_s["gai_z"]),
            "h0_entropy": _last(pr.get("h0_entropy")),
            "h0_entropy_z": _last(scores_p["h0_entropy_z"]),
            "htsr_alpha_min": _last(scores_p["htsr_alpha_min"]),
            "htsr_traps": _last(scores_p["htsr_traps"]),
        }
        return RunView(
            run_id=self.run_id,
            path=str(self.run_dir),
            seed=cfg.seed,
            weight_decay=cfg.weight_decay,
            step=step,
            total_steps=total,
            phase="stalled" if self.stalled and phase not in ("diverged",) else phase,
            run_phase=phase,
            t_mem=self.phase.t_mem,
            t_grok=self.phase.t_grok,
            t_anti=self.phase.t_anti,
            t_diverged=self.phase.t_diverged,
            train_acc=_last(sc.get("train_acc")),
            val_acc=_last(sc.get("val_acc")),
            train_loss=_last(sc.get("train_loss")),
            val_loss=_last(sc.get("val_loss")),
            signals=MappingProxyType(latest),
            alarms=alarms,
            status=status.state,
            stalled=self.stalled,
            heartbeat_unix=_heartbeat_unix(status),
            heartbeat_age=self.heartbeat_age(now),
            restarts=status.restarts or 0,
            message=status.message,
            failed_files=len(self.failed_files),
            version=self.version,
            config=cfg,
            scalars=MappingProxyType(sc),
            probes=MappingProxyType(pr),
            scores=MappingProxyType({**scores_s, **scores_p}),
            **fields,
        )


def _readonly(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in cols.items():
        v = v.view()
        v.flags.writeable = False
        out[k] = v
    return out


def _last(a: np.ndarray | None) -> float | None:
    if a is None or len(a) == 0:
        return None
    # Most columns are finite at the end; look back a little for sparse ones (val_acc).
    tail = np.asarray(a[-4096:], dtype=np.float64)
    idx = np.flatnonzero(np.isfinite(tail))
    return float(tail[idx[-1]]) if idx.size else None


def _heartbeat_unix(status: RunStatus | None) -> float | None:
    if status is None:
        return None
    if status.heartbeat_unix is not None:
        return status.heartbeat_unix
    text = status.heartbeat
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _as_int(x: Any) -> int | None:
    try:
        return int(x) if x is not None else None
    except (TypeError, ValueError):
        return None
