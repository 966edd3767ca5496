"""Stopping, one way for a lone run and a pack: signals, exit codes, and the
trainer's modules importing each other without a cycle."""

from __future__ import annotations

import ast
import os
import signal
from pathlib import Path

import pytest
import torch

import trainer.pack as tp
import trainer.train as tt
from grokwatch.store import RunReader, read_status
from trainer.config import TrainConfig
from trainer.probes import PROBES

TRAINER = Path(__file__).resolve().parents[2] / "trainer"


def trainer_imports() -> dict[str, set[str]]:
    """Module -> the trainer modules it imports, at any depth (lazy imports too)."""
    graph: dict[str, set[str]] = {}
    for path in TRAINER.glob("*.py"):
        name = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1:
                    deps.add(mod.split(".")[0] if mod else "")
                    if not mod:  # from . import task
                        deps.update(a.name for a in node.names)
                elif mod.startswith("trainer."):
                    deps.add(mod.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("trainer."))
        graph[name] = deps - {"", name}
    return graph


def test_no_import_cycle_between_trainer_modules():
    graph = trainer_imports()
    assert "pack" not in graph["__main__"] and "__main__" not in graph["pack"]
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            assert state.get(d) != 1, f"import cycle: {' -> '.join([*path, m, d])}"
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def tiny(tmp_path: Path, run_id: str, **kw) -> TrainConfig:
    base = dict(steps=200, flush_steps=50, flush_seconds=1000.0, checkpoint_every=1000, threads=1)
    return TrainConfig.from_preset("tiny", root=str(tmp_path), sweep="s", run_id=run_id, **{**base, **kw})


def train_lone_or_pack(kind: str, tmp_path: Path, **kw) -> tuple[int, list[TrainConfig]]:
    if kind == "lone":
        cfgs = [tiny(tmp_path, "a", **kw)]
        return tt.train(cfgs[0]), cfgs
    cfgs = [tiny(tmp_path, "a", **kw), tiny(tmp_path, "b", seed=1, weight_decay=0.3, **kw)]
    return tp.train_pack(cfgs), cfgs


def signal_at(monkeypatch, sig: signal.Signals, times: int = 1) -> None:
    """A probe that sends ``sig`` to this process (``times`` times) the first
    time it runs (a pack probes each of its runs)."""
    sent = []

    def send(ctx):
        if not sent:
            sent.append(sig)
            for _ in range(times):
                os.kill(os.getpid(), sig)
        return {}

    monkeypatch.setitem(PROBES, "send", send)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["lone", "pack"])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGUSR1, 75), (signal.SIGTERM, 75), (signal.SIGINT, 130)])
def test_a_stop_signal_checkpoints_at_the_step_boundary(tmp_path, monkeypatch, kind, sig, code):
    """The signal comes during step 30: the step ends, everything is flushed and
    checkpointed at 30, the runs are preempted, the handlers are restored."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    signal_at(monkeypatch, sig)
    rc, cfgs = train_lone_or_pack(kind, tmp_path, probe_every=30, probes=["send"])
    assert rc == code
    assert {s: signal.getsignal(s) for s in before} == before
    for c in cfgs:
        st = read_status(c.run_dir)
        assert st["state"] == "preempted" and st["last_step"] == 30
        assert st["message"] == f"stopped by {sig.name} at step 30; resume with --resume"
        assert torch.load(c.run_dir / "checkpoint.pt", weights_only=True)["step"] == 30
        r = RunReader(c.run_dir)
        r.refresh()
        assert r.scalars["step"].tolist() == list(range(1, 31))


@pytest.mark.parametrize("kind", ["lone", "pack"])
def test_a_second_sigint_interrupts_at_once(tmp_path, monkeypatch, kind):
    """Two SIGINTs: KeyboardInterrupt in the middle of step 30; the rows of the
    steps before it are kept, no checkpoint, the runs are preempted."""
    before = signal.getsignal(signal.SIGINT)
    signal_at(monkeypatch, signal.SIGINT, times=2)
    with pytest.raises(KeyboardInterrupt):
        train_lone_or_pack(kind, tmp_path, probe_every=30, probes=["send"])
    assert signal.getsignal(signal.SIGINT) == before
    for c in (tmp_path / "s").iterdir():
        st = read_status(c)
        assert st["state"] == "preempted" and st["message"] == "stopped by SIGINT at step 30"
        assert not (c / "checkpoint.pt").exists()
        r = RunReader(c)
        r.refresh()
        assert r.scalars["step"].tolist() == list(range(1, 30))
