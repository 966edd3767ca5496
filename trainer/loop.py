"""The training loop, once, for a lone run and for a pack of K runs.

The loop knows runs (host side: writer, metrics, snapshots, cadences) and an
engine that holds their weights on the device and takes the steps: a lone run's
(trainer.train.Lone) or a pack's (trainer.pack.Pack). Per step, in order:
probes (their own cadence; they may sync with the device), validation (the
same weights as the step's train_loss), the step, and its row in the device
buffer (trainer.recording). The buffer leaves the device only at a flush:
every flush_steps steps or flush_seconds seconds, at a checkpoint, a stop, the
last step. Nothing else syncs with the host between two flushes.

A run leaves the loop when its train loss turns non-finite (seen at a flush:
marked diverged) or stop_after_grok steps after it grokked (checkpointed,
completed); the others go on. Stop signals: trainer.stopping.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from grokwatch.store import CHECKPOINT, RunWriter, read_run_config

from .checkpoint import SNAPSHOTS_KEPT, check_same_run, load_checkpoint
from .config import TrainConfig
from .recording import GROK_ACC, Recorder, flush_shards
from .stopping import EXIT_DIVERGED, EXIT_OK, StopSignals


@dataclass
class Run:
    """What the host keeps of one run."""

    cfg: TrainConfig
    start: int = 0  # the step its checkpoint holds (0: fresh)
    joined: bool = False  # trains from step start + 1 on (False while a pack catches up to it)
    saved_step: int = -1
    metrics: dict = field(default_factory=lambda: {"t_mem": None, "t_grok": None, "stop_at": None})
    snapshots: deque = field(default_factory=lambda: deque(maxlen=SNAPSHOTS_KEPT))
    probe_rows: list = field(default_factory=list)  # (step, values), logged at the next flush
    writer: RunWriter = field(init=False, repr=False)  # opened by run_loop


class Engine(Protocol):
    """The device side of the live runs; run i of the loop is the engine's run i."""

    groups: list[str]  # layer groups, for the norm columns
    norm_views: list[torch.Tensor]  # per run: grad, weights before the step, update, by layer group

    def validate(self) -> tuple[torch.Tensor, torch.Tensor]: ...  # val loss, acc [K]
    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor]: ...  # train loss, acc [K]; updates
    def join(self, i: int) -> None: ...  # run i trains from the next step on
    def drop(self, keep: list[int]) -> None: ...  # only these runs go on
    def weights(self, i: int) -> torch.Tensor: ...  # a copy of run i's flat weights
    def probe(self, i: int, run: Run, step: int, lr: float) -> dict[str, float]: ...
    def save(self, i: int, run: Run, step: int, lr: float, names: list[str]) -> None: ...  # checkpoint
    def save_weights(self, i: int, run: Run, step: int) -> None: ...  # snapshot


def open_run(cfg: TrainConfig, map_location: torch.device, device: torch.device) -> tuple[Run, dict | None]:
    """The run and its checkpoint (None when fresh); with --resume, the saved
    config must fix the same trajectory (ConfigError otherwise)."""
    ckpt = load_checkpoint(cfg.run_dir / CHECKPOINT, map_location) if cfg.resume else None
    saved = ckpt["config"] if ckpt is not None else read_run_config(cfg.run_dir) if cfg.resume else None
    if saved is not None:
        check_same_run(cfg, TrainConfig.from_dict(saved))
    run = Run(cfg)
    if ckpt is not None:
        run.start = run.saved_step = int(ckpt["step"])
        run.metrics.update({k: ckpt["metrics"].get(k) for k in run.metrics})
        run.snapshots.extend((int(s), w.to(device)) for s, w in ckpt["probe_state"]["snapshots"])
    return run, ckpt


def lr_at(cfg: TrainConfig, step: int) -> float:
    """The lr of step ``step``: linear warm-up, then constant."""
    return cfg.lr * min(1.0, step / cfg.warmup) if cfg.warmup else cfg.lr


