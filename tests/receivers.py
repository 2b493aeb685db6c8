"""Local aiohttp receivers that speak the paging services' documented wire formats.

Each receiver listens on a free loopback port, captures every request (headers and body), checks
each one against the documented format (problems are recorded on the capture; in strict mode a bad
request is also refused the way the real service refuses it), and answers from a script of faults
when one is queued: `receiver.script(Scripted(503), Scripted(429, headers={"Retry-After": "3"}))`.
`stop()` makes the port refuse connections; `start()` again brings it back on the same port.

Reusable by end-to-end tests: `async with pagerduty_receiver() as pd: ... pd.url ... pd.requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# -- captures and scripts ------------------------------------------------------------------------


@dataclass
class Scripted:
    """One scripted answer. `delay` seconds pass before it is sent (a slow endpoint)."""

    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "text/plain"


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float
    problems: list[str] = field(default_factory=list)
    answered: int | None = None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


Validator = Callable[[Captured], list[str]]
Responder = Callable[[Captured], Scripted]


class Receiver:
    def __init__(
        self, kind: str, path: str, validator: Validator, accept: Responder, reject: Responder
    ) -> None:
        self.kind = kind
        self.path = path
        self.requests: list[Captured] = []
        self.strict = True
        self._validator = validator
        self._accept = accept
        self._reject = reject
        self._queue: deque[Scripted] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Close the listener: connections to `url` are refused until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    # scripting and inspection

    def script(self, *responses: Scripted) -> None:
        self._queue.extend(responses)

    def bodies(self) -> list[bytes]:
        return [c.body for c in self.requests]

    def problems(self) -> list[str]:
        return [p for c in self.requests for p in c.problems]

    def assert_valid(self) -> None:
        assert self.requests, f"{self.kind}: no request received"
        assert not self.problems(), f"{self.kind}: invalid requests: {self.problems()}"

    async def wait_for(self, count: int, within: float = 10.0) -> list[Captured]:
        """Wait until `count` requests arrived (end-to-end tests; raises TimeoutError)."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind}: {len(self.requests)} of {count} requests")
            await asyncio.sleep(0.02)
        return self.requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        captured = Captured(
            method=request.method,
            path=request.path_qs,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            received_at=time.time(),
        )
        captured.problems = self._validator(captured)
        self.requests.append(captured)
        if self._queue:
            answer = self._queue.popleft()
        elif captured.problems and self.strict:
            answer = self._reject(captured)
        else:
            answer = self._accept(captured)
        if answer.delay:
            await asyncio.sleep(answer.delay)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=answer.status)  # the sender is gone: never answered
        captured.answered = answer.status
        return web.Response(
            status=answer.status,
            text=answer.body,
            headers=answer.headers,
            content_type=answer.content_type,
        )


def _json_object(captured: Captured, problems: list[str]) -> dict[str, Any] | None:
    if "application/json" not in captured.headers.get("content-type", ""):
        problems.append("Content-Type is not application/json")
    try:
        data = json.loads(captured.body)
    except ValueError:
        problems.append("body is not JSON")
        return None
    if not isinstance(data, dict):
        problems.append("body is not a JSON object")
        return None
    return data


