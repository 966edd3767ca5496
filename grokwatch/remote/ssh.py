"""One SSH connection (paramiko) shared by the SFTP mirror and remote commands.

Settings come from ``~/.ssh/config`` (HostName, User, Port, IdentityFile,
UserKnownHostsFile, ProxyCommand), then the URL (its user and port win). Keys
come from the IdentityFiles, the SSH agent and the default key files. Host
keys are checked against known_hosts with paramiko's RejectPolicy: an unknown
host is refused unless ``trust_new_host_key`` (AutoAddPolicy; the key is then
saved to known_hosts), and a changed key is always refused.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from slurm.queue import CommandResult

from .url import ConnectionLost, HostKeyError, RemoteError, SshUrl

log = logging.getLogger("grokwatch.remote")

# Errors of a link that may work again: reconnect with back-off.
TRANSIENT = (OSError, EOFError, socket.timeout, paramiko.SSHException)


@dataclass
class SshSettings:
    hostname: str
    port: int = 22
    username: str | None = None
    key_filenames: list[str] = field(default_factory=list)
    known_hosts: str = os.path.join("~", ".ssh", "known_hosts")
    proxy_command: str | None = None

    @property
    def host_key_name(self) -> str:
        """How known_hosts names this host: ``host`` or ``[host]:port``."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def display(self) -> str:
        return f"{self.username + '@' if self.username else ''}{self.hostname}:{self.port}"


def resolve_settings(
    url: SshUrl,
    *,
    ssh_config: str | os.PathLike | None = None,
    known_hosts: str | os.PathLike | None = None,
    key_filename: str | os.PathLike | Sequence[str] | None = None,
) -> SshSettings:
    """Connection settings for ``url`` from the SSH config file and the URL."""
    path = Path(ssh_config).expanduser() if ssh_config else Path("~/.ssh/config").expanduser()
    found: dict = {}
    if path.is_file():
        try:
            found = paramiko.SSHConfig.from_path(str(path)).lookup(url.host)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise RemoteError(f"cannot read SSH config {path}: {_one_line(exc)}") from None
    elif ssh_config:
        raise RemoteError(f"SSH config {path} does not exist")
    keys: list[str] = []
    if key_filename:
        keys = [str(key_filename)] if isinstance(key_filename, (str, os.PathLike)) else [str(k) for k in key_filename]
    keys += [os.path.expanduser(k) for k in found.get("identityfile", []) if os.path.exists(os.path.expanduser(k))]
    kh = known_hosts or (found.get("userknownhostsfile", "").split() or [None])[0] or "~/.ssh/known_hosts"
    try:
        port = int(url.port or found.get("port", 22))
    except ValueError:
        raise RemoteError(f"bad Port in SSH config for {url.host}: {found.get('port')!r}") from None
    return SshSettings(
        hostname=found.get("hostname", url.host),
        port=port,
        username=url.user or found.get("user"),
        key_filenames=keys,
        known_hosts=os.path.expanduser(str(kh)),
        proxy_command=found.get("proxycommand"),
    )


