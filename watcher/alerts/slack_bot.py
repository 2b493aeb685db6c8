"""Slack with a bot token: one message per incident whose state is current.

The opening page is `chat.postMessage` to the configured channel; its `ts` is kept in the store
(`channel_messages`, per channel and dedup key), so updates are thread replies (`thread_ts`) and the
resolution edits the original with `chat.update` (a resolved header and the time to contain). A
retry of the opening page after a crash finds the kept `ts` and posts nothing again (a crash
between Slack's answer and the record can still post it twice: delivery is at least once). Without
a kept `ts` (the opening page was given up on), an update or a resolution is a message of its own.

Web API replies are HTTP 200 with `{"ok": false, "error": "…"}` for every refusal, so the body
decides: `ratelimited` (HTTP 429 + `Retry-After`) and Slack's transient errors are retried; a
token or channel Slack refuses (`invalid_auth`, `token_revoked`, `channel_not_found`,
`not_in_channel`, `is_archived`, a missing scope …) disables the channel until an operator fixes
it (every later page would fail the same way); a malformed message is dead-lettered. The token is
sent as `Authorization: Bearer` and never logged. About one message a second per channel.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson

from watcher.alerts.base import DeliveryResult, HttpChannel, HttpReply, classify_http
from watcher.alerts.slack import MAX_FALLBACK, message, resolved_message, update_message
from watcher.model import AlertEvent, EventType
from watcher.retry_after import parse_retry_after
from watcher.store.api import ChannelMessageStore

DEFAULT_API = "https://slack.com/api"

# The token or the channel is refused: every later page would be too (fix the config, re-enable).
_DISABLE = {
    "invalid_auth": "slack.bot_token is not accepted",
    "not_authed": "slack.bot_token is missing",
    "account_inactive": "the bot's user or workspace is deleted",
    "token_revoked": "slack.bot_token was revoked",
    "token_expired": "slack.bot_token expired",
    "no_permission": "the token may not post here",
    "missing_scope": "the token lacks the chat:write scope",
    "not_allowed_token_type": "slack.bot_token is not a bot token",
    "channel_not_found": "slack.channel is no channel the bot can see (use its id, C…)",
    "not_in_channel": "the bot is not in slack.channel: invite it (/invite @the-app)",
    "is_archived": "slack.channel is archived",
    "ekm_access_denied": "administrators suspended posting",
    "team_access_not_granted": "the token has no access to this workspace",
    "restricted_action": "a workspace setting forbids the bot to post here",
    "access_denied": "access to the channel is denied",
}
# Slack's own trouble: try again later.
_RETRY = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)
# The original cannot be edited any more: post the resolution as a message of its own.
_NOT_EDITABLE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


class SlackBotChannel(HttpChannel):
    kind = "slack"
    min_interval = 1.0  # chat.postMessage: about one message a second per channel

    def __init__(
        self,
        name: str,
        token: str,
        channel: str,
        messages: ChannelMessageStore | None,
        *,
        api_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name, session=session, timeout=timeout)
        self._token = token  # never logged
        self.channel = channel
        self.messages = messages
        self.api_url = (api_url or DEFAULT_API).rstrip("/")

    def __repr__(self) -> str:
        return f"SlackBotChannel({self.name!r}, channel={self.channel!r})"

    async def send(self, event: AlertEvent) -> DeliveryResult:
        key = event.incident.dedup_key
        kept = None
        if self.messages is not None and not event.incident.test:
            kept = await self.messages.channel_message(self.name, key)
        if event.type is EventType.OPENED:
            if kept is not None:  # posted before a crash, not yet marked delivered
                return DeliveryResult.delivered()
            result, doc = await self._call("chat.postMessage", event, message(event))
            if result.ok and doc is not None and self.messages is not None:
                ts, channel = str(doc.get("ts") or ""), str(doc.get("channel") or self.channel)
                if ts and not event.incident.test:
                    await self.messages.record_channel_message(self.name, key, channel, ts)
            return result
        if kept is None:  # no original to thread under or edit
            return (await self._call("chat.postMessage", event, message(event)))[0]
        if event.type is EventType.UPDATED:
            reply = {**update_message(event), "thread_ts": kept.ref}
            return (await self._call("chat.postMessage", event, reply, kept.remote_channel))[0]
        edited = {**resolved_message(event), "ts": kept.ref}
        result, doc = await self._call("chat.update", event, edited, kept.remote_channel)
        if not result.ok and doc is not None and doc.get("error") in _NOT_EDITABLE:
            result, _ = await self._call("chat.postMessage", event, resolved_message(event))
        if result.ok and self.messages is not None:
            await self.messages.mark_channel_message_resolved(self.name, key)
        return result

    async def _call(
        self,
        method: str,
        event: AlertEvent,
        payload: dict[str, Any],
        channel: str | None = None,
    ) -> tuple[DeliveryResult, dict[str, Any] | None]:
        body = {"channel": channel or self.channel, "unfurl_links": False, **payload}
        body["text"] = str(body.get("text") or "")[:MAX_FALLBACK]
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        parsed: list[dict[str, Any] | None] = [None]

        def classify(reply: HttpReply) -> DeliveryResult:
            result, doc = classify_api(reply)
            parsed[0] = doc
            return result

        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json; charset=utf-8",
        }
        result = await self._deliver(
            event, f"{self.api_url}/{method}", raw, classify, headers, method=method
        )
        return result, parsed[0]


def classify_api(reply: HttpReply) -> tuple[DeliveryResult, dict[str, Any] | None]:
    """A Web API reply: the body's `ok`/`error` first, then the HTTP status."""
    doc: dict[str, Any] | None = None
    try:
        loaded = orjson.loads(reply.text)
        doc = loaded if isinstance(loaded, dict) else None
    except orjson.JSONDecodeError:
        doc = None
    error = str(doc.get("error") or "") if doc is not None else ""
    if reply.status == 429 or error in ("ratelimited", "rate_limited"):
        after = parse_retry_after(reply.headers.get("Retry-After"))
        return DeliveryResult.retry("Slack: ratelimited", after, reply.status), doc
    if doc is None or reply.status >= 300:
        return classify_http(reply), doc
    if doc.get("ok") is True:
        return DeliveryResult.delivered(reply.status), doc
    if error in _DISABLE:
        return DeliveryResult.disable(f"Slack: {error} ({_DISABLE[error]})", reply.status), doc
    if error in _RETRY:
        return DeliveryResult.retry(f"Slack: {error}", None, reply.status), doc
    return DeliveryResult.failed(f"Slack: {error or 'ok false'}", reply.status), doc
