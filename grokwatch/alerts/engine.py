"""The alarm state machine (Prometheus Alertmanager's model), per run and rule.

    inactive --condition--> pending --held for_steps--> firing --not--> inactive
                                                        (event)         (event)

A firing episode emits one ``firing`` event and, when the condition stops
holding, one ``resolved`` event. ``once`` rules (lifecycle events) fire at most
once per run and then stay ``done``. A firing that would start within the
cooldown of the previous one is ``suppressed``: no events for that episode.

Pure and in memory: no I/O. Evaluation is vectorized over the new points of a
signal (every raw point is tested; only the transitions loop in Python), and
each (run, rule) remembers the last step it evaluated, so points fed twice --
a watcher restarted from persisted state re-reads every shard -- are skipped.
Event ids are deterministic (``run/rule/episode/state``), so a replay after a
crash regenerates the same ids and the journal can drop the duplicates.

Rows can also arrive *older* than the ones already evaluated: a mirror of a
remote sweep fetches the newest shards first and backfills, and a resumed
attempt rewrites steps. Such a batch is ``rewound`` (it covers the run from
its first row): the rules are scanned again from a fresh state over all of
it, the state kept is the one of the whole history, and only the events
*older* than anything evaluated before are emitted (ids ``.../state@step``:
the fresh scan numbers episodes anew). Nothing is notified twice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from grokwatch.watch.snapshot import ActiveAlarm  # what a run's view carries; the watcher's type

from .rules import Rule

INACTIVE, PENDING, FIRING, SUPPRESSED, DONE = "inactive", "pending", "firing", "suppressed", "done"


def iso_utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(x: float | None) -> float | None:
    """JSON-safe number: NaN and infinities become null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class AlarmEvent:
    """One alarm transition: what alarms.jsonl, stdout and notifications carry."""

    id: str
    run: str
    rule: str
    state: str  # "firing" or "resolved"
    step: int
    value: float | None
    threshold: float
    comparison: str
    severity: str
    signal: str
    episode: int
    time_unix: float
    description: str = ""

    @property
    def time(self) -> str:
        return iso_utc(self.time_unix)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run": self.run,
            "rule": self.rule,
            "state": self.state,
            "step": self.step,
            "value": _num(self.value),
            "threshold": self.threshold,
            "comparison": self.comparison,
            "severity": self.severity,
            "signal": self.signal,
            "episode": self.episode,
            "time": self.time,
            "time_unix": round(self.time_unix, 3),
            "description": self.description,
        }


