"""Messages between the feed, the workers and the widgets (small dataclasses).

High-rate ones override ``can_replace``: when a newer model arrives while an
older one still waits in the queue, the stale one is dropped (toolong's
pattern), so a burst of updates costs one redraw.
"""

from __future__ import annotations

from textual.message import Message

from .model import AlarmRow, DetailPlot, SweepModel


class ModelReady(Message):
    """A new view-model, built off the UI thread."""

    def __init__(self, model: SweepModel) -> None:
        super().__init__()
        self.model = model

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ModelReady)


class SourceFailed(Message):
    """The source's thread died: the app exits with the error (never swallowed)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class SeriesReady(Message):
    """Detail curves for a run (or an overlay), built in a worker."""

    def __init__(self, series: DetailPlot, request: tuple[str, ...]) -> None:
        super().__init__()
        self.series = series
        self.request = request

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SeriesReady) and message.request == self.request


class OpenRun(Message):
    """Open the detail view of these runs (one, or an overlay)."""

    def __init__(self, run_ids: tuple[str, ...]) -> None:
        super().__init__()
        self.run_ids = run_ids


class JumpToAlarm(Message):
    """Select an alarm's run in the table and open its detail."""

    def __init__(self, alarm: AlarmRow) -> None:
        super().__init__()
        self.alarm = alarm
