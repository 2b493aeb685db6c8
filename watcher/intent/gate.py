"""The scan's side of the gate: the digests of what the registry served, and the approval check
scheduled when some artifact has no approval yet (judged once `policy.approval_grace` ran out, by
`watcher.service.origin`)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from watcher import ecosystems
from watcher.intent import approvals
from watcher.intent.approvals import ArtifactDigest
from watcher.model import Release
from watcher.store.api import Store
from watcher.store.types import OriginCheck, StoredRelease

if TYPE_CHECKING:  # the configuration is built from `intent.model`: it is read here, not imported
    from watcher.config import Config

_HASH_CHUNK = 1 << 20


def artifact_digests(release: Release, paths: Sequence[Path]) -> list[ArtifactDigest]:
    """The downloaded files' sha256 (the bytes the registry served) with npm's integrity from
    the registry's document. Reads files: call it off the event loop."""
    integrity = {a.filename: a.integrity for a in release.artifacts}
    digests = []
    for path in paths:
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                sha.update(chunk)
        sri = integrity.get(path.name)
        digests.append(
            ArtifactDigest(
                path.name, sha.hexdigest(), sri if sri and not sri.startswith("sha1-") else None
            )
        )
    return digests


def declared_digests(release: Release) -> list[ArtifactDigest]:
    """The digests the registry's document declares (PyPI sha256, npm integrity), for a release
    that could not be downloaded: its approval is still judged, by what the registry says."""
    return [
        ArtifactDigest(
            a.filename,
            (a.sha256 or "").lower(),
            a.integrity if a.integrity and not a.integrity.startswith("sha1-") else None,
        )
        for a in release.artifacts
    ]


async def schedule_approval_check(
    store: Store,
    config: Config,
    stored: StoredRelease,
    digests: Sequence[ArtifactDigest],
    *,
    now: float | None = None,
) -> OriginCheck | None:
    """At scan time: when the package expects approvals and some artifact has none yet, the
    approval check is due `policy.approval_grace` after the release was first seen (at once when
    that is past; a grace from now for files added after it was judged). None: nothing to check
    (a baseline, no expectation, everything approved)."""
    release = stored.release
    if stored.baseline or not config.expectations(release.ecosystem, release.name).approval:
        return None
    at = time.time() if now is None else now
    name = ecosystems.get(release.ecosystem).canonical(release.name)
    found = await store.approvals(release.ecosystem, name, release.version)
    if not approvals.unapproved(digests, found):
        return None
    grace = config.policy.approval_grace
    due = max(stored.created_at + grace, at)
    judged = [c for c in await store.origin_checks(stored.id) if c.kind == approvals.CHECK_KIND]
    if any(c.finished_at is not None for c in judged):
        due = at + grace  # files added after the release was judged: they get their own grace
    return await store.schedule_origin_check(
        stored.id, approvals.CHECK_KIND, due, approvals.to_params(digests), now=at
    )
