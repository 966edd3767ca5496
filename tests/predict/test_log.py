"""predictions.arrow: atomic appends, compaction, round trip."""

from __future__ import annotations

import os

import pyarrow as pa

from grokwatch.predict import (
    Prediction,
    PredictionLog,
    latest_predictions,
    predictions_path,
    read_predictions,
    write_predictions,
)
from grokwatch.predict.log import PARTS, SCHEMA


def _preds(run="r1", start=0, n=5):
    out = []
    for k in range(n):
        step = start + 100 * (k + 1)
        if k % 2:
            out.append(Prediction(run, step, "t_grok", "insufficient-data", n_calib=1))
        else:
            out.append(Prediction(run, step, "t_grok", "wnorm-analog", 5000.0 + k, 4000.5, 6000.25, None, 7))
    out.append(Prediction(run, start + 100, "will_grok", "spectral-logistic", p_grok=0.25, n_calib=9))
    return out


def test_round_trip_keeps_every_field(tmp_path):
    preds = _preds()
    write_predictions(tmp_path / "p.arrow", preds)
    got = read_predictions(tmp_path / "p.arrow")
    assert sorted(got, key=lambda p: (p.step, p.kind)) == sorted(preds, key=lambda p: (p.step, p.kind))
    with pa.OSFile(str(tmp_path / "p.arrow"), "rb") as fh:
        table = pa.ipc.open_file(fh).read_all()
    assert table.schema == SCHEMA
    assert {"run", "step", "t_grok_pred", "lo", "hi", "method"} <= set(table.column_names)
    assert table.column("t_grok_pred").null_count == 3  # insufficient-data and will_grok rows: no number
    assert not list(tmp_path.glob("*.tmp"))


def test_appends_are_part_files_then_compacted(tmp_path):
    log = PredictionLog(tmp_path, compact_every=3)
    log.append(_preds("a"))
    log.append(_preds("b"))
    parts = list((tmp_path / ".grokwatch" / PARTS).glob("part-*.arrow"))
    assert len(parts) == 2 and not predictions_path(tmp_path).exists()
    assert len(read_predictions(tmp_path)) == 12  # parts are read without compaction
    log.append(_preds("c"))  # the third part triggers compaction
    assert predictions_path(tmp_path).exists()
    assert not list((tmp_path / ".grokwatch" / PARTS).glob("part-*"))
    assert len(read_predictions(tmp_path)) == 18
    assert latest_predictions(tmp_path)["b"].step == 500


def test_duplicates_and_debris_are_harmless(tmp_path):
    log = PredictionLog(tmp_path)
    log.append(_preds("a"))
    log.compact()
    log.append(_preds("a"))  # the same (deterministic) rows again: a second watcher, or a crash before unlink
    d = tmp_path / ".grokwatch"
    (d / PARTS / "part-99999999999999999999-1-000001.arrow.tmp").write_bytes(b"half a file")
    (d / PARTS / "part-99999999999999999999-1-000002.arrow").write_bytes(b"not arrow")  # unreadable: skipped
    got = read_predictions(tmp_path)
    assert len(got) == 6
    assert got == sorted(got, key=lambda p: (p.step, p.run, p.kind))


def test_replace_makes_the_whole_log(tmp_path):
    log = PredictionLog(tmp_path)
    log.append(_preds("old"))
    log.replace(_preds("new"))
    assert {p.run for p in read_predictions(tmp_path)} == {"new"}
    assert not [n for n in os.listdir(tmp_path / ".grokwatch" / PARTS) if n.endswith(".arrow")]


def test_missing_log_reads_empty(tmp_path):
    assert read_predictions(tmp_path) == []
    assert latest_predictions(tmp_path) == {}
