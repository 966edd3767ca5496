"""The demo: a small local sweep of the tiny preset on the CPU, shown live.

One module: plan, trainer processes, live view and signal handling are one
lifecycle (start, show, stop with nothing left running).

Three weight decays x three seeds, as many single-threaded trainer processes at
once as there are cores. Each run stops a little after it groks, to free its
core for the next. The trainers run in their own sessions, so a Ctrl-C reaches
only this process, which then stops them with SIGTERM: they flush, checkpoint
and mark themselves preempted, and their shards stay readable. Once stopped, a
demo starts nothing more: no trainer outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from grokwatch.runs.phases import phase_of
from grokwatch.store import RunReader
from grokwatch.store.layout import run_id_for

DEFAULT_WEIGHT_DECAYS = (0.3, 1.0, 3.0)
DEFAULT_SEEDS = 3


@dataclass
class DemoRun:
    run_id: str
    seed: int
    weight_decay: float
    args: list[str]
    proc: subprocess.Popen | None = None
    log: BinaryIO | None = None
    reader: RunReader | None = None
    phase: str = "queued"
    step: int = 0
    train_acc: float = float("nan")
    val_acc: float = float("nan")
    t_mem: int | None = None
    t_grok: int | None = None
    started: float | None = None
    grokked_at: float | None = None
    returncode: int | None = None
    history: list[str] = field(default_factory=list)
    stop_requested: bool = False  # the demo sent it SIGTERM
    killed: bool = False  # ... and then SIGKILL (it did not stop in time, or a second interrupt)

    @property
    def finished(self) -> bool:
        return self.returncode is not None


@dataclass
class DemoPlan:
    root: Path
    sweep: str
    runs: list[DemoRun]
    jobs: int
    steps: int | None = None  # each run's step budget (for the manifest)


# Probes every 250 steps with the H0 slice at each (Rips construction, alive on real runs:
# docs/topology.md), so the H0 signal and its alarm have points on every plateau; about
# +30% of the tiny preset's training time on one CPU thread.
DEMO_PROBES = [
    "--probe-every",
    "250",
    "--probes",
    "effective_rank,htsr,htsr_traps,h0@1,commutator,hessian,hessian_trace,update_cosine,pca2",
]


def plan_demo(
    root: Path,
    sweep: str = "demo",
    weight_decays=DEFAULT_WEIGHT_DECAYS,
    seeds: int = DEFAULT_SEEDS,
    steps: int = 8000,
    jobs: int | None = None,
    stop_after_grok: int = 200,
    extra: list[str] | None = None,
) -> DemoPlan:
    runs = []
    # Larger weight decays grok sooner (DESIGN, Power et al.): start them first
    # so the first groks show within a minute or two.
    for wd in sorted(weight_decays, reverse=True):
        for seed in range(seeds):
            run_id = run_id_for(wd, seed)
            args = [
                sys.executable,
                "-m",
                "trainer",
                "--root",
                str(root),
                "--sweep",
                sweep,
                "--run-id",
                run_id,
                "--preset",
                "tiny",
                "--seed",
                str(seed),
                "--weight-decay",
                f"{wd:g}",
                "--steps",
                str(steps),
                "--device",
                "cpu",
                "--threads",
                "1",
                "--stop-after-grok",
                str(stop_after_grok),
                "--flush-seconds",
                "1",
                *DEMO_PROBES,
                "--resume",
                *(extra or []),
            ]
            runs.append(DemoRun(run_id, seed, wd, args))
    return DemoPlan(Path(root), sweep, runs, jobs or max(1, os.cpu_count() or 1), steps)


def write_manifest(plan: DemoPlan) -> None:
    """Declare the plan in ``<sweep>/sweep.json``, the manifest ``grokwatch sweep plan``
    writes (same format, no submissions), so every view shows all the runs at once,
    the ones not started yet included."""
    from grokwatch.store import atomic_write_json, read_json
    from slurm.plan import MANIFEST, PlanError, RunSpec, SweepOptions, make_manifest

    sweep_dir = plan.root / plan.sweep
    opts = SweepOptions(
        root=str(plan.root.resolve()),
        sweep=plan.sweep,
        seeds=len({r.seed for r in plan.runs}),
        weight_decays=tuple(dict.fromkeys(r.weight_decay for r in plan.runs)),
        preset="tiny",
        steps=plan.steps,
        gpus_per_task=0,
        pack=1,
    )
    runs = [
        RunSpec(index=i, slot=0, run_id=r.run_id, weight_decay=float(r.weight_decay), seed=r.seed)
        for i, r in enumerate(plan.runs)
    ]
    try:
        manifest = make_manifest(opts, runs, previous=read_json(sweep_dir / MANIFEST))
    except PlanError:
        return  # a submitted sweep of the same name keeps its own manifest
    atomic_write_json(sweep_dir / MANIFEST, manifest)


class Demo:
    """Runs a :class:`DemoPlan`: starts trainers, polls their shards, reports."""

    def __init__(self, plan: DemoPlan, on_event: Callable[[str], None] | None = None):
        self.plan = plan
        self.on_event = on_event or (lambda line: None)
        self.t0 = time.monotonic()
        self.sweep_dir = plan.root / plan.sweep
        (self.sweep_dir / ".demo-logs").mkdir(parents=True, exist_ok=True)
        write_manifest(plan)  # every planned run shows at once, not only started ones
        self.stopped = False  # set by stop(): from then on nothing is started
        self._lock = threading.Lock()  # start vs stop (the dashboard polls from a thread)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _start(self, run: DemoRun) -> None:
        log_path = self.sweep_dir / ".demo-logs" / f"{run.run_id}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        # The demo's interrupt waits between fork and bookkeeping: one there would
        # lose the Popen and leave its trainer running unseen.
        with self._lock, _signals_held():
            if self.stopped:
                return
            run.log = open(log_path, "ab")
            # Own session: a terminal's Ctrl-C must not hit the trainers mid-step.
            run.proc = subprocess.Popen(
                run.args, stdout=run.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        run.started = self.elapsed()
        run.phase = "starting"
        run.reader = RunReader(
            self.sweep_dir / run.run_id, kinds=("scalars",), columns=["train_acc", "val_acc", "train_loss"]
        )

    def poll(self) -> None:
        """One tick: reap finished trainers, start queued ones (never once stopped), read new shards."""
        for run in self.plan.runs:
            if run.proc is None or run.finished:
                continue
            rc = run.proc.poll()
            if rc is not None:
                run.returncode = rc
                if run.log is not None:
                    run.log.close()
        if not self.stopped:
            queued = [r for r in self.plan.runs if r.proc is None]
            free = self.plan.jobs - sum(1 for r in self.plan.runs if r.proc is not None and not r.finished)
            for run in queued[: max(0, free)]:
                self._start(run)
        for run in self.plan.runs:
            if run.reader is not None:
                self._update(run)

    def _update(self, run: DemoRun) -> None:
        reader = run.reader
        if reader is None:
            return
        reader.refresh()
        sc = reader.scalars
        if "step" in sc and len(sc["step"]):
            info = phase_of(sc)
            run.step = int(sc["step"][-1])
            run.train_acc = _last(sc.get("train_acc"))
            run.val_acc = _last(sc.get("val_acc"))
            run.t_mem, run.t_grok = info.t_mem, info.t_grok
            phase = info.phase
        else:
            phase = run.phase
        if run.finished:
            state = reader.status.state if reader.status else None
            if run.stop_requested and run.returncode != 0:
                # Stopped by the demo: SIGTERM (a trainer still starting up dies of it
                # before its handler exists), or SIGKILL when it did not stop in time.
                where = f"at step {run.step}" if run.step else "before its first step"
                phase = f"stopped {where}" + (" (killed)" if run.killed else "")
            elif run.returncode != 0 and phase not in ("diverged",):
                phase = f"{state or 'failed'} (exit {run.returncode})"
            elif phase not in ("grokked", "anti-grokking", "diverged"):
                phase = f"{phase}, done"
        if phase != run.phase:
            run.phase = phase
            if phase == "grokked" and run.grokked_at is None:
                run.grokked_at = self.elapsed()
            self.on_event(
                f"{self.elapsed():7.1f}s  {run.run_id:<12} step {run.step:>6}  {phase:<18}"
                f" train {run.train_acc:5.3f}  val {run.val_acc:5.3f}"
            )

    @property
    def done(self) -> bool:
        """Every run ran to its end (a stopped demo is never done, even when its
        trainers have all exited)."""
        return not self.stopped and all(r.finished for r in self.plan.runs)

    @property
    def not_started(self) -> list[DemoRun]:
        return [r for r in self.plan.runs if r.proc is None]

    def stop(self, timeout: float = 30.0) -> None:
        """Start nothing more; SIGTERM every live trainer (checkpoint, flush, status
        preempted) and wait up to ``timeout``; SIGKILL what is left then, or at once
        on a KeyboardInterrupt while waiting (a second Ctrl-C). No trainer survives."""
        live: list[tuple[DemoRun, subprocess.Popen]] = []
        try:
            with self._lock, _signals_held():
                self.stopped = True
                for run in self.plan.runs:
                    if run.proc is None:
                        run.phase = "not started"
                    elif run.proc.poll() is None:
                        live.append((run, run.proc))
                        run.stop_requested = True
                        with contextlib.suppress(ProcessLookupError):
                            run.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for _, proc in live:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.1, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass  # asked again: stop waiting, kill what is left
        finally:
            with _signals_held():
                for run, proc in live:
                    if proc.poll() is None:
                        run.killed = True
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                        proc.wait()
                for run in self.plan.runs:
                    if run.proc is not None and run.returncode is None:
                        run.returncode = run.proc.wait()
                        if run.log is not None:
                            run.log.close()

    def table(self) -> str:
        lines = [f"{'run':<12} {'step':>6} {'train':>6} {'val':>6} {'t_mem':>6} {'t_grok':>6}  phase"]
        for r in self.plan.runs:
            lines.append(
                f"{r.run_id:<12} {r.step:>6} {_fmt(r.train_acc):>6} {_fmt(r.val_acc):>6}"
                f" {_opt(r.t_mem):>6} {_opt(r.t_grok):>6}  {r.phase}"
            )
        return "\n".join(lines)


def _last(x) -> float:
    import numpy as np

    if x is None:
        return float("nan")
    idx = np.flatnonzero(np.isfinite(x))
    return float(x[idx[-1]]) if idx.size else float("nan")


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"


def _opt(x: int | None) -> str:
    return "-" if x is None else str(x)


# > 0 while the main thread is in a few lines that must not be cut half way (a
# trainer started but not yet recorded, SIGTERMs half sent): the demo's signal
# handler then only records the signal; the main loop acts on it a moment later.
_held = [0]


@contextlib.contextmanager
def _signals_held():
    """Defer the demo's KeyboardInterrupt (not by masking the signals: a trainer
    started meanwhile would inherit the mask and never see its SIGTERM)."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _held[0] += 1
    try:
        yield
    finally:
        if main:
            _held[0] -= 1


