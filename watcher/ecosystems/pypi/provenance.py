"""PyPI provenance: per file (PEP 740 attestations). Publisher identity (repository, workflow)
lives in the attestation bodies, which are not fetched: only loss is judged."""

from __future__ import annotations

from watcher.model import Artifact, Category, Finding, Release, Severity, stable_path

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
