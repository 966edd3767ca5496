"""SLURM queue state of a sweep's array tasks, locally or over SSH.

:class:`QueueState` asks ``squeue`` once per refresh for every array job of a
sweep (``-r``: one line per array task, pending ones included; ``-t all``:
finished jobs too, until SLURM forgets them after ``MinJobAge``; ``--me``:
only the user's jobs) and caches the answer for a few seconds, so a
dashboard can ask as often as it draws. Tasks squeue no longer knows are
looked up with ``sacct`` (accounting), or ``sacct -c`` (the job-completion
log) when accounting is off. Commands go through a *runner*, a callable
``runner(argv, timeout) -> CommandResult``: :class:`LocalRunner` here,
``grokwatch.remote``'s SSH runner on a laptop.

Slurm 22.05 pitfalls handled here: ``squeue --json`` ignores ``-j`` (so the
delimited text format is used); a pending array is one record without ``-r``;
``sacct`` fails without accounting; ``sacct -c`` knows no array task ids
(raw job ids are mapped back through what squeue showed earlier, or through
the ids the trainer wrote into status.json).
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

log = logging.getLogger("slurm.queue")

SQUEUE_FIELDS = (
    "JobID",
    "ArrayJobID",
    "ArrayTaskID",
    "State",
    "Reason",
    "RestartCnt",
    "exit_code",
    "TimeUsed",
    "NodeList",
)
SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "ExitCode", "Elapsed", "NodeList")
SACCT_C_FIELDS = ("JobID", "State", "ExitCode", "Elapsed", "NodeList")
_JOB_ID = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult: ...


class LocalRunner:
    """Runs commands on this machine."""

    def __call__(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        try:
            out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            return CommandResult(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return CommandResult(124, "", f"{argv[0]}: timed out after {timeout:g} s")
        return CommandResult(out.returncode, out.stdout, out.stderr)


@dataclass(frozen=True)
class TaskState:
    """One array task as SLURM sees it."""

    array_job_id: str
    task_id: int
    job_id: str  # the task's own (raw) job id: SLURM_JOB_ID inside the task
    state: str  # normalized SLURM state: PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    restarts: int = 0
    elapsed: str | None = None
    node: str | None = None
    source: str = "squeue"  # or "sacct", "sacct -c"

    @property
    def key(self) -> tuple[str, int]:
        return (self.array_job_id, self.task_id)


def normalize_state(text: str | None) -> str | None:
    """``"CANCELLED by 0"`` -> ``"CANCELLED"``; ``"COMPLETED+"`` -> ``"COMPLETED"``."""
    if not text:
        return None
    word = text.strip().split()[0].rstrip("+").upper() if text.strip() else ""
    return word or None


def parse_task_ids(text: str) -> list[int]:
    """``"3"``, ``"2-4"``, ``"[1,3-5%2]"`` -> task ids; ``"N/A"`` -> []."""
    text = text.strip().strip("[]").split("%")[0]
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if re.fullmatch(r"[0-9]+", part):
            out.append(int(part))
        elif m := re.fullmatch(r"([0-9]+)-([0-9]+)(?::([0-9]+))?", part):
            out.extend(range(int(m[1]), int(m[2]) + 1, int(m[3] or 1)))
    return out


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


def _wait_status(raw: int | None) -> tuple[int | None, int | None]:
    """squeue's exit_code is a wait(2) status: (exit code, signal)."""
    if raw is None:
        return None, None
    return (raw >> 8) & 0xFF, raw & 0x7F


def _exit_pair(text: str | None) -> tuple[int | None, int | None]:
    """sacct's ``ExitCode`` is ``code:signal``."""
    if not text or ":" not in text:
        return _int(text), None
    code, sig = text.split(":", 1)
    return _int(code), _int(sig)


