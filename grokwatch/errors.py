"""The errors a user sees as one line.

:class:`UsageError` is bad input from the user (a SOURCE that is not a sweep,
a flag that does not fit): the command prints its message on one line and
exits with code 2. Lowest layer: every package may raise it.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit code 2."""
