"""`unexpected-content`: kinds of files the previous release did not ship — TypeScript sources,
tests, coverage reports, docs drafts, CI configuration. Each kind that appears is one finding,
listing the new paths, so a build that started shipping `src/` is seen at once."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace

from watcher.model import Category, Finding, Manifest, Severity
from watcher.scanning.archive import NestedPackage
from watcher.scanning.checks.base import ComparisonCheck, ScanOptions
from watcher.scanning.checks.locations import Location, location_evidence, location_of

# (kind, pattern on the path, severity). First match wins.
_KINDS: tuple[tuple[str, re.Pattern[str], Severity], ...] = (
    ("TypeScript sources", re.compile(r"(?<!\.d)\.(ts|tsx|mts|cts)$"), Severity.MEDIUM),
    (
        "coverage reports",
        re.compile(r"(^|/)(coverage|htmlcov|\.nyc_output)/|(^|/)lcov\.info$|(^|/)\.coverage$"),
        Severity.MEDIUM,
    ),
    (
        "tests",
        re.compile(
            r"(^|/)(tests?|__tests__|spec)/|\.(test|spec)\.[cm]?[jt]sx?$|(^|/)test_[^/]+\.py$|_test\.py$"
        ),
        Severity.LOW,
    ),
    (
        "docs drafts and notes",
        re.compile(
            r"(^|/)(drafts?|notes|scratch|internal-docs?)/|\.draft\.md$|(^|/)(TODO|NOTES)(\.md|\.txt)?$",
            re.IGNORECASE,
        ),
        Severity.MEDIUM,
    ),
    (
        "CI and build configuration",
        re.compile(
            r"(^|/)(\.github|\.circleci|\.gitlab-ci\.yml|\.buildkite|Jenkinsfile|\.travis\.yml)"
        ),
        Severity.LOW,
    ),
    ("source directories", re.compile(r"^[^/]+/src/"), Severity.LOW),
)


def classify(path: str) -> tuple[str, Severity] | None:
    for kind, pattern, severity in _KINDS:
        if pattern.search(path):
            return kind, severity
    return None


class UnexpectedContentCheck(ComparisonCheck):
    category = Category.UNEXPECTED_CONTENT

    def compare(self, target: Manifest, baseline: Manifest, options: ScanOptions) -> list[Finding]:
        shipped_before = {kind for path in baseline.files if (kind := _kind(path))}
        new_by_kind: dict[tuple[str, Severity], list[str]] = defaultdict(list)
        for path in sorted(target.files):
            found = classify(path)
            if found and found[0] not in shipped_before and path not in baseline.files:
                new_by_kind[found].append(path)
        return [
            Finding(
                rule="new-kind-of-content",
                category=self.category,
                severity=severity,
                path=paths[0],
                message=f"{kind} shipped for the first time: {len(paths):,} files",
                key=kind,
                evidence={"kind": kind, "files": len(paths), "examples": paths[:10]},
            )
            for (kind, severity), paths in sorted(new_by_kind.items())
        ]


def _kind(path: str) -> str | None:
    found = classify(path)
    return found[0] if found else None


def nested_package_findings(nested: list[NestedPackage], findings: list[Finding]) -> list[Finding]:
    """`nested-package-archive`: a package tarball (or wheel, sdist) of this or another package
    inside the artifact — most often an earlier `npm pack` left in the package root. Medium; high
    when something at medium or above was found inside it; low in the package's tests (fixture
    packages a test suite installs: Django's `tests/**/eggs/*.egg`)."""
    out: list[Finding] = []
    for package in nested:
        inside = package.path + "!"
        carried = sum(
            1
            for f in findings
            if f.path.startswith(inside) and f.severity.rank >= Severity.MEDIUM.rank
        )
        location = location_of(package.path)
        severity = Severity.HIGH if carried else Severity.MEDIUM
        if location is Location.TESTS:
            severity = Severity.LOW
        out.append(
            Finding(
                rule="nested-package-archive",
                category=Category.UNEXPECTED_CONTENT,
                severity=severity,
                path=package.path,
                message=f"a {package.ecosystem} package archive ships inside this one"
                + (f", carrying {carried:,} findings at medium or above" if carried else "")
                + (" (in the package's tests)" if location is Location.TESTS else ""),
                evidence={"ecosystem": package.ecosystem, "findings_inside": carried}
                | location_evidence(location),
            )
        )
    return out


def fixture_archive_anomalies(anomalies: list[Finding]) -> list[Finding]:
    """Anomalies inside an archive nested in the package's tests are low: no installer extracts a
    nested archive, and a test suite ships traversal archives on purpose to test its own safe
    extraction (Django's `tests/utils_tests/traversal_archives/`). The outer archive's own
    anomalies keep their severity wherever they are."""
    out = []
    for finding in anomalies:
        location = location_of(finding.path.rsplit("!", 1)[0]) if "!" in finding.path else None
        if location is Location.TESTS and finding.severity.rank > Severity.LOW.rank:
            out.append(
                replace(
                    finding,
                    severity=Severity.LOW,
                    message=f"{finding.message} (an archive in the package's tests)",
                    evidence={**finding.evidence, **location_evidence(location)},
                )
            )
        else:
            out.append(finding)
    return out