def status_extras(metrics: dict, step: int, step0: int, t0: tuple[float, float]) -> dict:
    n = step - step0
    secs, cpu = time.perf_counter() - t0[0], time.process_time() - t0[1]
    return {
        "step": step,
        "t_mem": metrics["t_mem"],
        "t_grok": metrics["t_grok"],
        "loop_steps": n,
        "loop_seconds": round(secs, 4),
        "loop_cpu_seconds": round(cpu, 4),
        "ms_per_step": round(1000 * secs / n, 4) if n else None,
    }


def run_loop(runs: list[Run], build: Callable[[list[Run]], Engine], c0: TrainConfig, meta: dict | None = None) -> int:
    """Open every run's writer, train the runs not finished yet on the engine
    ``build(live runs)`` returns, close every run; returns the exit code
    (trainer.stopping). ``c0``: the config the runs share but for their
    identity; ``meta``: added to each run.json's meta."""
    with contextlib.ExitStack() as stack:
        for run in runs:
            config = run.cfg.to_run_config()
            if meta is not None:
                config = config.replace(meta=meta)
            run.writer = stack.enter_context(
                RunWriter(
                    run.cfg.run_dir,
                    config,
                    flush_steps=c0.flush_steps,
                    flush_seconds=c0.flush_seconds,
                    resume=run.cfg.resume,
                    start_step=run.start,
                )
            )
        t0 = (time.perf_counter(), time.process_time())
        for run in [r for r in runs if r.start >= c0.steps]:  # nothing left to train
            run.writer.write_status(force=True, **status_extras(run.metrics, run.start, run.start, t0))
            run.writer.close("completed")
        live = [r for r in runs if r.start < c0.steps]
        if not live:
            return EXIT_OK
        return _Loop(live, build(live), c0).run()


