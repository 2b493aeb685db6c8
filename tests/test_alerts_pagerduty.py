"""PagerDuty Events API v2 channel against a loopback receiver that validates every event."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from tests.receivers import Receiver, Scripted, pagerduty_error, pagerduty_receiver
from tests.test_alerts_payload import NOW, finding, make_incident, opened, resolved
from watcher.alerts.base import DeliveryResult, Outcome
from watcher.alerts.pagerduty import DEFAULT_EVENTS_URL, PagerDutyChannel
from watcher.model import AlertEvent, Category, EventType, Severity

LATER = datetime(2026, 3, 31, 5, 30, tzinfo=UTC)


def routing_key() -> str:
    return secrets.token_hex(16)  # 32 characters, like an integration key


@pytest_asyncio.fixture(loop_scope="function")
async def pd() -> AsyncIterator[Receiver]:
    async with pagerduty_receiver() as receiver:
        yield receiver


def channel(pd: Receiver, key: str | None = None, **kwargs: object) -> PagerDutyChannel:
    return PagerDutyChannel(
        "platform/pagerduty", key or routing_key(), url=pd.url, clock=lambda: LATER, **kwargs
    )  # type: ignore[arg-type]


async def send(ch: PagerDutyChannel, *events: AlertEvent) -> list[DeliveryResult]:
    try:
        return [await ch.send(e) for e in events]
    finally:
        await ch.close()


async def test_trigger_carries_the_incident(pd: Receiver) -> None:
    key = routing_key()
    [result] = await send(channel(pd, key), opened(make_incident()))
    assert result.outcome is Outcome.DELIVERED and result.status == 202
    pd.assert_valid()
    event = pd.requests[0].json()
    assert event["routing_key"] == key
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "watcher/npm/@acme/cli/2.1.88"
    payload = event["payload"]
    assert payload["summary"].startswith("[npm] @acme/cli@2.1.88 — critical source-map")
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == "2026-03-31T02:00:00Z"
    assert payload["component"] == "@acme/cli"
    assert payload["class"] == "sourcemap-embedded-sources"
    assert payload["source"] == "npm:@acme/cli"
    details = payload["custom_details"]
    assert details["findings"][0]["path"] == "package/cli.js.map"
    assert details["runbook"][0]["command"] == "npm unpublish @acme/cli@2.1.88 --otp=<code>"
    assert {
        "href": "http://127.0.0.1:4873/-/web/detail/@acme/cli",
        "text": "Version page",
    } in event["links"]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (Severity.CRITICAL, "critical"),
        (Severity.HIGH, "error"),
        (Severity.MEDIUM, "warning"),
        (Severity.LOW, "info"),
        (Severity.INFO, "info"),
    ],
)
async def test_severity_mapping(pd: Receiver, ours: Severity, theirs: str) -> None:
    await send(channel(pd), opened(make_incident([finding(severity=ours)])))
    pd.assert_valid()
    assert pd.requests[0].json()["payload"]["severity"] == theirs


async def test_update_is_a_trigger_on_the_same_key_and_resolve_closes_it(pd: Receiver) -> None:
    key = routing_key()
    incident = make_incident()
    update = AlertEvent(EventType.UPDATED, incident, "evt-2", "deprecated on the registry")
    results = await send(channel(pd, key), opened(incident), update, resolved(incident))
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    pd.assert_valid()
    first, second, third = (r.json() for r in pd.requests)
    assert {e["dedup_key"] for e in (first, second, third)} == {incident.dedup_key}
    assert {e["routing_key"] for e in (first, second, third)} == {key}
    assert second["event_action"] == "trigger"
    assert second["payload"]["summary"].startswith("UPDATE (deprecated on the registry):")
    assert second["payload"]["custom_details"]["message"] == "deprecated on the registry"
    assert second["payload"]["timestamp"] == "2026-03-31T05:30:00Z"
    assert third == {"routing_key": key, "event_action": "resolve", "dedup_key": incident.dedup_key}


async def test_summary_stays_within_1024_characters(pd: Receiver) -> None:
    long = finding(message="x" * 5000)
    await send(channel(pd), opened(make_incident([long], name="a" * 200)))
    pd.assert_valid()
    summary = pd.requests[0].json()["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("…")


async def test_huge_finding_lists_are_trimmed_under_512kb_with_a_note(pd: Receiver) -> None:
    many = [
        finding("secret-x", Category.SECRET, Severity.HIGH, f"package/f{i}.js", "m" * 300)
        for i in range(5000)
    ]
    await send(channel(pd), opened(make_incident(many)))
    pd.assert_valid()  # includes the 512 KB limit
    details = pd.requests[0].json()["payload"]["custom_details"]
    assert 0 < len(details["findings"]) < 5000
    assert details["findings_note"].startswith(
        f"{5000 - len(details['findings'])} of 5000 findings"
    )


async def test_a_smaller_configured_limit_is_honoured(pd: Receiver) -> None:
    many = [finding(path=f"package/m{i}.map") for i in range(200)]
    await send(channel(pd, max_body_bytes=20_000), opened(make_incident(many)))
    assert len(pd.requests[0].body) <= 20_000
    pd.assert_valid()


async def test_invalid_event_is_permanent_with_pagerdutys_message(pd: Receiver) -> None:
    # a wrong-length routing key is refused by the (strict) receiver exactly as PagerDuty does
    [result] = await send(channel(pd, "short"), opened(make_incident()))
    assert result.outcome is Outcome.FAILED and result.status == 400
    assert "Event object is invalid" in result.reason
    assert "routing_key" in result.reason


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after"),
    [
        (Scripted(202, '{"status":"success"}'), Outcome.DELIVERED, None),
        (pagerduty_error("'payload.summary' is missing"), Outcome.FAILED, None),
        (Scripted(429, headers={"Retry-After": "12"}), Outcome.RETRY, 12.0),
        (Scripted(429), Outcome.RETRY, 30.0),
        (Scripted(500), Outcome.RETRY, None),
        (Scripted(502), Outcome.RETRY, None),
        (Scripted(503), Outcome.RETRY, None),
        (Scripted(404), Outcome.DISABLE, None),
    ],
)
async def test_classification(
    pd: Receiver, answer: Scripted, outcome: Outcome, retry_after: float | None
) -> None:
    pd.script(answer)
    [result] = await send(channel(pd), opened(make_incident()))
    assert (result.outcome, result.retry_after) == (outcome, retry_after)


async def test_slow_and_refused_endpoints_retry(pd: Receiver) -> None:
    pd.script(Scripted(202, delay=2.0))
    [slow] = await send(channel(pd, timeout=0.3), opened(make_incident()))
    await pd.stop()
    [refused] = await send(channel(pd), opened(make_incident()))
    assert slow.outcome is Outcome.RETRY and "timed out" in slow.reason
    assert refused.outcome is Outcome.RETRY and "network error" in refused.reason


def test_default_endpoint_and_rate() -> None:
    ch = PagerDutyChannel("o/pagerduty", routing_key())
    assert ch._url == DEFAULT_EVENTS_URL and DEFAULT_EVENTS_URL.endswith("/v2/enqueue")
    assert ch.min_interval == 0.5


def test_body_is_compact_json() -> None:
    ch = PagerDutyChannel("o/pagerduty", routing_key(), clock=lambda: NOW)
    body = ch.body(opened(make_incident()))
    assert json.loads(body)["event_action"] == "trigger"
    assert b", " not in body[:200]
