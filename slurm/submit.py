"""Submitting a planned sweep: a thin wrapper around ``sbatch --parsable``."""

from __future__ import annotations

import re
from pathlib import Path

from .queue import LocalRunner, Runner


class SubmitError(RuntimeError):
    """sbatch refused the job or could not be run; the message is one line."""


def parse_parsable(stdout: str) -> str:
    """``sbatch --parsable`` prints ``jobid`` or ``jobid;cluster``."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    job = first.split(";")[0].strip()
    if not re.fullmatch(r"[0-9]+", job):
        raise SubmitError(f"sbatch printed no job id: {first[:200]!r}")
    return job


def sbatch(script_path: Path | str, runner: Runner | None = None, timeout: float = 60.0) -> str:
    """Submit a batch script; return the (array) job id."""
    runner = runner or LocalRunner()
    res = runner(["sbatch", "--parsable", str(script_path)], timeout)
    if res.returncode != 0:
        msg = " ".join((res.stderr or res.stdout).split())[:300] or f"exit {res.returncode}"
        raise SubmitError(f"sbatch failed: {msg}")
    return parse_parsable(res.stdout)
