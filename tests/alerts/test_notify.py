"""Notification channels against a real webhook receiver and a real SMTP server."""

from __future__ import annotations

import collections

from alert_helpers import text_of, wait_for

from grokwatch.alerts.notify import Channel, ChannelPolicy

FAST = ChannelPolicy(max_tries=3, backoff=0.05, backoff_max=0.2, rate_per_min=6000, burst=50)


def _records(n: int, prefix: str = "r") -> list[dict]:
    return [
        {
            "id": f"{prefix}/gai_spike/{i}/firing",
            "run": prefix,
            "rule": "gai_spike",
            "state": "firing",
            "step": 100 * i,
            "value": 4.2,
            "threshold": 3.5,
            "comparison": ">",
            "severity": "warning",
            "signal": "gai_z",
            "time": "2026-01-01T00:00:00.000Z",
            "description": "test",
        }
        for i in range(1, n + 1)
    ]


class Log:
    def __init__(self):
        self.delivered: list[tuple[str, str]] = []
        self.gave_up: list[tuple[str, str]] = []

    def ok(self, ch, recs):
        self.delivered += [(ch.key, r["id"]) for r in recs]

    def bad(self, ch, recs, err):
        self.gave_up += [(ch.key, r["id"]) for r in recs]


def test_delivers_to_webhook_and_smtp(webhook, smtp):
    log = Log()
    chans = [Channel(u, sweep="s", policy=FAST, on_delivered=log.ok).start() for u in (webhook.url, smtp.url)]
    try:
        for ch in chans:
            ch.enqueue(_records(1))
        assert wait_for(lambda: len(log.delivered) == 2)
    finally:
        for ch in chans:
            ch.close()
    assert webhook.ids() == ["r/gai_spike/1/firing"]
    assert "r: gai_spike firing" in webhook.delivered()[0]["json"]["title"]
    assert smtp.ids() == ["r/gai_spike/1/firing"]
    assert "gai_spike" in smtp.messages[0]["Subject"] and "step 100" in text_of(smtp.messages[0])


def test_retries_until_the_webhook_answers(webhook):
    webhook.status = 500
    log = Log()
    ch = Channel(
        webhook.url, policy=ChannelPolicy(max_tries=50, backoff=0.05, backoff_max=0.1), on_delivered=log.ok
    ).start()
    try:
        ch.enqueue(_records(2))
        assert wait_for(lambda: len(webhook.requests) >= 3)
        webhook.status = 200
        assert wait_for(lambda: len(log.delivered) == 2)
    finally:
        ch.close()
    assert sorted(webhook.ids()) == ["r/gai_spike/1/firing", "r/gai_spike/2/firing"]  # once each
    assert ch.failures >= 3


def test_connection_refused_then_up(webhook):
    port = webhook.port
    webhook.down()
    log = Log()
    # Without a fallback, max_tries does not drop anything: retries go on at backoff_max.
    ch = Channel(
        webhook.url,
        policy=ChannelPolicy(max_tries=2, backoff=0.05, backoff_max=0.1),
        on_delivered=log.ok,
        on_gave_up=log.bad,
    ).start()
    try:
        ch.enqueue(_records(3))
        assert wait_for(lambda: ch.failures >= 5)
        webhook.up()
        assert webhook.port == port
        assert wait_for(lambda: len(log.delivered) == 3)
    finally:
        ch.close()
    assert sorted(webhook.ids()) == sorted(r["id"] for r in _records(3))
    assert log.gave_up == []


def test_gives_up_to_the_fallback_and_never_duplicates_elsewhere(webhook, smtp, refused_url):
    log = Log()
    fallback = Channel(smtp.url, policy=FAST, on_delivered=log.ok, role="fallback").start()
    bad = Channel(refused_url, policy=FAST, on_delivered=log.ok, on_gave_up=log.bad, fallback=fallback).start()
    good = Channel(webhook.url, policy=FAST, on_delivered=log.ok, fallback=fallback).start()
    recs = _records(4)
    try:
        for r in recs:
            bad.enqueue([r])
            good.enqueue([r])
        assert wait_for(lambda: len(log.gave_up) == 4 and sorted(set(smtp.ids())) == sorted(r["id"] for r in recs), 15)
    finally:
        for ch in (bad, good, fallback):
            ch.close()
    counts = collections.Counter(webhook.ids())
    assert set(counts) == {r["id"] for r in recs} and set(counts.values()) == {1}
    assert collections.Counter(smtp.ids()) == collections.Counter(r["id"] for r in recs)
    assert bad.failures >= 3


def test_a_burst_is_rate_limited_into_digests(webhook):
    log = Log()
    ch = Channel(webhook.url, policy=ChannelPolicy(rate_per_min=120, burst=1, batch=20), on_delivered=log.ok).start()
    recs = _records(30)
    try:
        for r in recs:
            ch.enqueue([r])
        assert wait_for(lambda: len(log.delivered) == 30, 10)
    finally:
        ch.close()
    assert len(webhook.delivered()) <= 3  # 1 + digests of up to 20, at 2 per second
    assert collections.Counter(webhook.ids()) == collections.Counter(r["id"] for r in recs)
    assert "alarms in" in webhook.delivered()[-1]["json"]["title"]
