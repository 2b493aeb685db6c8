"""All the CLI's output, in one place: a scan `Report` for people (text), programs (JSON, the DESIGN
contract) and code-scanning UIs (SARIF 2.1.0); `watcher status`; the outbox and releases views and
their actions; runbooks; test-alert outcomes. Timestamps and durations come from `watcher.timefmt`.

Rendering is pure: no I/O, no logging, the current time passed in. Checks already redact secret values in messages and
evidence; this module adds nothing from the archive beyond what findings carry. Text output escapes
control characters, since paths and messages come from untrusted package content and could
otherwise drive the reader's terminal.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from watcher import ecosystems
from watcher.model import ArtifactSummary, EventType, Finding, Report, Severity
from watcher.private.index import VERSION as INDEX_VERSION
from watcher.private.index import IndexHeader
from watcher.store.types import ReleaseState
from watcher.timefmt import ago, iso, seconds_ago, span, until

if TYPE_CHECKING:
    from watcher.cli.ops import ChannelOutcome, StoredRunbook
    from watcher.cli.queues import OutboxView, RequeueResult, RetryResult
    from watcher.store.types import (
        Approval,
        ChannelQueue,
        DisabledChannel,
        Lease,
        OutboxItem,
        StatusSummary,
        StoredRelease,
    )

TOOL_NAME = "registry-watcher"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
# Separates a source map's member path from the original source embedded in it (see TextDoc.path).
EMBEDDED_SEPARATOR = " → "

# Worst first: the order of the text report's groups and of the JSON summary's counts.
SEVERITY_ORDER: tuple[Severity, ...] = tuple(sorted(Severity, key=lambda s: -s.rank))

# SARIF has three levels; GitHub code scanning ranks security results by `security-severity`.
_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "1.0",
}

_ANSI_RESET = "\x1b[0m"
_ANSI_BOLD = "\x1b[1m"
_ANSI = {
    Severity.CRITICAL: "\x1b[1;31m",
    Severity.HIGH: "\x1b[31m",
    Severity.MEDIUM: "\x1b[33m",
    Severity.LOW: "\x1b[36m",
    Severity.INFO: "\x1b[2m",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WIDTH = 100  # text report lines are wrapped here, never cut
_HINT_LIST_ITEMS = 10  # what the checks keep as examples; a longer list says +N
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS  # evidence may be keyed by numbers


# -- scan reports: JSON ---------------------------------------------------------------------------


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain data in the shape of the `watcher scan` JSON contract (plus `summary`)."""
    return {
        "target": _summary_dict(report.target),
        "baseline": _summary_dict(report.baseline) if report.baseline is not None else None,
        "findings": [_finding_dict(finding) for finding in report.findings],
        "summary": {"counts": severity_counts(report.findings), "worst": _worst(report)},
        "stats": {"elapsed_s": round(report.elapsed_s, 3), "bytes_read": report.bytes_read},
    }


def render_json(report: Report) -> str:
    return orjson.dumps(report_dict(report), default=_json_default, option=_JSON_OPTIONS).decode()


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Every severity, worst first, zeros included so consumers see a fixed shape."""
    counted = Counter(finding.severity for finding in findings)
    return {severity.value: counted.get(severity, 0) for severity in SEVERITY_ORDER}


def _summary_dict(summary: ArtifactSummary) -> dict[str, Any]:
    return asdict(summary)


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        **finding.summary_dict(),
        "fingerprint": finding.fingerprint,
        "evidence": finding.evidence,
    }


def _worst(report: Report) -> str | None:
    worst = report.worst()
    return worst.value if worst is not None else None


def _json_default(value: object) -> object:
    """Evidence is free-form: sets become sorted lists, anything else unknown its string form."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


# -- scan reports: text ---------------------------------------------------------------------------


