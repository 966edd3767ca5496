"""The writing side of the data contract (DESIGN section 2).

One :class:`RunWriter` per run. It owns the run directory: ``run.json`` once,
``status.json`` as a heartbeat, and shards as Arrow IPC files written through
``*.tmp`` + fsync + ``os.replace``. Rows can be buffered here (``log``) or
handed over as whole columns (``write_shard``) by a caller that keeps its own
buffer, like the trainer, whose metrics stay on the device until a flush.

It handles no signals: a process that must stop cleanly on one (the trainer,
trainer/stopping.py) catches it and calls :meth:`RunWriter.close`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .atomic import atomic_write_bytes, atomic_write_json
from .contract import ContractError, RunConfig, RunStatus
from .layout import CHECKPOINT, KINDS, RUN_JSON, SHARDS_DIR, STATUS_JSON, ShardName

log = logging.getLogger("grokwatch.store")


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def slurm_ids() -> dict[str, str]:
    keys = {
        "job_id": "SLURM_JOB_ID",
        "array_job_id": "SLURM_ARRAY_JOB_ID",
        "array_task_id": "SLURM_ARRAY_TASK_ID",
        "restart_count": "SLURM_RESTART_COUNT",
        "node": "SLURMD_NODENAME",
    }
    return {k: os.environ[v] for k, v in keys.items() if v in os.environ}


def columns_to_ipc(columns: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize columns (``step`` required) to Arrow IPC *file* bytes.

    Floats are stored as float32: a 90-run x 100K-step sweep must fit a
    watcher's memory, and no metric needs more than 7 significant digits.
    """
    if "step" not in columns:
        raise ValueError("a shard needs a 'step' column")
    arrays, names = [], []
    for name, values in columns.items():
        arr = np.asarray(values)
        if name == "step":
            arr = arr.astype(np.int64, copy=False)
        elif arr.dtype.kind == "f" or arr.dtype == object:
            arr = arr.astype(np.float32, copy=False)
        arrays.append(pa.array(arr))
        names.append(name)
    table = pa.table(arrays, names=names)
    if metadata:
        table = table.replace_schema_metadata({k: str(v) for k, v in metadata.items()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


class RunWriter:
    """Writes one run directory.

    ``flush_steps`` / ``flush_seconds``: a shard is due every N buffered steps or
    T seconds, whichever comes first, so a live view lags at most T seconds.
    ``resume=True`` continues an existing run as a new attempt; without it an
    existing ``run.json`` is an error (a run is never silently overwritten).
    ``config`` is the run's :class:`RunConfig`; a plain mapping is read as a
    run.json object (:meth:`RunConfig.from_json`), so what is written always
    follows the contract.
    """

    def __init__(
        self,
        run_dir: Path | str,
        config: RunConfig | Mapping[str, Any],
        *,
        flush_steps: int = 1000,
        flush_seconds: float = 10.0,
        heartbeat_seconds: float = 10.0,
        resume: bool = False,
        start_step: int = 0,
    ):
        self.run_dir = Path(run_dir)
        self.config = RunConfig.coerce(config)
        self.flush_steps = max(1, int(flush_steps))
        self.flush_seconds = float(flush_seconds)
        self.heartbeat_seconds = float(heartbeat_seconds)
        self.resume = resume
        self.start_step = int(start_step)
        self.attempt = 0
        self.last_step = start_step
        self.state = "running"
        self._rows: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        self._last_flush = time.monotonic()
        self._last_heartbeat = 0.0
        self._status = RunStatus()
        self._opened = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------
    def open(self) -> RunWriter:
        run_json = self.run_dir / RUN_JSON
        try:
            previous = RunStatus.read(self.run_dir) or RunStatus()
        except ContractError as exc:  # a resumed run whose status is bad: start the attempts afresh
            log.warning("%s; its attempts are not carried over", exc)
            previous = RunStatus()
        if run_json.exists() and not self.resume:
            raise FileExistsError(f"run directory {self.run_dir} already holds a run; resume it or pick another run id")
        (self.run_dir / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        if not run_json.exists():
            meta = {
                "host": socket.gethostname(),
                "created": utcnow(),
                "slurm": slurm_ids(),
                "code_version": _code_version(),
            }
            atomic_write_json(run_json, self.config.replace(meta={**self.config.meta, **meta}).to_json())
        attempts = list(previous.attempts)
        self.attempt = (int(attempts[-1]["attempt"]) + 1) if attempts else 0
        attempts.append(
            {"attempt": self.attempt, "start_step": self.start_step, "started": utcnow(), "slurm": slurm_ids()}
        )
        self._status = RunStatus(
            state="running",
            last_step=self.start_step,
            pid=os.getpid(),
            host=socket.gethostname(),
            slurm=slurm_ids(),
            attempt=self.attempt,
            restarts=self.attempt,
            attempts=tuple(attempts),
        )
        self._opened = True
        self.write_status(force=True)
        return self

    def __enter__(self) -> RunWriter:
        if not self._opened:
            self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close: "completed", or "failed" on an exception (a no-op if the caller closed it already)."""
        if exc_type is None:
            self.close("completed" if self.state == "running" else self.state)
        else:
            self.close("failed", message=f"{exc_type.__name__}: {exc}")

    def close(self, state: str = "completed", message: str | None = None) -> None:
        """Final flush of buffered rows, then the final status."""
        if self._closed:
            return
        self.flush()
        self.state = state
        self._status = self._status.replace(message=message)
        self.write_status(force=True)
        self._closed = True

    # -- rows ----------------------------------------------------------------
    def log(self, kind: str, step: int, values: Mapping[str, Any]) -> None:
        """Buffer one row; it is written at the next flush."""
        self._rows[kind].append({"step": int(step), **values})
        self.last_step = max(self.last_step, int(step))

    def flush_due(self, buffered_steps: int | None = None) -> bool:
        n = len(self._rows["scalars"]) if buffered_steps is None else buffered_steps
        return n >= self.flush_steps or (n > 0 and time.monotonic() - self._last_flush >= self.flush_seconds)

    def maybe_flush(self) -> bool:
        if self.flush_due():
            self.flush()
            return True
        self.heartbeat()
        return False

    def flush(self) -> None:
        """Write every buffered row as shards, then the status."""
        for kind, rows in self._rows.items():
            if not rows:
                continue
            names = list(dict.fromkeys(k for r in rows for k in r))
            values = {n: [r.get(n, np.nan) for r in rows] for n in names}
            cols = {n: np.asarray(v, dtype=np.int64 if n == "step" else np.float64) for n, v in values.items()}
            self.write_shard(kind, cols)
            rows.clear()
        self._last_flush = time.monotonic()
        if self._opened:
            self.write_status(force=True)

    def write_shard(self, kind: str, columns: Mapping[str, Any]) -> Path:
        """Write columns (with ``step``) as one shard, atomically."""
        if kind not in KINDS:
            raise ValueError(f"unknown shard kind {kind!r}")
        steps = np.asarray(columns["step"])
        if steps.size == 0:
            raise ValueError("empty shard")
        last = int(steps.max())
        name = ShardName(attempt=self.attempt, last_step=last, kind=kind)
        path = self.run_dir / SHARDS_DIR / name.filename
        atomic_write_bytes(path, columns_to_ipc(columns, {"kind": kind, "attempt": str(self.attempt)}))
        self.last_step = max(self.last_step, last)
        self._last_flush = time.monotonic()
        return path

    # -- status --------------------------------------------------------------
    def set_state(self, state: str, message: str | None = None) -> None:
        self.state = state
        self._status = self._status.replace(message=message)
        self.write_status(force=True)

    def heartbeat(self) -> None:
        self.write_status(force=False)

    def write_status(self, force: bool = False, **extra: Any) -> None:
        """status.json now (or, unless ``force``, when a heartbeat is due). ``extra``: what
        else the writer reports (:attr:`RunStatus.extra`, e.g. the trainer's t_mem), kept
        for later writes."""
        now = time.monotonic()
        if not force and now - self._last_heartbeat < self.heartbeat_seconds:
            return
        self._status = self._status.replace(
            state=self.state,
            last_step=self.last_step,
            heartbeat=utcnow(),
            heartbeat_unix=time.time(),
            extra={**self._status.extra, **extra},
        )
        atomic_write_json(self.run_dir / STATUS_JSON, self._status.to_json())
        self._last_heartbeat = now

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT


def _code_version() -> str:
    try:
        from importlib.metadata import version

        return version("grokwatch")
    except Exception:  # not installed: running from a source tree
        return "unknown"
