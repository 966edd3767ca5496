#!/usr/bin/env bash
# Installs what the tests need and runs them all (slow ones included).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/system-deps.sh
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest "$@"
