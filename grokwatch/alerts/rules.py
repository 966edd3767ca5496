"""Alarm rules as data: TOML files read with tomllib (DESIGN section 5).

The shipped ``default_rules.toml`` documents every field. A user's file is
merged over it by rule name unless it says ``include_defaults = false``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")

COMPARISONS = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
SEVERITIES = ("info", "warning", "critical")


class RuleError(ValueError):
    """A rules file that cannot be used (message names the file and rule)."""


_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w)?)+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?")
_UNIT = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> float:
    """Seconds in "90s", "30m", "2h", "1d", "1h30m" or a plain number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"negative duration {text}")
        return float(text)
    s = str(text).strip().lower().replace(" ", "")
    if not _DURATION.fullmatch(s):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d)")
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(s))


@dataclass(frozen=True)
class Rule:
    name: str
    signal: str
    comparison: str
    threshold: float
    for_steps: int = 0
    severity: str = "warning"
    cooldown_steps: int = 0
    cooldown: float = 0.0  # seconds
    once: bool = False
    notify_resolved: bool = False
    absolute: bool = False
    when: str = ""  # an indicator signal (e.g. "memorized") that must be >= 1 at the point
    description: str = ""
    enabled: bool = True

    def test(self, values: np.ndarray) -> np.ndarray:
        """Vectorized condition; NaN (no data) never holds, infinities compare."""
        v = np.asarray(values, dtype=np.float64)
        if self.absolute:
            v = np.abs(v)
        with np.errstate(invalid="ignore"):
            out = COMPARISONS[self.comparison](v, self.threshold)
        return out & ~np.isnan(v)


_FIELDS = {f.name for f in fields(Rule)} - {"name"}


def _make_rule(name: str, spec: Mapping[str, Any], where: str) -> Rule:
    unknown = set(spec) - _FIELDS
    if unknown:
        raise RuleError(f"{where}: rule {name!r}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = {"signal", "comparison", "threshold"} - set(spec)
    if missing:
        raise RuleError(f"{where}: rule {name!r}: missing {', '.join(sorted(missing))}")
    try:
        kw = dict(spec)
        kw["signal"] = str(kw["signal"])
        kw["when"] = str(kw.get("when", ""))
        kw["threshold"] = float(kw["threshold"])
        kw["for_steps"] = int(kw.get("for_steps", 0))
        kw["cooldown_steps"] = int(kw.get("cooldown_steps", 0))
        kw["cooldown"] = parse_duration(kw.get("cooldown", 0))
        for b in ("once", "notify_resolved", "absolute", "enabled"):
            if b in kw and not isinstance(kw[b], bool):
                raise ValueError(f"{b} must be true or false")
        rule = Rule(name=name, **kw)
    except (TypeError, ValueError) as exc:
        raise RuleError(f"{where}: rule {name!r}: {exc}") from None
    if rule.comparison not in COMPARISONS:
        raise RuleError(f"{where}: rule {name!r}: comparison must be one of {' '.join(COMPARISONS)}")
    if rule.severity not in SEVERITIES:
        raise RuleError(f"{where}: rule {name!r}: severity must be one of {', '.join(SEVERITIES)}")
    if rule.for_steps < 0 or rule.cooldown_steps < 0:
        raise RuleError(f"{where}: rule {name!r}: for_steps and cooldown_steps must be >= 0")
    return rule


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise RuleError(f"cannot read rules file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: invalid TOML: {exc}") from None


def _rule_specs(doc: Mapping[str, Any], where: str) -> dict[str, dict]:
    rules = doc.get("rules", {})
    if not isinstance(rules, dict) or not all(isinstance(v, dict) for v in rules.values()):
        raise RuleError(f"{where}: expected tables [rules.NAME]")
    extra = set(doc) - {"rules", "include_defaults"}
    if extra:
        raise RuleError(f"{where}: unknown top-level key(s) {', '.join(sorted(extra))}")
    return {str(k): dict(v) for k, v in rules.items()}


def load_rules(path: Path | str | None = None) -> dict[str, Rule]:
    """Enabled rules by name: the defaults, with ``path`` merged over them."""
    specs = _rule_specs(_read_toml(DEFAULT_RULES), str(DEFAULT_RULES))
    if path is not None:
        path = Path(path)
        doc = _read_toml(path)
        user = _rule_specs(doc, str(path))
        if doc.get("include_defaults", True) is False:
            specs = {}
        for name, spec in user.items():
            specs[name] = {**specs.get(name, {}), **spec}
        where = str(path)
    else:
        where = str(DEFAULT_RULES)
    rules = {name: _make_rule(name, spec, where) for name, spec in specs.items()}
    return {n: r for n, r in rules.items() if r.enabled}
