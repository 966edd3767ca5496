"""Columns grow by half their size at a time and give their spare room back when compacted."""

from __future__ import annotations

import numpy as np

from grokwatch.store.reader import Columns


def test_growth_is_bounded_and_compact_releases_the_slack():
    c = Columns()
    for start in range(0, 10_000, 100):
        steps = np.arange(start + 1, start + 101, dtype=np.int64)
        c.append({"step": steps, "loss": steps.astype(np.float32)})
        cap = len(c._buf["step"])
        assert cap <= max(256, int(1.5 * len(c)) + 100)  # never more than ~1.5x what it holds
    before = {k: v.copy() for k, v in c.view().items()}
    c.compact()
    assert len(c._buf["step"]) == len(c) == 10_000
    for k, v in c.view().items():
        assert np.array_equal(v, before[k]) and v.dtype == before[k].dtype
    c.append({"step": np.array([10_001]), "loss": np.array([1.0], dtype=np.float32)})  # still appendable
    assert c.last_step() == 10_001 and len(c) == 10_001
