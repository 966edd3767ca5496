"""The prediction log: ``<sweep>/.grokwatch/predictions.arrow``.

Appends never rewrite what is there: each batch of predictions goes to its
own part file, ``.grokwatch/predictions.parts/part-<ns>-<pid>-<seq>.arrow``,
written through ``*.tmp`` + fsync + ``os.replace`` (no half files), and
:meth:`PredictionLog.compact` folds the parts into ``predictions.arrow``
(again an atomic replace) under an advisory lock, then removes them.
:func:`read_predictions` reads ``predictions.arrow`` plus any parts and
keeps one row per (run, step, kind) -- the newest -- so a crash between the
rename and the removal, or two watchers logging the same (deterministic)
predictions, leave no duplicates.

Columns: run (string), step (int64, the step the prediction was made at),
kind ("t_grok" | "will_grok"), method (string), t_grok_pred, lo, hi,
p_grok (float64, null when not applicable), n_calib (int32),
source (string: prior, sweep or prior+sweep; empty in files of older versions).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from grokwatch.store import atomic_write_bytes
from grokwatch.store.layout import WATCHER_DIR

from .config import T_GROK, Prediction

log = logging.getLogger("grokwatch.predict")

PREDICTIONS = "predictions.arrow"
PARTS = "predictions.parts"
LOCK = "predictions.lock"

SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("step", pa.int64()),
        ("kind", pa.string()),
        ("method", pa.string()),
        ("t_grok_pred", pa.float64()),
        ("lo", pa.float64()),
        ("hi", pa.float64()),
        ("p_grok", pa.float64()),
        ("n_calib", pa.int32()),
        ("source", pa.string()),
    ]
)


def predictions_path(sweep_dir: Path | str) -> Path:
    return Path(sweep_dir) / WATCHER_DIR / PREDICTIONS


def to_table(preds: Iterable[Prediction]) -> pa.Table:
    recs = [p.to_record() for p in preds]
    return pa.Table.from_pylist(recs, schema=SCHEMA)


def to_ipc(preds: Iterable[Prediction]) -> bytes:
    table = to_table(preds)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, SCHEMA) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def write_predictions(path: Path | str, preds: Iterable[Prediction]) -> None:
    """Write a whole prediction file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, to_ipc(sorted(preds, key=_order)))


def _order(p: Prediction) -> tuple:
    return (p.step, p.run, p.kind)


def _read_file(path: Path) -> list[Prediction]:
    try:
        with pa.OSFile(str(path), "rb") as fh:
            table = pa.ipc.open_file(fh).read_all()
    except FileNotFoundError:
        return []
    except (OSError, pa.ArrowException) as exc:
        log.warning("skipping unreadable prediction file %s: %s", path, exc)
        return []
    out = []
    for r in table.to_pylist():
        try:
            out.append(
                Prediction(
                    run=str(r["run"]),
                    step=int(r["step"]),
                    kind=str(r.get("kind") or T_GROK),
                    method=str(r["method"]),
                    t_grok_pred=r.get("t_grok_pred"),
                    lo=r.get("lo"),
                    hi=r.get("hi"),
                    p_grok=r.get("p_grok"),
                    n_calib=int(r.get("n_calib") or 0),
                    source=str(r.get("source") or ""),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _parts(sweep_dir: Path) -> list[Path]:
    d = Path(sweep_dir) / WATCHER_DIR / PARTS
    try:
        names = sorted(n for n in os.listdir(d) if n.startswith("part-") and n.endswith(".arrow"))
    except FileNotFoundError:
        return []
    return [d / n for n in names]


def read_predictions(source: Path | str) -> list[Prediction]:
    """Every logged prediction, one per (run, step, kind), sorted by (step, run, kind).

    ``source``: a sweep directory (its log and parts) or one prediction file."""
    source = Path(source)
    if source.is_file():
        files = [source]
    else:
        files = [predictions_path(source), *_parts(source)]
    rows: dict[tuple, Prediction] = {}
    for f in files:
        for p in _read_file(f):
            rows[(p.run, p.step, p.kind)] = p  # later files win
    return sorted(rows.values(), key=_order)


def latest_predictions(source: Path | str, kind: str = T_GROK) -> dict[str, Prediction]:
    """The newest prediction of ``kind`` per run (by the step it was made at)."""
    out: dict[str, Prediction] = {}
    for p in read_predictions(source):
        if p.kind == kind:
            out[p.run] = p
    return out


class PredictionLog:
    """Appends predictions of one sweep; safe across threads and processes."""

    def __init__(self, sweep_dir: Path | str, compact_every: int = 64):
        self.sweep_dir = Path(sweep_dir)
        self.dir = self.sweep_dir / WATCHER_DIR
        self.compact_every = max(1, compact_every)
        self._seq = 0
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.dir / PREDICTIONS

    def append(self, preds: Iterable[Prediction]) -> None:
        preds = sorted(preds, key=_order)
        if not preds:
            return
        with self._lock:
            parts = self.dir / PARTS
            parts.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.arrow"
            atomic_write_bytes(parts / name, to_ipc(preds))
            if len(_parts(self.sweep_dir)) >= self.compact_every:
                self._compact()

    def compact(self) -> None:
        """Fold the part files into predictions.arrow."""
        with self._lock:
            self._compact()

    def replace(self, preds: Iterable[Prediction]) -> None:
        """Make ``preds`` the whole log (a replay does this)."""
        with self._lock, self._flock():
            write_predictions(self.path, preds)
            for p in _parts(self.sweep_dir):
                _unlink(p)

    def _compact(self) -> None:
        with self._flock():
            parts = _parts(self.sweep_dir)
            if not parts:
                return
            rows = read_predictions(self.sweep_dir)
            write_predictions(self.path, rows)
            for p in parts:
                _unlink(p)

    @contextlib.contextmanager
    def _flock(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: the dedup on read still holds
            yield
            return
        fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
