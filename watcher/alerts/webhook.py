"""Generic webhook signed to the Standard Webhooks v1 scheme, so existing receiver libraries verify
it: `webhook-id` (the event id, stable across retries: the receiver's idempotency key),
`webhook-timestamp` (unix seconds of this attempt), `webhook-signature` = `v1,<base64 HMAC-SHA256
of "id.timestamp.body">`. Body: `{"type": "incident.opened", "timestamp": …, "data": {incident}}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from watcher.alerts.base import DeliveryResult, HttpChannel, HttpReply, classify_http
from watcher.alerts.payload import event_data
from watcher.model import AlertEvent
from watcher.timefmt import iso

SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's serialization prefix, not a secret


def signing_key(secret: str) -> bytes:
    """`whsec_<base64>` → the decoded bytes (the spec's serialization); anything else is used as
    raw text."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret.removeprefix(SECRET_PREFIX)
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise ValueError("webhook secret: expected base64 after 'whsec_'") from None
    return secret.encode("utf-8")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def message_id(event_id: str) -> str:
    """The spec asks that ids carry no `.` (it delimits the signed content); the mapping is fixed,
    so the id stays stable across retries."""
    return event_id.replace(".", "_")


def body_for(event: AlertEvent) -> bytes:
    occurred = event.incident.opened_at
    if event.type.value == "incident.resolved" and event.incident.resolved_at is not None:
        occurred = event.incident.resolved_at
    document = {"type": event.type.value, "timestamp": iso(occurred), "data": event_data(event)}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class WebhookChannel(HttpChannel):
    kind = "webhook"
    min_interval = 0.0

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(name, session=session, timeout=timeout)
        self._url = url
        self._key = signing_key(secret)
        self._clock = clock or (lambda: datetime.now(UTC))

    async def send(self, event: AlertEvent) -> DeliveryResult:
        body = body_for(event)
        msg_id = message_id(event.event_id)
        timestamp = int(self._clock().timestamp())  # the attempt's time, not the event's
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, msg_id, timestamp, body),
        }
        return await self._deliver(event, self._url, body, classify, headers)


def classify(reply: HttpReply) -> DeliveryResult:
    """Standard Webhooks delivery rules: 2xx delivered, 410 disables the endpoint, 429/5xx/timeouts
    retry (honouring Retry-After). A 404 is treated as gone too."""
    return classify_http(reply)
