#!/usr/bin/env bash
# Python set-up: a venv in .venv with the CPU torch pin first (an unpinned torch
# would pull a multi-GB CUDA build), then grokwatch itself with its dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