def render_text(report: Report, *, color: bool = False) -> str:
    """A readable report: identities, a count per severity, then findings grouped worst first."""
    paint = _Paint(color)
    lines = [
        f"target:   {_identity(report.target)}",
        f"baseline: {_identity(report.baseline) if report.baseline is not None else 'none'}",
    ]
    counts = severity_counts(report.findings)
    total = len(report.findings)
    per_severity = " · ".join(
        paint(f"{name} {count}", Severity(name) if count else None)
        for name, count in counts.items()
    )
    noun = "finding" if total == 1 else "findings"
    lines.append(f"{total} {noun}: {per_severity}")
    lines.append(
        f"scanned {_size(report.bytes_read)} in {report.elapsed_s:.2f}s"
        if report.bytes_read
        else f"scanned in {report.elapsed_s:.2f}s"
    )
    for severity in SEVERITY_ORDER:
        group = [finding for finding in report.findings if finding.severity is severity]
        if not group:
            continue
        lines.append("")
        lines.append(paint(f"{severity.value.upper()} ({len(group)})", severity))
        for finding in group:
            lines.extend(_finding_lines(finding, report.baseline is not None, paint))
    if not report.findings:
        lines.append("")
        lines.append("no findings")
    return "\n".join(lines) + "\n"


def _finding_lines(finding: Finding, has_baseline: bool, paint: _Paint) -> list[str]:
    marker = "NEW " if finding.new and has_baseline else "    "
    location = _clean(finding.path) + (f":{finding.line}" if finding.line is not None else "")
    head = f"  {paint(marker, _BOLD) if marker.strip() else marker}{finding.rule}  {location}"
    detail = f"      {_clean(finding.message)}"
    hint = evidence_hint(finding.evidence)
    if hint and len(detail) + len(hint) + 4 <= _WIDTH:
        return [head, f"{detail}  [{hint}]"]
    if not hint:
        return [head, detail]
    # whole values (a revocation route, every example path), wrapped between words only
    wrapped = textwrap.wrap(
        f"[{hint}]",
        width=_WIDTH,
        initial_indent="        ",
        subsequent_indent="         ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [head, detail, *wrapped]


def evidence_hint(evidence: dict[str, Any]) -> str:
    """The evidence on one logical line: scalars as key=value, lists as their items (up to ten,
    then +N), nested data skipped. Values are never cut: the text report wraps them."""
    parts: list[str] = []
    for key, value in evidence.items():
        if isinstance(value, bool | int | float):
            parts.append(f"{key}={_number(value)}")
        elif isinstance(value, str) and value:
            parts.append(f"{key}={value}")
        elif isinstance(value, list | tuple) and value:
            shown = ", ".join(str(item) for item in value[:_HINT_LIST_ITEMS])
            more = len(value) - _HINT_LIST_ITEMS
            parts.append(f"{key}={shown}" + (f" +{more}" if more > 0 else ""))
    return _clean("; ".join(parts))


def _identity(summary: ArtifactSummary) -> str:
    name = summary.name or "?"
    version = f"@{summary.version}" if summary.version else ""
    ecosystem = f"{summary.ecosystem} " if summary.ecosystem else ""
    details = (
        f"{summary.filename}, {summary.files:,} files, {_size(summary.bytes)}, "
        f"sha256 {summary.sha256[:12]}"
    )
    return _clean(f"{ecosystem}{name}{version} ({details})")


def _number(value: bool | float) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _clean(text: str) -> str:
    """Show control characters (escape sequences, newlines) from package content as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_BOLD = "bold"


class _Paint:
    """Wraps text in ANSI colours, or not at all."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled

    def __call__(self, text: str, style: Severity | str | None) -> str:
        if not self._enabled or style is None:
            return text
        code = _ANSI[style] if isinstance(style, Severity) else _ANSI_BOLD
        return f"{code}{text}{_ANSI_RESET}"


# -- scan reports: SARIF --------------------------------------------------------------------------


def render_sarif(report: Report) -> str:
    return orjson.dumps(sarif_log(report), default=_json_default, option=_JSON_OPTIONS).decode()


def sarif_log(report: Report) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run, shaped for GitHub code scanning."""
    rules, rule_index = _sarif_rules(report.findings)
    has_baseline = report.baseline is not None
    results = [
        _sarif_result(finding, rule_index[finding.rule], has_baseline)
        for finding in report.findings
    ]
    version = tool_version()
    driver: dict[str, Any] = {"name": TOOL_NAME, "version": version, "rules": rules}
    if re.fullmatch(r"\d+\.\d+\.\d+", version):
        driver["semanticVersion"] = version
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "artifacts": [_sarif_artifact(report.target)],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {
            "target": _summary_dict(report.target),
            "baseline": _summary_dict(report.baseline) if report.baseline is not None else None,
            "summary": {"counts": severity_counts(report.findings), "worst": _worst(report)},
            "stats": {"elapsed_s": round(report.elapsed_s, 3), "bytes_read": report.bytes_read},
        },
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def tool_version() -> str:
    try:
        return importlib.metadata.version(TOOL_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def sarif_level(severity: Severity) -> str:
    return _SARIF_LEVEL[severity]


def security_severity(severity: Severity) -> str:
    return _SECURITY_SEVERITY[severity]


def split_embedded(path: str) -> tuple[str, str | None]:
    """`package/x.js.map → src/a.ts` → (`package/x.js.map`, `src/a.ts`); other paths unchanged."""
    member, separator, embedded = path.partition(EMBEDDED_SEPARATOR)
    return (member, embedded) if separator else (path, None)


def member_uri(path: str) -> str:
    """A member path as a relative URI reference: percent-encoded, never absolute, never empty."""
    relative = path.lstrip("/") or "."
    return quote(relative, safe="/")


def _sarif_rules(findings: list[Finding]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One descriptor per rule seen, in order of first appearance. A rule can report at several
    severities (raised when new); its descriptor carries the worst seen in this report."""
    worst: dict[str, Finding] = {}
    for finding in findings:
        seen = worst.get(finding.rule)
        if seen is None or finding.severity.rank > seen.severity.rank:
            worst[finding.rule] = finding
    rules = [
        {
            "id": rule,
            "name": _rule_name(rule),
            "shortDescription": {"text": _rule_description(rule, finding)},
            "defaultConfiguration": {"level": sarif_level(finding.severity)},
            "properties": {
                "tags": ["security", finding.category.value],
                "security-severity": security_severity(finding.severity),
                "precision": "high",
            },
        }
        for rule, finding in worst.items()
    ]
    return rules, {rule: index for index, rule in enumerate(worst)}


def _rule_name(rule: str) -> str:
    """SARIF `name` is a PascalCase identifier: `sourcemap-embedded-sources` → `SourcemapEmbeddedSources`."""
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", rule) if part)


def _rule_description(rule: str, finding: Finding) -> str:
    words = rule.replace("-", " ").replace("_", " ")
    return f"{finding.category.value}: {words}"


def _sarif_result(finding: Finding, rule_index: int, has_baseline: bool) -> dict[str, Any]:
    member, embedded = split_embedded(finding.path)
    message = finding.message
    properties: dict[str, Any] = {
        "category": finding.category.value,
        "severity": finding.severity.value,
        "new": finding.new,
        "evidence": finding.evidence,
    }
    physical: dict[str, Any] = {"artifactLocation": {"uri": member_uri(member)}}
    if embedded is not None:
        # The line counts within the embedded original source, not within the map file itself.
        message = f"{message} (embedded source {embedded}" + (
            f", line {finding.line})" if finding.line is not None else ")"
        )
        properties["embedded_source"] = embedded
        if finding.line is not None:
            properties["embedded_line"] = finding.line
    elif finding.line is not None and finding.line >= 1:
        physical["region"] = {"startLine": finding.line}
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": sarif_level(finding.severity),
        "message": {"text": message},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {"watcher/v1": finding.fingerprint},
        "properties": properties,
    }
    if has_baseline:
        result["baselineState"] = "new" if finding.new else "unchanged"
    return result


