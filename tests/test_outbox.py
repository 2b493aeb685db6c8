"""The durable outbox against a real SQLite store and real channels posting to loopback receivers:
order per channel, retries with Retry-After, removal only on acceptance, dead letters, disabled
channels, and a channel outage that holds up no other channel."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.receivers import Receiver, Scripted, webhook_receiver
from watcher import metrics
from watcher.alerts.base import Channel
from watcher.alerts.console import ConsoleChannel
from watcher.alerts.outbox import Outbox
from watcher.alerts.webhook import WebhookChannel
from watcher.config import RetryPolicy
from watcher.incidents.lifecycle import event_id_for
from watcher.model import (
    AlertEvent,
    Category,
    Ecosystem,
    EventType,
    Finding,
    Incident,
    RunbookStep,
    Severity,
)
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.types import Delivery

# fixtures run on the session loop (pyproject): the tests must share it with the receivers
pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "whsec_" + base64.b64encode(b"outbox-test-signing-key-32-bytes").decode()
FAST = RetryPolicy(initial=0.05, max=0.2, jitter=0.0, give_up_after=3600)


def incident(version: str, published: datetime | None = None) -> Incident:
    return Incident(
        dedup_key=Incident.key_for("npm", "demo", version),
        ecosystem=Ecosystem.NPM,
        name="demo",
        version=version,
        owner="team",
        opened_at=datetime.now(UTC),
        published_at=published,
        findings=[
            Finding(
                rule="sourcemap-embedded-sources",
                category=Category.SOURCE_MAP,
                severity=Severity.CRITICAL,
                path="package/index.js.map",
                message="source map embeds 2 first-party source files",
                fingerprint="f" * 64,
            )
        ],
        runbook=[RunbookStep("Deprecate the release", command="npm deprecate demo@1 x")],
    )


def event(version: str, published: datetime | None = None) -> AlertEvent:
    inc = incident(version, published)
    return AlertEvent(EventType.OPENED, inc, event_id_for(inc.dedup_key, EventType.OPENED))


async def queue(store: Store, version: str, channels: list[str]) -> None:
    opening = event(version, datetime.now(UTC) - timedelta(seconds=2))
    await store.open_incident_with_outbox(
        opening.incident, [Delivery(name, opening) for name in channels]
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path / "state.db")
    yield opened
    await opened.close()


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with webhook_receiver(SECRET) as receiver:
        yield receiver


class Running:
    """An outbox loop running in the background of a test."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(outbox.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def ids(receiver: Receiver) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.requests if r.answered == 204]


def versions(receiver: Receiver) -> list[str]:
    return [r.json()["data"]["version"] for r in receiver.requests if r.answered == 204]


