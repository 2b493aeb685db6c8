"""Findings → the decision to page. Severity threshold, allow rules with a reason and an expiry,
and the new-vs-old rule: a finding the previous release already had pages only if its severity rose.
Pure: the daemon stores the decision and queues the page."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import structlog

from watcher.model import Finding, Severity

log = structlog.get_logger("watcher.incidents.policy")


class AllowRule(Protocol):
    """What policy needs of an allow rule (config.AllowRule satisfies it)."""

    reason: str
    expires: date

    def active_on(self, day: date) -> bool: ...
    def matches(self, package: str, rule: str, path: str) -> bool: ...


@dataclass(slots=True)
class Decision:
    page: list[Finding] = field(default_factory=list)  # what the incident carries
    allowed: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, reason)
    known: list[Finding] = field(default_factory=list)  # already shipped, severity not risen
    below_threshold: list[Finding] = field(default_factory=list)

    @property
    def pages(self) -> bool:
        return bool(self.page)


def decide(
    findings: Iterable[Finding],
    *,
    package: str,
    page_at: Severity,
    allow: Sequence[AllowRule] = (),
    today: date,
    previous: Mapping[str, Severity] | None = None,
) -> Decision:
    """`previous` maps the previous release's finding fingerprints to their severities (None when
    there is no previous release: everything is new)."""
    decision = Decision()
    for finding in findings:
        if not finding.severity.at_least(page_at):
            decision.below_threshold.append(finding)
            continue
        before = previous.get(finding.fingerprint) if previous is not None else None
        if before is not None and finding.severity.rank <= before.rank:
            decision.known.append(finding)
            continue
        reason = _allowed_by(finding, package, allow, today)
        if reason is not None:
            decision.allowed.append((finding, reason))
            continue
        decision.page.append(finding)
    return decision


def _allowed_by(
    finding: Finding, package: str, allow: Sequence[AllowRule], today: date
) -> str | None:
    for rule in allow:
        if not rule.matches(package, finding.rule, finding.path):
            continue
        if rule.active_on(today):
            return rule.reason
        log.warning(
            "allow_rule_expired",
            package=package,
            rule=finding.rule,
            path=finding.path,
            expired_on=rule.expires.isoformat(),
            reason=rule.reason,
        )
    return None