class Connection:
    """A lazily (re)connected SSH client with one SFTP session. Thread-safe."""

    def __init__(
        self,
        settings: SshSettings,
        *,
        trust_new_host_key: bool = False,
        allow_agent: bool = True,
        look_for_keys: bool = True,
        connect_timeout: float = 15.0,
        io_timeout: float = 30.0,
    ):
        self.settings = settings
        self.trust_new_host_key = trust_new_host_key
        self.allow_agent = allow_agent
        self.look_for_keys = look_for_keys
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.connects = 0
        self._lock = threading.RLock()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def connected(self) -> bool:
        c = self._client
        t = c.get_transport() if c else None
        return bool(t and t.is_active())

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            if not self.connected or self._sftp is None:
                self._connect()
            assert self._sftp is not None
            return self._sftp

    def transport(self) -> paramiko.Transport:
        with self._lock:
            if not self.connected:
                self._connect()
            assert self._client is not None
            t = self._client.get_transport()
            assert t is not None
            return t

    def close(self) -> None:
        with self._lock:
            client, self._client, self._sftp = self._client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken link may raise anything; it is gone either way
                log.debug("error while closing the SSH client", exc_info=True)

    def _connect(self) -> None:
        self.close()
        s = self.settings
        client = paramiko.SSHClient()
        if os.path.exists("/etc/ssh/ssh_known_hosts"):
            try:
                client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
            except (OSError, paramiko.SSHException):
                log.warning("cannot read /etc/ssh/ssh_known_hosts")
        if os.path.exists(s.known_hosts):
            try:
                client.load_host_keys(s.known_hosts)
            except (OSError, paramiko.SSHException) as exc:
                raise RemoteError(f"cannot read known_hosts {s.known_hosts}: {_one_line(exc)}") from None
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if self.trust_new_host_key else paramiko.RejectPolicy()
        )
        known_before = client.get_host_keys().lookup(s.host_key_name) is not None
        sock = paramiko.ProxyCommand(s.proxy_command) if s.proxy_command else None
        try:
            client.connect(
                s.hostname,
                port=s.port,
                username=s.username,
                key_filename=s.key_filenames or None,
                allow_agent=self.allow_agent,
                look_for_keys=self.look_for_keys,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                sock=sock,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"host key for {s.host_key_name} has CHANGED (server sent {exc.key.get_name()} "
                f"{exc.key.fingerprint}, {s.known_hosts} has {exc.expected_key.fingerprint}); refusing to connect. "
                f"If the change is expected, remove the old key: ssh-keygen -R '{s.host_key_name}'"
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteError(f"SSH authentication to {s.display} failed: {_one_line(exc)}") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(
                    f"host {s.host_key_name} is not in {s.known_hosts}; check its key and connect once with "
                    "--trust-new-host-key (or ssh) to add it"
                ) from None
            raise ConnectionLost(f"SSH connection to {s.display} failed: {_one_line(exc)}") from None
        except (OSError, EOFError) as exc:
            client.close()
            raise ConnectionLost(f"cannot connect to {s.display}: {_one_line(exc)}") from None
        if self.trust_new_host_key and not known_before:
            self._save_host_keys(client)
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(15)
        try:
            sftp = client.open_sftp()
        except TRANSIENT as exc:
            client.close()
            raise ConnectionLost(f"SFTP to {s.display} failed: {_one_line(exc)}") from None
        sftp.get_channel().settimeout(self.io_timeout)
        self._client, self._sftp = client, sftp
        self.connects += 1
        log.info("connected to %s", s.display)

    def _save_host_keys(self, client: paramiko.SSHClient) -> None:
        path = self.settings.known_hosts
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            client.save_host_keys(path)
        except OSError as exc:
            log.warning("could not save the new host key to %s: %s", path, exc)
            return
        key = client.get_host_keys().lookup(self.settings.host_key_name)
        fp = next(iter(key.values())).fingerprint if key else "?"
        log.warning("trusted the new host key %s of %s and saved it to %s", fp, self.settings.host_key_name, path)

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        """Run a command on the remote host (its words quoted for a POSIX shell)."""
        command = shlex.join(str(a) for a in argv)
        try:
            chan = self.transport().open_session(timeout=timeout)
        except RemoteError as exc:
            return CommandResult(255, "", str(exc))
        except TRANSIENT as exc:
            self.close()
            return CommandResult(255, "", f"ssh: {_one_line(exc)}")
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        try:
            chan.settimeout(timeout)
            chan.exec_command(command)
            while True:
                busy = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    busy = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    busy = True
                if not busy:
                    if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    if time.monotonic() > deadline:
                        return CommandResult(
                            124, out.decode(errors="replace"), f"{argv[0]}: timed out after {timeout:g} s"
                        )
                    time.sleep(0.005)
            code = chan.recv_exit_status()
        except TRANSIENT as exc:
            self.close()
            return CommandResult(255, out.decode(errors="replace"), f"ssh: {_one_line(exc)}")
        finally:
            chan.close()
        return CommandResult(code, out.decode(errors="replace"), err.decode(errors="replace"))


class SSHRunner:
    """A :class:`slurm.queue.QueueState` runner that executes over a :class:`Connection`."""

    def __init__(self, connection: Connection):
        self.connection = connection

    def __call__(self, argv: Sequence[str], timeout: float = 30.0) -> CommandResult:
        return self.connection.run(argv, timeout)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
