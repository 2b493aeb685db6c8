"""Standard Webhooks channel: the spec's test vector, a reference-library verifier on a loopback
receiver, a stable webhook-id across retries, and each fault's classification."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.receivers import Receiver, Scripted, webhook_receiver
from tests.test_alerts_payload import make_incident, opened, resolved
from watcher.alerts.base import DeliveryResult, Outcome
from watcher.alerts.webhook import WebhookChannel, sign, signing_key
from watcher.model import AlertEvent, EventType

# Test vector from the Standard Webhooks reference Python library's tests:
# standard-webhooks/standard-webhooks @33d368b2, libraries/python/tests/test_webhooks.py,
# test_sign_function (key, msg id, timestamp, payload → expected signature).
VECTOR_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_published_test_vector() -> None:
    assert sign(signing_key(VECTOR_KEY), VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_a_different_secret_or_body_gives_a_different_signature() -> None:
    assert sign(signing_key(VECTOR_KEY), VECTOR_ID, VECTOR_TS, b'{"test": 1}') != VECTOR_SIG
    assert sign(b"other", VECTOR_ID, VECTOR_TS, VECTOR_BODY) != VECTOR_SIG


def test_secret_forms() -> None:
    raw = secrets.token_bytes(32)
    assert signing_key("whsec_" + base64.b64encode(raw).decode()) == raw
    assert signing_key("whsec_" + base64.b64encode(raw).decode().rstrip("=")) == raw
    assert signing_key("plain text secret") == b"plain text secret"
    with pytest.raises(ValueError, match="base64"):
        signing_key("whsec_not*base64")


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest_asyncio.fixture(loop_scope="function")  # on the test's own loop
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    secret = _whsec()
    async with webhook_receiver(secret) as hook:
        yield hook, secret


async def _send(channel: WebhookChannel, event: AlertEvent) -> DeliveryResult:
    try:
        return await channel.send(event)
    finally:
        await channel.close()


async def test_delivered_page_verifies_with_the_reference_library(receiver) -> None:
    hook, secret = receiver
    result = await _send(
        WebhookChannel("platform/webhook", hook.url, secret), opened(make_incident())
    )
    assert result.outcome is Outcome.DELIVERED
    hook.assert_valid()
    request = hook.requests[0]
    assert request.headers["webhook-id"] == "evt-1"
    body = request.json()
    assert body["type"] == "incident.opened"
    assert body["timestamp"] == "2026-03-31T02:00:00Z"
    assert body["data"]["dedup_key"] == "watcher/npm/@acme/cli/2.1.88"
    assert body["data"]["runbook"][0]["command"] == "npm unpublish @acme/cli@2.1.88 --otp=<code>"


async def test_raw_text_secret_also_verifies() -> None:
    secret = "a plain shared secret " + secrets.token_hex(8)
    async with webhook_receiver(secret) as hook:
        result = await _send(WebhookChannel("o/webhook", hook.url, secret), opened(make_incident()))
    assert result.ok
    hook.assert_valid()


async def test_wrong_secret_is_refused_by_the_receiver(receiver) -> None:
    hook, _ = receiver
    result = await _send(WebhookChannel("o/webhook", hook.url, _whsec()), opened(make_incident()))
    assert hook.problems() and "signature" in hook.problems()[0]
    assert result.outcome is Outcome.FAILED  # 401: permanent for this page


async def test_webhook_id_is_stable_across_retries(receiver) -> None:
    hook, secret = receiver
    hook.script(Scripted(503), Scripted(502))
    channel = WebhookChannel("o/webhook", hook.url, secret)
    event = opened(make_incident(), event_id="evt.42")
    outcomes = [(await channel.send(event)).outcome for _ in range(3)]
    await channel.close()
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.DELIVERED]
    ids = {r.headers["webhook-id"] for r in hook.requests}
    assert ids == {"evt_42"}, "same id on every attempt, with no '.' (the signed-content delimiter)"
    hook.assert_valid()


async def test_resolution_and_update_types(receiver) -> None:
    hook, secret = receiver
    channel = WebhookChannel("o/webhook", hook.url, secret)
    incident = make_incident()
    await channel.send(AlertEvent(EventType.UPDATED, incident, "evt-2", "deprecated"))
    await channel.send(resolved(incident))
    await channel.close()
    hook.assert_valid()
    update, resolution = (r.json() for r in hook.requests)
    assert update["type"] == "incident.updated"
    assert update["data"]["message"] == "deprecated"
    assert resolution["type"] == "incident.resolved"
    assert resolution["data"]["resolution"] == "version unpublished"
    assert resolution["data"]["time_to_contain_s"] == 3 * 3600 + 15 * 60


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after"),
    [
        (Scripted(200), Outcome.DELIVERED, None),
        (Scripted(503), Outcome.RETRY, None),
        (Scripted(500), Outcome.RETRY, None),
        (Scripted(429, headers={"Retry-After": "7"}), Outcome.RETRY, 7.0),
        (Scripted(410), Outcome.DISABLE, None),
        (Scripted(404), Outcome.DISABLE, None),
        (Scripted(400, "bad"), Outcome.FAILED, None),
        (Scripted(301, headers={"Location": "http://127.0.0.1:1/"}), Outcome.FAILED, None),
    ],
)
async def test_classification(receiver, answer, outcome, retry_after) -> None:
    hook, secret = receiver
    hook.script(answer)
    result = await _send(WebhookChannel("o/webhook", hook.url, secret), opened(make_incident()))
    assert (result.outcome, result.retry_after) == (outcome, retry_after)
    assert len(hook.requests) == 1, "a redirect is never followed"


async def test_slow_endpoint_is_a_retry(receiver) -> None:
    hook, secret = receiver
    hook.script(Scripted(200, delay=2.0))
    channel = WebhookChannel("o/webhook", hook.url, secret, timeout=0.3)
    result = await _send(channel, opened(make_incident()))
    assert result.outcome is Outcome.RETRY
    assert "timed out" in result.reason


async def test_connection_refused_is_a_retry_and_recovers(receiver) -> None:
    hook, secret = receiver
    channel = WebhookChannel("o/webhook", hook.url, secret)
    await hook.stop()
    down = await channel.send(opened(make_incident()))
    await hook.start()
    up = await channel.send(opened(make_incident()))
    await channel.close()
    assert down.outcome is Outcome.RETRY and "network error" in down.reason
    assert up.outcome is Outcome.DELIVERED
