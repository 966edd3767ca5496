"""Watch your own training loop: ``grokwatch.init`` / ``run.log`` / ``run.finish``.

One module: the whole public API a user's loop imports (init, Run,
probe_values) in one place, beside the row buffer it needs.

::

    import grokwatch
    from grokwatch.store import run_id_for

    run = grokwatch.init(root="runs", sweep="mine", run_id=run_id_for(1.0, 0),  # "wd1.0-s00"
                         config={"lr": 1e-3, "weight_decay": 1.0, "seed": 0, "steps": 10000})
    for step in range(1, 10001):
        ...
        run.log(step, train_loss=loss, train_acc=acc, val_loss=vl, val_acc=va,
                grad_norm=gn, weight_norm=wn)
        if step % 500 == 0:
            run.probe(step, model=model)  # HTSR alpha and effective rank of its weight matrices
    run.finish()

The run is written like the trainer's (``grokwatch/store``): ``run.json``
(the config, once, as a :class:`grokwatch.store.RunConfig`), ``status.json`` (state and heartbeat) and Arrow shards,
so ``grokwatch SWEEP``, ``grokwatch alerts`` and ``grokwatch report`` watch it
like any other run.

Values may be Python or numpy numbers, or 0-d (one-element) torch tensors.
Tensors stay on their device: each ``log`` call stacks its tensors into one
small device tensor (a copy, so later in-place changes do not leak in) and the
host sees them only at a flush, every ``flush_steps`` logged steps or
``flush_seconds`` seconds (whichever first), in one copy per device. No
``.item()`` per step, as in the trainer.

The columns the watcher reads: ``train_loss``, ``train_acc``, ``val_loss``,
``val_acc`` (phases: memorized at train_acc >= 0.99, grokked at val_acc >=
0.95), ``grad_norm`` (the GAI score is computed from it by the watcher) and
``weight_norm``; any other name is kept as a column too. Log the validation
metrics on the steps you evaluate; the watcher reads a missing ``val_acc`` as
"not measured". A missing ``train_loss`` would read as divergence, so a row
without one (after the first) repeats the last logged train_loss. Several
``log`` calls with the same step make one row.

Safety as in the trainer: shards and status are written atomically (tmp +
fsync + rename), so a SIGKILL loses only what was not yet flushed, and the
heartbeat in status.json stops, which the watcher shows as *stalled*. A
non-finite ``train_loss`` is seen at the next flush: the run's state becomes
``diverged`` (and ``run.diverged`` holds its step). ``finish()`` flushes and
marks the run completed; leaving a ``with`` block does the same (``failed``
on an exception, ``preempted`` on Ctrl-C), and so does interpreter exit when
neither was done.

torch is never imported here unless you hand over tensors or a model.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.store import RunConfig, RunStatus, RunWriter, columns_to_ipc, is_valid_run_id, run_dir

log = logging.getLogger("grokwatch.integrations.track")

__all__ = ["Run", "init", "model_norms", "weight_matrices"]

#: defaults like the trainer's: a shard at most every 1000 steps or 10 seconds
FLUSH_STEPS = 1000
FLUSH_SECONDS = 10.0
#: matrices with fewer rows or columns give no HTSR fit (observables.htsr.MIN_EVALS)
MIN_MATRIX_DIM = 8


def init(
    root: str | os.PathLike = "runs",
    sweep: str = "default",
    run_id: str | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    flush_steps: int = FLUSH_STEPS,
    flush_seconds: float = FLUSH_SECONDS,
    heartbeat_seconds: float = 10.0,
    resume: bool = False,
) -> Run:
    """Start recording a run in ``<root>/<sweep>/<run_id>/`` and return it.

    ``config`` goes to run.json, read as a :class:`grokwatch.store.RunConfig`
    (the watcher reads ``seed``, ``weight_decay``, ``steps`` -- or
    ``total_steps`` -- and ``preset``/``critical_weight_norm`` from it; every
    other key is kept as given); a value of the wrong type there is a
    ValueError. ``run_id`` defaults to ``run-<date>-<time>-<pid>``; name runs
    of a sweep with :func:`grokwatch.store.run_id_for`. An existing run is an error unless
    ``resume=True``, which continues it as a new attempt (its shards never
    overwrite the earlier attempt's).
    """
    return Run(
        root,
        sweep,
        run_id,
        config,
        flush_steps=flush_steps,
        flush_seconds=flush_seconds,
        heartbeat_seconds=heartbeat_seconds,
        resume=resume,
    )


def _is_tensor(v: Any) -> bool:
    return type(v).__module__.startswith("torch") and hasattr(v, "detach") and hasattr(v, "device")


def _gather(chunks: list[tuple[int, tuple[str, ...], Any]]) -> list[tuple[int, tuple[str, ...], np.ndarray]]:
    """The device -> host copy of a flush: one ``cat`` and one ``.cpu()`` per device."""
    import torch

    by_device: dict[Any, list[tuple[int, tuple[str, ...], Any]]] = {}
    for chunk in chunks:
        by_device.setdefault(chunk[2].device, []).append(chunk)
    out = []
    for items in by_device.values():
        host = torch.cat([t for _, _, t in items]).cpu().numpy().astype(np.float64)
        off = 0
        for step, keys, _ in items:
            out.append((step, keys, host[off : off + len(keys)]))
            off += len(keys)
    return out


class _Rows:
    """Rows of one shard kind, by step; the newest step stays open until a later one comes."""

    def __init__(self) -> None:
        self.host: dict[int, dict[str, float]] = {}
        self.device: list[tuple[int, tuple[str, ...], Any]] = []
        self.flushed_through: int | None = None  # last step written to a shard
        self.warned_late = False

    def accepts(self, step: int) -> bool:
        if self.flushed_through is not None and step <= self.flushed_through:
            if not self.warned_late:
                log.warning(
                    "step %d was already written (through step %d): late values are dropped", step, self.flushed_through
                )
                self.warned_late = True
            return False
        return True

    def add(self, step: int, values: Mapping[str, Any]) -> None:
        row = self.host.setdefault(step, {})
        tensors: dict[Any, list[tuple[str, Any]]] = {}
        for name, v in values.items():
            if v is None:
                continue
            if _is_tensor(v):
                if v.numel() != 1:
                    raise ValueError(f"{name}: expected a one-element tensor, got shape {tuple(v.shape)}")
                tensors.setdefault(v.device, []).append((name, v))
                row.pop(name, None)
            else:
                try:
                    row[name] = float(v)
                except (TypeError, ValueError):
                    raise TypeError(
                        f"{name}: expected a number or a one-element tensor, got {type(v).__name__}"
                    ) from None
        for items in tensors.values():
            import torch

            vec = torch.stack([t.detach().reshape(()).to(torch.float32) for _, t in items])  # a copy, on the device
            self.device.append((step, tuple(n for n, _ in items), vec))

    def pending_steps(self) -> int:
        return len(self.host)

    def take(self, through: int | None) -> dict[int, dict[str, float]]:
        """Remove and return the rows of steps <= ``through`` (all when None), tensors gathered."""
        steps = sorted(s for s in self.host if through is None or s <= through)
        if not steps:
            return {}
        keep = set(steps)
        chunks = [c for c in self.device if c[0] in keep]
        self.device = [c for c in self.device if c[0] not in keep]
        rows = {s: self.host.pop(s) for s in steps}
        if chunks:
            for step, keys, vals in _gather(chunks):
                rows[step].update(zip(keys, vals.tolist()))
        return rows


class Run:
    """One run being recorded; make it with :func:`init`. Not thread-safe: log from one thread."""

    def __init__(
        self,
        root,
        sweep,
        run_id,
        config,
        *,
        flush_steps=FLUSH_STEPS,
        flush_seconds=FLUSH_SECONDS,
        heartbeat_seconds=10.0,
        resume=False,
    ):
        run_id = run_id or time.strftime("run-%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.root, self.sweep, self.run_id = Path(root), str(sweep), str(run_id)
        if not is_valid_run_id(self.sweep):
            raise ValueError(f"bad sweep name {self.sweep!r}: use only letters, digits, '.', '_' and '-'")
        self.path = run_dir(self.root, self.sweep, self.run_id)  # validates run_id
        cfg = json.loads(json.dumps(dict(config or {}), default=_json_value))
        cfg.setdefault("sweep", self.sweep)
        cfg.setdefault("run_id", self.run_id)
        cfg.setdefault("tracker", "grokwatch.integrations.track")
        run_config = RunConfig.from_json(cfg, "config")  # a user's keys, as run.json of the contract
        start = 0
        if resume:
            prev = RunStatus.read(self.path)
            start = (prev.last_step if prev else None) or 0
        self._writer = RunWriter(
            self.path,
            run_config,
            flush_steps=flush_steps,
            flush_seconds=flush_seconds,
            heartbeat_seconds=heartbeat_seconds,
            resume=resume,
            start_step=start,
        )
        self._writer.open()
        # Load the shard writer's lazy imports now (pyarrow may import pandas, which
        # starts a thread pool module): none can be loaded at interpreter exit.
        columns_to_ipc({"step": np.zeros(1, dtype=np.int64), "x": np.zeros(1)})
        self.config = run_config
        self._scalars, self._probes = _Rows(), _Rows()
        self._open_step: int | None = None  # the newest logged step (its row may still grow)
        self._last_train_loss: float | None = None
        self._warned_ffill = False
        self.diverged: int | None = None  # step of the first non-finite train_loss
        self.finished = False
        atexit.register(self._at_exit)

    # -- logging ---------------------------------------------------------------------
    def log(self, step: int, values: Mapping[str, Any] | None = None, /, **metrics: Any) -> None:
        """Record metrics of ``step`` (a dict and/or keywords); flushes when due."""
        self._check_open()
        step = int(step)
        merged = {**(values or {}), **metrics}
        if "step" in merged:
            raise ValueError("'step' is the first argument, not a metric")
        if not self._scalars.accepts(step):
            return
        self._advance(step)
        self._scalars.add(step, merged)

    def log_probes(
        self, step: int, matrices: Mapping[str, Any] | None = None, *, traps: bool = False, **values: Any
    ) -> dict[str, float]:
        """Probe columns of ``step``: for each named 2-D weight matrix (array or tensor),
        ``htsr_alpha/<name>`` with ``htsr_sigma``, ``htsr_ks``, ``htsr_n_tail``
        (observables.htsr.fit_alpha, WeightWatcher conventions) and
        ``effective_rank/<name>`` (observables.rank); with ``traps=True`` also
        ``htsr_traps/<name>`` (needs scipy). Extra keyword values are logged as
        probe columns as given. Runs on the host (one copy per matrix): call it
        on a cadence, every few hundred steps. Returns the values."""
        self._check_open()
        step = int(step)
        row = probe_values(matrices or {}, traps=traps, seed=step)
        for k, v in values.items():
            if v is not None:
                row[k] = float(v.detach().cpu()) if _is_tensor(v) else float(v)
        if self._probes.accepts(step):
            self._advance(step)
            self._probes.add(step, row)
        return row

    def probe(self, step: int, model: Any, *, traps: bool = False, **values: Any) -> dict[str, float]:
        """:meth:`log_probes` on every 2-D parameter of ``model`` with both sides >= 8
        (named without the ``.weight`` suffix)."""
        return self.log_probes(step, weight_matrices(model), traps=traps, **values)

    def _advance(self, step: int) -> None:
        """A new step closes the rows before it; flush them when due, else a heartbeat."""
        if self._open_step is None or step > self._open_step:
            prev = self._open_step
            self._open_step = step
            # every buffered row is complete now (the new step's row is not open yet)
            if prev is not None and self._writer.flush_due(self._scalars.pending_steps()):
                self._flush(through=prev)
                return
        self._writer.heartbeat()

    def flush(self) -> None:
        """Write every buffered row now (the newest step too: values logged for it later are dropped)."""
        self._check_open()
        self._flush(through=None)

    def _flush(self, through: int | None) -> None:
        wrote = False
        rows = self._scalars.take(through)
        if rows:
            self._write("scalars", rows)
            self._scalars.flushed_through = max(rows)
            wrote = True
        prows = self._probes.take(through)
        if prows:
            self._write("probes", prows)
            self._probes.flushed_through = max(prows)
            wrote = True
        if wrote:
            self._writer.write_status(force=True)

    def _write(self, kind: str, rows: dict[int, dict[str, float]]) -> None:
        steps = sorted(rows)
        names = list(dict.fromkeys(k for s in steps for k in rows[s]))
        cols: dict[str, np.ndarray] = {"step": np.asarray(steps, dtype=np.int64)}
        for n in names:
            cols[n] = np.asarray([rows[s].get(n, math.nan) for s in steps], dtype=np.float64)
        if kind == "scalars" and ("train_loss" in names or self._last_train_loss is not None):
            self._fill_train_loss(steps, rows, cols.setdefault("train_loss", np.full(len(steps), math.nan)))
        self._writer.write_shard(kind, cols)

    def _fill_train_loss(self, steps: list[int], rows: dict[int, dict[str, float]], loss: np.ndarray) -> None:
        """Carry train_loss over rows without one (else the watcher reads divergence);
        note the first logged non-finite value."""
        for i, s in enumerate(steps):
            if "train_loss" in rows[s]:
                v = loss[i]
                if not math.isfinite(v) and self.diverged is None:
                    self.diverged = s
                    self._writer.set_state("diverged", message=f"non-finite train_loss at step {s}")
                self._last_train_loss = float(v)
            elif self._last_train_loss is not None:
                loss[i] = self._last_train_loss
                if not self._warned_ffill:
                    log.info("rows without train_loss repeat the last one (from step %d on)", s)
                    self._warned_ffill = True

    # -- the end ---------------------------------------------------------------------
    def finish(self, state: str | None = None, message: str | None = None) -> None:
        """Flush everything and write the final status: ``completed`` (``diverged``
        when a non-finite train_loss was logged), or ``state`` if given
        (failed, preempted). Idempotent."""
        if self.finished:
            return
        try:
            self._flush(through=None)
        finally:
            self.finished = True
            atexit.unregister(self._at_exit)
            if state is None:
                state = "diverged" if self.diverged is not None else "completed"
                if self.diverged is not None and message is None:
                    message = f"non-finite train_loss at step {self.diverged}"
            self._writer.close(state, message=message)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # never swallows the exception
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("preempted", message="stopped by SIGINT")
        else:
            self.finish("failed", message=f"{exc_type.__name__}: {exc}")

    def _at_exit(self) -> None:
        """Interpreter exit without finish(): an uncaught exception marks the run failed."""
        if self.finished:
            return
        exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            exc = None
        try:
            if isinstance(exc, KeyboardInterrupt):
                self.finish("preempted", message="stopped by SIGINT")
            elif exc is not None:
                self.finish("failed", message=f"{type(exc).__name__}: {exc}")
            else:
                self.finish(message="finished at interpreter exit")
        except Exception as e:  # never raise at exit
            print(f"grokwatch: could not finish run {self.path}: {e}", file=sys.stderr)

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError(f"run {self.run_id} is finished")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, diverged={self.diverged}, finished={self.finished})"


# -- probes and norms ---------------------------------------------------------------------


def probe_values(matrices: Mapping[str, Any], *, traps: bool = False, seed: int = 0) -> dict[str, float]:
    """HTSR and effective-rank columns of named 2-D matrices (values that are undefined are left out)."""
    from observables._arrays import to_numpy
    from observables.htsr import fit_alpha
    from observables.rank import effective_rank

    out: dict[str, float] = {}
    for name, w in matrices.items():
        W = to_numpy(w)
        if W.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D matrix, got shape {W.shape}")
        fit = fit_alpha(W)
        if fit.ok:
            out.update(
                {
                    f"htsr_alpha/{name}": fit.alpha,
                    f"htsr_sigma/{name}": fit.sigma,
                    f"htsr_ks/{name}": fit.ks_distance,
                    f"htsr_n_tail/{name}": float(fit.n_tail),
                }
            )
        out[f"effective_rank/{name}"] = effective_rank(W)
        if traps:
            from observables.htsr import correlation_traps

            c = correlation_traps(W, seed=seed)
            if c >= 0:
                out[f"htsr_traps/{name}"] = float(c)
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def weight_matrices(model: Any, min_dim: int = MIN_MATRIX_DIM) -> dict[str, Any]:
    """The 2-D parameters of a torch module with both sides >= ``min_dim``, by name without ``.weight``."""
    out = {}
    for name, p in model.named_parameters():
        if p.ndim == 2 and min(p.shape) >= min_dim:
            out[name[: -len(".weight")] if name.endswith(".weight") else name] = p.detach()
    return out


def model_norms(model: Any) -> dict[str, Any]:
    """``grad_norm`` and ``weight_norm`` (global L2 norms over every parameter) as
    0-d device tensors, with no host sync: ``run.log(step, **model_norms(model), ...)``
    after ``loss.backward()``. grad_norm is left out when no parameter has a grad."""
    import torch

    params = [p for p in model.parameters()]
    out = {"weight_norm": torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach()) for p in params]))}
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if grads:
        out["grad_norm"] = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return out


def _json_value(obj: Any) -> Any:
    if hasattr(obj, "item") and getattr(obj, "size", 1) == 1:
        try:
            return obj.item()
        except Exception:
            pass
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)
