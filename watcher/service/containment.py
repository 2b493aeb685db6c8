"""Containment watcher: re-reads the registry for every open incident and resolves it once the bad
artifact is no longer served.

Contained means gone, not discouraged: on npm the version is missing from the packument's
`versions` AND its tarball URL answers 404/410 (a registry or CDN that still serves the file has
not contained anything); on PyPI the release, or every one of its files, is deleted from the index
(or the whole project answers 404). Then the incident is resolved on every channel of its owner in
one store transaction, with what contained it and the time to contain (a histogram).

Mitigations that are not containment (npm `deprecate`, a dist-tag moved off the version, a PyPI
yank: the files stay downloadable) are posted once each as `incident.updated` and recorded in the
store, so a restart never posts them twice; the incident stays open.

The decisions (`assess_npm`, `assess_pypi`) are pure functions over parsed registry documents; the
`ContainmentWatcher` does the I/O around them and hands what it found to the incident lifecycle
(`watcher.incidents.lifecycle`), which records the update or the resolution and queues its pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from packaging.version import InvalidVersion, Version

from watcher import metrics
from watcher.config import Config
from watcher.ecosystems.http import HttpStatusError, safe_url
from watcher.ecosystems.npm.client import NpmClient, Packument, packument_url
from watcher.ecosystems.pypi.client import ProjectPage, PypiClient
from watcher.errors import RegistryError
from watcher.incidents.lifecycle import IncidentLifecycle, stored_id
from watcher.model import Ecosystem, Incident
from watcher.store.api import Store

log = structlog.get_logger(__name__)

GONE = frozenset({404, 410})
DIST_TAGS_NOTE = "dist-tags"  # the tags first seen on the bad version (recorded, never posted)
MAX_MESSAGE = 300  # a deprecation or yank message is the publisher's free text: keep it short

# What contained it, in the words every channel shows.
UNPUBLISHED = "unpublished from the registry"
RELEASE_DELETED = "release deleted"
FILES_DELETED = "all its files deleted"
PROJECT_DELETED = "project deleted from the index"


@dataclass(frozen=True, slots=True)
class Mitigation:
    """A step that limits the damage without removing the artifact; posted once per kind."""

    kind: str  # deprecated | dist-tag-moved | yanked
    message: str


@dataclass(frozen=True, slots=True)
class Assessment:
    contained: bool
    resolution: str | None = None  # what contained it (short, shown as the resolution)
    detail: str | None = None  # the evidence, shown with the resolution
    mitigations: tuple[Mitigation, ...] = ()
    dist_tags: tuple[str, ...] | None = None  # npm: the tags on the version now (None: not listed)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check of one incident found and did."""

    dedup_key: str
    contained: bool
    resolved: bool = False  # this check resolved it
    resolution: str | None = None
    posted: tuple[str, ...] = ()  # mitigation kinds posted by this check
    error: str | None = None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


# ------------------------------------------------------------------------------------ decisions


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
                f"{name}@{version} was deprecated on npm (“{_short(info.deprecated)}”); "
                "installs warn but the tarball is still served",
            )
        )
    moved = [tag for tag in (seen_tags or ()) if packument.dist_tags.get(tag) != version]
    if moved:
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
        why = f" (“{_short('; '.join(reasons))}”)" if reasons else ""
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


# ------------------------------------------------------------------------------------ the worker


