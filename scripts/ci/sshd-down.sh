#!/usr/bin/env bash
# Stop an sshd started by scripts/ci/sshd-up.sh and delete its directory.
# Adapted from the shared recipe sshd-loopback-stop.sh.
#   scripts/ci/sshd-down.sh "$SSHD_DIR" [--keep]
# Kills only the pid recorded in DIR/sshd.pid (the listener; open sessions
# are separate children that end when their clients disconnect).
set -euo pipefail
DIR=${1:?usage: sshd-down.sh DIR [--keep]}
if [ -f "$DIR/sshd.pid" ]; then
  pid=$(cat "$DIR/sshd.pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "sshd-down: stopped pid $pid" >&2
  fi
  rm -f "$DIR/sshd.pid"
fi
# Guard against deleting something that is not ours.
if [ "${2:-}" != --keep ] && [ -f "$DIR/sshd_config" ]; then rm -rf "$DIR"; fi
