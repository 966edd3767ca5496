"""The reading side of the data contract (DESIGN section 2).

:class:`RunReader` follows one run incrementally: each :meth:`RunReader.refresh`
opens only shards it has not read yet. Steps repeated by a resumed attempt are
resolved in favour of the newest attempt. A shard that fails to open (corrupt,
empty, half-delivered by a network filesystem) or that lacks ``step`` gets one
warning and is tried again on later refreshes, never given up on and never an
exception to the caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .atomic import read_json
from .contract import ContractError, RunConfig, RunStatus
from .layout import KINDS, RUN_JSON, SHARDS_DIR, STATUS_JSON, WATCHER_DIR, ShardName

log = logging.getLogger("grokwatch.store")


def list_runs(sweep_dir: Path | str) -> list[Path]:
    """Run directories of a sweep: sub-directories that hold a ``run.json``."""
    sweep_dir = Path(sweep_dir)
    try:
        entries = list(os.scandir(sweep_dir))
    except OSError as exc:
        log.warning("cannot list sweep %s: %s", sweep_dir, exc)
        return []
    runs = []
    for e in entries:
        if e.name.startswith(".") or e.name == WATCHER_DIR:
            continue
        try:
            if e.is_dir() and os.path.exists(os.path.join(e.path, RUN_JSON)):
                runs.append(Path(e.path))
        except OSError:
            continue
    return sorted(runs)


def read_run_config(run_dir: Path | str) -> dict | None:
    """run.json as raw JSON (None when missing or bad), for tools and tests that
    look at the file itself; readers of a run use :meth:`RunConfig.read`."""
    return read_json(Path(run_dir) / RUN_JSON)


def read_status(run_dir: Path | str) -> dict | None:
    """status.json as raw JSON (None when missing or bad), for tools and tests that
    look at the file itself; readers of a run use :meth:`RunStatus.read`."""
    return read_json(Path(run_dir) / STATUS_JSON)


class Columns:
    """Growable columnar arrays sorted by unique ``step``.

    Appends amortize to O(new rows); ``view()`` hands out slices, no copies.
    """

    def __init__(self) -> None:
        self._buf: dict[str, np.ndarray] = {}
        self.n = 0

    def __len__(self) -> int:
        return self.n

    @property
    def names(self) -> list[str]:
        return list(self._buf)

    def view(self) -> dict[str, np.ndarray]:
        return {k: v[: self.n] for k, v in self._buf.items()}

    def last_step(self) -> int | None:
        return int(self._buf["step"][self.n - 1]) if self.n else None

    def replace(self, cols: dict[str, np.ndarray]) -> None:
        self._buf = {k: np.array(v) for k, v in cols.items()}
        self.n = len(cols["step"]) if cols else 0

    def compact(self) -> None:
        """Drop the spare capacity (a run that will not grow any more)."""
        if self._buf and len(self._buf["step"]) > self.n:
            self._buf = {k: v[: self.n].copy() for k, v in self._buf.items()}

    def append(self, cols: dict[str, np.ndarray]) -> None:
        m = len(cols["step"])
        if m == 0:
            return
        need = self.n + m
        cap = len(self._buf["step"]) if self._buf else 0
        if need > cap:
            # x1.5, not x2: 90 live runs of 100K rows hold their slack in memory
            new_cap = max(need, cap + cap // 2, 256)
            for k in list(self._buf):
                grown = _empty(self._buf[k].dtype, new_cap)
                grown[: self.n] = self._buf[k][: self.n]
                self._buf[k] = grown
        for k, v in cols.items():
            if k not in self._buf:
                dtype = np.dtype(np.int64) if k in _INT_COLS else _widen(v.dtype)
                self._buf[k] = _empty(dtype, max(need, len(self._buf.get("step", ())), 256))
            elif len(self._buf[k]) < need:  # column added after a grow of others
                grown = _empty(self._buf[k].dtype, len(self._buf["step"]))
                grown[: self.n] = self._buf[k][: self.n]
                self._buf[k] = grown
        for k in self._buf:
            self._buf[k][self.n : need] = cols[k] if k in cols else _missing(self._buf[k].dtype)
        self.n = need


_INT_COLS = ("step", "attempt")


def _widen(dtype: np.dtype) -> np.dtype:
    # Integer and bool columns become floats so a shard without them can be NaN.
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    return dtype


def _empty(dtype: np.dtype, n: int) -> np.ndarray:
    arr = np.empty(n, dtype=dtype)
    if dtype.kind == "f":
        arr.fill(np.nan)
    return arr


def _missing(dtype: np.dtype):
    return np.nan if dtype.kind == "f" else 0


def _table_columns(table: pa.Table, wanted: set[str] | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if wanted is not None and name != "step" and name not in wanted:
            continue
        col = table.column(name)
        if pa.types.is_floating(col.type) or pa.types.is_null(col.type):
            arr = col.to_numpy(zero_copy_only=False).astype(np.float32 if pa.types.is_float32(col.type) else np.float64)
        elif name == "step":
            arr = col.to_numpy(zero_copy_only=False).astype(np.int64)
        elif pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
            arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            continue  # strings and nested types are not metrics
        out[name] = arr
    return out


def merge_newest(chunks: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate chunks; keep the newest row per step, sorted by step.

    Newest means the highest ``attempt`` (a resumed run rewrites steps), and
    among equal attempts the chunk given last.
    """
    chunks = [c for c in chunks if c and len(c["step"])]
    if not chunks:
        return {}
    names = list(dict.fromkeys(k for c in chunks for k in c))
    cat: dict[str, np.ndarray] = {}
    for k in names:
        dtype = np.int64 if k in _INT_COLS else np.result_type(*[c[k].dtype for c in chunks if k in c])
        parts = [c[k] if k in c else np.full(len(c["step"]), _missing(np.dtype(dtype)), dtype=dtype) for c in chunks]
        cat[k] = np.concatenate(parts).astype(dtype, copy=False)
    steps = cat["step"]
    attempt = cat.get("attempt", np.zeros_like(steps))
    order = np.lexsort((np.arange(len(steps)), attempt, steps))
    s = steps[order]
    last_of_group = np.ones(len(s), dtype=bool)
    last_of_group[:-1] = s[1:] != s[:-1]
    keep = order[last_of_group]
    return {k: v[keep] for k, v in cat.items()}