def _is_iso8601(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# -- PagerDuty Events API v2 ---------------------------------------------------------------------

PD_MAX_BODY = 512_000
PD_TOP_KEYS = {
    "routing_key",
    "event_action",
    "dedup_key",
    "payload",
    "images",
    "links",
    "client",
    "client_url",
}
PD_PAYLOAD_KEYS = {
    "summary",
    "source",
    "severity",
    "timestamp",
    "component",
    "group",
    "class",
    "custom_details",
}
PD_SEVERITIES = {"critical", "error", "warning", "info"}


def validate_pagerduty(captured: Captured) -> list[str]:
    """Events API v2 as documented (PagerDuty/developer-docs events-API-v2, api-schema openapiv3)."""
    problems: list[str] = []
    if captured.method != "POST":
        problems.append(f"method {captured.method}, expected POST")
    if len(captured.body) > PD_MAX_BODY:
        problems.append(f"body {len(captured.body)} bytes > 512 KB")
    event = _json_object(captured, problems)
    if event is None:
        return problems
    if extra := set(event) - PD_TOP_KEYS:
        problems.append(f"unknown fields {sorted(extra)}")
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append(f"'event_action' is invalid: {action!r}")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
        problems.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and dedup is None:
        problems.append(f"'dedup_key' is required for {action}")
    if action == "trigger":
        problems += _validate_pd_payload(event.get("payload"))
    for link in event.get("links", []) or []:
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            problems.append(f"link without href: {link!r}")
        elif not link["href"].startswith(("http://", "https://")):
            problems.append(f"link href is not a URL: {link['href']!r}")
        elif "text" in link and not isinstance(link["text"], str):
            problems.append("link text is not a string")
    for image in event.get("images", []) or []:
        if not isinstance(image, dict) or not str(image.get("src", "")).startswith("https://"):
            problems.append("image src must be served via HTTPS")
    return problems


def _validate_pd_payload(payload: object) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    problems = []
    if extra := set(payload) - PD_PAYLOAD_KEYS:
        problems.append(f"unknown payload fields {sorted(extra)}")
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        problems.append("'payload.summary' is missing")
    elif len(summary) > 1024:
        problems.append(f"'payload.summary' is {len(summary)} characters (max 1024)")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        problems.append("'payload.source' is missing")
    if payload.get("severity") not in PD_SEVERITIES:
        problems.append(f"'payload.severity' is invalid: {payload.get('severity')!r}")
    if "timestamp" in payload and not _is_iso8601(payload["timestamp"]):
        problems.append("'payload.timestamp' is not ISO 8601")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            problems.append(f"'payload.{name}' is not a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        problems.append("'payload.custom_details' is not an object")
    return problems


def _pd_accept(captured: Captured) -> Scripted:
    try:
        dedup = captured.json().get("dedup_key")
    except ValueError:
        dedup = None
    body = {"status": "success", "message": "Event processed", "dedup_key": dedup}
    return Scripted(202, json.dumps(body), content_type="application/json")


def _pd_reject(captured: Captured) -> Scripted:
    return pagerduty_error(*captured.problems)


def pagerduty_error(*errors: str) -> Scripted:
    """PagerDuty's 400 answer to an invalid event."""
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    return Scripted(400, json.dumps(body), content_type="application/json")


def pagerduty_receiver() -> Receiver:
    return Receiver("pagerduty", "/v2/enqueue", validate_pagerduty, _pd_accept, _pd_reject)


# -- Slack incoming webhook ----------------------------------------------------------------------

SLACK_TOP_KEYS = {"text", "blocks", "attachments", "mrkdwn", "unfurl_links", "unfurl_media"}
SLACK_BLOCK_TYPES = {"header", "section", "divider", "actions", "context", "image", "rich_text"}


def validate_slack(captured: Captured) -> list[str]:
    """Block Kit limits as the Slack SDK encodes them (slackapi/python-slack-sdk blocks.py)."""
    problems: list[str] = []
    message = _json_object(captured, problems)
    if message is None:
        return problems
    if extra := set(message) - SLACK_TOP_KEYS:
        problems.append(f"fields an incoming webhook cannot set: {sorted(extra)}")
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("no top-level text fallback")
    elif len(text) > 40_000:
        problems.append("text over 40,000 characters")
    blocks = message.get("blocks", [])
    if not isinstance(blocks, list):
        return [*problems, "blocks is not a list"]
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks (max 50)")
    action_ids: set[str] = set()
    for index, block in enumerate(blocks):
        problems += [f"blocks[{index}]: {p}" for p in _validate_block(block, action_ids)]
    return problems


def _text_object(obj: object, limit: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return ["text object missing"]
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    problems = []
    if obj.get("type") not in kinds:
        problems.append(f"text type {obj.get('type')!r} not in {kinds}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        problems.append("empty text")
    elif len(text) > limit:
        problems.append(f"text is {len(text)} characters (max {limit})")
    return problems


def _validate_block(block: object, action_ids: set[str]) -> list[str]:
    if not isinstance(block, dict):
        return ["not an object"]
    kind = block.get("type")
    if kind not in SLACK_BLOCK_TYPES:
        return [f"unknown block type {kind!r}"]
    problems = []
    if len(str(block.get("block_id", ""))) > 255:
        problems.append("block_id over 255 characters")
    if kind == "header":
        problems += _text_object(block.get("text"), 150, plain_only=True)
    elif kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append("section without text or fields")
        if "text" in block:
            problems += _text_object(block["text"], 3000)
        fields = block.get("fields", [])
        if len(fields) > 10:
            problems.append(f"{len(fields)} fields (max 10)")
        for item in fields:
            problems += _text_object(item, 2000)
    elif kind == "actions":
        elements = block.get("elements", [])
        if not 0 < len(elements) <= 25:
            problems.append(f"{len(elements)} elements (1 to 25)")
        for element in elements:
            problems += _validate_button(element, action_ids)
    elif kind == "context":
        elements = block.get("elements", [])
        if not 0 < len(elements) <= 10:
            problems.append(f"{len(elements)} context elements (1 to 10)")
        for element in elements:
            problems += _text_object(element, 3000)
    return problems


def _validate_button(element: object, action_ids: set[str]) -> list[str]:
    if not isinstance(element, dict) or element.get("type") != "button":
        return ["actions element is not a button"]
    problems = _text_object(element.get("text"), 75, plain_only=True)
    url = element.get("url")
    if url is not None and (not isinstance(url, str) or len(url) > 3000):
        problems.append("button url over 3000 characters")
    action_id = element.get("action_id")
    if action_id is not None:
        if len(str(action_id)) > 255:
            problems.append("action_id over 255 characters")
        if action_id in action_ids:
            problems.append(f"duplicate action_id {action_id!r}")
        action_ids.add(str(action_id))
    if element.get("style") not in (None, "primary", "danger"):
        problems.append("button style must be primary or danger")
    return problems


def _slack_reject(captured: Captured) -> Scripted:
    try:
        json.loads(captured.body)
    except ValueError:
        return Scripted(400, "invalid_payload")
    return Scripted(400, "invalid_blocks")


def slack_receiver() -> Receiver:
    return Receiver(
        "slack",
        "/services/T00000000/B00000000/test-hook",
        validate_slack,
        lambda _: Scripted(200, "ok"),
        _slack_reject,
    )


# -- Standard Webhooks ---------------------------------------------------------------------------

WEBHOOK_TYPES = {"incident.opened", "incident.updated", "incident.resolved"}


def standard_webhook_validator(secret: str) -> Validator:
    """Verifies with the reference Python library (`standardwebhooks`), not our own code."""
    verifier = Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())

    def validate(captured: Captured) -> list[str]:
        problems: list[str] = []
        try:
            verifier.verify(captured.body, captured.headers)
        except WebhookVerificationError as exc:
            problems.append(f"signature does not verify: {exc}")
        document = _json_object(captured, problems)
        if document is None:
            return problems
        if document.get("type") not in WEBHOOK_TYPES:
            problems.append(f"type {document.get('type')!r}")
        if not _is_iso8601(document.get("timestamp")):
            problems.append("timestamp is not ISO 8601")
        data = document.get("data")
        if not isinstance(data, dict):
            return [*problems, "data is not an object"]
        for name in ("dedup_key", "package", "ecosystem", "version", "owner", "severity"):
            if not isinstance(data.get(name), str):
                problems.append(f"data.{name} missing")
        for name in ("findings", "runbook"):
            if not isinstance(data.get(name), list):
                problems.append(f"data.{name} is not a list")
        if "." in captured.headers.get("webhook-id", ""):
            problems.append("webhook-id contains '.'")
        return problems

    return validate


def webhook_receiver(secret: str) -> Receiver:
    return Receiver(
        "webhook",
        "/hook",
        standard_webhook_validator(secret),
        lambda _: Scripted(204),
        lambda _: Scripted(401, "signature"),
    )


# -- one owner's three channels ------------------------------------------------------------------


@dataclass
class Receivers:
    """PagerDuty, Slack and webhook receivers side by side: one owner's paging channels."""

    pd: Receiver
    slack: Receiver
    hook: Receiver
    secret: str  # the webhook's signing secret

    @property
    def all(self) -> list[Receiver]:
        return [self.pd, self.slack, self.hook]


@contextlib.asynccontextmanager
async def all_receivers(secret: str) -> AsyncIterator[Receivers]:
    async with (
        pagerduty_receiver() as pd,
        slack_receiver() as slack,
        webhook_receiver(secret) as hook,
    ):
        yield Receivers(pd, slack, hook, secret)