@dataclass(slots=True)
class ContainmentWatcher:
    """Every `interval` seconds, `check_once()` over the store's open incidents. `on_page` is
    called after pages were queued (the outbox's `wake`)."""

    store: Store
    config: Config
    clients: Mapping[Ecosystem, NpmClient | PypiClient]
    on_page: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.time
    interval: float = field(init=False)
    name: str = field(init=False, default="containment")
    last_success: float | None = field(init=False, default=None)
    lifecycle: IncidentLifecycle = field(init=False)

    def __post_init__(self) -> None:
        self.interval = self.config.containment.check_interval
        self.lifecycle = IncidentLifecycle(
            self.store, self.config, on_page=self.on_page, clock=self.clock
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_once()
            except Exception as exc:  # the store or a bug: keep watching, say it loudly
                log.error("containment_check_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)

    async def check_once(self) -> list[CheckResult]:
        results = []
        for incident in await self.store.open_incidents():
            results.append(await self._check_guarded(incident))
        self.last_success = self.clock()
        return results

    async def _check_guarded(self, incident: Incident) -> CheckResult:
        eco = incident.ecosystem.value
        try:
            result = await self._check(incident)
        except (RegistryError, OSError, TimeoutError) as exc:
            metrics.CONTAINMENT_CHECKS.labels(eco, "error").inc()
            reason = f"{type(exc).__name__}: {exc}"[:300]
            log.warning(
                "containment_check_error",
                ecosystem=eco,
                package=incident.name,
                version=incident.version,
                reason=reason,
            )
            return CheckResult(incident.dedup_key, contained=False, error=reason)
        metrics.CONTAINMENT_CHECKS.labels(eco, "contained" if result.contained else "open").inc()
        return result

    async def _check(self, incident: Incident) -> CheckResult:
        client = self.clients.get(incident.ecosystem)
        if client is None:
            raise RegistryError(f"no {incident.ecosystem.value} registry configured")
        notes = await self.store.incident_notes(stored_id(incident))
        if isinstance(client, NpmClient):
            assessment = await self._assess_npm(client, incident, notes)
        else:
            assessment = await self._assess_pypi(client, incident)
        if assessment.contained:
            resolved = await self._resolve(incident, assessment)
            return CheckResult(
                incident.dedup_key, True, resolved=resolved, resolution=assessment.resolution
            )
        posted = [
            m.kind
            for m in assessment.mitigations
            if m.kind not in notes and await self._post_update(incident, m)
        ]
        return CheckResult(incident.dedup_key, False, posted=tuple(posted))

    async def _assess_npm(
        self, client: NpmClient, incident: Incident, notes: Mapping[str, str]
    ) -> Assessment:
        fetched = await client.fetch_packument(incident.name)
        packument = None if fetched.missing else fetched.packument
        seen = _tags(notes.get(DIST_TAGS_NOTE))
        if packument is not None and incident.version in packument.versions:
            assessment = assess_npm(
                packument, incident.name, incident.version, seen_tags=seen or ()
            )
            if seen is None and assessment.dist_tags is not None:
                # The yardstick for "dist-tag moved": what pointed at the version when we first
                # looked (a restart keeps it).
                await self.store.add_incident_note(
                    stored_id(incident),
                    DIST_TAGS_NOTE,
                    orjson.dumps(list(assessment.dist_tags)).decode(),
                )
            return assessment
        url = await self._tarball_url(client, incident, packument)
        status = await client.http.head(url, ecosystem=Ecosystem.NPM.value)
        if status not in GONE:
            log.info(
                "containment_tarball_still_served",
                ecosystem="npm",
                package=incident.name,
                version=incident.version,
                url=safe_url(url),
                status=status,
            )
        return assess_npm(packument, incident.name, incident.version, tarball_status=status)

    async def _tarball_url(
        self, client: NpmClient, incident: Incident, packument: Packument | None
    ) -> str:
        """The URL the release was downloaded from when the store has it, else npm's layout."""
        if incident.release_id is not None:
            stored = await self.store.get_release_by_id(incident.release_id)
            if stored is not None and stored.release.artifacts:
                url = stored.release.artifacts[0].url
                if url:
                    return url
        registry = client.registry_for(incident.name)  # the scope's own registry, if it has one
        packument_url(registry, incident.name)  # validates the name
        base = incident.name.rsplit("/", 1)[-1]
        return f"{registry}{incident.name}/-/{base}-{incident.version}.tgz"

    async def _assess_pypi(self, client: PypiClient, incident: Incident) -> Assessment:
        try:
            page = await client.project(incident.name)
        except HttpStatusError as exc:
            if exc.status not in GONE:
                raise
            page = None
        return assess_pypi(page, incident.name, incident.version)

    async def _resolve(self, incident: Incident, assessment: Assessment) -> bool:
        return await self.lifecycle.resolve(incident, assessment.resolution, assessment.detail)

    async def _post_update(self, incident: Incident, mitigation: Mitigation) -> bool:
        return await self.lifecycle.mitigated(incident, mitigation.kind, mitigation.message)


def _tags(note: str | None) -> list[str] | None:
    if note is None:
        return None
    try:
        value: Any = orjson.loads(note)
    except orjson.JSONDecodeError:
        return None
    return [t for t in value if isinstance(t, str)] if isinstance(value, list) else None
