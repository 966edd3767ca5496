"""A :class:`~grokwatch.store.RunReader` with a cheaper per-shard path.

A watcher that starts on a finished 90 x 100K sweep reads ~18,000 shards;
the store's reader spends most of that time per file, not per byte. This
subclass changes how shards are read and nothing else (tests compare it with
the store's reader on resumed attempts, late and corrupt shards):

- a shard is read with one ``read()`` and parsed from memory (pyarrow's
  ``OSFile`` path issues several small reads per file, 3-4x slower);
- shards that arrive together and simply follow each other (one attempt,
  increasing steps) are concatenated as Arrow tables and converted to numpy
  once, so a backfill converts and appends once per run, not once per shard.

Anything unusual (a failure, a resumed attempt, a late shard) goes through
the store's own code path, which also keeps the failure bookkeeping.
Candidates for moving into ``grokwatch.store.reader`` itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from grokwatch.store import RunReader
from grokwatch.store.reader import _table_columns  # the store's own column conversion


class _Shard:
    """A parsed shard whose columns are converted later, together with its neighbours."""

    __slots__ = ("table", "steps")

    def __init__(self, table: pa.Table, steps: np.ndarray):
        self.table = table
        self.steps = steps


class BatchReader(RunReader):
    def _read_shard(self, path: Path):
        if path.name not in self.failed_files:  # earlier failures: the store's path logs the recovery
            try:
                table = pa.ipc.open_file(pa.py_buffer(path.read_bytes())).read_all()
                if "step" in table.column_names:
                    steps = table.column("step").to_numpy(zero_copy_only=False)
                    if steps.dtype.kind in "iu" or np.all(np.isfinite(steps)):
                        return _Shard(table, steps.astype(np.int64))
            except (OSError, ValueError, pa.ArrowException):
                pass
        return super()._read_shard(path)  # warns, counts the failure, retries later

    def _integrate(self, kind, st, loaded, delta) -> None:
        loaded = sorted(loaded, key=lambda item: item[0])
        shards = [c for _, c in loaded if isinstance(c, _Shard)]
        if (
            len(shards) == len(loaded) > 1
            and (st.newest is None or loaded[0][0] > st.newest)
            and len({p.attempt for p, _ in loaded}) == 1
        ):
            steps = np.concatenate([s.steps for s in shards])
            if np.all(np.diff(steps) > 0):
                try:
                    table = pa.concat_tables([s.table for s in shards], promote_options="permissive")
                except (pa.ArrowException, ValueError):
                    table = None
                if table is not None:
                    super()._integrate(kind, st, [(loaded[-1][0], _table_columns(table, self.wanted))], delta)
                    return
        loaded = [(p, _table_columns(c.table, self.wanted) if isinstance(c, _Shard) else c) for p, c in loaded]
        super()._integrate(kind, st, loaded, delta)
