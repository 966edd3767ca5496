"""The trainer's configuration, without the trainer: its fields, presets, checks and flags.

One module: the fields, their checks and their command-line flags are one
definition, which the trainer and the sweep launcher must read alike.

``python -m trainer`` and ``grokwatch sweep plan|submit`` share this module:
the trainer builds on :class:`TrainingConfig` (``trainer.config.TrainConfig``
adds the model and its parameter count, which need torch), and the sweep
launcher resolves and checks the configuration every array task would run
with the same code, on a login node without torch. What a run was trained
with goes into its ``run.json`` as a :class:`grokwatch.store.RunConfig`
(:meth:`TrainingConfig.to_run_config`): the typed fields of the run contract,
the rest of these fields and their derived figures as its extra keys.

Light: the standard library, ``grokwatch.store`` and (for the H0 probe's
filtrations) ``observables.topology``; torch only to check a ``cuda`` device.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokwatch.store import RUN_JSON, ContractError, RunConfig, is_valid_run_id


class ConfigError(ValueError):
    """A bad training configuration; the message is one line that names the flag."""


# -- the task: a op b mod p (trainer.task builds the data) -----------------------------

OPS = ("add", "sub", "mul", "div")


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def vocab_size(p: int) -> int:
    """p numbers, one op token and '='."""
    return p + 2


def n_examples(op: str, p: int) -> int:
    return p * (p - 1) if op == "div" else p * p


def n_train(op: str, p: int, train_frac: float) -> int:
    return int(train_frac * n_examples(op, p))


# -- the probes (trainer.probes registers one function under each name) -----------------

#: Every probe the trainer has.
PROBE_NAMES = (
    "effective_rank",
    "htsr",
    "htsr_traps",
    "h0",
    "commutator",
    "hessian",
    "hessian_trace",
    "update_cosine",
    "pca2",
)
#: Probes on by default (TrainingConfig.probes): all of them, within the 5% cost budget (trainer.probes).
DEFAULT_PROBES = PROBE_NAMES


def parse_probe_spec(spec: str) -> tuple[str, int | None]:
    """``"h0@5"`` -> ("h0", 5); ``"h0"`` -> ("h0", None). ValueError for a bad ``@``."""
    name, at, every = spec.partition("@")
    if not at:
        return spec, None
    if not every.isdigit() or int(every) < 1:
        raise ValueError(f"bad probe sub-cadence in {spec!r}: expected name@N with N >= 1")
    return name, int(every)


def is_probe_spec(spec: object, names: Collection[str] = PROBE_NAMES) -> bool:
    """``spec`` names one of the probes ``names``, optionally as ``name@every``."""
    if not isinstance(spec, str):
        return False
    try:
        name, _ = parse_probe_spec(spec)
    except ValueError:
        return False
    return name in names


# -- presets --------------------------------------------------------------------------

# Presets set task, model and optimizer; everything else keeps its default.
# The canonical study: modular addition mod 97, one layer, ~302K parameters
# (d_mlp 820 gives 302,260), full-batch AdamW, 3 wd x 30 seeds x 100K steps.
_CANONICAL: dict[str, Any] = dict(
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
)
PRESETS: dict[str, dict[str, Any]] = {
    "canonical": _CANONICAL,
    # Nanda et al.'s widths (d_mlp = 4 d_model) on the same task: 223,104 parameters.
    "nanda": {**_CANONICAL, "d_mlp": 512},
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

N_CTX = 4  # a, op, b, =


@dataclass
class TrainingConfig:
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
    def from_preset(cls, name: str = "canonical", **overrides: Any):
        if name not in PRESETS:
            raise ConfigError(f"--preset: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], "preset": name, **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Build from a dict (run.json, a checkpoint); derived and unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "probes" in kw:
            kw["probes"] = list(kw["probes"])
        return cls(**kw)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    # -- derived -------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.sweep / self.run_id

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able data, with the derived figures a reader needs."""
        d = dataclasses.asdict(self)
        n_all = n_examples(self.op, self.p)
        n_tr = n_train(self.op, self.p, self.train_frac)
        d.update(
            vocab_size=vocab_size(self.p),
            n_ctx=N_CTX,
            d_head=self.d_model // max(1, self.n_heads),
            n_train=n_tr,
            n_val=n_all - n_tr,
            task=f"a {'+-*/'[OPS.index(self.op)] if self.op in OPS else self.op} b mod {self.p}",
        )
        return d

    def to_run_config(self) -> RunConfig:
        """The run's run.json (the run contract): identity and schedule typed, the rest as extra keys."""
        d = self.to_dict()
        typed = {
            k: d.pop(k)
            for k in ("run_id", "sweep", "preset", "seed", "weight_decay", "lr", "steps", "checkpoint_every")
        }
        return RunConfig(**typed, extra=d)

    # -- checks --------------------------------------------------------------
    def probe_names(self) -> Collection[str]:
        """The probes ``probes`` may name (the trainer's TrainConfig: its registry of probe functions)."""
        return PROBE_NAMES

    def validate(self, check_root: bool = True):
        """Raise ConfigError (one line naming the flag) for the first problem found."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(self.preset in PRESETS, f"--preset: unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        need(self.op in OPS, f"--op: unknown op {self.op!r}; choose from {', '.join(OPS)}")
        need(_is_int(self.p) and self.p >= 2, f"--p must be an integer >= 2, got {self.p!r}")
        if self.op == "div":
            need(
                is_prime(self.p),
                f"--op div needs a prime --p (division mod a composite is not defined), got {self.p}",
            )
        need(
            _is_num(self.train_frac) and 0.0 < self.train_frac < 1.0,
            f"--train-frac must be strictly between 0 and 1, got {self.train_frac!r}",
        )
        n_all = n_examples(self.op, self.p)
        n_tr = n_train(self.op, self.p, self.train_frac)
        need(
            0 < n_tr < n_all,
            f"--train-frac {self.train_frac} leaves an empty train or validation set ({n_tr} of {n_all} examples)",
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

        need(
            self.h0_construction in CONSTRUCTIONS,
            f"--h0-construction: unknown construction {self.h0_construction!r}; choose from {', '.join(CONSTRUCTIONS)}",
        )
        known = self.probe_names()
        unknown = [n for n in self.probes if not is_probe_spec(n, known)]
        need(
            not unknown,
            f"--probes: unknown probe {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known)) or 'none'}",
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
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _device_ok(device: str) -> bool:
    if device == "cpu":
        return True
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        import torch

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


def check_fresh_run(cfg: TrainingConfig) -> None:
    """Without --resume an existing run is never overwritten."""
    if not cfg.resume and (cfg.run_dir / RUN_JSON).exists():
        raise ConfigError(f"run {cfg.run_dir} already exists; pass --resume to continue it or pick another --run-id")


# -- the command line: python -m trainer's flags ------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"trainer: error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """``python -m trainer``'s parser: a flag left out is absent from the namespace (see :func:`resolve`)."""
    p = _Parser(
        prog="python -m trainer",
        description="Train one grokking run (a op b mod p) and record it for grokwatch.",
        argument_default=argparse.SUPPRESS,
    )
    a = p.add_argument
    a("--root", help="root of all sweeps (default: runs)")
    a("--sweep", help="sweep name, a directory under --root (default: default)")
    a("--run-id", help="run id, a directory under the sweep: letters, digits, '.', '_', '-' (default: run)")
    a("--preset", choices=sorted(PRESETS), help="task/model/optimizer preset (default: canonical)")
    a("--seed", type=int, help="seed of the data split and the init (default: 0)")
    a("--op", help="add, sub, mul or div (div needs a prime p)")
    a("--p", type=int, help="the modulus")
    a("--train-frac", type=float, help="fraction of all pairs used for training, in (0, 1)")
    a("--d-model", type=int)
    a("--d-mlp", type=int)
    a("--n-heads", type=int)
    a("--n-layers", type=int)
    a("--lr", type=float, help="AdamW learning rate")
    a("--weight-decay", type=float, help="AdamW (decoupled) weight decay")
    a("--warmup", type=int, help="linear lr warm-up steps (0: none)")
    a("--steps", type=int, help="total optimizer steps")
    a("--eval-every", type=int, help="validation cadence in steps (default 10)")
    a("--flush-steps", type=int, help="a shard every N steps ... (default 1000)")
    a("--flush-seconds", type=float, help="... or every T seconds, whichever first (default 10)")
    a("--checkpoint-every", type=int, help="checkpoint cadence in steps (default 1000)")
    a("--keep-every", type=int, help="also keep weight snapshots every M steps in <run>/snapshots/ (0: off)")
    a("--probe-every", type=int, help="probe cadence in steps (default 500; 0: off)")
    a(
        "--probes",
        help="comma-separated probe names, each optionally name@N to run every N-th probe step "
        "(default: all of trainer.probes.DEFAULT_PROBES; '' for none)",
    )
    a(
        "--h0-construction",
        choices=["rips", "sublevel", "superlevel"],
        help="the h0 probe's filtration of the loss slice: rips (default; alive on real runs, docs/topology.md), "
        "sublevel (the seed study's; degenerate on real runs) or superlevel",
    )
    a("--stop-after-grok", type=int, help="stop N steps after val_acc >= 0.95 is first seen")
    a("--device", help="cpu or cuda[:N] (default: cpu)")
    a("--threads", type=int, help="torch CPU threads (default 1)")
    a(
        "--compile",
        nargs="?",
        const=True,
        type=_bool,
        help="torch.compile the model (falls back to eager with a warning)",
    )
    a("--resume", action="store_true", help="continue from the run's checkpoint; start fresh where there is none")
    a("--dry-run", action="store_true", help="print the resolved config (with n_params) as one JSON object and exit")
    a(
        "--pack",
        action="store_true",
        help="train several runs (--runs, or --seeds x --weight-decays) as one batched model; see --pack --help",
    )
    return p


