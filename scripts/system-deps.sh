#!/usr/bin/env bash
# System packages the real-infrastructure tests use (Debian): tmux for the
# terminal test, munge + slurm for the sweep tests, openssh-server for the SSH
# source, shellcheck for the batch script. Installs only what is missing, and
# only as root; otherwise says what the tests will skip.
set -uo pipefail
want=(tmux openssh-server munge slurmctld slurmd slurm-client shellcheck)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: not root or no apt-get; missing ${missing[*]}: tests that need them will skip" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || echo "system-deps: apt-get update failed" >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || echo "system-deps: apt-get install failed for some of ${missing[*]}: tests that need them will skip or fail" >&2
exit 0
