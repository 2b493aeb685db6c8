"""PyPI provenance: per file (PEP 740 attestations). Publisher identity (repository, workflow)
lives in the attestation bodies, which are not fetched: only loss is judged."""

from __future__ import annotations

from typing import Any

from watcher.model import (
    Artifact,
    AttestationIdentity,
    Category,
    Finding,
    Release,
    Severity,
    stable_path,
)

LOST = "provenance-lost"


def compare(target: Release, baseline: Release) -> list[Finding]:
    """A file that is known not to be attested, where its counterpart in the baseline (same
    name but for the version) was; a file without a counterpart where every baseline file whose
    status is known was attested."""
    before = [a for a in baseline.artifacts if a.provenance is not None]
    counterparts = {stable_path(a.filename, baseline.version): a for a in before}
    all_attested = bool(before) and all(_attested(a) for a in before)
    findings = []
    for artifact in target.artifacts:
        if artifact.provenance is None or artifact.provenance.attested:
            continue
        counterpart = counterparts.get(stable_path(artifact.filename, target.version))
        had = _attested(counterpart) if counterpart is not None else all_attested
        if not had:
            continue
        compared = counterpart.filename if counterpart is not None else "every file"
        findings.append(
            Finding(
                rule=LOST,
                category=Category.PROVENANCE,
                severity=Severity.HIGH,
                path=artifact.filename,
                message=(
                    f"{artifact.filename} was uploaded without provenance (PEP 740), "
                    f"{baseline.version} had it for {compared}: a token used outside the "
                    "trusted-publishing workflow does this"
                ),
                evidence={
                    "baseline_version": baseline.version,
                    "baseline_file": counterpart.filename if counterpart is not None else None,
                    "baseline_attestations": counterpart.provenance.url
                    if counterpart is not None and counterpart.provenance is not None
                    else None,
                },
            )
        )
    return findings


def _attested(artifact: Artifact) -> bool:
    return artifact.provenance is not None and artifact.provenance.attested


# ----------------------------------------------------------------------- PEP 740 provenance


def attestation_url(index_url: str, release: Release, artifact: Artifact) -> str | None:
    """The file's provenance in the index's Integrity API: the Simple API's `provenance` URL,
    else `<root>/integrity/<project>/<version>/<filename>/provenance` for an index at
    `<root>/simple/` (PyPI's layout); None for other layouts."""
    if artifact.provenance is not None and artifact.provenance.url:
        return artifact.provenance.url
    root = index_url.rstrip("/")
    if not root.endswith("/simple"):
        return None
    root = root[: -len("/simple")]
    return f"{root}/integrity/{release.name}/{release.version}/{artifact.filename}/provenance"


def attestation_identity(document: Any) -> AttestationIdentity | None:
    """The Trusted Publisher of a provenance object (`{"version": 1, "attestation_bundles":
    [{"publisher": {"kind", "repository", "workflow" | "workflow_filepath", …}, …}]}`)."""
    bundles = document.get("attestation_bundles") if isinstance(document, dict) else None
    for bundle in bundles if isinstance(bundles, list) else []:
        publisher = bundle.get("publisher") if isinstance(bundle, dict) else None
        if not isinstance(publisher, dict):
            continue
        kind = publisher.get("kind")
        repository = publisher.get("repository")
        workflow = publisher.get("workflow") or publisher.get("workflow_filepath")
        if not isinstance(kind, str) or not (repository or workflow):
            continue
        return AttestationIdentity(
            repository=repository if isinstance(repository, str) else None,
            workflow=workflow if isinstance(workflow, str) else None,
            ref=None,
            kind=kind,
        )
    return None
