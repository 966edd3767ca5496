"""Real infrastructure for the SLURM tests: a single-node cluster and shellcheck.

The cluster comes from ``scripts/ci/slurm-up.sh`` (root; installs munge and
slurm from apt on first use) unless one already answers ``scontrol ping``.
A test that cannot get what it needs is skipped with the reason, or fails
when ``GROKWATCH_REQUIRE_INFRA=1`` (CI sets it, so CI cannot pass by
skipping everything).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "scripts" / "ci"
_apt_updated = False


def unavailable(reason: str):
    """Skip with ``reason``, or fail when GROKWATCH_REQUIRE_INFRA=1."""
    if os.environ.get("GROKWATCH_REQUIRE_INFRA") == "1":
        pytest.fail(f"{reason} (GROKWATCH_REQUIRE_INFRA=1: required infrastructure is missing)", pytrace=False)
    pytest.skip(reason)


def ensure_deb(package: str, binary: str) -> str:
    """Path of ``binary``; installs Debian's ``package`` (as root) when it is missing."""
    global _apt_updated
    path = shutil.which(binary)
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable(f"{binary} is not installed and {package} cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=300)
        _apt_updated = True
    out = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    path = shutil.which(binary)
    if not path:
        unavailable(f"apt-get install {package} failed: {' '.join(out.stderr.split()[-30:])}")
    return path


def run_ci_script(name: str, *args: str, timeout: float = 600) -> dict[str, str]:
    """Run scripts/ci/NAME; its KEY=value stdout lines as a dict. Exit 3 or 1: unavailable."""
    try:
        out = subprocess.run(["bash", str(CI / name), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        unavailable(f"{name} took more than {timeout:.0f} s")
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-4:])
        unavailable(f"{name} could not start it (exit {out.returncode}): {tail}")
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def _slurm_answers() -> bool:
    if not shutil.which("scontrol") or not shutil.which("sinfo"):
        return False
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        node = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return (
        ping.returncode == 0
        and "UP" in ping.stdout
        and any(s.strip().rstrip("*~#") in ("idle", "mixed", "allocated") for s in node.stdout.splitlines())
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """A SLURM cluster that accepts jobs: the one running here, or one we start (and stop)."""
    started = False
    if not _slurm_answers():
        if os.geteuid() != 0:
            unavailable("no SLURM cluster answers and starting one needs root")
        run_ci_script("slurm-up.sh")
        started = True
        if not _slurm_answers():
            unavailable("scripts/ci/slurm-up.sh finished but the cluster does not answer")
    yield {"started": started}
    if started:
        subprocess.run(["bash", str(CI / "slurm-down.sh")], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def shellcheck():
    return ensure_deb("shellcheck", "shellcheck")


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory):
    """A loopback sshd (scripts/ci/sshd-up.sh): SSHD_* values as a dict."""
    info = run_ci_script("sshd-up.sh", str(tmp_path_factory.mktemp("sshd")))
    yield info
    subprocess.run(["bash", str(CI / "sshd-down.sh"), info["SSHD_DIR"]], capture_output=True, timeout=60)