@dataclass
class _KindState:
    done: set[str] = field(default_factory=set)
    data: Columns = field(default_factory=Columns)
    newest: ShardName | None = None


@dataclass
class Delta:
    """What a refresh brought: new rows per kind, and whether earlier rows changed."""

    rows: dict[str, int] = field(default_factory=dict)
    rewritten: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return any(self.rows.values()) or bool(self.rewritten)


class RunReader:
    """Incremental reader of one run directory.

    ``columns``: read only these metric columns (plus ``step``), to bound memory
    when a watcher holds a whole sweep.
    """

    def __init__(self, run_dir: Path | str, kinds: Iterable[str] = KINDS, columns: Iterable[str] | None = None):
        self.run_dir = Path(run_dir)
        self.kinds = tuple(kinds)
        self.wanted = set(columns) if columns is not None else None
        self._state = {k: _KindState() for k in self.kinds}
        self._failed: dict[str, int] = {}
        self._bad_names: set[str] = set()
        self.config: RunConfig | None = None  # run.json, once read
        self.status: RunStatus | None = None  # status.json, as of the last refresh
        self.contract_errors: dict[str, str] = {}  # "run.json"/"status.json" -> why it breaks the contract

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def data(self, kind: str = "scalars") -> dict[str, np.ndarray]:
        """Columns of ``kind`` sorted by step, one row per step (views; do not mutate)."""
        return self._state[kind].data.view()

    def compact(self) -> None:
        """Release spare capacity once the run is finished (reading on still works)."""
        for st in self._state.values():
            st.data.compact()

    @property
    def scalars(self) -> dict[str, np.ndarray]:
        return self.data("scalars")

    @property
    def probes(self) -> dict[str, np.ndarray]:
        return self.data("probes")

    @property
    def failed_files(self) -> dict[str, int]:
        """Shard files that failed to read, with the number of tries so far."""
        return dict(self._failed)

    def refresh(self, status: bool = True) -> Delta:
        """Read shards not read before (and status.json); never raises for bad data."""
        delta = Delta()
        if self.config is None:
            self.config = self._read_contract(RunConfig)
        if status:
            self.status = self._read_contract(RunStatus) or self.status
        shard_dir = self.run_dir / SHARDS_DIR
        try:
            names = os.listdir(shard_dir)
        except FileNotFoundError:
            return delta
        except OSError as exc:
            log.warning("%s: cannot list shards: %s", self.run_dir, exc)
            return delta
        new: dict[str, list[tuple[ShardName, str]]] = {k: [] for k in self.kinds}
        for name in names:
            if name.endswith(".tmp"):
                continue
            parsed = ShardName.parse(name)
            if parsed is None:
                if name not in self._bad_names:
                    self._bad_names.add(name)
                    log.warning("%s: ignoring foreign file %s in shards/", self.run_id, name)
                continue
            st = self._state.get(parsed.kind)
            if st is None or name in st.done:
                continue
            new[parsed.kind].append((parsed, name))
        for kind, items in new.items():
            if not items:
                continue
            st = self._state[kind]
            loaded = []
            for parsed, name in sorted(items):
                cols = self._read_shard(shard_dir / name)
                if cols is None:
                    continue
                st.done.add(name)
                loaded.append((parsed, cols))
            if loaded:
                self._integrate(kind, st, loaded, delta)
        return delta

    def _read_contract(self, cls):
        """run.json or status.json through the contract; a bad file is None (tried again
        later), its one-line reason in :attr:`contract_errors` for the caller to report."""
        name = RUN_JSON if cls is RunConfig else STATUS_JSON
        try:
            out = cls.read(self.run_dir)
        except ContractError as exc:
            if name not in self.contract_errors:
                log.debug("%s: %s", self.run_id, exc)
            self.contract_errors[name] = str(exc)
            return None
        self.contract_errors.pop(name, None)
        return out

    def _read_shard(self, path: Path) -> dict[str, np.ndarray] | None:
        name = path.name
        try:
            with pa.OSFile(str(path), "rb") as fh:
                table = pa.ipc.open_file(fh).read_all()
            if "step" not in table.column_names:
                raise ValueError("schema has no 'step' column")
            cols = _table_columns(table, self.wanted)
            if len(cols["step"]) and not np.all(np.isfinite(cols["step"])):
                raise ValueError("non-finite step")
        except (OSError, ValueError, pa.ArrowException) as exc:
            tries = self._failed.get(name, 0) + 1
            self._failed[name] = tries
            if tries == 1:
                log.warning("%s: skipping unreadable shard %s (%s); will retry", self.run_id, name, _one_line(exc))
            return None
        if self._failed.pop(name, None):
            log.info("%s: shard %s read after earlier failures", self.run_id, name)
        return cols

    def _integrate(self, kind: str, st: _KindState, loaded, delta: Delta) -> None:
        loaded.sort(key=lambda item: item[0])
        for parsed, cols in loaded:
            cols["attempt"] = np.full(len(cols["step"]), parsed.attempt, dtype=np.int64)
        before = len(st.data)
        last = st.data.last_step()
        fast = (st.newest is None or loaded[0][0] > st.newest) and all(
            np.all(np.diff(c["step"]) > 0) for _, c in loaded
        )
        prev_max = last
        for _, c in loaded:
            if not fast or not len(c["step"]):
                continue
            if prev_max is not None and int(c["step"][0]) <= prev_max:
                fast = False
            prev_max = int(c["step"][-1])
        newest = max(p for p, _ in loaded)
        st.newest = newest if st.newest is None else max(st.newest, newest)
        if fast:
            for _, cols in loaded:
                st.data.append(cols)
            delta.rows[kind] = len(st.data) - before
            return
        # Out of order (a resumed attempt rewrote steps, or a late shard came):
        # merge what we hold with the new chunks by (step, attempt).
        st.data.replace(merge_newest([st.data.view(), *(c for _, c in loaded)]))
        delta.rewritten.add(kind)
        delta.rows[kind] = max(0, len(st.data) - before)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
