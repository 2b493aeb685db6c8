"""Policy: threshold, allow rules (and their expiry), and the new-vs-old rule."""

from __future__ import annotations

from datetime import date

import structlog

from watcher.config import AllowRule
from watcher.incidents.policy import decide
from watcher.model import Category, Finding, Severity

TODAY = date(2026, 11, 29)


def finding(
    rule: str, severity: Severity, path: str = "package/a", fp: str | None = None
) -> Finding:
    return Finding(
        rule=rule,
        category=Category.SECRET,
        severity=severity,
        path=path,
        message="m",
        fingerprint=fp or rule,
    )


def test_threshold_decides_what_pages() -> None:
    found = [
        finding("a", Severity.CRITICAL),
        finding("b", Severity.HIGH),
        finding("c", Severity.MEDIUM),
    ]
    decision = decide(found, package="x", page_at=Severity.HIGH, today=TODAY)
    assert [f.rule for f in decision.page] == ["a", "b"]
    assert [f.rule for f in decision.below_threshold] == ["c"]
    assert decide(found, package="x", page_at=Severity.CRITICAL, today=TODAY).pages
    assert not decide(found[2:], package="x", page_at=Severity.HIGH, today=TODAY).pages


def test_known_findings_page_only_when_their_severity_rose() -> None:
    found = [
        finding("same", Severity.HIGH),
        finding("rose", Severity.CRITICAL),
        finding("fresh", Severity.HIGH),
    ]
    previous = {"same": Severity.HIGH, "rose": Severity.HIGH}
    decision = decide(found, package="x", page_at=Severity.HIGH, today=TODAY, previous=previous)
    assert [f.rule for f in decision.page] == ["rose", "fresh"]
    assert [f.rule for f in decision.known] == ["same"]


def test_allow_rules_match_package_rule_and_path_and_expire() -> None:
    allow = [
        AllowRule(
            package="@acme/*",
            rule="sourcemap-*",
            path="package/dist/*.map",
            reason="public OSS build",
            expires=date(2027, 1, 1),
        ),
        AllowRule(
            package="@acme/cli", rule="npmrc-file", reason="old exception", expires=date(2026, 1, 1)
        ),
    ]
    found = [
        finding("sourcemap-embedded-sources", Severity.CRITICAL, "package/dist/cli.js.map"),
        finding("sourcemap-embedded-sources", Severity.CRITICAL, "package/lib/other.js.map"),
        finding("npmrc-file", Severity.CRITICAL, "package/.npmrc"),
    ]
    with structlog.testing.capture_logs() as logs:
        decision = decide(
            found, package="@acme/cli", page_at=Severity.HIGH, allow=allow, today=TODAY
        )
    assert [(f.path, reason) for f, reason in decision.allowed] == [
        ("package/dist/cli.js.map", "public OSS build")
    ]
    assert sorted(f.path for f in decision.page) == ["package/.npmrc", "package/lib/other.js.map"]
    assert [entry["event"] for entry in logs] == ["allow_rule_expired"]
    other = decide(found[:1], package="@other/cli", page_at=Severity.HIGH, allow=allow, today=TODAY)
    assert other.pages
