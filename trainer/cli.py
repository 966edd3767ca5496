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

from grokwatch.store import is_valid_run_id, read_run_config
from grokwatch.store.layout import run_id_for

from .config import PRESETS, ConfigError, TrainConfig


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


def resolve(args: argparse.Namespace) -> TrainConfig:
    """Preset, then (with --resume of an existing run) the run's run.json, then the flags given."""
    given = {k: v for k, v in vars(args).items() if k != "dry_run"}
    if "probes" in given:
        given["probes"] = [s.strip() for s in given["probes"].split(",") if s.strip()]
    base = TrainConfig.from_preset(given.pop("preset", "canonical")).to_dict()
    if given.get("resume"):
        probe = TrainConfig.from_dict({**base, **given})
        safe = is_valid_run_id(str(probe.sweep)) and is_valid_run_id(str(probe.run_id))  # else validate() says so
        saved = read_run_config(probe.run_dir) if safe else None
        if saved is not None:
            if "preset" in vars(args) and saved.get("preset") != args.preset:
                raise ConfigError(
                    f"--resume: run {probe.run_dir} used preset {saved.get('preset')!r}, not {args.preset!r}"
                )
            base = {k: v for k, v in saved.items() if k != "meta"}
    if "preset" in vars(args):
        base["preset"] = args.preset
    return TrainConfig.from_dict({**base, **given})


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