class _Loop:
    def __init__(self, live: list[Run], engine: Engine, c0: TrainConfig):
        self.live, self.engine, self.c0 = live, engine, c0
        self.rec = Recorder(engine.groups, len(live), c0.flush_steps, c0.flush_seconds, engine.norm_views[0].device)
        self.step = min(r.start for r in live)
        for i, r in enumerate(live):
            r.joined = r.start == self.step
            if r.joined:
                engine.join(i)
        self.step0 = {id(r): r.start for r in live}
        self.lr = c0.lr
        self.diverged: list[str] = []  # run ids
        self.t0 = (time.perf_counter(), time.process_time())  # the loop's clock: setup and compiling excluded

    def extras(self, run: Run, step: int) -> dict:
        return status_extras(run.metrics, step, self.step0[id(run)], self.t0)

    def run(self) -> int:
        c0, engine, rec = self.c0, self.engine, self.rec
        gone: list[Run] = []
        with StopSignals() as stop:
            try:
                while self.step < c0.steps and self.live:
                    if stop.name:
                        break
                    # runs that stop after grokking leave at their stop step
                    ended = [
                        r for r in self.live if r.metrics["stop_at"] is not None and self.step >= r.metrics["stop_at"]
                    ]
                    if ended:
                        gone = self.flush()
                        ended = [r for r in ended if r not in gone]
                        for run in ended:
                            t_grok = run.metrics["t_grok"]
                            msg = (
                                f"stopped {run.cfg.stop_after_grok} steps after val_acc >= {GROK_ACC} at step {t_grok}"
                            )
                            self.finish(run, "completed", msg)
                        self.leave(gone + ended)
                        continue
                    self.step += 1
                    step = self.step
                    lr = self.lr = lr_at(c0, step)
                    for i, run in enumerate(self.live):
                        if not run.joined and run.start == step - 1:  # the pack caught up with this run
                            run.joined = True
                            engine.join(i)

                    if c0.probe_every and c0.probes and step % c0.probe_every == 0:
                        for i, run in enumerate(self.live):
                            if run.joined:
                                probe_run(engine, i, run, step, lr)
                    if step % c0.eval_every == 0:
                        with torch.no_grad():
                            rec.record_val(*engine.validate())
                    loss, acc = engine.step(lr)
                    rec.record(step, lr, loss, acc, engine.norm_views)

                    checkpoint_due = step % c0.checkpoint_every == 0
                    gone = []
                    if rec.due() or checkpoint_due or stop.name or step == c0.steps:
                        gone = self.flush()  # the host sync, once per shard
                        if checkpoint_due:
                            for i, run in enumerate(self.live):
                                if run.joined and run not in gone:
                                    save_run(engine, i, run, step, lr, rec.names)
                    else:
                        for run in self.live:
                            run.writer.heartbeat()
                    if c0.keep_every and step % c0.keep_every == 0:
                        for i, run in enumerate(self.live):
                            if run.joined and run not in gone:
                                keep_snapshot(engine, i, run, step)
                    self.leave(gone)
            except BaseException as exc:
                if rec.row:  # keep what the device buffer holds, if the device still answers
                    with contextlib.suppress(Exception):
                        flush_shards(rec, self.live, self.step)
                if isinstance(exc, KeyboardInterrupt):  # a second SIGINT: no checkpoint
                    for run in self.live:
                        run.writer.close("preempted", message=f"stopped by SIGINT at step {self.step}")
                raise

        # -- the end: completed, or a signal -----------------------------------
        gone = self.flush() if self.live else []
        stay = [r for r in self.live if r not in gone]
        extras = {id(r): self.extras(r, max(self.step, r.start)) for r in stay}  # without the last checkpoints
        for run in stay:
            if stop.name:
                self.finish(run, "preempted", stop.message(max(self.step, run.start)), extras[id(run)])
            else:
                self.finish(run, "completed", None, extras[id(run)])
        if stop.name and stay:
            return stop.exit_code
        return EXIT_DIVERGED if self.diverged else EXIT_OK

    def flush(self) -> list[Run]:
        """Every run's rows to its shards; returns the runs found diverged (closed)."""
        done = []
        if self.rec.row:
            for run, bad in flush_shards(self.rec, self.live, self.step):
                if bad is not None:
                    run.writer.write_status(force=True, **self.extras(run, bad))
                    run.writer.close("diverged", message=f"non-finite train_loss at step {bad}")
                    self.diverged.append(run.cfg.run_id)
                    done.append(run)
        for run in self.live:
            if run not in done:
                run.writer.write_status(force=True, **self.extras(run, self.step))
        return done

    def leave(self, gone: list[Run]) -> None:
        """Drop finished runs (right after a flush: the buffer is empty)."""
        if not gone:
            return
        keep = [i for i, r in enumerate(self.live) if r not in gone]
        self.live = [self.live[i] for i in keep]
        if self.live:
            self.engine.drop(keep)
            self.rec.resize(len(self.live))

    def finish(self, run: Run, state: str, msg: str | None, extras: dict | None = None) -> None:
        extras = extras or self.extras(run, max(self.step, run.start))
        if run.joined and run.saved_step != self.step:
            save_run(self.engine, self.live.index(run), run, self.step, self.lr, self.rec.names)
        run.writer.write_status(force=True, **extras)
        run.writer.close(state, message=msg)


# -- what the loop does on its own cadences (they may sync with the device) ----


def probe_run(engine: Engine, i: int, run: Run, step: int, lr: float) -> None:
    """Run i's probes at the start of ``step``; its rows go out at the next flush."""
    run.snapshots.append((step, engine.weights(i)))
    run.probe_rows.append((step, engine.probe(i, run, step, lr)))


def save_run(engine: Engine, i: int, run: Run, step: int, lr: float, names: list[str]) -> None:
    engine.save(i, run, step, lr, names)
    run.saved_step = step


def keep_snapshot(engine: Engine, i: int, run: Run, step: int) -> None:
    engine.save_weights(i, run, step)
