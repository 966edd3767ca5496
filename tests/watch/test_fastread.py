"""BatchReader (the watcher's reader) gives exactly what the store's RunReader gives."""

from __future__ import annotations

import numpy as np
import pytest
from watch_helpers import flat_run_columns, start_run

from grokwatch.sim.simulate import simulate_sweep
from grokwatch.store import RunReader, RunWriter, columns_to_ipc, list_runs
from grokwatch.watch.fastread import BatchReader


def _same(a: RunReader, b: RunReader) -> None:
    for kind in a.kinds:
        da, db = a.data(kind), b.data(kind)
        assert da.keys() == db.keys(), kind
        for k in da:
            np.testing.assert_array_equal(
                np.asarray(da[k], dtype=np.float64), np.asarray(db[k], dtype=np.float64), err_msg=k
            )
    assert a.failed_files == b.failed_files


def test_same_data_on_a_simulated_sweep(tmp_path):
    sweep = simulate_sweep(tmp_path, "s", runs=6, steps=3000, seed=4)  # includes a resumed run
    for rd in list_runs(sweep):
        a, b = RunReader(rd), BatchReader(rd)
        a.refresh(), b.refresh()
        _same(a, b)


@pytest.mark.parametrize("columns", [None, ("grad_norm", "new_metric")])
def test_same_data_through_resumes_late_corrupt_and_new_columns(tmp_path, columns):
    w = start_run(tmp_path, "r")
    readers = (RunReader(w.run_dir, columns=columns), BatchReader(w.run_dir, columns=columns))
    shards = w.run_dir / "shards"

    def step():
        deltas = [r.refresh() for r in readers]
        assert deltas[0].rows == deltas[1].rows and deltas[0].rewritten == deltas[1].rewritten
        _same(*readers)

    for a in (1, 101, 201):
        w.write_shard("scalars", flat_run_columns(a, a + 100))
    step()
    late = flat_run_columns(301, 401)
    w.write_shard("scalars", flat_run_columns(401, 501))
    (shards / "scalars-000000400.arrow").write_bytes(b"garbage")
    step()
    (shards / "scalars-000000400.arrow").write_bytes(columns_to_ipc(late))  # fixed, late
    step()
    extra = flat_run_columns(501, 601)
    extra["new_metric"] = np.arange(100.0)
    w.write_shard("scalars", extra)
    w.write_shard("scalars", flat_run_columns(601, 701))
    step()
    w.close("preempted")
    w2 = RunWriter(w.run_dir, {"seed": 1}, resume=True, start_step=550).open()  # attempt 1 rewrites 551..
    for a in (551, 651, 751):
        cols = flat_run_columns(a, a + 100)
        cols["grad_norm"] = cols["grad_norm"] * 2
        w2.write_shard("scalars", cols)
    step()
    assert readers[1].scalars["grad_norm"][-1] == 2.0 and readers[1].scalars["step"][-1] == 850