def _sarif_artifact(summary: ArtifactSummary) -> dict[str, Any]:
    """The scanned archive itself; results point at its members, which are not listed."""
    return {
        "location": {"uri": member_uri(summary.filename)},
        "roles": ["analysisTarget"],
        "hashes": {"sha-256": summary.sha256},
        "properties": {"files": summary.files, "unpacked_bytes": summary.bytes},
    }


# -- watcher status -------------------------------------------------------------------------------


def render_status(
    summary: StatusSummary,
    fmt: str,
    *,
    now: float,
    approvals: Sequence[Approval] = (),
    leases: Sequence[Lease] = (),
) -> str:
    from watcher.feeds.coverage import split_cursors  # noqa: PLC0415 - only for status

    counts = summary.counts
    cursors, not_found = split_cursors(summary.cursors)
    if fmt == "json":
        return json.dumps(
            {
                "cursors": [
                    {"feed": c.feed, "cursor": c.cursor, "updated_at": c.updated_at}
                    for c in cursors
                ],
                "not_found_on_the_registry": dict(not_found),
                "last_releases": [_release_dict(r) for r in summary.last_releases],
                "open_incidents": [
                    {
                        "dedup_key": i.dedup_key,
                        "owner": i.owner,
                        "severity": i.worst().value,
                        "opened_at": i.opened_at.timestamp(),
                    }
                    for i in summary.open_incidents
                ],
                "releases_by_state": {k.value: v for k, v in counts.releases_by_state.items()},
                "outbox_depth": counts.outbox_depth,
                "outbox_oldest_age_s": counts.outbox_oldest_age_s,
                "dead_letters": counts.dead_letters,
                "disabled_channels": [
                    {
                        "channel": d.channel,
                        "reason": d.reason,
                        "disabled_at": d.disabled_at,
                        "recheck_at": d.recheck_at,
                    }
                    for d in summary.disabled_channels
                ],
                # replicas on a shared store: who holds each role (feed:…, outbox:…) and until when
                "roles": [
                    {
                        "role": lease.name,
                        "holder": lease.owner,
                        "epoch": lease.epoch,
                        "expires_at": lease.expires_at,
                        "live": lease.expires_at > now,
                    }
                    for lease in leases
                ],
                "last_approvals": [
                    {
                        "id": a.id,
                        "ecosystem": a.ecosystem.value,
                        "name": a.name,
                        "version": a.version,
                        "sha256": a.sha256,
                        "integrity": a.integrity,
                        "token_name": a.token_name,
                        "created_at": iso(a.created_at),
                    }
                    for a in approvals
                ],
            },
            indent=2,
        )
    lines = ["cursors:"]
    lines += [f"  {c.feed}: {c.cursor} (updated {seconds_ago(c.updated_at, now)})" for c in cursors]
    if not cursors:
        lines.append("  (none: poll feeds keep per-package state)")
    if leases:  # several replicas on a shared store
        lines.append("roles (replicas on the shared store):")
        for lease in leases:
            state = (
                f"held by {lease.owner}, epoch {lease.epoch}, "
                f"{max(0.0, lease.expires_at - now):.0f}s left"
                if lease.expires_at > now
                else f"no live holder (last: {lease.owner}, epoch {lease.epoch})"
            )
            lines.append(f"  {lease.name}: {state}")
    lines.append("last release per package:")
    for r in summary.last_releases:
        extra = " baseline" if r.baseline else ""
        error = f" — {r.last_error}" if r.last_error else ""
        lines.append(
            f"  {r.release.ecosystem.value:<4} {r.release.name}@{r.release.version}: "
            f"{r.state.value}{extra} (attempts {r.attempts}){error}"
        )
    if not summary.last_releases:
        lines.append("  (none yet)")
    if not_found:
        # watched, but the registry has no such package: a typo, or not published yet
        lines.append("not found on the registry:")
        for eco, names in sorted(not_found.items()):
            lines += [f"  {eco:<4} {name} (watched; check the name in packages:)" for name in names]
    lines.append(f"open incidents: {len(summary.open_incidents)}")
    for i in summary.open_incidents:
        lines.append(
            f"  {i.dedup_key} owner {i.owner}, {i.worst().value}, "
            f"opened {seconds_ago(i.opened_at.timestamp(), now)}"
        )
    states = ", ".join(f"{k.value} {v}" for k, v in counts.releases_by_state.items())
    lines.append(f"releases: {states}")
    depth = sum(counts.outbox_depth.values())
    per_channel = ", ".join(f"{k} {v}" for k, v in counts.outbox_depth.items())
    oldest = (
        f", oldest {counts.outbox_oldest_age_s:.0f}s"
        if counts.outbox_oldest_age_s is not None
        else ""
    )
    lines.append(
        f"outbox: {depth} waiting{f' ({per_channel})' if per_channel else ''}{oldest}; "
        f"dead letters {counts.dead_letters}"
    )
    for d in summary.disabled_channels:
        recheck = max(0.0, d.recheck_at - now)
        lines.append(
            f"channel {d.channel} DISABLED (since {seconds_ago(d.disabled_at, now)}, tried again in "
            f"{recheck:.0f}s; now: watcher outbox requeue --channel {d.channel}): {d.reason}"
        )
    if approvals:
        lines.append("last approvals (from the gate):")
        lines += [
            f"  {a.ecosystem.value:<4} {a.name}@{a.version} sha256 {a.sha256[:16]}… by "
            f"{a.token_name} ({seconds_ago(a.created_at, now)})"
            for a in approvals
        ]
    return "\n".join(lines)


