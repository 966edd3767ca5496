"""The run contract: RunConfig (run.json) and RunStatus (status.json), typed and versioned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grokwatch.store import (
    CONTRACT_VERSION,
    RUN_JSON,
    STATUS_JSON,
    ContractError,
    RunConfig,
    RunReader,
    RunStatus,
    RunWriter,
    list_runs,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real_tiny"
EVIDENCE = Path("/work/evidence")


def test_run_config_round_trip():
    cfg = RunConfig(
        run_id="wd0.3-s02",
        sweep="tiny",
        preset="tiny",
        seed=2,
        weight_decay=0.3,
        lr=3e-3,
        steps=20_000,
        checkpoint_every=1000,
        critical_weight_norm=12.5,
        meta={"host": "vm"},
        extra={"beta1": 0.9, "probes": ["h0@10"], "simulated": {"fate": "groks"}},
    )
    obj = json.loads(json.dumps(cfg.to_json()))
    assert obj["contract_version"] == CONTRACT_VERSION and obj["lr"] == 3e-3 and obj["steps"] == 20_000
    assert RunConfig.from_json(obj) == cfg
    assert RunConfig.from_json(RunConfig().to_json()) == RunConfig()
    assert "seed" not in RunConfig(steps=5).to_json()  # unknown fields are left out of run.json


def test_run_status_round_trip():
    st = RunStatus(
        state="preempted",
        last_step=120,
        heartbeat="2026-01-01T00:00:00.000Z",
        heartbeat_unix=1.5e9,
        pid=7,
        host="h",
        slurm={"job_id": "5"},
        attempt=1,
        restarts=1,
        attempts=({"attempt": 0, "start_step": 0}, {"attempt": 1, "start_step": 100}),
        message="stopped by SIGTERM",
        extra={"t_mem": 80, "t_grok": None},
    )
    obj = json.loads(json.dumps(st.to_json()))
    assert obj["contract_version"] == CONTRACT_VERSION and obj["t_mem"] == 80
    assert RunStatus.from_json(obj) == st
    assert RunStatus().to_json()["message"] is None  # every status field is written, null when unknown


def test_files_from_before_the_contract_still_read():
    """The committed fixture runs have no contract_version: read by their old spellings."""
    runs = list_runs(FIXTURES)
    assert runs
    for d in runs:
        raw = json.loads((d / RUN_JSON).read_text())
        assert "contract_version" not in raw
        cfg = RunConfig.read(d)
        assert (cfg.run_id, cfg.seed, cfg.weight_decay, cfg.steps, cfg.preset) == (
            d.name,
            raw["seed"],
            raw["weight_decay"],
            raw["steps"],
            "tiny",
        )
        assert cfg.extra["d_model"] == raw["d_model"] and cfg.meta["host"] == raw["meta"]["host"]
        st = RunStatus.read(d)
        assert st.state == "completed" and st.last_step > 0 and st.extra["t_mem"] is not None
    # older spellings: total_steps / wd, and a value one table down
    old = RunConfig.from_json({"total_steps": 10.0, "optimizer": {"wd": 0.5}, "seed": 3})
    assert (old.steps, old.weight_decay, old.seed) == (10, 0.5, 3)
    assert old.extra["total_steps"] == 10.0  # kept as the writer wrote it
    # with a version, names are exact: no guessing
    assert RunConfig.from_json({"contract_version": 1, "total_steps": 10, "wd": 0.5}).steps is None


@pytest.mark.skipif(not EVIDENCE.is_dir(), reason="the evidence sweep is not on this machine")
def test_the_evidence_sweep_reads():
    dirs = [d for sweep in EVIDENCE.iterdir() if sweep.is_dir() for d in list_runs(sweep)]
    assert dirs
    for d in dirs:
        cfg, st = RunConfig.read(d), RunStatus.read(d)
        assert cfg.seed is not None and cfg.weight_decay is not None and cfg.steps and st.state


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ({"contract_version": CONTRACT_VERSION + 1, "seed": 1}, "newer grokwatch"),
        ({"contract_version": "1"}, "'contract_version' must be a positive integer"),
        ({"seed": "three"}, "'seed' must be an integer, got 'three'"),
        ({"seed": True}, "'seed' must be an integer"),
        ({"contract_version": 1, "steps": 1.5}, "'steps' must be an integer, got 1.5"),
        ({"weight_decay": "high"}, "'weight_decay' must be a finite number"),
        ({"wd": [1]}, "'weight_decay' must be a finite number"),
        ({"meta": "x"}, "'meta' must be a JSON object"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_bad_run_json_is_a_one_line_error(obj, fragment):
    with pytest.raises(ContractError) as e:
        RunConfig.from_json(obj)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg and msg.startswith("run.json: "), msg


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ({"contract_version": CONTRACT_VERSION + 1, "state": "running"}, "newer grokwatch"),
        ({"state": "exploded"}, "'state' must be one of running, completed"),
        ({"state": "running", "last_step": "12"}, "'last_step' must be an integer"),
        ({"state": "running", "attempts": [1]}, "'attempts' must be a list of JSON objects"),
    ],
)
def test_bad_status_json_is_a_one_line_error(obj, fragment):
    with pytest.raises(ContractError) as e:
        RunStatus.from_json(obj)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg and msg.startswith("status.json: "), msg


def test_read_names_the_file_and_a_missing_file_is_none(tmp_path):
    assert RunConfig.read(tmp_path) is None and RunStatus.read(tmp_path) is None
    (tmp_path / RUN_JSON).write_text('{"contract_version": 99}')
    (tmp_path / STATUS_JSON).write_text("{not json")
    with pytest.raises(ContractError, match=f"^{tmp_path / RUN_JSON}: written by a newer grokwatch"):
        RunConfig.read(tmp_path)
    with pytest.raises(ContractError, match=f"^{tmp_path / STATUS_JSON}: unreadable"):
        RunStatus.read(tmp_path)


def test_a_reader_never_raises_for_a_bad_file_and_says_why(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / RUN_JSON).write_text('{"contract_version": 99}')
    r = RunReader(run)
    r.refresh()
    assert r.config is None and "newer grokwatch" in r.contract_errors[RUN_JSON]
    (run / RUN_JSON).write_text('{"seed": 4}')  # fixed: read at the next refresh
    r.refresh()
    assert r.config.seed == 4 and RUN_JSON not in r.contract_errors


def test_the_writer_writes_the_contract(tmp_path):
    """A mapping given to RunWriter is read as run.json, so every file it writes is versioned."""
    with RunWriter(tmp_path / "r", {"seed": 1, "total_steps": 50, "lr": 0.1}) as w:
        w.log("scalars", 1, {"train_loss": 1.0})
        w.write_status(force=True, t_mem=None)
    raw = json.loads((tmp_path / "r" / RUN_JSON).read_text())
    assert raw["contract_version"] == CONTRACT_VERSION and raw["steps"] == 50 and raw["lr"] == 0.1
    assert raw["meta"]["host"]
    st = json.loads((tmp_path / "r" / STATUS_JSON).read_text())
    assert st["contract_version"] == CONTRACT_VERSION and st["state"] == "completed" and "t_mem" in st
    assert RunStatus.from_json(st).attempts[0]["attempt"] == 0
    with pytest.raises(ContractError, match="'seed' must be an integer"):
        RunWriter(tmp_path / "bad", {"seed": "x"})
