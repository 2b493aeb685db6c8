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

What "gone" and "mitigated" mean is each ecosystem's: its unit's containment probe re-reads the
registry (`assess_containment` of the connected registry); the `ContainmentWatcher` asks it, keeps
the notes it wants kept, and hands what it found to the incident lifecycle
(`watcher.incidents.lifecycle`), which records the update or the resolution and queues its pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from watcher import metrics
from watcher.config import Config
from watcher.ecosystems.base import Assessment, ContainmentQuery, Mitigation, Registry
from watcher.errors import RegistryError
from watcher.incidents.internal_names import is_internal_name
from watcher.incidents.lifecycle import IncidentLifecycle, stored_id
from watcher.model import Ecosystem, Incident, log_keys
from watcher.store.api import Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check of one incident found and did."""

    dedup_key: str
    contained: bool
    resolved: bool = False  # this check resolved it
    resolution: str | None = None
    posted: tuple[str, ...] = ()  # mitigation kinds posted by this check
    error: str | None = None


# ------------------------------------------------------------------------------------ the worker


@dataclass(slots=True)
class ContainmentWatcher:
    """Every `interval` seconds, `check_once()` over the store's open incidents. `on_page` is
    called after pages were queued (the outbox's `wake`)."""

    store: Store
    config: Config
    registries: Mapping[Ecosystem, Registry]
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
            if is_internal_name(incident):
                continue  # someone else's package: the registry takes it down, not the owner
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
                **log_keys(incident),
                reason=reason,
            )
            return CheckResult(incident.dedup_key, contained=False, error=reason)
        metrics.CONTAINMENT_CHECKS.labels(eco, "contained" if result.contained else "open").inc()
        return result

    async def _check(self, incident: Incident) -> CheckResult:
        registry = self.registries.get(incident.ecosystem)
        if registry is None:
            raise RegistryError(f"no {incident.ecosystem.value} registry configured")
        notes = await self.store.incident_notes(stored_id(incident))
        assessment = await registry.assess_containment(
            ContainmentQuery(
                incident.name, incident.version, notes, lambda: self._artifact_url(incident)
            )
        )
        for kind, note in assessment.record.items():
            await self.store.add_incident_note(stored_id(incident), kind, note)
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

    async def _artifact_url(self, incident: Incident) -> str | None:
        """The URL the release was downloaded from, when the store has it."""
        if incident.release_id is None:
            return None
        stored = await self.store.get_release_by_id(incident.release_id)
        if stored is None or not stored.release.artifacts:
            return None
        return stored.release.artifacts[0].url or None

    async def _resolve(self, incident: Incident, assessment: Assessment) -> bool:
        return await self.lifecycle.resolve(incident, assessment.resolution, assessment.detail)

    async def _post_update(self, incident: Incident, mitigation: Mitigation) -> bool:
        return await self.lifecycle.mitigated(incident, mitigation.kind, mitigation.message)