def _release_dict(r: StoredRelease) -> dict[str, object]:
    return {
        "ecosystem": r.release.ecosystem.value,
        "package": r.release.name,
        "version": r.release.version,
        "state": r.state.value,
        "attempts": r.attempts,
        "baseline": r.baseline,
        "last_error": r.last_error,
    }


# -- watcher outbox / releases --------------------------------------------------------------------


def _one_line(text: str | None, limit: int = 160) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# The words the operator views have always named events by.
_EVENT_WORDS = {
    EventType.OPENED: "opened",
    EventType.UPDATED: "update",
    EventType.RESOLVED: "resolved",
}


def event_word(item: OutboxItem) -> str:
    """How the queue views name a delivery's event (`unreadable`: its stored event is not one)."""
    return "unreadable" if item.event_type is None else _EVENT_WORDS[item.event_type]


def render_outbox(view: OutboxView, fmt: str = "text", *, now: float) -> str:
    queues = {q.channel: q for q in view.queues}
    disabled = {d.channel: d for d in view.disabled}
    if fmt == "json":
        return json.dumps(
            {
                "channels": [
                    _channel_json(name, queues.get(name), disabled.get(name), view, now)
                    for name in view.channels()
                ],
                "dead_letters": [_dead_json(item, now) for item in view.dead],
            },
            indent=2,
            ensure_ascii=False,
        )
    lines = ["pending pages per channel:"]
    for name in view.channels():
        lines.append("  " + _channel_line(name, queues.get(name), disabled.get(name), view, now))
    if not view.channels():
        lines.append("  (no channels)")
    lines.append(f"dead letters: {len(view.dead)}")
    for item in view.dead:
        lines.append(
            f"  #{item.id} {item.channel} {item.dedup_key or '(no incident)'} {event_word(item)}"
            f" — dead {ago(item.dead_at, now)} ({iso(item.dead_at)}), attempts {item.attempts}:"
            f" {_one_line(item.last_error)}"
        )
    if view.dead:
        lines.append(
            "  requeue with: watcher outbox requeue --config FILE (ID... | --all | --channel NAME)"
        )
    return "\n".join(lines)


