"""Optional dependencies: which extra a command needs, and a one-line message when it is missing.

``pip install grokwatch`` is the light install for watching (dashboard,
alerts, report, predict, ssh://, grokwatch.integrations.track); training and its probes need
``grokwatch[train]`` (torch, scipy, ripser). Light: importlib only.
"""

from __future__ import annotations

import importlib.util

TRAIN_MODULES = ("torch", "scipy", "ripser")


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that cannot be imported (found without importing them)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def training_extra_error(command: str) -> str | None:
    """None when the training extra is installed, else the one-line error for ``command``."""
    missing = missing_modules(TRAIN_MODULES)
    if not missing:
        return None
    return f"{command} needs the training extra: pip install 'grokwatch[train]' (missing: {', '.join(missing)})"
