"""npm's containment probe: is a bad version gone, or only mitigated?

Contained means gone, not discouraged: the version is missing from the packument's `versions` AND
its tarball URL answers 404/410 (a registry or CDN that still serves the file has not contained
anything). A deprecation or a dist-tag moved off the version is a mitigation: posted once each,
the incident stays open. The next ordinary release taking `latest` (every moved tag now on a
newer version) is `superseded`: a one-line update, not a mitigation anyone did. `assess_npm` is a pure function over the parsed packument; `probe` does
the reads around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog

from watcher.ecosystems.base import GONE, Assessment, ContainmentQuery, Mitigation, short
from watcher.ecosystems.http import safe_url
from watcher.ecosystems.npm.client import ECOSYSTEM, NpmClient, Packument, packument_url
from watcher.ecosystems.versions import parse_semver
from watcher.model import SUPERSEDED  # an ordinary newer release moved the tags on: one line

log = structlog.get_logger(__name__)

DIST_TAGS_NOTE = "dist-tags"  # the tags first seen on the bad version (recorded, never posted)
UNPUBLISHED = "unpublished from the registry"


def assess_npm(
    packument: Packument | None,
    name: str,
    version: str,
    *,
    tarball_status: int | None = None,
    seen_tags: Sequence[str] | None = None,
) -> Assessment:
    """`packument` None: the registry answers 404 for the package. `tarball_status`: the status
    of the version's tarball URL, asked only once the version left `versions`. `seen_tags`: the
    dist-tags recorded on the version at an earlier check."""
    info = packument.versions.get(version) if packument is not None else None
    if info is None:
        if tarball_status in GONE:
            whole = packument is None or (
                not packument.versions and packument.unpublished is not None
            )
            what = "the package was unpublished" if whole else f"{version} was unpublished"
            return Assessment(
                contained=True,
                resolution=UNPUBLISHED,
                detail=f"{what}: npm no longer lists {name}@{version} and its tarball answers "
                f"HTTP {tarball_status}",
            )
        # Gone from the document but the file still answers (a cache, a lagging CDN) or its
        # status is unknown: not contained yet.
        return Assessment(contained=False)

    assert packument is not None
    tags = tuple(sorted(tag for tag, target in packument.dist_tags.items() if target == version))
    found: list[Mitigation] = []
    if info.deprecated:
        found.append(
            Mitigation(
                "deprecated",
                f"{name}@{version} was deprecated on npm (“{short(info.deprecated)}”); "
                "installs warn but the tarball is still served",
            )
        )
    moved = [tag for tag in (seen_tags or ()) if packument.dist_tags.get(tag) != version]
    if moved and _newer_release_took(packument.dist_tags, moved, version):
        where = ", ".join(f"{tag} → {packument.dist_tags[tag]}" for tag in moved)
        found.append(
            Mitigation(
                SUPERSEDED,
                f"a newer release took the dist-tag ({where}); {version} is still installable "
                "by exact pin",
            )
        )
    elif moved:
        where = ", ".join(
            f"{tag} → {packument.dist_tags[tag]}"
            if tag in packument.dist_tags
            else f"{tag} removed"
            for tag in moved
        )
        found.append(
            Mitigation(
                "dist-tag-moved",
                f"dist-tag moved off {name}@{version} ({where}); "
                "the version is still installable by exact pin",
            )
        )
    return Assessment(contained=False, mitigations=tuple(found), dist_tags=tags)


def _newer_release_took(tags: Mapping[str, str], moved: Sequence[str], version: str) -> bool:
    """Every moved tag is now on a version above the bad one: the owner published a release (a
    tag put back on an older version, or removed, is someone's mitigation)."""
    bad = parse_semver(version)
    if bad is None:
        return False
    for tag in moved:
        target = parse_semver(tags[tag]) if tag in tags else None
        if target is None or not target > bad:
            return False
    return True


async def probe(client: NpmClient, query: ContainmentQuery) -> Assessment:
    fetched = await client.fetch_packument(query.name)
    packument = None if fetched.missing else fetched.packument
    seen = _tags(query.notes.get(DIST_TAGS_NOTE))
    if packument is not None and query.version in packument.versions:
        assessment = assess_npm(packument, query.name, query.version, seen_tags=seen or ())
        if seen is None and assessment.dist_tags is not None:
            # The yardstick for "dist-tag moved": what pointed at the version when we first
            # looked (a restart keeps it).
            note = orjson.dumps(list(assessment.dist_tags)).decode()
            return Assessment(
                contained=False,
                mitigations=assessment.mitigations,
                dist_tags=assessment.dist_tags,
                record={DIST_TAGS_NOTE: note},
            )
        return assessment
    url = await query.artifact_url() or tarball_url(client, query.name, query.version)
    status = await client.http.head(url, ecosystem=ECOSYSTEM)
    if status not in GONE:
        log.info(
            "containment_tarball_still_served",
            ecosystem=ECOSYSTEM,
            package=query.name,
            version=query.version,
            url=safe_url(url),
            status=status,
        )
    return assess_npm(packument, query.name, query.version, tarball_status=status)


def tarball_url(client: NpmClient, name: str, version: str) -> str:
    """npm's tarball layout on the package's registry (its scope's own, if it has one)."""
    registry = client.registry_for(name)
    packument_url(registry, name)  # validates the name
    base = name.rsplit("/", 1)[-1]
    return f"{registry}{name}/-/{base}-{version}.tgz"


def _tags(note: str | None) -> list[str] | None:
    if note is None:
        return None
    try:
        value: Any = orjson.loads(note)
    except orjson.JSONDecodeError:
        return None
    return [t for t in value if isinstance(t, str)] if isinstance(value, list) else None