def _channel_line(
    name: str,
    queue: ChannelQueue | None,
    disabled: DisabledChannel | None,
    view: OutboxView,
    now: float,
) -> str:
    parts = [f"{name}:"]
    if queue is None:
        parts.append("0 waiting")
    else:
        parts.append(f"{queue.depth} waiting, oldest {span(now - queue.oldest_created_at)}")
        wait = queue.head_next_attempt_at - now
        parts.append(
            f"(head #{queue.head_id}, attempts {queue.head_attempts}, "
            + (f"next try in {span(wait)})" if wait > 0 else "due now)")
        )
    if name not in view.configured:
        parts.append("[not configured: its pages wait for a channel of this name]")
    line = " ".join(parts)
    if disabled is not None:
        line += (
            f" — DISABLED since {ago(disabled.disabled_at, now)}, tried again "
            f"{until(disabled.recheck_at, now)} (or now: requeue --channel {name}):"
            f" {_one_line(disabled.reason)}"
        )
    elif queue is not None and queue.last_error:
        line += f" — last error: {_one_line(queue.last_error)}"
    return line


def _channel_json(
    name: str,
    queue: ChannelQueue | None,
    disabled: DisabledChannel | None,
    view: OutboxView,
    now: float,
) -> dict[str, object]:
    return {
        "channel": name,
        "configured": name in view.configured,
        "depth": 0 if queue is None else queue.depth,
        "oldest_age_s": None if queue is None else round(now - queue.oldest_created_at, 3),
        "head_id": None if queue is None else queue.head_id,
        "head_attempts": None if queue is None else queue.head_attempts,
        "next_attempt_at": None if queue is None else iso(queue.head_next_attempt_at),
        "last_error": None if queue is None else queue.last_error,
        "disabled": None
        if disabled is None
        else {
            "reason": disabled.reason,
            "since": iso(disabled.disabled_at),
            "recheck_at": iso(disabled.recheck_at),
        },
    }


