"""Does every artifact of a release match an approval from the team's gate? Pure: the artifacts'
digests (as the watcher downloaded them) and the stored approvals in, the `release-unapproved`
findings out. An artifact matches an approval of the same version by sha256, or by npm's
`integrity` when both carry one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from watcher.model import Finding, Severity, origin_finding
from watcher.store.types import Approval
from watcher.timefmt import format_duration, iso

RULE = "release-unapproved"
CHECK_KIND = "approval"  # the origin check's kind (`origin_checks.kind`)
DIFFERS = "the published tarball differs from the approved one"


@dataclass(frozen=True, slots=True)
class ArtifactDigest:
    """One file of a release as the registry served it to the watcher."""

    filename: str
    sha256: str
    integrity: str | None = None


def to_params(digests: Sequence[ArtifactDigest]) -> dict[str, object]:
    """The origin check's params: what the check needs once its grace ran out (no download)."""
    return {
        "artifacts": [
            {"filename": d.filename, "sha256": d.sha256, "integrity": d.integrity} for d in digests
        ]
    }


def from_params(params: Mapping[str, object]) -> list[ArtifactDigest]:
    found = params.get("artifacts")
    digests = []
    for entry in found if isinstance(found, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
            integrity = entry.get("integrity")
            digests.append(
                ArtifactDigest(
                    str(entry.get("filename") or "?"),
                    entry["sha256"].lower(),
                    integrity if isinstance(integrity, str) else None,
                )
            )
    return digests


def matches(digest: ArtifactDigest, approval: Approval) -> bool:
    if digest.sha256 and approval.sha256.lower() == digest.sha256.lower():
        return True
    return bool(digest.integrity and approval.integrity and digest.integrity == approval.integrity)


def unapproved(
    digests: Iterable[ArtifactDigest], approvals: Sequence[Approval]
) -> list[ArtifactDigest]:
    """The artifacts no approval (of this version) matches."""
    return [d for d in digests if not any(matches(d, a) for a in approvals)]


def findings(
    digests: Sequence[ArtifactDigest], approvals: Sequence[Approval], *, grace_s: float
) -> list[Finding]:
    """One critical `release-unapproved` per artifact no approval of the version matches. When
    the version has approvals (for other bytes), the message says the tarball differs."""
    found = []
    for digest in unapproved(digests, approvals):
        evidence: dict[str, object] = {
            "sha256": digest.sha256,
            "integrity": digest.integrity,
            "grace_s": grace_s,
            "approved": [
                {
                    "sha256": a.sha256,
                    "integrity": a.integrity,
                    "token_name": a.token_name,
                    "created_at": _at(a.created_at),
                }
                for a in approvals
            ],
        }
        if approvals:
            last = approvals[-1]
            message = (
                f"{DIFFERS}: {digest.filename} has {_digest_text(digest)}, the gate "
                f"approved {len(approvals)} other artifact(s) of this version (sha256 "
                f"{last.sha256[:16]}… by {last.token_name} at {_at(last.created_at)}): "
                "someone published bytes the pipeline did not build"
            )
        else:
            message = (
                f"no approval from the gate for {digest.filename} ({_digest_text(digest)}) "
                f"{format_duration(grace_s)} after it was seen: published around the pipeline (a stolen "
                "token, a publish by hand)"
            )
        found.append(
            origin_finding(
                RULE,
                Severity.CRITICAL,
                message,
                key=digest.sha256 or digest.integrity or "",
                evidence=evidence,
                path=digest.filename,
            )
        )
    return found


def _digest_text(digest: ArtifactDigest) -> str:
    if digest.sha256:
        return f"sha256 {digest.sha256[:16]}…"
    return f"integrity {(digest.integrity or '?')[:23]}… (as the registry declares it)"


def _at(moment: float) -> str:
    return iso(moment) or "?"
