"""PagerDuty Events API v2.

- opened: `trigger` with the incident's `dedup_key`, a summary naming package@version and the worst
  finding, our severity mapped to PagerDuty's four, and the findings and runbook in
  `custom_details`.
- updated (a mitigation that is not containment): another `trigger` with the same `dedup_key`.
  PagerDuty documents that a trigger for an open alert's key adds a trigger log entry to that
  alert instead of opening a new one, and an acknowledged incident does not notify again, so the
  update lands in the alert's timeline with its own custom_details.
- resolved: `resolve` with the same `dedup_key` (and the same routing key, or PagerDuty drops it).

202 is accepted; 400 is our bug (logged with PagerDuty's message, dead-lettered, never retried);
429, 5xx and network errors retry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog

from watcher.alerts.base import DeliveryResult, HttpChannel, HttpReply, classify_http
from watcher.alerts.payload import (
    brief_line,
    event_data,
    summary_line,
    truncate,
    worst_finding,
)
from watcher.model import AlertEvent, EventType, Severity
from watcher.timefmt import iso

log = structlog.get_logger(__name__)

# PagerDuty's own service endpoint (not a package registry); override `url` for the EU region.
DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_BODY_BYTES = 512_000  # "Events API payloads are limited to 512 KB"
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
RATE_LIMIT_BACKOFF_S = 30.0  # PagerDuty suggests retrying a 429 about 30 s apart
CLIENT = "registry-watcher"

SEVERITY_MAP = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
    Severity.INFO: "info",
}


class PagerDutyChannel(HttpChannel):
    kind = "pagerduty"
    min_interval = 0.5  # about 120 events a minute per routing key

    def __init__(
        self,
        name: str,
        routing_key: str,
        *,
        url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(name, session=session, timeout=timeout)
        self._routing_key = routing_key
        self._url = url or DEFAULT_EVENTS_URL
        self._max_body = max_body_bytes
        self._clock = clock or (lambda: datetime.now(UTC))

    async def send(self, event: AlertEvent) -> DeliveryResult:
        body = self.body(event)
        return await self._deliver(
            event, self._url, body, classify, dedup_key=event.incident.dedup_key
        )

    def body(self, event: AlertEvent) -> bytes:
        """The request body, trimmed to fit PagerDuty's size limit."""
        document = build_event(event, self._routing_key, self._clock())
        encoded = _encode(document)
        if len(encoded) <= self._max_body:
            return encoded
        return _encode(_trimmed(document, self._max_body))


def dedup_key(event: AlertEvent) -> str:
    return truncate(event.incident.dedup_key, MAX_DEDUP_KEY, marker="")


def build_event(event: AlertEvent, routing_key: str, now: datetime) -> dict[str, Any]:
    incident = event.incident
    if event.type is EventType.RESOLVED:
        return {
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key(event),
        }
    summary = summary_line(incident)
    if event.brief:
        summary = brief_line(event)
    elif event.type is EventType.UPDATED:
        summary = f"UPDATE ({event.message or 'mitigation recorded'}): {summary}"
    worst = worst_finding(incident)
    details = event_data(event)
    links = [{"href": url, "text": label} for label, url in incident.links.items()]
    links += [
        {"href": step.url, "text": truncate(step.text, 120)}
        for step in incident.runbook
        if step.url and step.url.startswith(("http://", "https://"))
    ]
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(event),
        "client": CLIENT,
        "payload": {
            "summary": truncate(summary, MAX_SUMMARY),
            "source": f"{incident.ecosystem.value}:{incident.name}",
            "severity": SEVERITY_MAP[incident.worst()],
            "timestamp": iso(incident.opened_at if event.type is EventType.OPENED else now),
            "component": incident.name,
            "group": incident.ecosystem.value,
            "class": worst.rule if worst else "registry-exposure",
            "custom_details": details,
        },
        "links": links,
    }


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _trimmed(document: dict[str, Any], limit: int) -> dict[str, Any]:
    """Drop findings from custom_details (worst kept first) until the body fits, saying so; then
    shorten the runbook's long fields if that is still not enough."""
    details: dict[str, Any] = document["payload"]["custom_details"]
    findings: list[Any] = details["findings"]
    total = len(findings)
    keep = total
    while keep > 0:
        keep //= 2
        details["findings"] = findings[:keep]
        details["findings_note"] = (
            f"{total - keep} of {total} findings left out to fit PagerDuty's size limit; "
            "every finding is on the other channels and in `watcher status`"
        )
        if len(_encode(document)) <= limit:
            return document
    for step in details["runbook"]:
        step["text"] = truncate(step["text"], 300)
        if step["command"]:
            step["command"] = truncate(step["command"], 300)
    for finding in details["findings"]:
        finding["message"] = truncate(finding["message"], 200)
    return document


def classify(reply: HttpReply) -> DeliveryResult:
    if reply.status == 400:
        message = _error_message(reply.text)
        log.error("pagerduty_rejected_event", status=400, message=message)
        return DeliveryResult.failed(f"PagerDuty rejected the event: {message}", 400)
    result = classify_http(reply)
    if reply.status == 429 and result.retry_after is None:
        return DeliveryResult.retry(result.reason, RATE_LIMIT_BACKOFF_S, 429)
    return result


def _error_message(text: str) -> str:
    """`{"status":"invalid event","message":"Event object is invalid","errors":[…]}` → one line."""
    try:
        data = json.loads(text)
    except ValueError:
        return truncate(text.strip(), 300)
    if not isinstance(data, dict):
        return truncate(text.strip(), 300)
    errors = data.get("errors") or []
    joined = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
    message = str(data.get("message") or data.get("status") or "invalid event")
    return truncate(f"{message}: {joined}" if joined else message, 500)