def _dead_json(item: OutboxItem, now: float) -> dict[str, object]:
    return {
        "id": item.id,
        "channel": item.channel,
        "dedup_key": item.dedup_key,
        "event": event_word(item),
        "reason": item.last_error,
        "attempts": item.attempts,
        "dead_at": iso(item.dead_at),
        "dead_age_s": None if item.dead_at is None else round(now - item.dead_at, 3),
    }


def render_requeue(result: RequeueResult) -> str:
    lines = [
        f"requeued #{item.id} {item.channel} {item.dedup_key or '(no incident)'} {event_word(item)}"
        for item in result.items
    ]
    lines += [f"enabled channel {name} (it tries its oldest page now)" for name in result.enabled]
    if not lines:
        lines.append("nothing to requeue")
    return "\n".join(lines)


def release_ref(stored: StoredRelease) -> str:
    release = stored.release
    ref = ecosystems.get(release.ecosystem).ref(release.name, release.version)
    return f"{release.ecosystem.value}:{ref}"


def render_releases(
    releases: Sequence[StoredRelease], fmt: str = "text", *, now: float, total: int | None = None
) -> str:
    more = 0 if total is None else max(0, total - len(releases))
    if fmt == "json":
        return json.dumps(
            {
                "releases": [
                    {
                        "id": r.id,
                        **_release_dict(r),
                        "next_attempt_at": iso(r.next_attempt_at),
                        "created_at": iso(r.created_at),
                        "updated_at": iso(r.updated_at),
                    }
                    for r in releases
                ],
                "not_shown": more,
            },
            indent=2,
            ensure_ascii=False,
        )
    lines = []
    for r in releases:
        extra = ", baseline" if r.baseline else ""
        due = ""
        if r.state is ReleaseState.PENDING:
            wait = (r.next_attempt_at or 0.0) - now
            due = f", next try in {span(wait)}" if wait > 0 else ", due now"
        error = f" — {_one_line(r.last_error)}" if r.last_error else ""
        lines.append(
            f"#{r.id} {release_ref(r)}: {r.state.value} (attempts {r.attempts}{extra}, "
            f"updated {ago(r.updated_at, now)}{due}){error}"
        )
    if not releases:
        lines.append("(none)")
    if more:
        lines.append(f"... and {more} more (raise --limit)")
    if any(r.state is ReleaseState.FAILED for r in releases):
        lines.append("retry with: watcher releases retry --config FILE (ID... | --all-failed)")
    return "\n".join(lines)


