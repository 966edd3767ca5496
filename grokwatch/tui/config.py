"""Dashboard configuration: a TOML file, and a frozen variant for tests.

Looked up in this order: ``--config PATH``, ``$GROKWATCH_TUI_CONFIG``,
``$XDG_CONFIG_HOME/grokwatch/tui.toml`` (``~/.config/grokwatch/tui.toml``).
A missing default file is fine; a bad file is an error naming the key::

    [table]
    columns = ["mark", "run", "wd", "seed", "step", "phase", "state", "train", "val",
               "spark", "alarms", "gai_z", "alpha_min", "h0_z", "pred", "slurm"]
    sort = "run"          # any column key
    reverse = false

    [refresh]
    interval = 1.0        # seconds between polls of the sweep when idle
    redraw = 0.25         # at most one model rebuild per this many seconds
    stall_timeout = 600   # seconds without a heartbeat before a run is "stalled" (grokwatch.runs.defaults)

    [plot]
    smoothing = 0.005     # moving-average window as a fraction of the series; 0 = off

    [ui]
    theme = "textual-dark"   # or "textual-light", or any Textual theme

    [keys]                # binding id = key(s); ids are listed by `?`
    "runs.sort_next" = "s"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from grokwatch.runs.defaults import STALL_TIMEOUT

DEFAULT_COLUMNS = (
    "mark",
    "run",
    "wd",
    "seed",
    "step",
    "phase",
    "state",
    "train",
    "val",
    "spark",
    "alarms",
    "gai_z",
    "alpha_min",
    "h0_z",
    "pred",
    "slurm",
)

# The frozen clock of the test configuration: 2024-01-02 03:04:05 UTC.
FROZEN_TIME = 1704164645.0


class TuiConfigError(ValueError):
    """A configuration file that cannot be used; the message names the key."""


@dataclass(frozen=True)
class TuiConfig:
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    sort: str = "run"
    reverse: bool = False
    interval: float = 1.0
    redraw: float = 0.25
    stall_timeout: float = STALL_TIMEOUT  # as the watcher, grokwatch alerts and grokwatch sweep status
    smoothing: float = 0.005
    theme: str = "textual-dark"
    keys: Mapping[str, str] = field(default_factory=dict)
    # Switches the test configuration turns off, so screenshots are stable.
    follow: bool = True  # follow the sweep live (threads, polling); False: read once
    clock: float | None = None  # frozen wall-clock time (epoch s), or None for the real one
    hostname: str | None = None  # shown in the status bar; None: the real host name
    cursor_blink: bool = True
    animations: bool = True
    path: str | None = None  # the file it came from

    @classmethod
    def for_tests(cls, **overrides: Any) -> TuiConfig:
        """Frozen time and host name, no live following, no blinking or animation."""
        base = cls(follow=False, clock=FROZEN_TIME, hostname="testhost", cursor_blink=False, animations=False)
        return replace(base, **overrides)

    def now(self) -> float:
        import time

        return self.clock if self.clock is not None else time.time()


def default_path() -> Path:
    env = os.environ.get("GROKWATCH_TUI_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "grokwatch" / "tui.toml"


_SECTIONS: dict[str, dict[str, tuple[str, type]]] = {
    "table": {"columns": ("columns", list), "sort": ("sort", str), "reverse": ("reverse", bool)},
    "refresh": {
        "interval": ("interval", float),
        "redraw": ("redraw", float),
        "stall_timeout": ("stall_timeout", float),
    },
    "plot": {"smoothing": ("smoothing", float)},
    "ui": {"theme": ("theme", str)},
}


def load_config(path: str | os.PathLike | None = None, *, known_columns: tuple[str, ...] | None = None) -> TuiConfig:
    """Read the TOML config at ``path`` (or the default place; absent there = defaults)."""
    explicit = path is not None or bool(os.environ.get("GROKWATCH_TUI_CONFIG"))
    p = Path(path).expanduser() if path is not None else default_path()
    if not p.exists():
        if explicit:
            raise TuiConfigError(f"config file {p} does not exist")
        return TuiConfig()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TuiConfigError(f"{p}: {exc}") from None
    return config_from_dict(data, source=str(p), known_columns=known_columns)


def config_from_dict(
    data: Mapping[str, Any], source: str = "<config>", known_columns: tuple[str, ...] | None = None
) -> TuiConfig:
    kw: dict[str, Any] = {"path": source}
    for section, value in data.items():
        if section == "keys":
            if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
                raise TuiConfigError(f"{source}: [keys] maps binding ids to key strings")
            kw["keys"] = dict(value)
            continue
        spec = _SECTIONS.get(section)
        if spec is None or not isinstance(value, Mapping):
            raise TuiConfigError(f"{source}: unknown section [{section}] (known: {', '.join([*_SECTIONS, 'keys'])})")
        for key, v in value.items():
            if key not in spec:
                raise TuiConfigError(f"{source}: unknown key {section}.{key} (known: {', '.join(spec)})")
            name, typ = spec[key]
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, typ) or (typ is float and isinstance(v, bool)):
                raise TuiConfigError(f"{source}: {section}.{key} must be a {typ.__name__}")
            if typ is float and isinstance(v, float) and v < 0:  # v is a typ here: isinstance only tells mypy
                raise TuiConfigError(f"{source}: {section}.{key} must not be negative")
            kw[name] = v
    cols = kw.get("columns")
    if cols is not None:
        if not cols or not all(isinstance(c, str) for c in cols):
            raise TuiConfigError(f"{source}: table.columns must be a non-empty list of column keys")
        if known_columns is not None:
            bad = [c for c in cols if c not in known_columns]
            if bad:
                raise TuiConfigError(
                    f"{source}: unknown column(s) {', '.join(bad)} (known: {', '.join(known_columns)})"
                )
        if "run" not in cols:
            cols = ["run", *cols]
        kw["columns"] = tuple(dict.fromkeys(cols))
    if known_columns is not None and "sort" in kw and kw["sort"] not in known_columns:
        raise TuiConfigError(f"{source}: table.sort must be a column key, not {kw['sort']!r}")
    known = {f.name for f in fields(TuiConfig)}
    return TuiConfig(**{k: v for k, v in kw.items() if k in known})
