"""The command line of ``python -m trainer`` (trainer/__main__.py): one run,
or with ``--pack`` several runs in one process (trainer.pack).

A flag left out takes the preset's value (and with --resume of an existing run,
the run's own value from run.json). Errors are one line on stderr,
``trainer: error: ...``, exit code 2. The other exit codes: trainer.stopping.
Torch-heavy modules (trainer.train, trainer.pack) load only when training starts.
"""

from __future__ import annotations

import argparse
import json
import sys

from grokwatch.runs import training
from grokwatch.store.layout import run_id_for

from .config import ConfigError, TrainConfig

# The flags and their resolution are the config's (grokwatch.runs.training), so that
# `grokwatch sweep plan` checks a sweep with them without importing the trainer.
build_parser = training.build_parser


def resolve(args: argparse.Namespace) -> TrainConfig:
    """Preset, then (with --resume of an existing run) the run's run.json, then the flags given."""
    return training.resolve(args, TrainConfig)


# -- python -m trainer --pack ------------------------------------------------------


def _ints(text: str) -> list[int]:
    """``"0,1,5-9"`` -> [0, 1, 5, 6, 7, 8, 9]."""
    out: list[int] = []
    for part in (s.strip() for s in text.split(",")):
        lo, dash, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if dash else [int(part)]
        except ValueError:
            raise ConfigError(f"--seeds: {part!r} is not a seed or a range like 0-29") from None
    return out


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None


def run_specs(args: argparse.Namespace, preset_wd: float) -> list[tuple[str, float, int]]:
    """(run_id, weight_decay, seed) per run, from --runs or from --seeds x --weight-decays."""
    given = vars(args)
    if "runs" in given:
        if "seeds" in given or "weight_decays" in given:
            raise ConfigError("--pack: give --runs, or --seeds/--weight-decays, not both")
        specs = []
        for item in (s.strip() for s in args.runs.split(",") if s.strip()):
            parts = item.split(":")
            if len(parts) != 3:
                raise ConfigError(f"--runs: {item!r} is not RUN_ID:WEIGHT_DECAY:SEED")
            try:
                specs.append((parts[0], float(parts[1]), int(parts[2])))
            except ValueError:
                raise ConfigError(f"--runs: {item!r} is not RUN_ID:WEIGHT_DECAY:SEED") from None
        return specs
    seeds = _ints(args.seeds) if "seeds" in given else [0]
    wds = _floats(args.weight_decays, "--weight-decays") if "weight_decays" in given else [preset_wd]
    # weight-decay major, named as `grokwatch sweep plan` names them
    return [(run_id_for(wd, seed), wd, seed) for wd in wds for seed in seeds]


def build_pack_parser() -> argparse.ArgumentParser:
    p = build_parser()
    p.prog = "python -m trainer --pack"
    p.description = (
        "Train several grokking runs (same preset; any seeds and weight decays) in one process, as one\n"
        "batched model on one device. Each run gets its own run directory, run.json, shards, checkpoint and\n"
        "status, exactly as if it ran alone. --runs (or --seeds x --weight-decays) replaces the per-run\n"
        "flags --run-id, --seed and --weight-decay; every other flag applies to all runs. With --resume\n"
        "each run continues from its own checkpoint (one written alone resumes packed, and back)."
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "examples:\n"
        "  python -m trainer --pack --root runs --sweep s --preset tiny --runs a:0.3:0,b:1.0:1\n"
        "  python -m trainer --pack --root runs --sweep s --seeds 0-29 --weight-decays 0.1,0.3,1.0 --device cuda\n"
        "  (a requeue: the same with --resume; each run continues from its own checkpoint)"
    )
    for action in p._actions:  # per-run flags: --runs replaces them
        if action.dest in ("run_id", "seed", "weight_decay"):
            action.help = argparse.SUPPRESS
    a = p.add_argument
    a("--runs", help="the runs, RUN_ID:WEIGHT_DECAY:SEED comma-separated (e.g. wd0.3-s00:0.3:0,wd1.0-s01:1.0:1)")
    a(
        "--seeds",
        help="with --weight-decays: every seed x weight decay, run ids wd<WD>-s<SEED:02d>; "
        "seeds like 0,1,2 or 0-29 (default 0)",
    )
    a("--weight-decays", help="comma-separated weight decays (default: the preset's)")
    return p


def resolve_pack(args: argparse.Namespace) -> list[TrainConfig]:
    given = {k: v for k, v in vars(args).items() if k not in ("pack", "runs", "seeds", "weight_decays")}
    for flag in ("run_id", "seed", "weight_decay"):
        if flag in given:
            raise ConfigError(
                f"--pack: --{flag.replace('_', '-')} is per run; use --runs RUN_ID:WEIGHT_DECAY:SEED,... "
                "or --seeds/--weight-decays"
            )
    preset = TrainConfig.from_preset(given.get("preset", "canonical"))
    cfgs = []
    for run_id, wd, seed in run_specs(args, preset.weight_decay):
        cfgs.append(resolve(argparse.Namespace(**given, run_id=run_id, seed=seed, weight_decay=wd)))
    return cfgs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    pack = "--pack" in argv
    args = (build_pack_parser() if pack else build_parser()).parse_args(argv)
    try:
        if pack:
            from .pack import check_pack, train_pack

            cfgs = resolve_pack(args)
            if getattr(args, "dry_run", False):
                check_pack(cfgs, fresh=False)
                print(json.dumps({"pack": [c.to_dict() for c in cfgs]}, sort_keys=True))
                return 0
            return train_pack(cfgs)
        cfg = resolve(args)
        if getattr(args, "dry_run", False):
            cfg.validate()
            print(json.dumps(cfg.to_dict(), sort_keys=True))
            return 0
        from .train import train  # torch-heavy work starts here

        return train(cfg)
    except ConfigError as exc:
        print(f"trainer: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
