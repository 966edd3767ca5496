"""Fixtures: real notification sinks on loopback (see alert_helpers.py)."""

from __future__ import annotations

import pytest
from alert_helpers import SmtpSink, WebhookSink, free_port


@pytest.fixture
def webhook():
    sink = WebhookSink()
    sink.up()
    try:
        yield sink
    finally:
        sink.down()


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    sink = SmtpSink(port=free_port())

    class Keep(Message):
        def handle_message(self, message):
            sink.messages.append(message)

    ctl = Controller(Keep(), hostname="127.0.0.1", port=sink.port)
    ctl.start()
    try:
        yield sink
    finally:
        ctl.stop()


@pytest.fixture
def refused_url():
    """A json:// URL nobody listens on."""
    return f"json://127.0.0.1:{free_port()}/nobody"
