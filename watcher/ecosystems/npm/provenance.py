"""npm provenance: one tarball per version, with `dist.attestations` and the publisher
(`_npmUser`, trusted publishing) per version. A release that lost the attestations its
predecessor had, or whose publisher changed, is what a stolen token publishing around the CI
pipeline looks like."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from watcher.model import (
    Artifact,
    AttestationIdentity,
    Category,
    Finding,
    Provenance,
    Release,
    Severity,
)

LOST = "provenance-lost"
PUBLISHER_CHANGED = "publisher-changed"


def _known(release: Release) -> Provenance | None:
    return next((a.provenance for a in release.artifacts if a.provenance is not None), None)


def compare(target: Release, baseline: Release) -> list[Finding]:
    now, before = _known(target), _known(baseline)
    if now is None or before is None:
        return []
    findings: list[Finding] = []
    if before.attested and not now.attested:
        types = ", ".join(before.predicate_types) or "attestations"
        findings.append(
            Finding(
                rule=LOST,
                category=Category.PROVENANCE,
                severity=Severity.HIGH,
                path="",
                message=(
                    f"{target.version} was published without provenance, {baseline.version} "
                    f"had it ({types}); published by {_who(now)}: a token used outside the "
                    "CI pipeline does this"
                ),
                evidence=_evidence(now, before, baseline.version),
            )
        )
    change = _publisher_change(before, now)
    if change is not None:
        message, key = change
        findings.append(
            Finding(
                rule=PUBLISHER_CHANGED,
                category=Category.PROVENANCE,
                severity=Severity.MEDIUM,
                path="",
                message=f"{message} ({baseline.version} → {target.version})",
                evidence=_evidence(now, before, baseline.version),
                key=key,
            )
        )
    return findings


def _publisher_change(before: Provenance, now: Provenance) -> tuple[str, str] | None:
    """(message, key) when who published changed in a way worth a look; None otherwise.
    Trusted publishing is identified by its configuration, not by the account name npm shows
    for it (`GitHub Actions` for every repository)."""
    if before.trusted_publisher and not now.trusted_publisher:
        if now.publisher is None:
            return None
        return (
            f"published with a token by {now.publisher}; the previous release came from trusted "
            f"publishing ({before.trusted_publisher})",
            f"token:{now.publisher}",
        )
    if before.trusted_publisher and now.trusted_publisher:
        same_kind = before.trusted_publisher == now.trusted_publisher
        configs = before.trusted_config, now.trusted_config
        if same_kind and (None in configs or configs[0] == configs[1]):
            return None
        return (
            f"trusted publisher changed: {_trusted(before)} → {_trusted(now)}",
            f"trusted:{now.trusted_publisher}:{now.trusted_config or ''}",
        )
    if now.trusted_publisher:
        return None  # token → trusted publishing: provenance gained, not a finding
    if before.publisher and now.publisher and before.publisher != now.publisher:
        return (
            f"publisher changed: {before.publisher} → {now.publisher}",
            f"token:{now.publisher}",
        )
    return None


def _trusted(p: Provenance) -> str:
    return (
        f"{p.trusted_publisher} {p.trusted_config}"
        if p.trusted_config
        else str(p.trusted_publisher)
    )


def _who(p: Provenance) -> str:
    if p.trusted_publisher:
        return f"trusted publishing ({_trusted(p)})"
    return p.publisher or "an unknown account"


def _evidence(now: Provenance, before: Provenance, baseline_version: str) -> dict[str, object]:
    return {
        "baseline_version": baseline_version,
        "baseline_attested": before.attested,
        "baseline_predicate_types": list(before.predicate_types),
        "baseline_publisher": before.publisher,
        "baseline_trusted_publisher": before.trusted_publisher,
        "attested": now.attested,
        "publisher": now.publisher,
        "trusted_publisher": now.trusted_publisher,
    }


# ------------------------------------------------------------------------ attestation bundles

_SLSA = "https://slsa.dev/provenance/"


def attestation_url(registry_url: str, release: Release, artifact: Artifact) -> str | None:
    """Where the registry serves the version's attestations, as the npm CLI reads them: the
    document's `dist.attestations.url`, else `<registry>/-/npm/v1/attestations/<name>@<version>`
    (a scoped name's `/` as `%2f`)."""
    if artifact.provenance is not None and artifact.provenance.url:
        return artifact.provenance.url
    name = release.name.replace("/", "%2f")
    return f"{registry_url.rstrip('/')}/-/npm/v1/attestations/{name}@{release.version}"


def attestation_identity(document: Any) -> AttestationIdentity | None:
    """The source repository, workflow and ref of the SLSA provenance in an attestations document
    (`{"attestations": [{"predicateType", "bundle": {"dsseEnvelope": {"payload"}}}]}`); None
    when it carries no readable SLSA statement."""
    entries = document.get("attestations") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not str(entry.get("predicateType", "")).startswith(_SLSA):
            continue
        statement = _statement(entry.get("bundle"))
        if statement is None:
            continue
        predicate = statement.get("predicate")
        if not isinstance(predicate, dict):
            continue
        found = _v1(predicate) or _v02(predicate)
        if found is not None:
            return found
    return None


def _statement(bundle: Any) -> dict[str, Any] | None:
    envelope = bundle.get("dsseEnvelope") if isinstance(bundle, dict) else None
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    if not isinstance(payload, str):
        return None
    try:
        statement = json.loads(base64.b64decode(payload, validate=False))
    except (ValueError, binascii.Error):
        return None
    return statement if isinstance(statement, dict) else None


def _v1(predicate: dict[str, Any]) -> AttestationIdentity | None:
    definition = predicate.get("buildDefinition")
    external = definition.get("externalParameters") if isinstance(definition, dict) else None
    workflow = external.get("workflow") if isinstance(external, dict) else None
    if not isinstance(workflow, dict):
        return None
    return AttestationIdentity(
        repository=_text(workflow.get("repository")),
        workflow=_text(workflow.get("path")),
        ref=_text(workflow.get("ref")),
    )


def _v02(predicate: dict[str, Any]) -> AttestationIdentity | None:
    invocation = predicate.get("invocation")
    source = invocation.get("configSource") if isinstance(invocation, dict) else None
    if not isinstance(source, dict):
        return None
    uri = _text(source.get("uri")) or ""
    repository, _, ref = uri.removeprefix("git+").partition("@")
    return AttestationIdentity(
        repository=repository or None, workflow=_text(source.get("entryPoint")), ref=ref or None
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
