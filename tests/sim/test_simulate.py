"""The synthetic sweep: realistic, complete, reproducible, written by the real writer."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from grokwatch.runs.phases import phase_of
from grokwatch.sim.simulate import MATRICES, plan_sweep, simulate_sweep
from grokwatch.store import RunReader, list_runs, read_run_config, read_status

SCALARS = {
    "step",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "grad_norm",
    "weight_norm",
    "update_norm",
    "lr",
    "grad_norm/embed",
    "weight_norm/mlp",
}
PROBES = {
    "h0_total",
    "h0_effective_count",
    "h0_median",
    "h0_entropy",
    "commutator_defect",
    "defect_transverse_frac",
    "hessian_lambda_max",
    "hessian_lambda_min",
    "hessian_trace",
    "update_cosine",
    "pca2_variance_share",
    "effective_rank/unembed",
} | {f"htsr_{k}/{m}" for k in ("alpha", "traps", "ks", "n_tail") for m in MATRICES}


def _data(sweep):
    out = {}
    for rd in list_runs(sweep):
        r = RunReader(rd)
        r.refresh()
        out[rd.name] = (r.scalars, r.probes, read_run_config(rd), read_status(rd))
    return out


def test_default_sweep_plan():
    plans = plan_sweep()
    assert len(plans) == 90
    assert {(p.weight_decay, p.seed) for p in plans} == {(wd, s) for wd in (0.1, 0.3, 1.0) for s in range(30)}
    fates = [p.fate for p in plans]
    assert fates.count("anti_grok") == fates.count("diverge") == fates.count("stall") == 1
    assert fates.count("never") >= 1 and sum(p.preempt_at is not None for p in plans) == 1
    by_wd = {wd: np.median([p.t_on for p in plans if p.weight_decay == wd]) for wd in (0.1, 0.3, 1.0)}
    assert by_wd[1.0] < by_wd[0.3] < by_wd[0.1]  # more weight decay, shorter plateau


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return simulate_sweep(tmp_path_factory.mktemp("a"), "s", runs=6, steps=3000, seed=5)


def test_columns_truth_and_fates(sweep):
    data = _data(sweep)
    assert len(data) == 6
    fates = {}
    for rid, (sc, pr, cfg, status) in data.items():
        assert SCALARS <= set(sc) and PROBES <= set(pr)
        assert np.all(pr["step"] % cfg["probe_every"] == 0)
        evals = np.isfinite(sc["val_acc"])
        assert np.all(sc["step"][evals] % cfg["eval_every"] == 0)
        truth = cfg["simulated"]
        info = phase_of(sc)
        assert (info.t_mem, info.t_grok) == (truth["t_mem"], truth["t_grok"]), rid
        fates[truth["fate"]] = (sc, pr, cfg, status)
        assert cfg["weight_decay"] in (0.1, 0.3, 1.0) and cfg["steps"] == 3000 and cfg["contract_version"] >= 1
    sc, pr, cfg, status = fates["anti_grok"]
    assert phase_of(sc).phase == "anti-grokking"
    s = cfg["simulated"]["signals"]
    assert s["htsr_alpha_below_2"] < cfg["simulated"]["t_anti"]
    assert np.nanmin(pr["htsr_alpha/mlp.out"]) < 2 and pr["htsr_traps/mlp.out"].max() > 0
    sc, pr, cfg, status = fates["diverge"]
    assert status["state"] == "diverged" and np.isnan(sc["train_loss"][-1])
    sc, pr, cfg, status = fates["stall"]
    assert status["state"] == "running" and sc["step"][-1] == cfg["simulated"]["t_stall"]
    assert status["heartbeat_unix"] < read_status(sweep / cfg["run_id"])["heartbeat_unix"] + 1
    resumed = [st for _, _, _, st in data.values() if st.get("restarts")]
    assert len(resumed) == 1 and resumed[0]["state"] == "completed"
    # Planted signals around onset, for a run that groks:
    for sc, _, cfg, _ in data.values():
        t = cfg["simulated"]
        if t["fate"] == "groks" and t["t_grok"]:
            gn = sc["grad_norm"]
            i = np.searchsorted(sc["step"], t["signals"]["gai_surge"])
            assert gn[i] > 1.8 * gn[i - 100]  # grad-norm surge before onset
            assert t["signals"]["gai_surge"] < t["t_grok"] and t["signals"]["h0_entropy_shift"] < t["t_grok"]
            wn = sc["weight_norm"]
            assert wn[-1] < wn[np.searchsorted(sc["step"], t["t_mem"])]  # weight norm decays
            break
    else:
        pytest.fail("no grokking run")


def test_same_seed_same_data_at_once_or_live(tmp_path):
    a = simulate_sweep(tmp_path / "a", "s", runs=5, steps=600, seed=9)
    b = simulate_sweep(
        tmp_path / "b", "s", runs=5, steps=600, seed=9, speed=3000, flush_seconds=0.05, stop=threading.Event()
    )
    da, db = _data(a), _data(b)
    assert da.keys() == db.keys()
    for rid in da:
        for k in (0, 1):
            assert da[rid][k].keys() == db[rid][k].keys()
            for col in da[rid][k]:
                if col != "attempt":
                    np.testing.assert_array_equal(da[rid][k][col], db[rid][k][col], err_msg=f"{rid} {col}")
        assert da[rid][2]["simulated"] == db[rid][2]["simulated"]
    c = simulate_sweep(tmp_path / "c", "s", runs=5, steps=600, seed=10)
    assert not np.array_equal(_data(c)["wd0.1-s00"][0]["grad_norm"], da["wd0.1-s00"][0]["grad_norm"])
