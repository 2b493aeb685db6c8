"""A loopback stand-in for Slack's Web API `chat.postMessage` and `chat.update` (docs.slack.dev).

As Slack answers: HTTP 200 with `{"ok": true, "channel": …, "ts": …, "message": …}`, or HTTP 200
with `{"ok": false, "error": …}` (`invalid_auth` for a token it does not know, `channel_not_found`
for a channel it does not have, `not_in_channel` for one the bot was not invited to,
`message_not_found` for an update of an unknown `ts`); `ratelimited` is HTTP 429 with
`Retry-After`. Every call is recorded with its method and body.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class SlackStandin:
    token: str
    channels: set[str]
    not_in: set[str] = field(default_factory=set)
    url: str = ""
    rate_limited: int = 0  # the next this many calls answer 429 ratelimited
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # ts -> current message
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    def of(self, method: str) -> list[dict[str, Any]]:
        return [body for m, body in self.calls if m == method]

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await request.json()
        self.calls.append((method, body))
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        channel = body.get("channel")
        if channel not in self.channels:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if channel in self.not_in:
            return web.json_response({"ok": False, "error": "not_in_channel"})
        if not body.get("text") and not body.get("blocks"):
            return web.json_response({"ok": False, "error": "no_text"})
        if method == "chat.update":
            ts = body.get("ts")
            if ts not in self.messages:
                return web.json_response({"ok": False, "error": "message_not_found"})
            self.messages[ts] = body
            return web.json_response({"ok": True, "channel": channel, "ts": ts, "text": ""})
        ts = f"1700000000.{next(self._ts):06d}"
        self.messages[ts] = body
        return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": body})


@asynccontextmanager
async def slack_standin(
    token: str, channels: set[str], **settings: Any
) -> AsyncIterator[SlackStandin]:
    standin = SlackStandin(token, channels, **settings)
    app = web.Application()
    app.router.add_post("/api/{method}", standin.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    standin.url = f"http://127.0.0.1:{port}/api"
    try:
        yield standin
    finally:
        await runner.cleanup()
