"""PyPI as an ecosystem unit: one Simple API index (config, else the machine's pip settings), the
changelog journal or the poll feed, PEP 440 order and PEP 503 names, `pypi:NAME==VERSION`
targets, the containment probe and PyPI's runbook steps."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from watcher.ecosystems.actions import NoWriteApi
from watcher.ecosystems.base import (
    Assessment,
    ContainmentQuery,
    FeedContext,
    FeedSet,
    TargetFiles,
)
from watcher.ecosystems.common import UnitParts
from watcher.ecosystems.config_sources import ResolvedRegistry
from watcher.ecosystems.http import RegistryHttp, safe_url
from watcher.ecosystems.pypi import artifacts as pypi_artifacts
from watcher.ecosystems.pypi import containment
from watcher.ecosystems.pypi import provenance as pypi_provenance
from watcher.ecosystems.pypi import runbook as pypi_runbook
from watcher.ecosystems.pypi.changelog import PypiChangelogFeed, XmlRpcJournal
from watcher.ecosystems.pypi.client import (
    PypiClient,
    baseline_version,
    fetch_for_scan,
    normalize,
    parse_target,
)
from watcher.ecosystems.pypi.config import PypiRegistryConfig
from watcher.ecosystems.pypi.internal_names import PypiPublicLookup
from watcher.ecosystems.pypi.poll import PypiPackageSource, pypi_poll_feed, pypi_reconcile_feed
from watcher.ecosystems.pypi.settings import is_warehouse_index, resolve_pypi_index
from watcher.ecosystems.runbook import RunbookInputs
from watcher.ecosystems.versions import parse_pep440
from watcher.errors import RegistryError
from watcher.feeds.base import Watchlist
from watcher.feeds.internal import internal_polls, internal_watch
from watcher.feeds.reconcile import PackageTracker, watched_names
from watcher.model import Ecosystem, Release

log = structlog.get_logger(__name__)

NAME = Ecosystem("pypi")
_NAME = re.compile(r"[A-Za-z0-9*?]([A-Za-z0-9._*?-]*[A-Za-z0-9*?])?")
MAX_BASELINE_BYTES = 1024 * 1024 * 1024


class PypiRegistry:
    def __init__(self, client: PypiClient) -> None:
        self.client = client

    @property
    def url(self) -> str:
        return self.client.index_url

    def registry_for(self, name: str) -> str:
        return self.client.index_url

    def warm(self) -> None:
        return None

    def feeds(self, ctx: FeedContext) -> FeedSet:
        section = ctx.section
        tracker = PackageTracker(PypiPackageSource(self.client), ctx.store, ctx.sink)
        feeds = FeedSet(trackers=[tracker])
        watchlist = Watchlist.of(normalize(n) if "*" not in n else n for n in ctx.names)
        internal = internal_watch(
            NAME,
            ctx.internal_names,
            ctx.sightings,
            PypiPublicLookup(self.client),
            watchlist,
            canonical=normalize,
        )
        if not section.changes_url:
            feeds.primary.append(pypi_poll_feed(tracker, watchlist, interval=section.poll_interval))
            feeds.primary += internal_polls(
                internal, name="pypi-internal-names", interval=section.poll_interval
            )
            return feeds
        journal = PypiChangelogFeed(
            XmlRpcJournal(ctx.http, section.changes_url),
            tracker,
            watchlist,
            watched_names(watchlist, ctx.store, NAME),
            interval=min(section.poll_interval, 10.0),
        )
        journal.internal = internal
        feeds.primary.append(journal)
        feeds.backstop.append(pypi_reconcile_feed(tracker, watchlist, period=ctx.reconcile_period))
        return feeds

    async def download(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]:
        paths = [
            await self.client.download(artifact, dest, max_bytes=max_bytes)
            for artifact in release.artifacts
        ]
        return release, paths

    async def assess_containment(self, query: ContainmentQuery) -> Assessment:
        return await containment.probe(self.client, query)


class PypiResolution:
    def __init__(self, index: ResolvedRegistry) -> None:
        self.index = index

    @property
    def url(self) -> str:
        return self.index.url

    def credentials(self) -> Mapping[str, str]:
        return {}

    def registry_for(self, name: str) -> str:
        return self.index.url

    def log_resolved(self) -> None:
        index = self.index
        log.info(
            "registry_resolved", ecosystem=NAME.value, url=safe_url(index.url), source=index.source
        )

    def connect(self, http: RegistryHttp) -> PypiRegistry:
        return PypiRegistry(PypiClient(http, self.index.url))


class PypiUnit(UnitParts):
    name = NAME
    title = "PyPI"
    machine_setting = "pip"
    several_artifacts = True  # an sdist and wheels
    install_hook_files: frozenset[str] = frozenset()

    section_model = PypiRegistryConfig
    name_rule = _NAME
    ref_separator = "=="
    artifacts = pypi_artifacts
    provenance = pypi_provenance
    runbook = pypi_runbook

    def containment_actions(self, section: Any, auto: Any) -> NoWriteApi:
        return NoWriteApi(
            "PyPI has no API for yank or delete (web UI only, with re-authentication)"
        )

    def resolve(self, section: Any) -> PypiResolution:
        return PypiResolution(resolve_pypi_index(section.url))

    # -- names and versions --------------------------------------------------------------------

    def canonical(self, name: str) -> str:
        return normalize(name)

    def version_key(self, text: str) -> Any | None:
        return parse_pep440(text)

    # -- targets -------------------------------------------------------------------------------

    def parse_ref(self, spec: str) -> tuple[str, str]:
        return parse_target(spec)

    async def fetch_target(
        self, name: str, version: str, baseline: str | None, workdir: Path, section: Any
    ) -> TargetFiles:
        index = resolve_pypi_index(None if section is None else section.url).url
        download = await fetch_for_scan(
            name, version, dest_dir=workdir, index_url=index, baseline=baseline or "none"
        )
        base = list(download.baseline.paths) if download.baseline else []
        releases = (
            (download.target.release, download.baseline.release) if download.baseline else None
        )
        return TargetFiles(list(download.target.paths), base, releases)

    async def previous_release(
        self, name: str, version: str, workdir: Path, section: Any
    ) -> list[Path]:
        index = resolve_pypi_index(None if section is None else section.url).url
        async with RegistryHttp() as http:
            pypi = PypiClient(http, index)
            try:
                page = await pypi.project(name)
            except RegistryError:
                return []
            if page is None:
                return []
            previous = baseline_version(page, version)
            if previous is None:
                return []
            fetched = await pypi.fetch_release(
                page, previous, workdir, max_bytes=MAX_BASELINE_BYTES
            )
            return list(fetched.paths)

    # -- runbook -------------------------------------------------------------------------------

    def runbook_inputs(self, inputs: RunbookInputs, section: Any) -> RunbookInputs:
        if inputs.registry_url is None:
            return inputs
        declared = getattr(section, "warehouse", None)
        warehouse = declared if declared is not None else is_warehouse_index(inputs.registry_url)
        return replace(inputs, index_warehouse=warehouse)

    def runbook_links(self, inputs: RunbookInputs) -> Mapping[str, str]:
        return pypi_runbook.links(inputs)


UNIT = PypiUnit()
