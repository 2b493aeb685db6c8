"""PyPI's containment probe: the release, or every one of its files, is deleted from the index (or
the whole project answers 404). A yank is a mitigation: resolvers skip the release, its files stay
downloadable. `assess_pypi` is a pure function over the parsed project page."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from watcher.ecosystems.base import GONE, Assessment, ContainmentQuery, Mitigation, short
from watcher.ecosystems.http import HttpStatusError
from watcher.ecosystems.pypi.client import ProjectPage, PypiClient

RELEASE_DELETED = "release deleted"
FILES_DELETED = "all its files deleted"
PROJECT_DELETED = "project deleted from the index"


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def assess_pypi(page: ProjectPage | None, name: str, version: str) -> Assessment:
    """`page` None: the index answers 404 for the project."""
    if page is None:
        return Assessment(
            contained=True,
            resolution=PROJECT_DELETED,
            detail=f"the index answers 404 for {name}: no file of {version} is served",
        )
    files = page.files_of(version)
    if not files:
        listed = any(_same_version(v, version) for v in page.versions)
        return Assessment(
            contained=True,
            resolution=FILES_DELETED if listed else RELEASE_DELETED,
            detail=f"the index lists no file of {name} {version}"
            + (" (the version is still named, with no files)" if listed else ""),
        )
    if all(f.yanked for f in files):
        reasons = sorted({f.yanked_reason for f in files if f.yanked_reason})
        why = f" (“{short('; '.join(reasons))}”)" if reasons else ""
        return Assessment(
            contained=False,
            mitigations=(
                Mitigation(
                    "yanked",
                    f"{name} {version} was yanked{why}: resolvers skip it, but its "
                    f"{len(files)} file(s) stay downloadable by exact pin until deleted",
                ),
            ),
        )
    return Assessment(contained=False)


async def probe(client: PypiClient, query: ContainmentQuery) -> Assessment:
    try:
        page = await client.project(query.name)
    except HttpStatusError as exc:
        if exc.status not in GONE:
            raise
        page = None
    return assess_pypi(page, query.name, query.version)