def _interrupt_on(*signums: int) -> tuple[Callable[[], None], Callable[[], list[int]]]:
    """Turn these signals into KeyboardInterrupt for the duration of the demo.

    Python leaves SIGINT ignored when it starts ignored (a shell's background
    job), and SIGTERM would kill the demo without stopping its trainers; both
    must stop the sweep cleanly instead. The handler also records the signal,
    so the main loop still stops if the raised exception is lost on the way
    (seen once in CI: the first SIGINT had no effect).
    Returns (restore, received): received() lists the signals seen so far.
    """
    seen: list[int] = []

    def handler(signum, frame):
        seen.append(signum)
        if not _held[0]:
            raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in signums}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore, (lambda: list(seen))


def run_demo(
    root: Path | None = None,
    headless: bool = False,
    interval: float = 1.0,
    out: TextIO = sys.stdout,
    **plan_kwargs,
) -> int:
    """Run the demo sweep to the end; returns the exit code: 0 when every run
    finished, 1 when one failed, 128 + the signal (130 for Ctrl-C, 143 for
    SIGTERM) when the sweep was interrupted. No trainer outlives this call."""
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="grokwatch-demo-"))
    plan = plan_demo(Path(root), **plan_kwargs)
    live = not headless and out.isatty()
    demo = Demo(plan, on_event=(lambda line: print(line, file=out, flush=True)) if not live else None)
    print(
        f"grokwatch demo: {len(plan.runs)} tiny-preset runs, {plan.jobs} at a time, under {plan.root / plan.sweep}",
        file=out,
        flush=True,
    )
    drawn = 0
    restore, received = _interrupt_on(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    try:
        try:
            while True:
                demo.poll()
                if live:
                    text = demo.table() + f"\n\n{demo.elapsed():.0f}s elapsed - Ctrl-C stops the sweep"
                    # Redraw in place: cursor up over the previous table, clear to end.
                    out.write((f"\x1b[{drawn}F" if drawn else "") + "\x1b[J" + text + "\n")
                    out.flush()
                    drawn = text.count("\n") + 1
                if demo.done:
                    break
                if received():
                    raise KeyboardInterrupt
                time.sleep(interval)
        except KeyboardInterrupt:
            print("\ngrokwatch demo: stopping the trainers (they checkpoint and flush)...", file=out, flush=True)
        finally:
            # Whatever ended the loop (an interrupt, a crash), the trainers stop with it.
            if not demo.done:
                demo.stop()
        with _signals_held():  # stopped: a further Ctrl-C must not cut the summary
            demo.poll()  # read the last shards; a stopped demo starts nothing
            if not demo.done:  # interrupted
                print(demo.table(), file=out)
                started = len(plan.runs) - len(demo.not_started)
                print(
                    f"grokwatch demo: interrupted; {sum(r.returncode == 0 for r in plan.runs)}/{len(plan.runs)} runs "
                    f"finished, {started} started; shards kept under {plan.root / plan.sweep}",
                    file=out,
                    flush=True,
                )
                return 128 + int((received() or [signal.SIGINT])[0])
    finally:
        restore()
    if not live:
        print(demo.table(), file=out)
    grokked = sum(1 for r in plan.runs if r.t_grok is not None)
    failed = [r for r in plan.runs if r.returncode not in (0,)]
    print(
        f"grokwatch demo: {grokked}/{len(plan.runs)} runs grokked in {demo.elapsed():.0f}s; "
        f"data under {plan.root / plan.sweep}",
        file=out,
    )
    for r in failed:
        print(
            f"grokwatch demo: {r.run_id} exited {r.returncode}; "
            f"see {plan.root / plan.sweep / '.demo-logs' / (r.run_id + '.log')}",
            file=sys.stderr,
        )
    return 1 if failed else 0
