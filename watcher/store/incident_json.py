"""The stored JSON form of an incident's content and of an event, the same for every store.

An incident row keeps its content (findings, runbook, links, times) in this form; each event keeps
the incident as it was when the event happened, so a page retried an hour later says what was
true then. The shape is the one earlier releases wrote into the outbox, so their state files read
back unchanged. A finding's `evidence` is left out: channels never show it, and nothing a check
stored there can grow into a leak.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from watcher.model import (
    AlertEvent,
    Category,
    Ecosystem,
    EventType,
    Finding,
    Incident,
    RunbookStep,
    Severity,
)
from watcher.timefmt import utc


def _iso(moment: datetime | None) -> str | None:
    """Full precision, with its offset: the stored form, not the shown one (`timefmt.iso`)."""
    return None if moment is None else utc(moment).isoformat()


def _when(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def incident_content(incident: Incident) -> dict[str, Any]:
    return {
        "dedup_key": incident.dedup_key,
        "ecosystem": incident.ecosystem.value,
        "name": incident.name,
        "version": incident.version,
        "owner": incident.owner,
        "opened_at": _iso(incident.opened_at),
        "published_at": _iso(incident.published_at),
        "resolved_at": _iso(incident.resolved_at),
        "resolution": incident.resolution,
        "test": incident.test,
        "links": dict(incident.links),
        "runbook": [{"text": s.text, "command": s.command, "url": s.url} for s in incident.runbook],
        "findings": [
            {
                "rule": f.rule,
                "category": f.category.value,
                "severity": f.severity.value,
                "path": f.path,
                "line": f.line,
                "message": f.message,
                "new": f.new,
                "fingerprint": f.fingerprint,
            }
            for f in incident.findings
        ],
    }


def incident_from_content(data: Mapping[str, Any]) -> Incident:
    """The inverse of `incident_content`; KeyError, TypeError or ValueError when it is not one."""
    return Incident(
        dedup_key=data["dedup_key"],
        ecosystem=Ecosystem(data["ecosystem"]),
        name=data["name"],
        version=data["version"],
        owner=data["owner"],
        opened_at=_when(data.get("opened_at")) or datetime.now(UTC),
        published_at=_when(data.get("published_at")),
        resolved_at=_when(data.get("resolved_at")),
        resolution=data.get("resolution"),
        test=bool(data.get("test")),
        links=dict(data.get("links") or {}),
        runbook=[RunbookStep(s["text"], s.get("command"), s.get("url")) for s in data["runbook"]],
        findings=[
            Finding(
                rule=f["rule"],
                category=Category(f["category"]),
                severity=Severity(f["severity"]),
                path=f["path"],
                message=f["message"],
                line=f.get("line"),
                new=bool(f.get("new", True)),
                fingerprint=f.get("fingerprint", ""),
            )
            for f in data["findings"]
        ],
    )


def event_from_parts(
    event_type: str, event_id: str, message: str | None, content: Mapping[str, Any]
) -> AlertEvent:
    """An event as stored (its type, id, message and the incident as it was); ValueError,
    KeyError or TypeError when the parts do not make one."""
    return AlertEvent(
        type=EventType(event_type),
        incident=incident_from_content(content),
        event_id=event_id,
        message=message,
    )
