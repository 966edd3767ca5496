"""The training configuration: one JSON-able dataclass, its presets and its checks.

The whole config goes into ``run.json`` (through RunWriter) and into every
checkpoint; :meth:`TrainConfig.to_dict` adds the derived figures a reader needs
(``n_params``, ``vocab_size``, ``n_train``, ``n_val``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokwatch.store import RUN_JSON, is_valid_run_id

from . import task
from .model import ModelConfig, count_params


class ConfigError(ValueError):
    """A bad configuration; the message is one line that names the flag."""


# Presets set task, model and optimizer; everything else keeps its default.
PRESETS: dict[str, dict[str, Any]] = {
    # The canonical study: modular addition mod 97, one layer, ~302K parameters
    # (d_mlp 820 gives 302,260), full-batch AdamW, 3 wd x 30 seeds x 100K steps.
    "canonical": dict(
        op="add",
        p=97,
        train_frac=0.3,
        n_layers=1,
        d_model=128,
        n_heads=4,
        d_mlp=820,
        lr=1e-3,
        beta1=0.9,
        beta2=0.98,
        weight_decay=1.0,
        warmup=10,
        steps=100_000,
    ),
    # Nanda et al.'s widths (d_mlp = 4 d_model) on the same task: 223,104 parameters.
    "nanda": dict(
        op="add",
        p=97,
        train_frac=0.3,
        n_layers=1,
        d_model=128,
        n_heads=4,
        d_mlp=512,
        lr=1e-3,
        beta1=0.9,
        beta2=0.98,
        weight_decay=1.0,
        warmup=10,
        steps=100_000,
    ),
    # A CPU-sized run for the demo and the tests: memorizes by ~90 steps and
    # groks within a few thousand (56,000 parameters, ~10 ms/step on one thread).
    "tiny": dict(
        op="add",
        p=47,
        train_frac=0.4,
        n_layers=1,
        d_model=64,
        n_heads=4,
        d_mlp=256,
        lr=3e-3,
        beta1=0.9,
        beta2=0.98,
        weight_decay=1.0,
        warmup=10,
        steps=10_000,
    ),
}

from .probes import DEFAULT_PROBES  # noqa: E402  (probes.py picks them, within the 5% cost budget)

# Fields that fix the trajectory: a resumed run must keep them.
IDENTITY_FIELDS = (
    "op",
    "p",
    "train_frac",
    "seed",
    "n_layers",
    "d_model",
    "n_heads",
    "d_mlp",
    "lr",
    "beta1",
    "beta2",
    "weight_decay",
    "warmup",
)


@dataclass
class TrainConfig:
    # where the run lives: <root>/<sweep>/<run_id>/
    root: str = "runs"
    sweep: str = "default"
    run_id: str = "run"
    preset: str = "canonical"
    # task
    op: str = "add"
    p: int = 97
    train_frac: float = 0.3
    seed: int = 0
    # model
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 820
    # optimizer: full-batch AdamW with a linear warm-up
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.98
    weight_decay: float = 1.0
    warmup: int = 10
    steps: int = 100_000
    # cadences (in steps, except flush_seconds); 0 turns keep_every/probe_every off
    eval_every: int = 10
    flush_steps: int = 1000
    flush_seconds: float = 10.0
    checkpoint_every: int = 1000
    keep_every: int = 0
    probe_every: int = 500
    probes: list[str] = field(default_factory=lambda: list(DEFAULT_PROBES))
    # the H0 probe's filtration (observables.topology.CONSTRUCTIONS); "sublevel" is the seed study's
    h0_construction: str = "rips"
    stop_after_grok: int | None = None
    # runtime
    device: str = "cpu"
    threads: int = 1
    compile: bool = False
    resume: bool = False

    # -- construction --------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str = "canonical", **overrides: Any) -> TrainConfig:
        if name not in PRESETS:
            raise ConfigError(f"--preset: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], "preset": name, **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (run.json, a checkpoint); derived and unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "probes" in kw:
            kw["probes"] = list(kw["probes"])
        return cls(**kw)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    # -- derived -------------------------------------------------------------
    def model_config(self) -> ModelConfig:
        return ModelConfig(
            vocab_size=task.vocab_size(self.p),
            n_ctx=4,
            n_layers=self.n_layers,
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_mlp=self.d_mlp,
        )

    @property
    def n_params(self) -> int:
        return count_params(self.model_config())

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.sweep / self.run_id

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able data, with the derived figures."""
        d = dataclasses.asdict(self)
        n_all = task.n_examples(self.op, self.p)
        n_train = task.n_train(self.op, self.p, self.train_frac)
        d.update(
            n_params=self.n_params,
            vocab_size=task.vocab_size(self.p),
            n_ctx=4,
            d_head=self.d_model // max(1, self.n_heads),
            n_train=n_train,
            n_val=n_all - n_train,
            task=f"a {'+-*/'[task.OPS.index(self.op)] if self.op in task.OPS else self.op} b mod {self.p}",
        )
        return d

    # -- checks --------------------------------------------------------------
    def validate(self, check_root: bool = True) -> TrainConfig:
        """Raise ConfigError (one line naming the flag) for the first problem found."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(self.preset in PRESETS, f"--preset: unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        need(self.op in task.OPS, f"--op: unknown op {self.op!r}; choose from {', '.join(task.OPS)}")
        need(_is_int(self.p) and self.p >= 2, f"--p must be an integer >= 2, got {self.p!r}")
        if self.op == "div":
            need(
                task.is_prime(self.p),
                f"--op div needs a prime --p (division mod a composite is not defined), got {self.p}",
            )
        need(
            _is_num(self.train_frac) and 0.0 < self.train_frac < 1.0,
            f"--train-frac must be strictly between 0 and 1, got {self.train_frac!r}",
        )
        n_all = task.n_examples(self.op, self.p)
        n_train = task.n_train(self.op, self.p, self.train_frac)
        need(
            0 < n_train < n_all,
            f"--train-frac {self.train_frac} leaves an empty train or validation set ({n_train} of {n_all} examples)",
        )
        need(_is_int(self.seed) and self.seed >= 0, f"--seed must be a non-negative integer, got {self.seed!r}")
        for name in ("n_layers", "d_model", "n_heads", "d_mlp"):
            v = getattr(self, name)
            need(_is_int(v) and v > 0, f"--{_flag(name)} must be a positive integer, got {v!r}")
        need(
            self.d_model % self.n_heads == 0,
            f"--d-model ({self.d_model}) must be divisible by --n-heads ({self.n_heads})",
        )
        need(_is_num(self.lr) and self.lr > 0, f"--lr must be positive, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            need(_is_num(v) and 0.0 <= v < 1.0, f"{name} must be in [0, 1), got {v!r}")
        need(
            _is_num(self.weight_decay) and self.weight_decay >= 0,
            f"--weight-decay must be >= 0, got {self.weight_decay!r}",
        )
        need(_is_int(self.warmup) and self.warmup >= 0, f"--warmup must be a non-negative integer, got {self.warmup!r}")
        for name in ("steps", "eval_every", "flush_steps", "checkpoint_every", "threads"):
            v = getattr(self, name)
            need(_is_int(v) and v > 0, f"--{_flag(name)} must be a positive integer, got {v!r}")
        for name in ("keep_every", "probe_every"):
            v = getattr(self, name)
            need(_is_int(v) and v >= 0, f"--{_flag(name)} must be a non-negative integer (0 turns it off), got {v!r}")
        need(
            _is_num(self.flush_seconds) and self.flush_seconds > 0,
            f"--flush-seconds must be positive, got {self.flush_seconds!r}",
        )
        if self.stop_after_grok is not None:
            need(
                _is_int(self.stop_after_grok) and self.stop_after_grok >= 0,
                f"--stop-after-grok must be a non-negative integer, got {self.stop_after_grok!r}",
            )
        from observables.topology import CONSTRUCTIONS

        from .probes import PROBES  # the registry; light (torch is imported already)

        need(
            self.h0_construction in CONSTRUCTIONS,
            f"--h0-construction: unknown construction {self.h0_construction!r}; choose from {', '.join(CONSTRUCTIONS)}",
        )
        unknown = [n for n in self.probes if n not in PROBES]
        need(
            not unknown,
            f"--probes: unknown probe {', '.join(map(repr, unknown))}; known: {', '.join(sorted(PROBES)) or 'none'}",
        )
        need(
            is_valid_run_id(str(self.run_id)),
            f"--run-id: unsafe run id {self.run_id!r}: use only letters, digits, '.', '_' and '-'",
        )
        need(
            is_valid_run_id(str(self.sweep)),
            f"--sweep: unsafe sweep name {self.sweep!r}: use only letters, digits, '.', '_' and '-'",
        )
        need(_device_ok(self.device), _device_msg(self.device))
        if check_root:
            problem = _not_writable(Path(self.root))
            need(problem is None, f"--root {self.root}: {problem}")
        return self


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _device_ok(device: str) -> bool:
    import torch

    if device == "cpu":
        return True
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        if not torch.cuda.is_available():
            return False
        idx = device.partition(":")[2]
        return idx == "" or (idx.isdigit() and int(idx) < torch.cuda.device_count())
    return False


def _device_msg(device: str) -> str:
    if isinstance(device, str) and device.startswith("cuda"):
        return f"--device {device}: no such CUDA device on this machine (use --device cpu)"
    return f"--device must be cpu or cuda[:N], got {device!r}"


def _not_writable(root: Path) -> str | None:
    """Why the run root cannot be written, or None. A missing root is fine if
    its nearest existing parent is a writable directory (it will be created)."""
    p = root.absolute()
    while not p.exists():
        if p.parent == p:
            return "no existing parent directory"
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a directory"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable"
    try:  # root passes os.access everywhere; a read-only mount still refuses
        os.rmdir(tempfile.mkdtemp(prefix=".trainer-probe-", dir=p))
    except OSError as exc:
        return f"{p} is not writable ({exc.strerror or exc})"
    return None


def check_fresh_run(cfg: TrainConfig) -> None:
    """Without --resume an existing run is never overwritten."""
    if not cfg.resume and (cfg.run_dir / RUN_JSON).exists():
        raise ConfigError(f"run {cfg.run_dir} already exists; pass --resume to continue it or pick another --run-id")
