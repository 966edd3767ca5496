"""What the screens take from the app: :class:`DashboardApp`, a protocol.

Textual types a node's ``app`` as a plain :class:`textual.app.App`, which has
none of the dashboard's own members (the model, the source, the clock, the
runs table's order). The screens cannot import
:class:`~grokwatch.tui.app.GrokwatchApp` to say which app they run in: the
app module imports the screens, and the import graph has no cycles
(tests/test_import_graph.py). So the screens reach the app through
:func:`dashboard_app`, typed as this protocol; ``grokwatch.tui.app`` has mypy
check that ``GrokwatchApp`` provides it.
"""

from __future__ import annotations

from typing import Protocol, cast

from textual.dom import DOMNode

from .model import SweepModel
from .source import SweepSource


class DashboardApp(Protocol):
    @property
    def source(self) -> SweepSource: ...

    @property
    def model(self) -> SweepModel | None: ...

    def now(self) -> float: ...

    def table_order(self) -> list[str]: ...

    def select_run(self, run_id: str) -> None: ...


def dashboard_app(node: DOMNode) -> DashboardApp:
    """``node.app``, typed as what the dashboard's screens use of it."""
    return cast(DashboardApp, node.app)
