"""The tiny preset really groks: memorization first, generalization much later."""

from __future__ import annotations

import pytest

import trainer.train as tt
from grokwatch.runs.phases import phase_of
from grokwatch.store import RunReader, read_status
from trainer.config import TrainConfig

GROK_SEED = 1  # measured: t_mem 84, t_grok 4670 (wd 1.0, one thread, ~10 ms/step)


@pytest.mark.slow
def test_tiny_preset_groks(tmp_path):
    cfg = TrainConfig.from_preset(
        "tiny",
        root=str(tmp_path),
        sweep="s",
        run_id="grok",
        seed=GROK_SEED,
        steps=12_000,
        stop_after_grok=100,
        flush_steps=200,
        probe_every=0,
        checkpoint_every=100_000,
        threads=1,
    )
    assert tt.train(cfg) == 0
    st = read_status(cfg.run_dir)
    assert st["state"] == "completed" and "stopped 100 steps after" in st["message"]
    t_mem, t_grok = st["t_mem"], st["t_grok"]
    assert t_mem is not None and t_mem <= 300, "memorizes within a few hundred steps"
    assert t_grok is not None and t_grok - t_mem >= 1000, "generalizes long after memorizing"
    assert t_grok + 100 <= st["last_step"] <= t_grok + 100 + cfg.flush_steps  # stopped at the next flush
    r = RunReader(cfg.run_dir)
    r.refresh()
    info = phase_of(r.scalars)
    assert (info.phase, info.t_mem, info.t_grok) == ("grokked", t_mem, t_grok)
