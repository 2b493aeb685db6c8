"""`provenance`: a release that lost the provenance its predecessor had, or whose publisher changed.

The strongest sign that a stolen token published around the CI pipeline: the pipeline publishes
with attestations (npm `--provenance` / trusted publishing, PyPI PEP 740), a token used from a
laptop cannot. Compares what the registry documents said about the two releases (captured by the
registry clients into `Artifact.provenance`); pure, no I/O.

Absence of data is never loss: mirrors and local registries strip publisher fields and
attestations, so a side whose document did not carry them (`provenance is None`) decides nothing.
Gaining provenance is not a finding. PyPI publisher identity (repository / workflow) lives in the
attestation bodies, which are not fetched: for PyPI only loss is judged.
"""

from __future__ import annotations

from watcher import ecosystems
from watcher.model import Category, Finding, Manifest, Release, fingerprint, stable_path
from watcher.scanning.checks.base import ComparisonCheck, ScanOptions

LOST = "provenance-lost"
PUBLISHER_CHANGED = "publisher-changed"


class ProvenanceCheck(ComparisonCheck):
    """Compares the two releases' registry metadata, not their contents: what the registry
    documents say is the ecosystem unit's to read (`compare_provenance` of its unit)."""

    category = Category.PROVENANCE

    def compare(self, target: Manifest, baseline: Manifest, options: ScanOptions) -> list[Finding]:
        return []

    def compare_releases(self, target: Release, baseline: Release) -> list[Finding]:
        if target.ecosystem != baseline.ecosystem:
            return []
        return ecosystems.get(target.ecosystem).compare_provenance(target, baseline)


def compare_provenance(target: Release, baseline: Release | None) -> list[Finding]:
    """Findings for `target` against the release it is compared with (its baseline), with their
    fingerprints."""
    if baseline is None:
        return []
    findings = ProvenanceCheck().compare_releases(target, baseline)
    for finding in findings:
        finding.fingerprint = fingerprint(
            finding.rule, stable_path(finding.path, target.version), finding.key
        )
    return findings
