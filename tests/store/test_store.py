"""The data contract of DESIGN section 2, from both sides."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pyarrow as pa
import pytest

from grokwatch.store import (
    RunReader,
    RunWriter,
    ShardName,
    check_run_id,
    columns_to_ipc,
    list_runs,
    merge_newest,
    read_status,
)


def write_rows(writer: RunWriter, steps, loss=lambda s: 1.0 / s, **extra):
    for s in steps:
        writer.log("scalars", s, {"train_loss": loss(s), **{k: f(s) for k, f in extra.items()}})
        writer.maybe_flush()


def test_round_trip(tmp_path):
    run = tmp_path / "sweep" / "wd1-s00"
    with RunWriter(run, {"seed": 0, "weight_decay": 1.0}, flush_steps=7) as w:
        write_rows(w, range(1, 51), val_acc=lambda s: 0.5 if s % 10 == 0 else np.nan)
        w.log("probes", 25, {"h0_entropy": 1.5})
        w.log("probes", 50, {"h0_entropy": 1.25})
    r = RunReader(run)
    delta = r.refresh()
    assert delta.rows == {"scalars": 50, "probes": 2}
    sc = r.scalars
    assert sc["step"].tolist() == list(range(1, 51))
    np.testing.assert_allclose(sc["train_loss"], 1.0 / np.arange(1, 51), rtol=1e-6)
    assert np.isnan(sc["val_acc"][0]) and sc["val_acc"][9] == 0.5
    assert r.probes["h0_entropy"].tolist() == [1.5, 1.25]
    assert r.config.seed == 0 and r.config.weight_decay == 1.0 and r.config.meta["host"]
    assert r.status.state == "completed" and r.status.last_step == 50
    # Shards follow the naming of the contract and no temp file remains.
    names = sorted(os.listdir(run / "shards"))
    assert names[0] == "probes-000000050.arrow"
    assert all(ShardName.parse(n) for n in names)
    assert list_runs(tmp_path / "sweep") == [run]


def test_refresh_reads_only_new_shards(tmp_path, monkeypatch):
    run = tmp_path / "r"
    w = RunWriter(run, {}, flush_steps=10).open()
    write_rows(w, range(1, 31))
    r = RunReader(run)
    r.refresh()
    opened = []
    real = pa.OSFile

    def spy(path, *a, **k):
        opened.append(os.path.basename(path))
        return real(path, *a, **k)

    monkeypatch.setattr(pa, "OSFile", spy)
    assert not r.refresh()
    assert opened == []
    write_rows(w, range(31, 41))
    assert r.refresh().rows == {"scalars": 10}
    assert opened == ["scalars-000000040.arrow"]
    assert r.scalars["step"][-1] == 40


def test_flush_every_n_steps_or_t_seconds(tmp_path):
    w = RunWriter(tmp_path / "r", {}, flush_steps=1000, flush_seconds=0.2).open()
    w.log("scalars", 1, {"x": 1.0})
    assert not w.maybe_flush()
    time.sleep(0.25)
    assert w.maybe_flush()
    assert len(os.listdir(tmp_path / "r" / "shards")) == 1


def test_resume_keeps_newest_row_per_step(tmp_path):
    run = tmp_path / "r"
    with RunWriter(run, {}, flush_steps=10) as w:
        write_rows(w, range(1, 26), loss=lambda s: 1.0)
    with pytest.raises(FileExistsError):
        RunWriter(run, {}).open()
    r = RunReader(run)
    r.refresh()
    with RunWriter(run, {}, flush_steps=10, resume=True, start_step=15) as w:
        write_rows(w, range(16, 41), loss=lambda s: 2.0)
    delta = r.refresh()
    assert "scalars" in delta.rewritten
    sc = r.scalars
    assert sc["step"].tolist() == list(range(1, 41))  # no gap, no duplicate
    assert (sc["train_loss"][:15] == 1.0).all() and (sc["train_loss"][15:] == 2.0).all()
    assert sc["attempt"].tolist() == [0] * 15 + [1] * 25
    st = read_status(run)
    assert st["restarts"] == 1 and [a["start_step"] for a in st["attempts"]] == [0, 15]
    # The earlier attempt's shards are still on disk, untouched.
    assert "scalars-000000020.arrow" in os.listdir(run / "shards")
    # A cold reader agrees with the incremental one.
    cold = RunReader(run)
    cold.refresh()
    for k, v in sc.items():
        np.testing.assert_array_equal(cold.scalars[k], v)


def test_merge_newest_prefers_later_attempt_then_later_chunk():
    a = {"step": np.array([1, 2, 3]), "x": np.array([1.0, 1, 1]), "attempt": np.array([1, 1, 1])}
    b = {"step": np.array([2, 3, 4]), "x": np.array([0.0, 0, 0]), "attempt": np.array([0, 0, 0])}
    c = {"step": np.array([3]), "x": np.array([5.0]), "attempt": np.array([1])}
    m = merge_newest([a, b, c])
    assert m["step"].tolist() == [1, 2, 3, 4]
    assert m["x"].tolist() == [1.0, 1.0, 5.0, 0.0]


def test_bad_files_are_skipped_with_one_warning_and_retried(tmp_path, caplog):
    run = tmp_path / "r"
    with RunWriter(run, {}, flush_steps=5) as w:
        write_rows(w, range(1, 11))
    shards = run / "shards"
    (shards / "scalars-000000020.arrow").write_bytes(b"")  # empty
    (shards / "scalars-000000030.arrow").write_bytes(os.urandom(500))  # corrupt
    (shards / "scalars-000000040.arrow").write_bytes(columns_to_ipc({"step": [1]})[:-40])  # truncated
    (shards / "scalars-000000050.arrow.tmp").write_bytes(b"half")  # in flight
    (shards / "README.txt").write_text("foreign")
    (shards / "probes-000000060.arrow").write_bytes(_ipc_without_step())
    (run / "stray.bin").write_bytes(b"\0" * 10)
    r = RunReader(run)
    with caplog.at_level(logging.WARNING, logger="grokwatch.store"):
        r.refresh()
        r.refresh()
    assert r.scalars["step"].tolist() == list(range(1, 11))
    assert set(r.failed_files) == {
        "scalars-000000020.arrow",
        "scalars-000000030.arrow",
        "scalars-000000040.arrow",
        "probes-000000060.arrow",
    }
    assert all(n == 2 for n in r.failed_files.values())  # tried again, never given up on
    msgs = [rec.getMessage() for rec in caplog.records]
    assert sum("scalars-000000030.arrow" in m for m in msgs) == 1  # one warning, not one per refresh
    assert sum("README.txt" in m for m in msgs) == 1
    assert not any(".tmp" in m for m in msgs)
    # A file delivered late (network filesystems) is read on a later refresh.
    (shards / "scalars-000000030.arrow").write_bytes(columns_to_ipc({"step": [11, 12], "train_loss": [0.1, 0.2]}))
    r.refresh()
    assert r.scalars["step"].tolist() == list(range(1, 13))
    assert "scalars-000000030.arrow" not in r.failed_files


def _ipc_without_step() -> bytes:
    table = pa.table({"h0_entropy": [1.0]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def test_columns_differ_between_shards(tmp_path):
    run = tmp_path / "r"
    w = RunWriter(run, {}).open()
    w.write_shard("probes", {"step": [10], "a": [1.0]})
    r = RunReader(run)
    r.refresh()
    w.write_shard("probes", {"step": [20], "b": [2.0]})
    r.refresh()
    p = r.probes
    assert p["step"].tolist() == [10, 20]
    assert p["a"][0] == 1.0 and np.isnan(p["a"][1])
    assert np.isnan(p["b"][0]) and p["b"][1] == 2.0


def test_column_projection_bounds_memory(tmp_path):
    run = tmp_path / "r"
    w = RunWriter(run, {}).open()
    w.write_shard("scalars", {"step": [1, 2], "train_loss": [1.0, 2.0], "grad_norm/attn": [3.0, 4.0]})
    r = RunReader(run, columns=["train_loss"])
    r.refresh()
    assert set(r.scalars) == {"step", "train_loss", "attempt"}


def _writer_proc(run, n_shards, rows):
    w = RunWriter(run, {"k": 1}, flush_steps=rows).open()
    for i in range(n_shards * rows):
        w.log("scalars", i + 1, {"train_loss": float(i), "val_acc": float(i % 3)})
        w.maybe_flush()
    w.close()


@pytest.mark.slow
def test_reader_racing_live_writer_never_sees_partial_shard(tmp_path, caplog):
    run = tmp_path / "race"
    proc = mp.get_context("spawn").Process(target=_writer_proc, args=(run, 300, 50))
    proc.start()
    r = RunReader(run)
    seen = 0
    with caplog.at_level(logging.WARNING, logger="grokwatch.store"):
        while proc.is_alive() or seen < 300 * 50:
            r.refresh()
            sc = r.scalars
            if "step" in sc and len(sc["step"]):
                n = len(sc["step"])
                # Always a gap-free prefix: whole shards only, in order.
                assert sc["step"][-1] == n and n % 50 == 0
                np.testing.assert_array_equal(sc["train_loss"], np.arange(n, dtype=np.float32))
                seen = n
            if not proc.is_alive() and seen < 300 * 50:
                r.refresh()
                seen = len(r.scalars["step"])
                break
    proc.join()
    assert proc.exitcode == 0
    assert seen == 300 * 50
    assert not r.failed_files
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


def test_the_writer_handles_no_signals(tmp_path):
    """Signals are the trainer's business (trainer/stopping.py): the writer
    installs no handler, and has no API for them."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    with RunWriter(tmp_path / "r", {}, flush_steps=1000) as w:
        write_rows(w, range(1, 6))
        assert {s: signal.getsignal(s) for s in before} == before
    assert {s: signal.getsignal(s) for s in before} == before
    assert not [n for n in dir(w) if "signal" in n]
    assert read_status(tmp_path / "r")["state"] == "completed"


def test_exception_flushes_and_marks_failed(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(RuntimeError):
        with RunWriter(run, {}, flush_steps=1000) as w:
            write_rows(w, range(1, 4))
            raise RuntimeError("boom\nsecond line")
    st = read_status(run)
    assert st["state"] == "failed" and "boom" in st["message"]
    r = RunReader(run)
    r.refresh()
    assert len(r.scalars["step"]) == 3


def test_unsafe_run_ids_are_refused():
    for bad in ["", "..", "a/b", "a b", "x;rm -rf", "é"]:
        with pytest.raises(ValueError):
            check_run_id(bad)
    assert check_run_id("wd0.3-s07") == "wd0.3-s07"
