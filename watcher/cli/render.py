"""Render a scan `Report` for people (text), programs (JSON, the DESIGN contract) and code-scanning
UIs (SARIF 2.1.0).

Rendering is pure: no I/O, no logging. Checks already redact secret values in messages and
evidence; this module adds nothing from the archive beyond what findings carry. Text output escapes
control characters, since paths and messages come from untrusted package content and could
otherwise drive the reader's terminal.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import orjson

from watcher.model import ArtifactSummary, Finding, Report, Severity

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
_HINT_MAX = 120
_HINT_ITEM_MAX = 40
_HINT_LIST_ITEMS = 3
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS  # evidence may be keyed by numbers


# -- JSON ---------------------------------------------------------------------------------------


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


# -- text ---------------------------------------------------------------------------------------


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
    if hint:
        detail += f"  [{hint}]"
    return [head, detail]


def evidence_hint(evidence: dict[str, Any]) -> str:
    """A one-line taste of the evidence: scalars as key=value, lists shortened, nested data skipped."""
    parts: list[str] = []
    for key, value in evidence.items():
        if isinstance(value, bool | int | float):
            parts.append(f"{key}={_number(value)}")
        elif isinstance(value, str) and value:
            parts.append(f"{key}={_shorten(value)}")
        elif isinstance(value, list | tuple) and value:
            shown = ", ".join(_shorten(str(item)) for item in value[:_HINT_LIST_ITEMS])
            more = len(value) - _HINT_LIST_ITEMS
            parts.append(f"{key}={shown}" + (f" +{more}" if more > 0 else ""))
    hint = "; ".join(parts)
    if len(hint) > _HINT_MAX:
        hint = hint[: _HINT_MAX - 1] + "…"
    return _clean(hint)


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


def _shorten(text: str) -> str:
    return text if len(text) <= _HINT_ITEM_MAX else text[: _HINT_ITEM_MAX - 1] + "…"


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


# -- SARIF --------------------------------------------------------------------------------------


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
