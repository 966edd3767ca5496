#!/usr/bin/env bash
# Installs what the tests need, checks lint, format and types (ruff, mypy:
# settings in pyproject.toml), then runs the tests (slow ones included). Any
# failure fails the run. Extra arguments go to pytest, e.g.
# `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/system-deps.sh
export PYTHONUNBUFFERED=1
echo "+ ruff check ." >&2
.venv/bin/ruff check .
echo "+ ruff format --check ." >&2
.venv/bin/ruff format --check .
echo "+ mypy" >&2
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
