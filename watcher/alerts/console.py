"""Console channel: a readable multi-line page on stdout (the outbox logs its `page_delivered`).

The embedded default: works on a fresh machine with no secrets. The top line says the one action
for the first five minutes.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

from watcher.alerts.base import DeliveryResult
from watcher.alerts.payload import (
    TEST_MARK,
    brief_line,
    describe_finding,
    first_action,
    package_ref,
    resolution_line,
    sorted_findings,
    still_open_line,
    summary_line,
)
from watcher.model import AlertEvent, EventType, Incident
from watcher.timefmt import iso

_RULE = "─" * 72


class ConsoleChannel:
    kind = "console"
    min_interval = 0.0

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream

    async def send(self, event: AlertEvent) -> DeliveryResult:
        text = render(event)
        stream = self._stream or sys.stdout
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as exc:  # closed or broken stdout: try again later
            return DeliveryResult.retry(f"stdout unavailable: {type(exc).__name__}")
        # the outbox logs `page_delivered` once for every channel, this one included
        return DeliveryResult.delivered()

    async def close(self) -> None:
        return None


def render(event: AlertEvent) -> str:
    if event.brief:
        return brief_line(event) + "\n"
    incident = event.incident
    mark = f"{TEST_MARK} " if incident.test else ""
    lines: list[str] = [_RULE]
    if event.type is EventType.RESOLVED:
        lines.append(f"{mark}{resolution_line(incident)}")
        if event.message:
            lines.append(event.message)
    elif event.type is EventType.UPDATED:
        # short: what changed and what is still open; the runbook was in the first page
        note = event.message or "mitigation recorded"
        lines.append(f"{mark}UPDATE on {package_ref(incident)}: {note} (incident stays open)")
        lines.append(still_open_line(incident))
        lines.append(summary_line(incident))
        lines.append(_owner_line(incident))
        lines.append("Findings:")
        lines += [f"  - {describe_finding(f)}" for f in sorted_findings(incident)]
        lines.append(f"The runbook was in the first page: watcher runbook {package_ref(incident)}")
    else:
        lines.append(f"{mark}FIRST (≤5 min): {first_action(incident)}")
        if event.message:  # what automatic containment did while the page waited
            lines.append(event.message)
        lines.append(summary_line(incident))
        lines.append(_owner_line(incident))
        lines.append("Findings:")
        lines += [f"  - {describe_finding(f)}" for f in sorted_findings(incident)]
        lines.append("Runbook:")
        for number, step in enumerate(incident.runbook, 1):
            lines.append(f"  {number}. {step.text}")
            if step.command:
                lines += [f"       {line}" for line in shell_lines(step.command)]
            if step.url:
                lines.append(f"       → {step.url}")
        for label, url in incident.links.items():
            lines.append(f"{label}: {url}")
    lines.append(_RULE)
    return "\n".join(lines) + "\n"


def _owner_line(incident: Incident) -> str:
    return (
        f"owner {incident.owner} · published {iso(incident.published_at) or 'unknown'} · "
        f"paged {iso(incident.opened_at)} · key {incident.dedup_key}"
    )


def shell_lines(command: str) -> list[str]:
    """Each command gets a `$ ` prompt; a here-document's body and terminator do not, so the
    block pastes into a shell as written."""
    shown: list[str] = []
    terminator: str | None = None
    for line in command.splitlines():
        if terminator is not None:
            shown.append(line)
            if line.strip() == terminator:
                terminator = None
            continue
        shown.append(f"$ {line}")
        here = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if here:
            terminator = here.group(1)
    return shown
