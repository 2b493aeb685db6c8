"""Values the contract tests store: releases, findings, manifests, incidents, pages."""

from __future__ import annotations

from datetime import UTC, datetime

from watcher.model import (
    AlertEvent,
    Artifact,
    Category,
    Ecosystem,
    EventType,
    Finding,
    Incident,
    Manifest,
    ManifestEntry,
    Release,
    Severity,
    incident_key,
)
from watcher.store.types import Delivery

T0 = 1_800_000_000.0  # a fixed "now" so no test depends on the clock


def rel(name: str, version: str, *files: str, eco: Ecosystem = Ecosystem.NPM) -> Release:
    artifacts = tuple(
        Artifact(filename=f, url=f"http://127.0.0.1:1/{f}", size=10, sha256="0" * 64)
        for f in (files or (f"{name}-{version}.tgz",))
    )
    return Release(
        ecosystem=eco,
        name=name,
        version=version,
        published_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        artifacts=artifacts,
    )


def finding(
    rule: str = "sourcemap-embedded-sources", severity: Severity = Severity.CRITICAL
) -> Finding:
    return Finding(
        rule=rule,
        category=Category.SOURCE_MAP,
        severity=severity,
        path="package/cli.js.map",
        message="source map embeds 3 first-party source files",
        line=None,
        evidence={"first_party_files": 3},
        key="k",
        severity_if_new=Severity.HIGH,
        new=True,
        fingerprint="f" * 64,
    )


def manifest(*paths: str, fp: str = "f" * 64) -> Manifest:
    return Manifest(
        files={p: ManifestEntry(size=len(p), sha256="a" * 64) for p in paths},
        fingerprints={fp: Severity.CRITICAL},
    )


def incident(
    version: str = "1.0.1",
    owner: str = "platform",
    *,
    name: str = "@acme/cli",
    eco: Ecosystem = Ecosystem.NPM,
) -> Incident:
    return Incident(
        dedup_key=incident_key(eco, name, version),
        ecosystem=eco,
        name=name,
        version=version,
        owner=owner,
        opened_at=datetime.fromtimestamp(T0, UTC),
        findings=[finding("x")],
    )


def pages(
    *channels: str, event: EventType = EventType.OPENED, of: Incident | None = None
) -> list[Delivery]:
    """One event of `of` (default: `incident()`), one delivery of it per channel."""
    subject = of if of is not None else incident()
    page = AlertEvent(event, subject, f"{subject.dedup_key}#{event.value}")
    return [Delivery(channel=c, event=page) for c in channels]
