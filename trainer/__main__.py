"""``python -m trainer``: one grokking run, written to <root>/<sweep>/<run-id>/.
``python -m trainer --pack ...``: several runs in one process (trainer.pack).

A flag left out takes the preset's value (and with --resume of an existing run,
the run's own value from run.json). Errors are one line on stderr,
``trainer: error: ...``, exit code 2. See trainer.train for the other codes.
"""

from __future__ import annotations

import argparse
import json
import sys

from grokwatch.integrations.extras import training_extra_error

if __name__ == "__main__" and (_err := training_extra_error("python -m trainer")):
    print(f"trainer: error: {_err}", file=sys.stderr)  # before .config, which imports torch
    sys.exit(2)

from grokwatch.store import is_valid_run_id, read_run_config  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--pack" in argv:
        from .pack import main as pack_main

        return pack_main(argv)
    args = build_parser().parse_args(argv)
    try:
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


if __name__ == "__main__":
    sys.exit(main())
