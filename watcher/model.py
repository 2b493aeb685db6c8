"""The typed values that flow between stages: releases, archive members, findings and reports."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

_ECOSYSTEM_NAME = re.compile(r"[a-z][a-z0-9-]*")


_INTERNED: dict[str, Ecosystem] = {}  # name → its one Ecosystem object (written once per name)


class _Named:
    """The built-in units' names as class attributes (for tests and the units)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type[Ecosystem]) -> Ecosystem:
        return owner(self.name)


class Ecosystem(str):
    """An ecosystem's registered name ("npm", "pypi", or one a plugin registers): the key every
    stage carries. What a name means (registry, feeds, versions, runbook) is its unit's business
    under `watcher.ecosystems`; this type only says "a well-formed ecosystem name"."""

    __slots__ = ()

    NPM = _Named("npm")
    PYPI = _Named("pypi")

    def __new__(cls, value: object) -> Ecosystem:
        if isinstance(value, Ecosystem):
            return value
        if not isinstance(value, str) or not _ECOSYSTEM_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an ecosystem name")
        # one object per name (as an enum member was), so `is` holds wherever it is still used
        known = _INTERNED.get(value)
        if known is None:
            known = _INTERNED.setdefault(value, super().__new__(cls, value))
        return known

    @property
    def value(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Ecosystem({self.value!r})"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse: info=0 … critical=4."""
        return _SEVERITY_RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class Category(StrEnum):
    SOURCE_MAP = "source-map"
    SECRET = "secret"  # noqa: S105 - a category name, not a credential
    SENSITIVE_FILE = "sensitive-file"
    VCS_METADATA = "vcs-metadata"
    INSTALL_HOOK = "install-hook"
    INTERNAL_REFERENCE = "internal-reference"
    SIZE_ANOMALY = "size-anomaly"
    UNEXPECTED_CONTENT = "unexpected-content"
    PROVENANCE = "provenance"
    ARCHIVE_ANOMALY = "archive-anomaly"


@dataclass(frozen=True, slots=True)
class Provenance:
    """How the registry document says one file was published: npm `dist.attestations` and
    `_npmUser`, PyPI's PEP 740 `provenance` URL. Kept with the release so the next release can be
    compared with it. An artifact's `provenance` is None when its document does not carry these
    fields at all (mirrors and local registries strip them): that means unknown, never "none"."""

    attested: bool = False  # the document lists attestations for this file
    url: str | None = None  # where they are (npm attestations URL, PyPI integrity API URL)
    predicate_types: tuple[str, ...] = ()  # npm `dist.attestations.provenance.predicateType`
    publisher: str | None = None  # npm `_npmUser.name`
    trusted_publisher: str | None = None  # npm `_npmUser.trustedPublisher.id` ("github"…)
    trusted_config: str | None = None  # its `oidcConfigId`: which CI configuration published

    def to_dict(self) -> dict[str, Any]:
        return {
            "attested": self.attested,
            "url": self.url,
            "predicate_types": list(self.predicate_types),
            "publisher": self.publisher,
            "trusted_publisher": self.trusted_publisher,
            "trusted_config": self.trusted_config,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Provenance | None:
        """The inverse of `to_dict`; None for anything else (older state, null)."""
        if not isinstance(data, dict):
            return None

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) and value else None

        types = data.get("predicate_types")
        return cls(
            attested=bool(data.get("attested")),
            url=text("url"),
            predicate_types=tuple(t for t in types if isinstance(t, str))
            if isinstance(types, list)
            else (),
            publisher=text("publisher"),
            trusted_publisher=text("trusted_publisher"),
            trusted_config=text("trusted_config"),
        )


@dataclass(frozen=True, slots=True)
class AttestationIdentity:
    """Who built a file, as its provenance attestation says: npm's SLSA provenance
    (`buildDefinition.externalParameters.workflow`, or v0.2 `invocation.configSource`), PyPI's
    PEP 740 Trusted Publisher. Read from the bundle, not verified (no transparency-log root is
    reachable offline): it says what the bundle claims."""

    repository: str | None  # as the attestation names it (`https://github.com/acme/sdk`)
    workflow: str | None  # the workflow file (`.github/workflows/release.yml`, `release.yml`)
    ref: str | None = None  # `refs/tags/v1.2.3` where the attestation gives it
    kind: str = "slsa"  # `slsa`, or the PyPI publisher kind (`GitHub`, `GitLab`, …)


@dataclass(frozen=True, slots=True)
class Artifact:
    """One downloadable file of a release (npm has one tarball; a PyPI release has several files)."""

    filename: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None
    integrity: str | None = None  # npm `dist.integrity` (SRI) or `sha1-<hex>` from `dist.shasum`
    provenance: Provenance | None = None  # None: the registry's document did not say


@dataclass(frozen=True, slots=True)
class Release:
    ecosystem: Ecosystem
    name: str
    version: str
    published_at: datetime | None = None
    artifacts: tuple[Artifact, ...] = ()


class MemberKind(Enum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    DEVICE = "device"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Member:
    """One archive entry as the reader saw it. `data` is None when the content was not read.

    `size` is what was read (0 when the content was not); what the archive's header claimed is
    `declared_size`, evidence only, clamped to a signed 64-bit integer (a zip64 or base-256 tar
    header can claim more than any writer can represent)."""

    path: str
    kind: MemberKind
    size: int
    data: bytes | bytearray | None = None  # a bytearray when read from a tar (filled in place)
    link_target: str | None = None
    declared_size: int = 0


@dataclass(slots=True)
class Finding:
    rule: str
    category: Category
    severity: Severity
    path: str
    message: str
    line: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    # What distinguishes this finding from others of the same rule at the same path (a redacted
    # match, a script name…). Part of the fingerprint, never a secret value.
    key: str = ""
    # Severity to use when the finding is new compared with the baseline (None: unchanged).
    severity_if_new: Severity | None = None
    new: bool = True
    fingerprint: str = ""

    def summary_dict(self) -> dict[str, Any]:
        """The fields every reader of a finding is shown (JSON report, every page). Evidence and
        fingerprint are left to those that add them on purpose."""
        return {
            "rule": self.rule,
            "category": self.category.value,
            "severity": self.severity.value,
            "path": self.path,
            "line": self.line,
            "new": self.new,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ArtifactSummary:
    """The `target` / `baseline` object of a report."""

    ecosystem: str | None
    name: str | None
    version: str | None
    filename: str
    sha256: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    size: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    """What one release shipped: the baseline the next release is compared with."""

    files: dict[str, ManifestEntry] = field(default_factory=dict)  # stable path -> entry
    fingerprints: dict[str, Severity] = field(default_factory=dict)  # fingerprint -> severity
    # digests of the first-party sources embedded in the release's source maps: a map whose
    # sources the baseline already embedded is not new, whatever its path
    sources: set[str] = field(default_factory=set)
    # What the what-changed rules compare (watcher.scanning.checks.changes): kind → values
    # (dependencies, endpoint hosts, obfuscation signals, native binaries, setup.py side
    # effects). None for a manifest stored before they were kept: unknown, so nothing is new.
    facts: dict[str, set[str]] | None = None

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())


@dataclass(slots=True)
class Credential:
    """A found credential's raw value, held in memory between the secret check and the opt-in
    liveness check (`watcher.verify`) only: never rendered, logged or stored. `companion` is the
    other half a provider needs (an AWS key id, a Twilio account SID)."""

    finding: Finding
    provider: str
    value: str = field(repr=False)
    companion: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class Report:
    target: ArtifactSummary
    findings: list[Finding]
    manifest: Manifest
    baseline: ArtifactSummary | None = None
    elapsed_s: float = 0.0
    bytes_read: int = 0
    # kept only when the scan was asked to (ScanOptions.keep_credentials); emptied once verified
    credentials: list[Credential] = field(default_factory=list, repr=False)

    def worst(self) -> Severity | None:
        if not self.findings:
            return None
        return max((finding.severity for finding in self.findings), key=lambda s: s.rank)


def stable_path(path: str, version: str | None) -> str:
    """The path with the release's version replaced, so `pkg-1.0.dist-info/RECORD` in one release
    and `pkg-1.1.dist-info/RECORD` in the next count as the same file."""
    if not version:
        return path
    return re.sub(rf"(?<![0-9A-Za-z.]){re.escape(version)}(?![0-9A-Za-z])", "{version}", path)


def fingerprint(rule: str, path: str, key: str) -> str:
    return hashlib.sha256(f"{rule}\0{path}\0{key}".encode()).hexdigest()


def log_keys(item: Release | Incident) -> dict[str, str]:
    """The stable log keys of the package version a release or an incident is about: `ecosystem`,
    `package`, `version`."""
    return {"ecosystem": item.ecosystem.value, "package": item.name, "version": item.version}


def origin_finding(
    rule: str,
    severity: Severity,
    message: str,
    *,
    key: str,
    evidence: dict[str, Any],
    path: str = "",
) -> Finding:
    """A finding about where a release came from (its publisher, build identity, tag, the team's
    approval) rather than about a file's content: category provenance, no path unless one file is
    concerned, fingerprinted here from rule, path and key (it is made past the scanner's step that
    fingerprints findings)."""
    return Finding(
        rule=rule,
        category=Category.PROVENANCE,
        severity=severity,
        path=path,
        message=message,
        key=key,
        evidence=evidence,
        fingerprint=fingerprint(rule, path, key),
    )


@dataclass(frozen=True, slots=True)
class RunbookStep:
    """One containment step: a sentence and, where one exists, the exact command or URL."""

    text: str
    command: str | None = None
    url: str | None = None


class EventType(StrEnum):
    """What happened to an incident: the one event enum (channels, the outbox, the store)."""

    OPENED = "incident.opened"
    UPDATED = "incident.updated"  # new findings, or a mitigation that is not containment
    RESOLVED = "incident.resolved"


class IncidentState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


def incident_key(ecosystem: Ecosystem | str, name: str, version: str) -> str:
    """The dedup key every channel gets, and the store's key for the incident:
    `watcher/<ecosystem>/<name>/<version>`."""
    return f"watcher/{Ecosystem(ecosystem).value}/{name}/{version}"


@dataclass(slots=True)
class Incident:
    """One bad release's incident: what every channel gets, and what the store keeps. Findings
    are already redacted. `id` and `release_id` are the store's (None until it is stored)."""

    dedup_key: str
    ecosystem: Ecosystem
    name: str
    version: str
    owner: str
    opened_at: datetime
    findings: list[Finding]
    published_at: datetime | None = None
    runbook: list[RunbookStep] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # label -> URL (registry page, file view)
    resolved_at: datetime | None = None
    resolution: str | None = None  # what contained it, in words
    test: bool = False  # `watcher test-alert`: clearly marked, never a real page
    id: int | None = None
    release_id: int | None = None

    @property
    def state(self) -> IncidentState:
        return IncidentState.OPEN if self.resolved_at is None else IncidentState.RESOLVED

    @staticmethod
    def key_for(ecosystem: Ecosystem | str, name: str, version: str) -> str:
        return incident_key(ecosystem, name, version)

    def worst(self) -> Severity:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=Severity.INFO)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An incident's opening, update or resolution, with the incident as it was then: what each
    channel is sent (the outbox keeps one delivery of it per channel)."""

    type: EventType
    incident: Incident
    event_id: str  # stable across retries: the receivers' idempotency key
    message: str | None = None  # for updates and resolutions: what happened

    @property
    def kind(self) -> str | None:
        """An update's kind: the `:<kind>` its event id ends with (`<dedup key>#<type>:<kind>`,
        watcher.incidents.lifecycle.event_id_for); None for other events."""
        head, sep, kind = self.event_id.rpartition(f"#{EventType.UPDATED.value}:")
        return kind if sep and head and self.type is EventType.UPDATED else None

    @property
    def brief(self) -> bool:
        """An update every channel posts as one line (the release line only moved on)."""
        return self.kind in BRIEF_UPDATE_KINDS


# The next ordinary release took the dist-tag off a bad version: worth one line, not a page.
SUPERSEDED = "superseded"
BRIEF_UPDATE_KINDS = frozenset({SUPERSEDED})
