"""PyPI as a `PackageSource` (the project's Simple API page, conditional on its ETag where the
index sends one) and the poll feed over it: each watched project's page every `poll_interval`,
spread over the interval.

The page lists files, not releases: a release is the set of files sharing a version, and files
keep arriving for days (an sdist first, wheels from CI later), so the diff runs per file and a
late wheel is a new event for its release. A version counts as yanked when every file of it is
(PyPI yanks whole releases; the Simple API repeats the flag on each file).
"""

from __future__ import annotations

from typing import Any

from watcher.ecosystems.http import HttpStatusError
from watcher.ecosystems.pypi.client import ProjectPage, PypiClient, normalize
from watcher.ecosystems.versions import parse_pep440
from watcher.feeds.base import Watchlist
from watcher.feeds.reconcile import EcosystemSweeps, Missing, NotModified, PackageSnapshot
from watcher.model import Ecosystem, Release


def snapshot_of(page: ProjectPage) -> PackageSnapshot:
    """Versions with at least one file (a version listed without files has nothing to scan yet:
    it becomes a release when its first file appears)."""
    releases: dict[str, Release] = {}
    yanked: set[str] = set()
    for version in {f.version for f in page.files if f.version is not None}:
        release = page.release(version)
        releases[release.version] = release
        if all(f.yanked for f in page.files_of(version)):
            yanked.add(release.version)
    return PackageSnapshot(
        releases=releases,
        etag=page.etag,
        generation=page.last_serial,
        yanked=frozenset(yanked),
    )


class PypiPackageSource:
    ecosystem = Ecosystem.PYPI

    def __init__(self, client: PypiClient) -> None:
        self.client = client

    def canonical(self, name: str) -> str:
        return normalize(name)

    def version_key(self, text: str) -> Any | None:
        return parse_pep440(text)

    async def fetch(self, name: str, etag: str | None) -> PackageSnapshot | NotModified | Missing:
        try:
            page = await self.client.project(name, etag=etag)
        except HttpStatusError as exc:
            # 404: never published, removed, or quarantined (PyPI hides those). 410 likewise.
            if exc.status in (404, 410):
                return Missing()
            raise
        if page is None:
            return NotModified()
        return snapshot_of(page)


def _normalized(watchlist: Watchlist) -> Watchlist:
    """PyPI names compare after PEP 503 normalization; the store keys them that way too."""
    return Watchlist(
        frozenset(normalize(n) for n in watchlist.names),
        tuple(p.lower() for p in watchlist.patterns),
    )


SWEEPS = EcosystemSweeps("pypi", _normalized)
pypi_poll_feed = SWEEPS.poll
pypi_reconcile_feed = SWEEPS.reconcile
