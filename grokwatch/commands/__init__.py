"""Sub-commands of the grokwatch CLI: one module each, light at import.

Every command that reads a sweep takes SOURCE as a path or
``ssh://[user@]host[:port]/path`` (:data:`SSH_SOURCE`), and the same
``--trust-new-host-key`` flag (:func:`add_trust_flag`) for a host not yet in
known_hosts.
"""

from __future__ import annotations

import argparse
import os

SSH_SOURCE = "ssh://[user@]host[:port]/path"
# What grokwatch.remote.source's ssh:// resolver reads (also settable by hand).
TRUST_ENV = "GROKWATCH_TRUST_NEW_HOST_KEY"


class _TrustNewHostKey(argparse.Action):
    """A store_true flag that also tells the ssh:// resolver (``$GROKWATCH_TRUST_NEW_HOST_KEY``),
    so every command that resolves SOURCE honours it the same way."""

    def __init__(self, option_strings, dest, default=False, required=False, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        os.environ[TRUST_ENV] = "1"


def add_trust_flag(p: argparse.ArgumentParser) -> None:
    """``--trust-new-host-key``, the same for every command that reads a sweep."""
    p.add_argument(
        "--trust-new-host-key",
        action=_TrustNewHostKey,
        help=f"with {SSH_SOURCE}: accept and save the key of a host not yet in known_hosts "
        "(the first connection to it); a changed key is still refused",
    )
