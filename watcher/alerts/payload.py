"""The one dict form of an incident every channel shares, and the short lines pages are built from.

Findings carry rule, category, severity, path, line and message only: `evidence` is left out on
purpose, so nothing a check stored there (sizes, counts, a redacted match) can grow into a leak.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from watcher.model import AlertEvent, EventType, Finding, Incident, RunbookStep
from watcher.timefmt import human_duration, iso

TEST_MARK = "[TEST]"


def step_dict(step: RunbookStep) -> dict[str, Any]:
    return {"text": step.text, "command": step.command, "url": step.url}


def sorted_findings(incident: Incident) -> list[Finding]:
    """Worst first, then by path: the order every channel lists them in."""
    return sorted(incident.findings, key=lambda f: (-f.severity.rank, f.path, f.line or 0, f.rule))


def incident_dict(incident: Incident) -> dict[str, Any]:
    return {
        "dedup_key": incident.dedup_key,
        "package": incident.name,
        "ecosystem": incident.ecosystem.value,
        "version": incident.version,
        "published_at": iso(incident.published_at),
        "owner": incident.owner,
        "opened_at": iso(incident.opened_at),
        "severity": incident.worst().value,
        "first_action": first_action(incident),
        "findings": [f.summary_dict() for f in sorted_findings(incident)],
        "runbook": [step_dict(s) for s in incident.runbook],
        "links": dict(incident.links),
        "resolved_at": iso(incident.resolved_at),
        "resolution": incident.resolution,
        "test": incident.test,
    }


def event_data(event: AlertEvent) -> dict[str, Any]:
    """The incident plus what this event says (an update's or a resolution's message)."""
    data = incident_dict(event.incident)
    data["event"] = event.type.value
    data["message"] = event.message
    data["brief"] = event.brief  # an update channels post as one line (brief_line)
    if event.type is EventType.RESOLVED:
        data["time_to_contain_s"] = time_to_contain(event.incident)
    return data


def package_ref(incident: Incident) -> str:
    return f"{incident.name}@{incident.version}"


def worst_finding(incident: Incident) -> Finding | None:
    ordered = sorted_findings(incident)
    return ordered[0] if ordered else None


def describe_finding(finding: Finding) -> str:
    where = finding.path if finding.line is None else f"{finding.path}:{finding.line}"
    return f"{finding.severity.value} {finding.category.value}: {finding.message} ({where})"


def first_action(incident: Incident) -> str:
    """The one action for the first five minutes: the runbook's first step, command included."""
    if not incident.runbook:
        return "Open the findings and decide on containment."
    step = incident.runbook[0]
    tail = step.command or step.url
    return f"{step.text} → {tail}" if tail else step.text


def still_open_line(incident: Incident) -> str:
    """What an update leaves open: the release is still served; the next step to contain it."""
    return f"Still open: {package_ref(incident)} is still served. Next: {first_action(incident)}"


def brief_line(event: AlertEvent) -> str:
    """A brief update whole, on one line: what changed and that the incident stays open."""
    incident = event.incident
    mark = f"{TEST_MARK} " if incident.test else ""
    note = event.message or "the release line moved on"
    return (
        f"{mark}UPDATE on [{incident.ecosystem.value}] {package_ref(incident)}: {note}; "
        "the incident stays open"
    )


def summary_line(incident: Incident) -> str:
    """`[npm] name@1.2.3 — critical secret: … (path) (+3 more)`: a title naming the worst finding."""
    mark = f"{TEST_MARK} " if incident.test else ""
    worst = worst_finding(incident)
    what = describe_finding(worst) if worst else "no findings"
    more = len(incident.findings) - 1
    extra = f" (+{more} more)" if more > 0 else ""
    return f"{mark}[{incident.ecosystem.value}] {package_ref(incident)} — {what}{extra}"


def rule_counts(findings: list[Finding]) -> str:
    """`3× secret-aws-key (critical), 1× dotenv-file (high)` for summarising long lists."""
    counts = Counter((f.rule, f.severity.value) for f in findings)
    return ", ".join(f"{n}× {rule} ({sev})" for (rule, sev), n in counts.most_common())


def time_to_contain(incident: Incident) -> float | None:
    """Seconds from publish (the start of exposure) to containment; from the page when the
    publish time is unknown."""
    if incident.resolved_at is None:
        return None
    start = incident.published_at or incident.opened_at
    return max(0.0, (incident.resolved_at - start).total_seconds())


def resolution_line(incident: Incident) -> str:
    how = incident.resolution or "contained"
    took = time_to_contain(incident)
    since = "after publish" if incident.published_at else "after the page"
    duration = f"; contained {human_duration(took)} {since}" if took is not None else ""
    return f"Resolved: {package_ref(incident)} — {how}{duration}"


def truncate(text: str, limit: int, marker: str = "…") -> str:
    """`text` cut to at most `limit` characters, the cut marked."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker
