"""``python -m trainer``: one grokking run, written to <root>/<sweep>/<run-id>/;
``python -m trainer --pack ...``: several runs in one process. The command
line is trainer.cli's; this checks first that the training extra is installed.
"""

from __future__ import annotations

import sys

from grokwatch.integrations.extras import training_extra_error

if __name__ == "__main__" and (_err := training_extra_error("python -m trainer")):
    print(f"trainer: error: {_err}", file=sys.stderr)  # before trainer.cli, which imports torch
    sys.exit(2)

from .cli import build_parser, main, resolve  # noqa: E402

__all__ = ["build_parser", "main", "resolve"]

if __name__ == "__main__":
    sys.exit(main())
