"""Provenance identity, not only presence: who built each file, as its attestation bundle claims.

At scan time the service reads each attested file's attestations (npm: the registry's
attestations endpoint for `name@version`, as the npm CLI reads it; PyPI: the Integrity API's
PEP 740 provenance object) through the ecosystem unit (`attestation_url`,
`attestation_identity`), keeps the identities in the manifest (`Manifest.facts`, kind
`provenance-identity`) and compares them with `expect.provenance`, or when unset with the baseline
release's: `provenance-identity-changed` (high). Where identities are known on both sides it
supersedes `publisher-changed` (one event, one finding). The bundles are read, not verified:
no transparency-log root is reachable offline, so a finding says what the bundle claims.

Attestations can reach the registry after the release is first seen (replication, a mirror that
lags). A `provenance-lost` at scan time, or an attested file whose bundle cannot be read yet, is
not judged at once: an origin check (kind `attestations`) re-reads the files' attestations every
`policy.attestation_grace / 10` until `policy.attestation_grace` after first sight, and only then
raises what is still missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from watcher.ecosystems.base import EcosystemUnit
from watcher.ecosystems.http import HttpStatusError, RegistryHttp
from watcher.errors import RegistryError
from watcher.intent.model import ProvenanceExpectation
from watcher.model import (
    AttestationIdentity,
    Finding,
    Manifest,
    Release,
    Severity,
    log_keys,
    origin_finding,
)

log = structlog.get_logger(__name__)

RULE = "provenance-identity-changed"
CHECK_KIND = "attestations"
IDENTITY_FACTS = "provenance-identity"
LOST = "provenance-lost"
PUBLISHER_CHANGED = "publisher-changed"
NOTE = "read from the attestation bundle, not verified (no transparency-log root offline)"


def attestation_interval(grace_s: float) -> float:
    """How often late attestations are re-read within the grace."""
    return max(1.0, grace_s / 10)


# ------------------------------------------------------------------------------- reading


async def read_identity(
    http: RegistryHttp, unit: EcosystemUnit, url: str
) -> AttestationIdentity | None:
    """The identity the attestations at `url` claim; None when there are none yet (404) or they
    name nobody. Other errors propagate (a registry that cannot be read says nothing)."""
    try:
        response = await http.get_json(url, ecosystem=unit.name.value)
    except HttpStatusError as exc:
        if exc.status in (404, 410):
            return None
        raise
    return unit.attestation_identity(response.data)


async def read_release(
    http: RegistryHttp, unit: EcosystemUnit, registry_url: str, release: Release
) -> dict[str, AttestationIdentity | None]:
    """filename → identity of each file the registry's document says is attested (None: its
    bundle cannot be read yet). A read that fails is logged and left out."""
    found: dict[str, AttestationIdentity | None] = {}
    for artifact in release.artifacts:
        if artifact.provenance is None or not artifact.provenance.attested:
            continue
        url = unit.attestation_url(registry_url, release, artifact)
        if url is None:
            continue
        try:
            found[artifact.filename] = await read_identity(http, unit, url)
        except RegistryError as exc:
            log.warning(
                "attestations_unreadable",
                **log_keys(release),
                file=artifact.filename,
                error=str(exc)[:300],
            )
    return found


# ---------------------------------------------------------------------------- comparing


def normal_repository(repository: str | None) -> str | None:
    """`git+https://github.com/Acme/SDK.git` and `acme/sdk` alike: host of the big forges,
    scheme, `.git` and case off."""
    if not repository:
        return None
    text = repository.strip().lower().removeprefix("git+")
    text = re.sub(r"^[a-z]+://", "", text)
    text = re.sub(r"^(?:www\.)?(?:github\.com|gitlab\.com)/", "", text)
    return text.removesuffix("/").removesuffix(".git")


def normal_workflow(workflow: str | None) -> str | None:
    """`.github/workflows/release.yml@refs/…` and `release.yml` alike: the file name."""
    if not workflow:
        return None
    return workflow.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _same(identity: AttestationIdentity, other: AttestationIdentity) -> bool:
    return normal_repository(identity.repository) == normal_repository(
        other.repository
    ) and normal_workflow(identity.workflow) == normal_workflow(other.workflow)


def _matches(identity: AttestationIdentity, expected: ProvenanceExpectation) -> bool:
    if expected.repository is not None and normal_repository(
        identity.repository
    ) != normal_repository(expected.repository):
        return False
    return expected.workflow is None or normal_workflow(identity.workflow) == normal_workflow(
        expected.workflow
    )


def _describe(identity: AttestationIdentity) -> str:
    where = identity.repository or "an unnamed repository"
    what = f" workflow {identity.workflow}" if identity.workflow else ""
    ref = f" at {identity.ref}" if identity.ref else ""
    return f"{where}{what}{ref}"


def identity_findings(
    now: Mapping[str, AttestationIdentity],
    *,
    expected: ProvenanceExpectation | None,
    before: Sequence[AttestationIdentity],
    version: str,
    baseline_version: str | None,
) -> list[Finding]:
    """At most one `provenance-identity-changed`: the files whose identity differs from
    `expect.provenance`, or when that is unset from every identity the baseline had."""
    if expected is not None:
        wrong = {name: i for name, i in now.items() if not _matches(i, expected)}
        against = " ".join(
            part
            for part in (
                f"repository {expected.repository}" if expected.repository else "",
                f"workflow {expected.workflow}" if expected.workflow else "",
            )
            if part
        )
        reference = f"expect.provenance ({against})"
    elif before:
        wrong = {name: i for name, i in now.items() if not any(_same(i, b) for b in before)}
        reference = f"{baseline_version or 'the previous release'} ({_describe(before[0])})"
    else:
        return []
    if not wrong:
        return []
    first = next(iter(wrong.values()))
    key = f"{normal_repository(first.repository)}:{normal_workflow(first.workflow)}"
    return [
        origin_finding(
            RULE,
            Severity.HIGH,
            f"{version} was built by {_describe(first)}, not as {reference}: a hijacked or "
            f"foreign workflow published it ({NOTE})",
            key=key,
            evidence={
                "files": sorted(wrong),
                "repository": first.repository,
                "workflow": first.workflow,
                "ref": first.ref,
                "publisher_kind": first.kind,
                "expected": {"repository": expected.repository, "workflow": expected.workflow}
                if expected is not None
                else None,
                "baseline": [
                    {"repository": b.repository, "workflow": b.workflow, "ref": b.ref}
                    for b in before[:5]
                ],
                "verified": False,
            },
        )
    ]


# ----------------------------------------------------------------------------- manifests


def identity_facts(now: Mapping[str, AttestationIdentity]) -> set[str]:
    return {
        "\t".join(
            (i.repository or "", i.workflow or "", i.ref or "", i.kind, filename.replace("\t", " "))
        )
        for filename, i in now.items()
    }


def identities_of(manifest: Manifest | None) -> list[AttestationIdentity]:
    """The identities a stored manifest kept (none for one stored before they were)."""
    if manifest is None or manifest.facts is None:
        return []
    found = []
    for fact in sorted(manifest.facts.get(IDENTITY_FACTS, ())):
        repository, workflow, ref, kind, _ = (fact.split("\t") + [""] * 5)[:5]
        found.append(
            AttestationIdentity(repository or None, workflow or None, ref or None, kind or "slsa")
        )
    return found


# ------------------------------------------------------------------------------ at scan time


@dataclass(slots=True)
class AtScan:
    """What the scan-time read decided: findings to add, and what to re-read later."""

    findings: list[Finding] = field(default_factory=list)
    deferred: dict[str, Any] | None = None  # the `attestations` check's params


async def at_scan(
    http: RegistryHttp,
    unit: EcosystemUnit,
    registry_url: str,
    release: Release,
    *,
    findings: list[Finding],
    manifest: Manifest,
    baseline: Manifest | None,
    expected: ProvenanceExpectation | None,
    baseline_version: str | None,
    until: float,
) -> AtScan:
    """Read the release's identities, keep them in `manifest`, compare them, and take
    `provenance-lost` (and `publisher-changed` where identities decide) out of `findings` (in
    place): a loss is re-read until `until` before it is judged."""
    read = await read_release(http, unit, registry_url, release)
    now = {name: i for name, i in read.items() if i is not None}
    if manifest.facts is None:
        manifest.facts = {}
    manifest.facts[IDENTITY_FACTS] = identity_facts(now)
    before = identities_of(baseline)
    outcome = AtScan(
        identity_findings(
            now,
            expected=expected,
            before=before,
            version=release.version,
            baseline_version=baseline_version,
        )
    )
    if now and (expected is not None or before):
        findings[:] = [f for f in findings if f.rule != PUBLISHER_CHANGED]
    lost = [f for f in findings if f.rule == LOST]
    waiting = sorted(name for name, i in read.items() if i is None)
    if lost or waiting:
        findings[:] = [f for f in findings if f.rule != LOST]
        files: dict[str, str] = {}
        for artifact in release.artifacts:
            lost_here = any(f.path in ("", artifact.filename) for f in lost)
            if lost_here or artifact.filename in waiting:
                url = unit.attestation_url(registry_url, release, artifact)
                if url is not None:
                    files[artifact.filename] = url
        outcome.deferred = {
            "files": files,
            "lost": [_to_params(f) for f in lost],
            "until": until,
            "baseline_version": baseline_version,
        }
    return outcome


def _to_params(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "severity": finding.severity.value,
        "path": finding.path,
        "message": finding.message,
        "key": finding.key,
        "evidence": finding.evidence,
    }


def lost_findings(params: Mapping[str, Any], still_missing: Iterable[str]) -> list[Finding]:
    """The deferred `provenance-lost` findings of the files whose attestations never came."""
    missing = set(still_missing)
    out = []
    for item in params.get("lost") or ():
        if not isinstance(item, dict):
            continue
        path = str(item.get("path") or "")
        if path and path not in missing:
            continue
        if not path and not missing:
            continue
        out.append(
            origin_finding(
                str(item.get("rule") or LOST),
                Severity(str(item.get("severity") or "high")),
                str(item.get("message") or "published without provenance"),
                key=str(item.get("key") or ""),
                evidence=dict(item.get("evidence") or {}),
                path=path,
            )
        )
    return out