def render_retry(result: RetryResult) -> str:
    lines = [f"retrying #{r.id} {release_ref(r)}" for r in result.retried]
    return "\n".join(lines) if lines else "nothing to retry"


# -- watcher runbook / test-alert -----------------------------------------------------------------


def render_runbook(book: StoredRunbook, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(
            {
                "ecosystem": book.ecosystem.value,
                "package": book.name,
                "version": book.version,
                "source": book.source,
                "incident": None
                if book.state is None
                else {
                    "state": book.state,
                    "owner": book.owner,
                    "opened_at": iso(book.opened_at),
                    "resolution": book.resolution,
                },
                "steps": [{"text": s.text, "command": s.command, "url": s.url} for s in book.steps],
            },
            indent=2,
            ensure_ascii=False,
        )
    ref = ecosystems.get(book.ecosystem).ref(book.name, book.version)
    origin = "as paged" if book.source == "incident" else "rebuilt now from the stored findings"
    lines = [f"Runbook for {book.ecosystem.value} {ref} ({origin})"]
    if book.state is not None:
        what = f"incident {book.state}, owner {book.owner}, opened {iso(book.opened_at)}"
        if book.resolution:
            what += f", resolved: {book.resolution}"
        lines.append(what)
    for number, step in enumerate(book.steps, 1):
        lines.append(f"{number}. {step.text}")
        if step.command:
            lines += [f"     $ {line}" for line in step.command.splitlines()]
        if step.url:
            lines.append(f"     {step.url}")
    return "\n".join(lines)


def render_outcome(outcome: ChannelOutcome) -> str:
    """One `watcher test-alert` line: the channel, what it answered and, on failure, why."""
    result = outcome.result
    status = f" (HTTP {result.status})" if result.status is not None else ""
    reason = f": {result.reason}" if result.reason and not result.ok else ""
    return f"{outcome.channel}: {result.outcome.value}{status}{reason}"


def render_fingerprint_info(path: object, header: IndexHeader, size: int, fmt: str) -> str:
    """`watcher fingerprint info`: counts and parameters; an index holds nothing else."""
    data = {"file": str(path), "bytes": size, **asdict(header)}
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    params = header.params
    winnow = f"k={params.winnow_k} tokens, window {params.winnow_w}" if params.winnow_k else "off"
    return "\n".join(
        [
            f"{path}: fingerprint index, format version {header.version}",
            f"  name:      {header.name}",
            f"  key id:    {header.key_id}",
            f"  created:   {header.created}",
            f"  hash:      {header.hash}",
            f"  files:     {header.files:,}",
            f"  lines:     {header.lines:,} line hashes (lines of at least {params.line_floor} "
            f"characters without whitespace, in at most {params.common_files} files)",
            f"  winnowing: {header.winnow:,} fingerprints ({winnow})",
            f"  size:      {size:,} bytes",
            *(
                []
                if header.version == INDEX_VERSION
                else [
                    f"  this watcher matches format version {INDEX_VERSION} only: rebuild the "
                    "index with `watcher fingerprint build`"
                ]
            ),
        ]
    )