def _opt(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", "N/A", "None", "(null)") else text


def squeue_argv(job_ids: Sequence[str]) -> list[str]:
    fmt = ",".join(f"{f}:|" for f in SQUEUE_FIELDS)
    return ["squeue", "--noheader", "--array", "--states=all", "--me", f"--jobs={','.join(job_ids)}", f"--Format={fmt}"]


def parse_squeue(text: str) -> list[TaskState]:
    """Lines of :data:`SQUEUE_FIELDS` joined (and ended) by ``|``."""
    out = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < len(SQUEUE_FIELDS):
            continue
        f = dict(zip(SQUEUE_FIELDS, (x.strip() for x in fields)))
        state = normalize_state(f["State"])
        if not state or not _JOB_ID.match(f["ArrayJobID"] or ""):
            continue
        code, sig = _wait_status(_int(f["exit_code"]))
        for task in parse_task_ids(f["ArrayTaskID"]):
            out.append(
                TaskState(
                    array_job_id=f["ArrayJobID"],
                    task_id=task,
                    job_id=f["JobID"],
                    state=state,
                    reason=_opt(f["Reason"]),
                    exit_code=code,
                    signal=sig,
                    restarts=_int(f["RestartCnt"]) or 0,
                    elapsed=_opt(f["TimeUsed"]),
                    node=_opt(f["NodeList"]),
                    source="squeue",
                )
            )
    return out


def sacct_argv(job_ids: Sequence[str]) -> list[str]:
    return [
        "sacct",
        "--noheader",
        "--parsable2",
        "--allocations",
        "--duplicates",
        f"--jobs={','.join(job_ids)}",
        f"--format={','.join(SACCT_FIELDS)}",
    ]


def parse_sacct(text: str) -> list[TaskState]:
    """``sacct -P -X -D`` rows; one TaskState per array task (its newest row,
    with the rows before it counted as restarts)."""
    rows: dict[tuple[str, int], list[TaskState]] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < len(SACCT_FIELDS):
            continue
        f = dict(zip(SACCT_FIELDS, (x.strip() for x in fields)))
        m = re.fullmatch(r"([0-9]+)_(\[?[0-9,\-%:]+\]?)", f["JobID"])
        state = normalize_state(f["State"])
        if not m or not state:
            continue
        code, sig = _exit_pair(f["ExitCode"])
        for task in parse_task_ids(m[2]):
            ts = TaskState(
                array_job_id=m[1],
                task_id=task,
                job_id=f["JobIDRaw"] or f["JobID"],
                state=state,
                exit_code=code,
                signal=sig,
                elapsed=_opt(f["Elapsed"]),
                node=_opt(f["NodeList"]),
                source="sacct",
            )
            rows.setdefault(ts.key, []).append(ts)
    return [replace(v[-1], restarts=len(v) - 1) for v in rows.values()]


def sacct_c_argv(raw_ids: Sequence[str]) -> list[str]:
    return [
        "sacct",
        "--completion",
        "--noheader",
        "--parsable2",
        f"--jobs={','.join(raw_ids)}",
        f"--format={','.join(SACCT_C_FIELDS)}",
    ]


def parse_sacct_c(text: str, raw_index: Mapping[str, tuple[str, int]]) -> list[TaskState]:
    """``sacct -c`` rows (raw job ids only) mapped back to array tasks."""
    out: dict[tuple[str, int], TaskState] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < len(SACCT_C_FIELDS):
            continue
        f = dict(zip(SACCT_C_FIELDS, (x.strip() for x in fields)))
        key = raw_index.get(f["JobID"])
        state = normalize_state(f["State"])
        if key is None or not state:
            continue
        code, sig = _exit_pair(f["ExitCode"])
        out[key] = TaskState(
            array_job_id=key[0],
            task_id=key[1],
            job_id=f["JobID"],
            state=state,
            exit_code=code,
            signal=sig,
            elapsed=_opt(f["Elapsed"]),
            node=_opt(f["NodeList"]),
            source="sacct -c",
        )
    return list(out.values())


def manifest_job_ids(manifest: Mapping) -> list[str]:
    """Array job ids submitted for a sweep manifest, oldest first."""
    ids = [str(s.get("array_job_id")) for s in manifest.get("submissions") or [] if isinstance(s, Mapping)]
    if manifest.get("array_job_id") and str(manifest["array_job_id"]) not in ids:
        ids.append(str(manifest["array_job_id"]))
    return [i for i in ids if _JOB_ID.match(i)]


class QueueState:
    """Cached, batched view of the SLURM state of array tasks.

    ``runner``: how commands run (default: on this machine). ``cache_seconds``:
    answers younger than this are reused. Thread-safe: a dashboard worker and
    a CLI can share one instance. ``last_error`` holds the last failure of
    squeue (one line), None after a success.
    """

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        cache_seconds: float = 5.0,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.runner: Runner = runner or LocalRunner()
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.clock = clock
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], tuple[float, dict[tuple[str, int], TaskState]]] = {}
        self._raw_index: dict[str, tuple[str, int]] = {}  # raw job id -> (array job, task), as seen
        self._sacct_ok: bool | None = None  # None: not tried yet
        self._sacct_checked = 0.0

    def tasks(
        self,
        job_ids: Iterable[str],
        expected: Iterable[int] | None = None,
        raw_hints: Mapping[str, tuple[str, int]] | None = None,
    ) -> dict[tuple[str, int], TaskState]:
        """States of the array tasks of ``job_ids``, keyed by (array job id, task id).

        ``expected``: task ids the caller knows exist; if squeue has forgotten
        any of them, sacct is asked. ``raw_hints``: raw job id -> (array job id,
        task id), e.g. from status.json, for ``sacct -c``.
        """
        ids = tuple(sorted({str(j) for j in job_ids if _JOB_ID.match(str(j))}, key=int))
        if not ids:
            return {}
        with self._lock:
            now = self.clock()
            hit = self._cache.get(ids)
            if hit and now - hit[0] < self.cache_seconds:
                return dict(hit[1])
            states = self._squeue(ids)
            if expected is not None:
                want = set(expected)
                seen = {t for (_, t) in states}
                if want - seen:
                    for ts in self._sacct(ids, raw_hints or {}):
                        states.setdefault(ts.key, ts)
            self._cache = {ids: (now, states)}
            return dict(states)

    def for_manifest(
        self, manifest: Mapping, raw_hints: Mapping[str, tuple[str, int]] | None = None
    ) -> dict[str, TaskState]:
        """run id -> TaskState for a sweep manifest (``sweep.json``).

        When a sweep was submitted more than once, each task's state comes from
        the newest submission that SLURM still knows it in.
        """
        ids = manifest_job_ids(manifest)
        tasks = manifest.get("tasks") or []
        indexes = {int(t["index"]) for t in tasks if isinstance(t, Mapping) and "index" in t}
        states = self.tasks(ids, expected=indexes, raw_hints=raw_hints)
        out: dict[str, TaskState] = {}
        for t in tasks:
            try:
                index, run_id = int(t["index"]), str(t["run_id"])
            except (KeyError, TypeError, ValueError):
                continue
            for job in reversed(ids):
                ts = states.get((job, index))
                if ts is not None:
                    out[run_id] = ts
                    break
        return out

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- commands ------------------------------------------------------------
    def _squeue(self, ids: tuple[str, ...]) -> dict[tuple[str, int], TaskState]:
        res = self.runner(squeue_argv(ids), self.timeout)
        if res.returncode != 0:
            msg = " ".join((res.stderr or res.stdout).split())[:300]
            if "Invalid job id" in msg:  # every id has aged out of slurmctld
                self.last_error = None
            else:
                self.last_error = f"squeue failed (exit {res.returncode}): {msg}"
                log.warning("%s", self.last_error)
            return {}
        self.last_error = None
        states = {}
        for ts in parse_squeue(res.stdout):
            states[ts.key] = ts
            if ts.state != "PENDING" or ts.job_id != ts.array_job_id:
                self._raw_index[ts.job_id] = ts.key
        return states

    def _sacct(self, ids: tuple[str, ...], raw_hints: Mapping[str, tuple[str, int]]) -> list[TaskState]:
        now = self.clock()
        if self._sacct_ok is False and now - self._sacct_checked < 60:
            return self._sacct_completion(ids, raw_hints)
        res = self.runner(sacct_argv(ids), self.timeout)
        self._sacct_checked = now
        if res.returncode == 0:
            self._sacct_ok = True
            return parse_sacct(res.stdout)
        self._sacct_ok = False
        log.debug("sacct unavailable: %s", " ".join((res.stderr or res.stdout).split())[:200])
        return self._sacct_completion(ids, raw_hints)

    def _sacct_completion(self, ids: tuple[str, ...], raw_hints: Mapping[str, tuple[str, int]]) -> list[TaskState]:
        index = {raw: key for raw, key in {**raw_hints, **self._raw_index}.items() if key[0] in ids}
        if not index:
            return []
        res = self.runner(sacct_c_argv(sorted(index, key=int)), self.timeout)
        if res.returncode != 0:
            return []
        return parse_sacct_c(res.stdout, index)