def resolve(args: argparse.Namespace, cls: type[TrainingConfig] = TrainingConfig):
    """Preset, then (with --resume of an existing run) the run's run.json, then the flags given."""
    given = {k: v for k, v in vars(args).items() if k != "dry_run"}
    if "probes" in given:
        given["probes"] = [s.strip() for s in given["probes"].split(",") if s.strip()]
    base = dataclasses.asdict(cls.from_preset(given.pop("preset", "canonical")))
    if given.get("resume"):
        probe = cls.from_dict({**base, **given})
        safe = is_valid_run_id(str(probe.sweep)) and is_valid_run_id(str(probe.run_id))  # else validate() says so
        try:
            saved = RunConfig.read(probe.run_dir) if safe else None
        except ContractError as exc:
            raise ConfigError(f"--resume: {exc}") from None
        if saved is not None:
            if "preset" in vars(args) and saved.preset != args.preset:
                raise ConfigError(f"--resume: run {probe.run_dir} used preset {saved.preset!r}, not {args.preset!r}")
            base = {k: v for k, v in saved.to_json().items() if k not in ("meta", "contract_version")}
    if "preset" in vars(args):
        base["preset"] = args.preset
    return cls.from_dict({**base, **given})


__all__ = [
    "DEFAULT_PROBES",
    "OPS",
    "PRESETS",
    "PROBE_NAMES",
    "ConfigError",
    "TrainingConfig",
    "build_parser",
    "check_fresh_run",
    "is_probe_spec",
    "parse_probe_spec",
    "resolve",
]
