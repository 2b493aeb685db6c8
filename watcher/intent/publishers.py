"""`expect.publishers`: who may publish the package. The registry's document names the account
that published each release (npm `_npmUser.name`; trusted publishing shows npm's own account name
for it, `GitHub Actions`, with the CI configuration beside it). A name outside the list is
`publisher-unexpected` (high): the stolen-token path. Judged at scan time from the document the
feed read; a document without a publisher (mirrors strip it) decides nothing. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from watcher.model import Finding, Release, Severity, origin_finding

RULE = "publisher-unexpected"


def publisher_findings(expected: Sequence[str] | None, release: Release) -> list[Finding]:
    """One finding per account outside `expected` that published a file of the release.
    Compared without case (npm user names are lower case; the config may not be)."""
    if expected is None:
        return []
    allowed = {name.strip().lower() for name in expected}
    found: dict[str, list[str]] = {}
    for artifact in release.artifacts:
        provenance = artifact.provenance
        who = provenance.publisher if provenance is not None else None
        if who is None or who.strip().lower() in allowed:
            continue
        found.setdefault(who, []).append(artifact.filename)
    findings = []
    for who, files in sorted(found.items()):
        listed = ", ".join(sorted(expected))
        findings.append(
            origin_finding(
                RULE,
                Severity.HIGH,
                f"{release.version} was published by {who}, not by an expected publisher "
                f"({listed}): a token of another account, or a stolen one, published it",
                key=who,
                evidence={"publisher": who, "expected": sorted(expected), "files": files},
            )
        )
    return findings
