"""The channel protocol: every channel takes an `AlertEvent` and says what became of it.

A channel never raises for HTTP or network trouble: it classifies the outcome so the outbox can
decide (delivered → drop the row; retry → back off, honouring `retry_after`; failed → dead-letter
this page; disable → the endpoint is gone, stop sending to it). Channels never decide severity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

import aiohttp
import structlog

from watcher.model import AlertEvent
from watcher.retry_after import parse_retry_after

log = structlog.get_logger(__name__)

USER_AGENT = "registry-watcher/0.1"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"  # permanent for this page: dead-letter it, never retry
    DISABLE = "disable"  # permanent for the endpoint: it is gone or revoked


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None  # seconds the endpoint asked us to wait (429 Retry-After)
    status: int | None = None  # HTTP status when there was one

    @classmethod
    def delivered(cls, status: int | None = None) -> DeliveryResult:
        return cls(Outcome.DELIVERED, "", None, status)

    @classmethod
    def retry(
        cls, reason: str, retry_after: float | None = None, status: int | None = None
    ) -> DeliveryResult:
        return cls(Outcome.RETRY, reason, retry_after, status)

    @classmethod
    def failed(cls, reason: str, status: int | None = None) -> DeliveryResult:
        return cls(Outcome.FAILED, reason, None, status)

    @classmethod
    def disable(cls, reason: str, status: int | None = None) -> DeliveryResult:
        return cls(Outcome.DISABLE, reason, None, status)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DELIVERED


@runtime_checkable
class Channel(Protocol):
    """What the outbox needs from a channel."""

    name: str  # the outbox's id for it, e.g. `platform/slack`
    kind: str  # `pagerduty`, `slack`, `webhook`, `console`
    # Seconds between two sends on this channel (the outbox honours it): Slack allows about one
    # message a second per webhook, PagerDuty about 120 events a minute per routing key.
    min_interval: float

    async def send(self, event: AlertEvent) -> DeliveryResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    text: str
    headers: Mapping[str, str]


class HttpChannel:
    """Shared plumbing for channels that POST JSON: one session (given or owned), a timeout, and
    network trouble turned into a `retry` result instead of an exception."""

    kind = "http"
    min_interval = 0.0

    def __init__(
        self,
        name: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> HttpReply | DeliveryResult:
        """POST `body`; a reply to classify, or a `retry` result when no reply came."""
        all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
        try:
            async with self._client().post(
                url,
                data=body,
                headers=all_headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,  # a redirect is a failure, never followed with our body
            ) as response:
                text = await response.text(errors="replace")
                return HttpReply(response.status, text, dict(response.headers))
        except TimeoutError:
            return DeliveryResult.retry(f"timed out after {self._timeout:g}s")
        except aiohttp.ClientError as exc:
            return DeliveryResult.retry(f"network error: {type(exc).__name__}: {exc}")
        except OSError as exc:  # pragma: no cover - aiohttp wraps most of these
            return DeliveryResult.retry(f"network error: {exc}")
        except asyncio.CancelledError:
            raise

    async def _deliver(
        self,
        event: AlertEvent,
        url: str,
        body: bytes,
        classify: Callable[[HttpReply], DeliveryResult],
        headers: Mapping[str, str] | None = None,
        **context: object,
    ) -> DeliveryResult:
        """POST `body`, classify the reply by the channel's own rules, log `<kind>_sent`."""
        reply = await self._post(url, body, headers or {})
        result = reply if isinstance(reply, DeliveryResult) else classify(reply)
        log.info(
            f"{self.kind}_sent",
            channel=self.name,
            event_type=event.type.value,
            event_id=event.event_id,
            **context,
            outcome=result.outcome.value,
            status=result.status,
            reason=result.reason or None,
        )
        return result


def classify_http(reply: HttpReply, *, now: datetime | None = None) -> DeliveryResult:
    """The generic rule (Standard Webhooks delivery guidance): 2xx delivered; 404/410 the endpoint
    is gone; 408, 425, 429 and 5xx retry (429 with its Retry-After); anything else is permanent."""
    status = reply.status
    if 200 <= status < 300:
        return DeliveryResult.delivered(status)
    if status in (404, 410):
        return DeliveryResult.disable(f"HTTP {status}: endpoint gone", status)
    if status in (408, 425, 429) or status >= 500:
        after = parse_retry_after(reply.headers.get("Retry-After"), now)
        return DeliveryResult.retry(f"HTTP {status}", after, status)
    if 300 <= status < 400:
        return DeliveryResult.failed(f"HTTP {status}: redirect not followed", status)
    return DeliveryResult.failed(f"HTTP {status}: {reply.text[:200]}", status)
