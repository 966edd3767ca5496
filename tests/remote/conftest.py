"""A real OpenSSH server on loopback for the remote-source tests.

Started by ``scripts/ci/sshd-up.sh`` (installs openssh-server with apt when
it is missing and we are root). Without it the tests are skipped with the
reason, or fail when ``GROKWATCH_REQUIRE_INFRA=1`` (as CI sets it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "scripts" / "ci"


def unavailable(reason: str):
    if os.environ.get("GROKWATCH_REQUIRE_INFRA") == "1":
        pytest.fail(f"{reason} (GROKWATCH_REQUIRE_INFRA=1: required infrastructure is missing)", pytrace=False)
    pytest.skip(reason)


class Sshd:
    """The running server: its SSHD_* values, plus cut/restart helpers for tests."""

    def __init__(self, info: dict[str, str]):
        self.info = info
        self.dir = Path(info["SSHD_DIR"])
        self.port = int(info["SSHD_PORT"])
        self.user = info["SSHD_USER"]
        self.client_key = info["SSHD_CLIENT_KEY"]
        self.known_hosts = info["SSHD_KNOWN_HOSTS"]
        self.host_key_pub = info["SSHD_HOST_KEY_PUB"]

    @property
    def pid(self) -> int | None:
        try:
            return int((self.dir / "sshd.pid").read_text())
        except (OSError, ValueError):
            return None

    def sessions(self) -> list[int]:
        """Per-connection sshd processes: the listener's children."""
        pid = self.pid
        if pid is None:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
        return out

    def cut(self) -> int:
        """Kill every open session (the link drops; the listener stays). Returns how many."""
        killed = 0
        for pid in self.sessions():
            try:
                os.kill(pid, 9)
                killed += 1
            except ProcessLookupError:
                pass
        return killed

    def stop(self) -> None:
        """Stop the listener, then cut every session (keys and config stay).

        In this order, a client cannot slip in a new session between the two."""
        sessions = self.sessions()
        subprocess.run(["bash", str(CI / "sshd-down.sh"), str(self.dir), "--keep"], capture_output=True, timeout=60)
        for pid in set(sessions) | set(self._orphans(sessions)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def _orphans(self, known: list[int]) -> list[int]:
        # Sessions forked just before the listener died are re-parented; find
        # them by their command line naming our config.
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in known:
                try:
                    cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmd and cmd[0].endswith(b"sshd") and str(self.dir / "sshd_config").encode() in cmd:
                    out.append(int(entry))
        return out

    def restart(self) -> None:
        out = subprocess.run(
            ["bash", str(CI / "sshd-up.sh"), str(self.dir), "--restart"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr

    def write_config(self, path: Path, alias: str = "gwtest", known_hosts: str | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"Host {alias}\n"
            f"  HostName 127.0.0.1\n  Port {self.port}\n  User {self.user}\n"
            f"  IdentityFile {self.client_key}\n  UserKnownHostsFile {known_hosts or self.known_hosts}\n"
        )
        return path


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    try:
        out = subprocess.run(
            ["bash", str(CI / "sshd-up.sh"), str(tmp_path_factory.mktemp("sshd"))],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        unavailable("scripts/ci/sshd-up.sh took more than 600 s")
    if out.returncode != 0:
        unavailable(
            f"no loopback sshd (sshd-up.sh exit {out.returncode}): " + " | ".join(out.stderr.strip().splitlines()[-3:])
        )
    server = Sshd(dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line))
    yield server
    subprocess.run(["bash", str(CI / "sshd-down.sh"), str(server.dir)], capture_output=True, timeout=60)


@pytest.fixture
def ssh_config(sshd, tmp_path):
    """An ~/.ssh/config-style file naming the loopback server ``gwtest``."""
    return sshd.write_config(tmp_path / "ssh_config")
