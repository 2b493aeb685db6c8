"""Slack incoming webhook: a Block Kit page with a text fallback.

Within Slack's limits (50 blocks, 3,000 characters a section, 150 a header, 25 buttons of 75
characters): long finding lists are summarised, never rejected. About one message a second per
webhook; 429 honours `Retry-After`. A webhook cannot edit its message, so an update or a resolution
is a new post. Errors are plain-text bodies, classified by body first, then by status.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from watcher.alerts.base import DeliveryResult, HttpChannel, HttpReply, classify_http
from watcher.alerts.payload import (
    TEST_MARK,
    brief_line,
    describe_finding,
    first_action,
    package_ref,
    resolution_line,
    rule_counts,
    sorted_findings,
    still_open_line,
    summary_line,
    truncate,
)
from watcher.model import AlertEvent, EventType, Finding, Incident, RunbookStep, Severity
from watcher.retry_after import parse_retry_after
from watcher.timefmt import iso

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_FIELD = 2000
MAX_BUTTONS = 25
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
MAX_FALLBACK = 3000  # Slack truncates `text` past 40,000 and advises ≤4,000
# Slack also rejects messages whose blocks are long in total (msg_blocks_too_long) well before
# 50 × 3,000 characters; keep the whole page under this many characters of block text.
MAX_TOTAL_TEXT = 11_000
MAX_FINDINGS_SHOWN = 10
MAX_STEP_TEXT = 900

# The endpoint is gone or revoked: stop sending to it (body strings Slack documents).
_DISABLE = frozenset(
    {
        "no_service",
        "no_active_hooks",
        "no_service_id",
        "no_team",
        "team_disabled",
        "channel_not_found",
        "channel_is_archived",
        "action_prohibited",
        "invalid_token",
        "posting_to_general_channel_denied",
    }
)
# This page is malformed: dead-letter it, keep the channel (the next page may be fine).
_FAILED = frozenset(
    {"invalid_payload", "invalid_blocks", "user_not_found", "no_text", "too_many_attachments"}
)

_EMOJI = {
    Severity.CRITICAL: ":rotating_light:",
    Severity.HIGH: ":red_circle:",
    Severity.MEDIUM: ":large_orange_circle:",
    Severity.LOW: ":large_yellow_circle:",
    Severity.INFO: ":information_source:",
}


class SlackChannel(HttpChannel):
    kind = "slack"
    min_interval = 1.0  # incoming webhooks: one message a second, short bursts allowed

    def __init__(
        self,
        name: str,
        webhook_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name, session=session, timeout=timeout)
        self._url = webhook_url  # the URL is itself the credential: never logged

    async def send(self, event: AlertEvent) -> DeliveryResult:
        body = json.dumps(message(event), ensure_ascii=False).encode("utf-8")
        return await self._deliver(event, self._url, body, classify)


def classify(reply: HttpReply) -> DeliveryResult:
    body = reply.text.strip()
    if 200 <= reply.status < 300:
        return DeliveryResult.delivered(reply.status)
    if body in _DISABLE:
        return DeliveryResult.disable(f"Slack: {body}", reply.status)
    if body in _FAILED:
        return DeliveryResult.failed(f"Slack: {body}", reply.status)
    if reply.status == 429:
        after = parse_retry_after(reply.headers.get("Retry-After"))
        return DeliveryResult.retry("Slack: rate limited", after, 429)
    result = classify_http(reply)
    if body and len(body) < 100:
        return DeliveryResult(
            result.outcome, f"{result.reason} ({body})", result.retry_after, result.status
        )
    return result


# -- message building ----------------------------------------------------------------------------


def message(event: AlertEvent) -> dict[str, Any]:
    if event.type is EventType.RESOLVED:
        return _resolved(event)
    if event.brief:
        line = truncate(brief_line(event), MAX_FALLBACK)
        return {"text": line, "blocks": [_section(line)]}
    for shown, step_limit in ((MAX_FINDINGS_SHOWN, MAX_STEP_TEXT), (5, 500), (0, 300)):
        blocks = _page_blocks(event, shown, step_limit)
        if _block_text_size(blocks) <= MAX_TOTAL_TEXT:
            break
    return {"text": truncate(_fallback(event), MAX_FALLBACK), "blocks": blocks[:MAX_BLOCKS]}


def update_message(event: AlertEvent) -> dict[str, Any]:
    """An update on its own (a thread reply under the page, with a bot token)."""
    if event.brief:
        return message(event)
    return {"text": truncate(_fallback(event), MAX_FALLBACK), "blocks": _update_blocks(event)}


def resolved_message(event: AlertEvent) -> dict[str, Any]:
    """The resolution: a resolved header and the time to contain (the edited original, with a
    bot token)."""
    return _resolved(event)


def _fallback(event: AlertEvent) -> str:
    incident = event.incident
    prefix = _EMOJI[incident.worst()]
    if event.type is EventType.UPDATED:
        prefix += f" UPDATE ({event.message or 'mitigation recorded'})"
    return f"{prefix} {summary_line(incident)} — first: {first_action(incident)}"


def _header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(text, MAX_HEADER), "emoji": True},
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}}


def _context(text: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(text, MAX_SECTION)}],
    }


def _title(incident: Incident, lead: str = "") -> str:
    mark = f"{TEST_MARK} " if incident.test else ""
    worst = sorted_findings(incident)[0] if incident.findings else None
    what = f" — {worst.category.value} in {worst.path}" if worst else ""
    return f"{mark}{lead}{incident.ecosystem.value} {package_ref(incident)}{what}"


def _code(command: str) -> str:
    return "```" + command.replace("```", "'''") + "```"


def _update_blocks(event: AlertEvent) -> list[dict[str, Any]]:
    """An update is short: what changed and what is still open (the runbook was in the page)."""
    incident = event.incident
    note = event.message or "mitigation recorded"
    return [
        _header(f"{_EMOJI[incident.worst()]} {_title(incident, 'UPDATE: ')}"),
        _section(f"*Update:* {note}. This is not containment: the incident stays open."),
        _section(still_open_line(incident)),
        *_finding_blocks(sorted_findings(incident), MAX_FINDINGS_SHOWN),
        _context(f"dedup `{incident.dedup_key}` · registry-watcher"),
    ]


def _page_blocks(event: AlertEvent, shown: int, step_limit: int) -> list[dict[str, Any]]:
    incident = event.incident
    if event.type is EventType.UPDATED:
        return _update_blocks(event)
    severity = incident.worst()
    blocks: list[dict[str, Any]] = [_header(f"{_EMOJI[severity]} {_title(incident)}")]
    blocks.append(_first_action_block(incident))
    if event.message:  # what automatic containment did while the page waited
        blocks.append(_section(event.message))
    blocks.append(
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": truncate(text, MAX_FIELD)}
                for text in (
                    f"*Severity*\n{severity.value}",
                    f"*Package*\n`{package_ref(incident)}` ({incident.ecosystem.value})",
                    f"*Published*\n{iso(incident.published_at) or 'unknown'}",
                    f"*Owner*\n{incident.owner}",
                )
            ],
        }
    )
    blocks += _finding_blocks(sorted_findings(incident), shown)
    blocks.append({"type": "divider"})
    # room left for the runbook: keep actions and context at the end
    room = MAX_BLOCKS - len(blocks) - 2
    blocks += _runbook_blocks(incident.runbook, room, step_limit)
    buttons = _buttons(incident)
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append(_context(f"dedup `{incident.dedup_key}` · registry-watcher"))
    return blocks


def _first_action_block(incident: Incident) -> dict[str, Any]:
    if not incident.runbook:
        return _section("*First action (≤5 min):* open the findings and decide on containment.")
    step = incident.runbook[0]
    text = f"*First action (≤5 min):* {step.text}"
    if step.command:
        text += "\n" + _code(step.command)
    if step.url:
        text += f"\n<{step.url}|{step.url}>"
    return _section(text)


def _finding_blocks(findings: list[Finding], shown: int) -> list[dict[str, Any]]:
    blocks = [
        _section(
            f"*{f.severity.value.upper()}* `{f.rule}` · `{f.path}`\n{truncate(f.message, 600)}"
        )
        for f in findings[:shown]
    ]
    rest = findings[shown:]
    if rest:
        listed = "\n".join(f"• {truncate(describe_finding(f), 200)}" for f in rest[:20])
        more = len(rest) - 20
        tail = f"\n…and {more} more" if more > 0 else ""
        blocks.append(
            _section(
                f"*{len(rest)} more finding(s):* {rule_counts(rest)}\n{listed}{tail}",
            )
        )
    return blocks


def _step_text(number: int, step: RunbookStep, limit: int) -> str:
    text = f"*{number}.* {truncate(step.text, limit)}"
    if step.command:
        text += "\n" + _code(truncate(step.command, limit))
    if step.url and len(step.url) <= MAX_URL:
        text += f"\n<{step.url}|{truncate(step.url, 200)}>"
    return text


def _runbook_blocks(steps: list[RunbookStep], room: int, limit: int) -> list[dict[str, Any]]:
    if not steps or room <= 0:
        return []
    texts = [_step_text(n, s, limit) for n, s in enumerate(steps, 1)]
    texts[0] = "*Runbook*\n" + texts[0]
    if len(texts) > room:  # fold the tail into the last block rather than drop it
        head, tail = texts[: room - 1], texts[room - 1 :]
        texts = [*head, "\n".join(tail)]
    return [_section(text) for text in texts]


def _buttons(incident: Incident) -> list[dict[str, Any]]:
    targets = list(incident.links.items())
    targets += [(_button_label(step), step.url) for step in incident.runbook if step.url]
    buttons: list[dict[str, Any]] = []
    seen: set[str] = set()
    for label, url in targets:
        if url is None or url in seen or len(url) > MAX_URL:
            continue
        if not url.startswith(("http://", "https://")):
            continue
        seen.add(url)
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": truncate(label, MAX_BUTTON_TEXT)},
                "url": url,
                "action_id": f"watcher_link_{len(buttons)}",
            }
        )
    return buttons[:MAX_BUTTONS]


def _button_label(step: RunbookStep) -> str:
    first = step.text.split(":", 1)[0].split(".", 1)[0]
    return truncate(first, 40)


def _block_text_size(blocks: list[dict[str, Any]]) -> int:
    return len(json.dumps(blocks, ensure_ascii=False))


def _resolved(event: AlertEvent) -> dict[str, Any]:
    incident = event.incident
    line = resolution_line(incident)
    mark = f"{TEST_MARK} " if incident.test else ""
    blocks = [
        _header(
            f":white_check_mark: {mark}Resolved: {incident.ecosystem.value} {package_ref(incident)}"
        ),
        _section(
            f"*{line}*"
            + (f"\n{event.message}" if event.message else "")
            + f"\nPublished {iso(incident.published_at) or 'unknown'} · paged "
            f"{iso(incident.opened_at)} · resolved {iso(incident.resolved_at) or 'now'}"
        ),
        _section(
            "Still to do if not done: revoke any credential it carried, and ask CDNs that keep "
            "exact versions to drop it."
        ),
        _context(f"dedup `{incident.dedup_key}` · registry-watcher"),
    ]
    return {"text": truncate(f":white_check_mark: {mark}{line}", MAX_FALLBACK), "blocks": blocks}