async def test_event_survives_the_store_round_trip(store: Store) -> None:
    original = event("1.0.1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    await store.open_incident_with_outbox(original.incident, [Delivery("team/webhook", original)])
    head = await store.outbox_head("team/webhook")
    assert head is not None and head.event is not None
    back = head.event
    assert back.event_id == original.event_id
    assert back.incident.dedup_key == "watcher/npm/demo/1.0.1"
    assert back.incident.published_at == original.incident.published_at
    assert back.incident.findings[0].severity is Severity.CRITICAL
    assert back.incident.runbook[0].command == "npm deprecate demo@1 x"


async def test_pages_leave_in_order_signed_and_are_removed_once_accepted(
    store: Store, hook: Receiver
) -> None:
    channel = WebhookChannel("team/webhook", hook.url, SECRET)
    for version in ("1.0.1", "1.0.2", "1.0.3"):
        await queue(store, version, ["team/webhook"])
    running = Running(Outbox(store, {"team/webhook": channel}, FAST))
    try:
        await hook.wait_for(3)
        await until(lambda: _empty(store, "team/webhook"))
    finally:
        await running.close()
        await channel.close()
    hook.assert_valid()  # verified by the reference standardwebhooks library
    assert versions(hook) == ["1.0.1", "1.0.2", "1.0.3"]
    assert len(set(ids(hook))) == 3


async def test_each_page_is_logged_once_per_channel(store: Store, hook: Receiver) -> None:
    out = io.StringIO()
    channels: dict[str, Channel] = {
        "team/webhook": WebhookChannel("team/webhook", hook.url, SECRET),
        "team/console": ConsoleChannel("team/console", out),
    }
    await queue(store, "3.0.1", list(channels))
    with capture_logs() as logs:
        running = Running(Outbox(store, channels, FAST))
        try:
            await hook.wait_for(1)
            await until(lambda: _empty(store, "team/console"))
            await until(lambda: _empty(store, "team/webhook"))
        finally:
            await running.close()
            await channels["team/webhook"].close()
    delivered = [e for e in logs if e["event"] == "page_delivered"]
    assert sorted(e["channel"] for e in delivered) == ["team/console", "team/webhook"]
    console = next(e for e in delivered if e["channel"] == "team/console")
    assert {k: console[k] for k in ("event_type", "dedup_key", "severity", "owner")} == {
        "event_type": "incident.opened",
        "dedup_key": "watcher/npm/demo/3.0.1",
        "severity": "critical",
        "owner": "team",
    }
    assert console["first_action"] == "Deprecate the release → npm deprecate demo@1 x"


async def _empty(store: Store, channel: str) -> bool:
    return await store.outbox_head(channel) is None


async def test_outage_then_recovery_delivers_every_page_once_in_order(
    store: Store, hook: Receiver
) -> None:
    hook.script(*[Scripted(503)] * 6)
    channel = WebhookChannel("team/webhook", hook.url, SECRET)
    running = Running(Outbox(store, {"team/webhook": channel}, FAST))
    try:
        for version in ("2.0.1", "2.0.2", "2.0.3"):
            await queue(store, version, ["team/webhook"])
            running.outbox.wake()
        await until(lambda: _empty(store, "team/webhook"))
    finally:
        await running.close()
        await channel.close()
    failed = [r for r in hook.requests if r.answered == 503]
    assert len(failed) == 6
    # while the head page failed, no later page overtook it
    assert {r.json()["data"]["version"] for r in failed} == {"2.0.1"}
    assert versions(hook) == ["2.0.1", "2.0.2", "2.0.3"]
    assert len(ids(hook)) == len(set(ids(hook))) == 3


async def test_retry_after_is_honoured_and_the_page_stays_queued(
    store: Store, hook: Receiver
) -> None:
    hook.script(Scripted(429, headers={"Retry-After": "30"}))
    channel = WebhookChannel("team/webhook", hook.url, SECRET)
    await queue(store, "3.0.0", ["team/webhook"])
    running = Running(Outbox(store, {"team/webhook": channel}, FAST))
    try:
        await hook.wait_for(1)
        await until(lambda: _attempted(store, "team/webhook"))
        head = await store.outbox_head("team/webhook")
        assert head is not None and head.attempts == 1
        assert head.next_attempt_at >= time.time() + 25
        await asyncio.sleep(0.5)
        assert len(hook.requests) == 1, "nothing is sent before Retry-After has passed"
    finally:
        await running.close()
        await channel.close()


async def _attempted(store: Store, channel: str) -> bool:
    head = await store.outbox_head(channel)
    return head is not None and head.attempts > 0


async def test_a_dead_channel_does_not_hold_up_the_others(store: Store, hook: Receiver) -> None:
    await hook.stop()  # connection refused from now on
    out = io.StringIO()
    console = ConsoleChannel("team/console", out)
    webhook = WebhookChannel("team/webhook", hook.url, SECRET, timeout=1)
    channels: dict[str, Channel] = {"team/console": console, "team/webhook": webhook}
    running = Running(Outbox(store, channels, FAST))
    try:
        for version in ("4.0.1", "4.0.2"):
            await queue(store, version, ["team/console", "team/webhook"])
            running.outbox.wake()
        await until(lambda: _empty(store, "team/console"))
        assert "demo@4.0.1" in out.getvalue() and "demo@4.0.2" in out.getvalue()
        assert out.getvalue().index("demo@4.0.1") < out.getvalue().index("demo@4.0.2")
        counts = await store.counts()
        assert counts.outbox_depth == {"team/webhook": 2}
        await hook.start()  # back on the same port
        await until(lambda: _empty(store, "team/webhook"), within=15)
    finally:
        await running.close()
        await webhook.close()
    assert versions(hook) == ["4.0.1", "4.0.2"]


async def test_permanent_failure_is_a_dead_letter_with_its_reason(
    store: Store, hook: Receiver
) -> None:
    hook.script(Scripted(400, "bad request body"))
    channel = WebhookChannel("team/webhook", hook.url, SECRET)
    await queue(store, "5.0.0", ["team/webhook"])
    await queue(store, "5.0.1", ["team/webhook"])
    before = metrics.DELIVERIES.labels("team/webhook", "dead")._value.get()
    running = Running(Outbox(store, {"team/webhook": channel}, FAST))
    try:
        await until(lambda: _empty(store, "team/webhook"))
    finally:
        await running.close()
        await channel.close()
    dead = await store.dead_letters()
    assert [d.event.incident.version if d.event else None for d in dead] == ["5.0.0"]
    assert dead[0].last_error is not None and "400" in dead[0].last_error
    assert (await store.counts()).dead_letters == 1
    assert metrics.DELIVERIES.labels("team/webhook", "dead")._value.get() == before + 1
    assert versions(hook) == ["5.0.1"], "the next page is not held up by a dead letter"


async def test_retries_exhausted_become_a_dead_letter(store: Store, hook: Receiver) -> None:
    hook.script(*[Scripted(503)] * 3)
    policy = RetryPolicy(initial=0.05, max=0.05, jitter=0.0, max_attempts=3)
    channel = WebhookChannel("team/webhook", hook.url, SECRET)
    await queue(store, "6.0.0", ["team/webhook"])
    running = Running(Outbox(store, {"team/webhook": channel}, policy))
    try:
        await until(lambda: _empty(store, "team/webhook"))
    finally:
        await running.close()
        await channel.close()
    dead = await store.dead_letters()
    assert len(dead) == 1 and dead[0].attempts == 3 and "503" in (dead[0].last_error or "")


async def test_gone_endpoint_disables_the_channel_and_keeps_its_pages(
    store: Store, hook: Receiver
) -> None:
    hook.script(Scripted(410))
    webhook = WebhookChannel("team/webhook", hook.url, SECRET)
    out = io.StringIO()
    console = ConsoleChannel("team/console", out)
    outbox = Outbox(store, {"team/webhook": webhook, "team/console": console}, FAST)
    await queue(store, "7.0.0", ["team/webhook", "team/console"])
    running = Running(outbox)
    try:
        await until(lambda: _disabled(outbox))
        await until(lambda: _empty(store, "team/console"))
        await asyncio.sleep(0.3)
    finally:
        await running.close()
        await webhook.close()
    assert len(hook.requests) == 1, "a disabled channel sends nothing more"
    assert metrics.CHANNEL_DISABLED.labels("team/webhook")._value.get() == 1
    assert (await store.counts()).outbox_depth == {"team/webhook": 1}


async def _disabled(outbox: Outbox) -> bool:
    return outbox.disabled() == ["team/webhook"]


async def test_min_interval_spaces_sends(store: Store, hook: Receiver) -> None:
    channel = WebhookChannel("team/webhook", hook.url, SECRET)
    channel.min_interval = 0.3
    for version in ("8.0.1", "8.0.2", "8.0.3"):
        await queue(store, version, ["team/webhook"])
    running = Running(Outbox(store, {"team/webhook": channel}, FAST))
    try:
        await hook.wait_for(3)
    finally:
        await running.close()
        await channel.close()
    times = [r.received_at for r in hook.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.25 for gap in gaps), gaps
