"""``ssh://[user@]host[:port]/path`` URLs and where their mirror lives locally. Pure."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from grokwatch.errors import UsageError


class RemoteError(UsageError):
    """A remote source cannot be used; the message is one line for the user."""


class HostKeyError(RemoteError):
    """The host key is unknown (and not trusted) or has changed."""


class ConnectionLost(RemoteError):
    """The link failed; a mirror in thread mode reconnects with back-off."""


@dataclass(frozen=True)
class SshUrl:
    host: str
    path: str  # absolute, or "~/..." relative to the remote home
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        path = self.path if self.path.startswith("/") else f"/{self.path}"
        return f"ssh://{user}{host}{port}{path}"


def is_ssh_url(text: str) -> bool:
    return str(text).startswith("ssh://")


def parse_ssh_url(url: str) -> SshUrl:
    """Parse ``ssh://[user@]host[:port]/path``; ``/~/x`` means ``x`` under the remote home."""
    if not is_ssh_url(url):
        raise RemoteError(f"not an ssh:// URL: {url!r}")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise RemoteError(f"{url!r}: an ssh:// source takes no ?query or #fragment")
    try:
        port = parts.port
    except ValueError:
        raise RemoteError(f"{url!r}: the port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise RemoteError(f"{url!r}: no host (use ssh://[user@]host[:port]/path)")
    path = unquote(parts.path)
    if path.startswith("/~"):
        path = path[1:]
    if path in ("", "/", "~", "~/"):
        raise RemoteError(f"{url!r}: give the path of a sweep (or run) directory after the host")
    if any(p == ".." for p in path.split("/")) or any(ord(c) < 32 for c in path):
        raise RemoteError(f"{url!r}: the path may not contain '..' or control characters")
    user = unquote(parts.username) if parts.username else None
    return SshUrl(host=host, path=path.rstrip("/") or "/", user=user, port=port)


def default_cache_root() -> Path:
    """``$GROKWATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/grokwatch``, else ``~/.cache/grokwatch``."""
    if os.environ.get("GROKWATCH_CACHE_DIR"):
        return Path(os.environ["GROKWATCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "grokwatch"


def cache_path(url: SshUrl, cache_root: Path | str | None = None) -> Path:
    """Local mirror directory of a URL: ``<cache root>/<host>[_<port>]/<path>``."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    host = re.sub(r"[^A-Za-z0-9._-]", "_", url.host) + (f"_{url.port}" if url.port else "")
    rel = [p for p in url.path.split("/") if p not in ("", ".")]
    return root.joinpath(host, *rel)