@dataclass
class _State:
    status: str = INACTIVE
    since: int | None = None  # first step the condition held in this episode
    fired_step: int | None = None
    last_fire_step: int | None = None
    last_fire_time: float | None = None
    episode: int = 0
    evaluated: int | None = None  # last step evaluated
    value: float | None = None
    first: int | None = None  # first step evaluated (a rewound batch emits only what lies before it)

    def to_dict(self) -> dict[str, Any]:
        return {k: (_num(v) if k == "value" else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _State:
        st = cls()
        for k in st.__dict__:
            if k in d:
                setattr(st, k, d[k])
        return st


class AlertEngine:
    """Rules applied to signal streams of many runs; thread-safe."""

    def __init__(self, rules: Mapping[str, Rule] | Iterable[Rule] = ()):
        self._lock = threading.RLock()
        self._rules: dict[str, Rule] = {}
        self._state: dict[str, dict[str, _State]] = {}
        self.revision = 0  # grows whenever state worth persisting changed
        self.set_rules(rules)

    @property
    def rules(self) -> dict[str, Rule]:
        return dict(self._rules)

    def set_rules(self, rules: Mapping[str, Rule] | Iterable[Rule]) -> None:
        """Swap the rule set; state of rules kept by name. New rules apply from
        the next point on (they are not replayed over history)."""
        items = rules.values() if isinstance(rules, Mapping) else rules
        with self._lock:
            self._rules = {r.name: r for r in items if r.enabled}

    def signals(self) -> set[str]:
        return {r.signal for r in self._rules.values()}

    # -- evaluation --------------------------------------------------------------
    def evaluate(
        self,
        run: str,
        steps: np.ndarray,
        signals: Mapping[str, np.ndarray],
        now: float | None = None,
        repeat_last: bool = False,
        gates: Mapping[str, np.ndarray] | None = None,
        rewound: bool = False,
    ) -> list[AlarmEvent]:
        """Test every rule whose signal is in ``signals`` on every new point.

        ``steps`` ascending; points at or before a rule's last evaluated step
        are skipped (``repeat_last``: the last step itself is re-tested, for
        wall-clock signals such as ``stalled`` that change while steps do not).
        ``gates``: indicator series a rule's ``when`` may name (looked up
        there first, then in ``signals``); a missing gate never holds.
        ``rewound``: the batch holds the run's whole history again, older rows
        included (see the module doc).
        """
        now = time.time() if now is None else now
        steps = np.asarray(steps, dtype=np.int64)
        events: list[AlarmEvent] = []
        if len(steps) == 0:
            return events
        with self._lock:
            per_run = self._state.setdefault(run, {})
            for rule in self._rules.values():
                values = signals.get(rule.signal)
                if values is None:
                    continue
                s, v = steps, np.asarray(values, dtype=np.float64)
                gate = None
                if rule.when:
                    w = (gates or {}).get(rule.when, signals.get(rule.when))
                    gate = np.zeros(len(s), bool) if w is None else np.asarray(w, dtype=np.float64) >= 1
                old = per_run.get(rule.name)
                if rewound and old is not None and old.evaluated is not None:
                    per_run[rule.name] = self._rescan(run, rule, old, s, v, gate, now, events)
                    continue
                st = per_run.setdefault(rule.name, _State())
                if st.evaluated is not None:
                    k = np.searchsorted(s, st.evaluated, side="left" if repeat_last else "right")
                    s, v = s[k:], v[k:]
                    gate = gate[k:] if gate is not None else None
                if len(s):
                    self._scan(run, rule, st, s, v, gate, now, events)
        events.sort(key=lambda e: (e.step, e.rule, e.state == "firing"))
        return events

    def _rescan(self, run: str, rule: Rule, old: _State, s, v, gate, now: float, out: list) -> _State:
        """A fresh state scanned over the whole (rewound) history; emits only its
        events older than the first step ``old`` evaluated."""
        fresh = _State()
        found: list[AlarmEvent] = []
        self._scan_points(run, rule, fresh, s, v, gate, now, found)
        # A state persisted before `first` existed: everything counts as seen (no duplicates).
        first = old.first
        for e in found:
            if first is not None and e.step < first:
                out.append(replace(e, id=f"{e.id}@{e.step}"))
        fresh.episode = max(fresh.episode, old.episode)  # later episodes never reuse an id
        fresh.first = int(s[0])
        self.revision += 1
        return fresh

    def _scan(self, run: str, rule: Rule, st: _State, s, v, gate, now: float, out: list) -> None:
        before = (st.evaluated, st.status, st.since)
        self._scan_points(run, rule, st, s, v, gate, now, out)
        if (st.evaluated, st.status, st.since) != before:
            self.revision += 1

    def _scan_points(self, run: str, rule: Rule, st: _State, s, v, gate, now: float, out: list) -> None:
        st.evaluated = int(s[-1])
        st.value = _num(v[-1])
        if st.first is None:
            st.first = int(s[0])
        if st.status == DONE:
            return
        c = rule.test(v)
        if gate is not None:
            c &= gate
        n = len(c)
        edges = np.flatnonzero(c[1:] != c[:-1]) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [n]))
        for a, b in zip(starts.tolist(), ends.tolist()):
            if c[a]:
                if st.status in (FIRING, SUPPRESSED, DONE):
                    continue
                if st.status == INACTIVE:
                    st.status, st.since = PENDING, int(s[a])
                assert st.since is not None  # set when the episode became pending
                j = a + int(np.searchsorted(s[a:b], st.since + rule.for_steps, side="left"))
                if j < b:
                    self._fire(run, rule, st, int(s[j]), float(v[j]), now, out)
            else:
                if st.status == FIRING:
                    out.append(self._event(run, rule, st, "resolved", int(s[a]), float(v[a]), now))
                if st.status in (PENDING, FIRING, SUPPRESSED):
                    st.status, st.since, st.fired_step = INACTIVE, None, None

    def _fire(self, run: str, rule: Rule, st: _State, step: int, value: float, now: float, out: list) -> None:
        cooling = (
            st.last_fire_step is not None and rule.cooldown_steps and step - st.last_fire_step < rule.cooldown_steps
        ) or (st.last_fire_time is not None and rule.cooldown and now - st.last_fire_time < rule.cooldown)
        if cooling:
            st.status = SUPPRESSED
            return
        st.episode += 1
        st.status = DONE if rule.once else FIRING
        st.fired_step = step
        st.last_fire_step, st.last_fire_time = step, now
        out.append(self._event(run, rule, st, "firing", step, value, now))

    @staticmethod
    def _event(run: str, rule: Rule, st: _State, state: str, step: int, value: float, now: float) -> AlarmEvent:
        return AlarmEvent(
            id=f"{run}/{rule.name}/{st.episode}/{state}",
            run=run,
            rule=rule.name,
            state=state,
            step=step,
            value=_num(value),
            threshold=rule.threshold,
            comparison=rule.comparison,
            severity=rule.severity,
            signal=rule.signal,
            episode=st.episode,
            time_unix=now,
            description=rule.description,
        )

    # -- queries -------------------------------------------------------------------
    def active(self, run: str) -> tuple[ActiveAlarm, ...]:
        with self._lock:
            out = []
            for name, st in self._state.get(run, {}).items():
                rule = self._rules.get(name)
                if rule is None or st.status not in (PENDING, FIRING):
                    continue
                out.append(
                    ActiveAlarm(
                        rule=name,
                        state=st.status,
                        severity=rule.severity,
                        signal=rule.signal,
                        since_step=int(st.since) if st.since is not None else -1,
                        fired_step=st.fired_step,
                        value=st.value,
                        threshold=rule.threshold,
                        comparison=rule.comparison,
                    )
                )
            return tuple(sorted(out, key=lambda a: (a.state != "firing", a.rule)))

    # -- persistence (the caller writes it) ------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": 1,
                "runs": {run: {name: st.to_dict() for name, st in rules.items()} for run, rules in self._state.items()},
            }

    def load_dict(self, d: Mapping[str, Any]) -> None:
        with self._lock:
            self._state = {
                str(run): {str(name): _State.from_dict(st) for name, st in rules.items()}
                for run, rules in (d.get("runs") or {}).items()
            }
            self.revision += 1


__all__ = ["ActiveAlarm", "AlarmEvent", "AlertEngine", "DONE", "FIRING", "INACTIVE", "PENDING", "SUPPRESSED", "iso_utc"]
