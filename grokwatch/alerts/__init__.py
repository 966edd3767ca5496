"""Alarms: rules as TOML data, the pending -> firing -> resolved state machine,
and (in :mod:`grokwatch.alerts.daemon`) the headless daemon that persists,
journals and notifies (DESIGN section 5).

Light at import: the engine and rules are pure numpy + tomllib; apprise is
imported only by :mod:`grokwatch.alerts.notify` when a channel is built.
"""

from .engine import ActiveAlarm, AlarmEvent, AlertEngine
from .rules import DEFAULT_RULES, Rule, RuleError, load_rules, parse_duration
from .subscriber import AlarmSubscriber

__all__ = [
    "AlarmSubscriber",
    "DEFAULT_RULES",
    "ActiveAlarm",
    "AlarmEvent",
    "AlertEngine",
    "Rule",
    "RuleError",
    "load_rules",
    "parse_duration",
]
