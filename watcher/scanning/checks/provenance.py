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

from watcher.model import (
    Artifact,
    Category,
    Ecosystem,
    Finding,
    Provenance,
    Release,
    Severity,
    fingerprint,
    stable_path,
)

LOST = "provenance-lost"
PUBLISHER_CHANGED = "publisher-changed"


def compare_provenance(target: Release, baseline: Release | None) -> list[Finding]:
    """Findings for `target` against the release it is compared with (its baseline)."""
    if baseline is None or target.ecosystem is not baseline.ecosystem:
        return []
    if target.ecosystem is Ecosystem.NPM:
        findings = _npm(target, baseline)
    else:
        findings = _pypi(target, baseline)
    for finding in findings:
        finding.fingerprint = fingerprint(
            finding.rule, stable_path(finding.path, target.version), finding.key
        )
    return findings


# -- npm: one tarball, publisher per version -------------------------------------------------


def _known(release: Release) -> Provenance | None:
    return next((a.provenance for a in release.artifacts if a.provenance is not None), None)


def _npm(target: Release, baseline: Release) -> list[Finding]:
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


# -- PyPI: provenance per file ---------------------------------------------------------------


def _pypi(target: Release, baseline: Release) -> list[Finding]:
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
