"""npm as a `PackageSource` (the packument, conditional on its ETag) and the poll feed over it:
each watched name's packument every `poll_interval`, spread over the interval."""

from __future__ import annotations

from typing import Any

from watcher.ecosystems.npm.client import NpmClient, Packument
from watcher.ecosystems.versions import parse_semver
from watcher.feeds.reconcile import EcosystemSweeps, Missing, NotModified, PackageSnapshot
from watcher.model import Ecosystem


def snapshot_of(packument: Packument, etag: str | None) -> PackageSnapshot:
    unpublished = packument.unpublished is not None and not packument.versions
    return PackageSnapshot(
        releases=packument.releases(),
        etag=etag,
        generation=packument.generation,
        removed={v: packument.times.get(v) for v in packument.removed_versions},
        unpublished=unpublished,
        unpublished_at=packument.unpublished.at if packument.unpublished else None,
    )


class NpmPackageSource:
    ecosystem = Ecosystem.NPM

    def __init__(self, client: NpmClient) -> None:
        self.client = client

    def canonical(self, name: str) -> str:
        return name

    def version_key(self, text: str) -> Any | None:
        return parse_semver(text)

    async def fetch(self, name: str, etag: str | None) -> PackageSnapshot | NotModified | Missing:
        fetched = await self.client.fetch_packument(name, etag)
        if fetched.not_modified:
            return NotModified()
        if fetched.missing or fetched.packument is None:
            return Missing()
        return snapshot_of(fetched.packument, fetched.etag)


# npm asks for at most about 5M requests a month (~1.9/s) from one client: the reconcile
# backstop's default of 1 request a second stays below it
SWEEPS = EcosystemSweeps("npm")
npm_poll_feed = SWEEPS.poll
npm_reconcile_feed = SWEEPS.reconcile
