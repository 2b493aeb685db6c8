"""`internal-name-published`: a package bearing one of the owner's internal names appeared on the
public registry. One incident per name (dedup key `watcher/<ecosystem>/<name>`, no version): the
versions it listed when it opened are recorded with it, and each version published later is one
update of the same incident (recorded as a note, so it is posted once whoever sees it first).

It concerns a package that is not the owner's: nothing here is contained by the owner, so the
containment watcher and auto-containment leave these incidents alone (`is_internal_name`); the
registry's takedown and the owner's proxy block are the runbook's. The incident is resolved when
the public registry no longer serves the name (404, a tombstone, no version left), as the feed
or the poll sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog

from watcher import metrics
from watcher.config.schema import Config
from watcher.feeds.internal import RULE, InternalNameSighting, Publish
from watcher.incidents.lifecycle import IncidentLifecycle, opened, owner_channels, updated
from watcher.model import Category, Ecosystem, Finding, Incident, IncidentState, Severity
from watcher.store.api import Store
from watcher.store.types import Delivery
from watcher.timefmt import iso

log = structlog.get_logger(__name__)

_NOTE = "published-"  # + version: the versions an incident has told the owner about
_SHOWN = 5  # versions named in a message


def internal_name_key(sighting: InternalNameSighting) -> str:
    return f"watcher/{sighting.ecosystem.value}/{sighting.package.name}"


def is_internal_name(incident: Incident) -> bool:
    """An incident about someone else's package bearing an internal name (nothing to contain)."""
    return bool(incident.findings) and all(f.rule == RULE for f in incident.findings)


def _who(publish: Publish) -> str:
    return publish.publisher or "an unknown publisher (the registry does not say)"


def _publish_line(publish: Publish) -> str:
    when = iso(publish.published_at) or "an unknown time"
    return f"{publish.version} by {_who(publish)} at {when}"


def finding_of(sighting: InternalNameSighting) -> Finding:
    package = sighting.package
    listed = list(package.publishes)
    shown = "; ".join(_publish_line(p) for p in listed[-_SHOWN:])
    more = f" (and {len(listed) - _SHOWN} earlier)" if len(listed) > _SHOWN else ""
    maintainers = ", ".join(package.maintainers) if package.maintainers else "not stated"
    return Finding(
        rule=RULE,
        category=Category.PROVENANCE,
        severity=Severity.HIGH,
        path="(registry)",
        message=(
            f"{package.name} matches the internal name {sighting.rule.pattern!r} and was "
            f"published on the public registry, which is not where it lives: {shown}{more}. "
            f"Maintainers: {maintainers}. First seen at {iso(sighting.seen_at)} (feed "
            f"{sighting.feed}). Dependency confusion or a wrong-registry publish."
        ),
        key=package.name,
        fingerprint=f"{RULE}:{sighting.ecosystem.value}:{package.name}",
    )


class InternalNameReporter:
    """The `SightingSink` the service hands the feeds: opens the name's incident with its pages,
    or posts the versions it has not told yet as updates. `on_page`: the outbox's wake."""

    def __init__(
        self, store: Store, config: Config, *, on_page: Callable[[], None] = lambda: None
    ) -> None:
        self.store = store
        self.config = config
        self.on_page = on_page

    def _channels(self, owner: str) -> list[str]:
        channels = owner_channels(self.config, owner)
        if channels is None:
            log.warning("no_owner_to_page", owner=owner, rule=RULE)
            return []
        return channels

    async def gone(self, ecosystem: Ecosystem, name: str, feed: str) -> None:
        """Resolve the name's open incident: the public registry no longer serves it."""
        incident = await self.store.get_incident(f"watcher/{ecosystem.value}/{name}")
        if incident is None or incident.state is IncidentState.RESOLVED:
            return
        lifecycle = IncidentLifecycle(self.store, self.config, on_page=self.on_page)
        await lifecycle.resolve(
            incident,
            "removed from the public registry",
            f"{name} is no longer served by the public registry (seen by {feed}); keep the "
            "proxy block in place: the name can be registered again",
        )

    async def published(self, sighting: InternalNameSighting) -> None:
        key = internal_name_key(sighting)
        package = sighting.package
        existing = await self.store.get_incident(key)
        if existing is None:
            await self._record(await self._open(sighting, key), package.publishes)
            return
        notes = await self.store.incident_notes(_id(existing))
        told = {k.removeprefix(_NOTE) for k in notes if k.startswith(_NOTE)}
        for publish in package.publishes:
            if publish.version in told:
                continue
            kind = f"{_NOTE}{publish.version}"
            message = (
                f"another version of {package.name} on the public registry: "
                f"{_publish_line(publish)}"
            )
            if existing.state is IncidentState.RESOLVED:
                message += " (after the incident was resolved: the name is public again)"
            deliveries = [
                Delivery(c, updated(existing, kind, message))
                for c in self._channels(existing.owner)
            ]
            if await self.store.add_incident_note(_id(existing), kind, message, deliveries):
                log.warning(
                    "incident_updated",
                    stage="internal-names",
                    dedup_key=key,
                    owner=existing.owner,
                    reason="a later version of an internal name on the public registry",
                    version=publish.version,
                )
                self.on_page()

    async def _open(self, sighting: InternalNameSighting, key: str) -> Incident:
        package = sighting.package
        newest = package.publishes[-1]
        incident = Incident(
            dedup_key=key,
            ecosystem=sighting.ecosystem,
            name=package.name,
            version=newest.version,
            owner=sighting.rule.owner,
            opened_at=datetime.now(UTC),
            findings=[finding_of(sighting)],
            published_at=package.publishes[0].published_at,
            runbook=list(sighting.runbook),
            links={"registry": package.url} if package.url else {},
        )
        deliveries = [Delivery(c, opened(incident)) for c in self._channels(incident.owner)]
        stored, created = await self.store.open_incident_with_outbox(incident, deliveries)
        if created:
            metrics.INCIDENTS_OPENED.labels(incident.ecosystem.value).inc()
            log.warning(
                "incident_opened",
                stage="internal-names",
                dedup_key=key,
                owner=incident.owner,
                severity=Severity.HIGH.value,
                channels=[d.channel for d in deliveries],
            )
            if deliveries:
                self.on_page()
        return stored

    async def _record(self, incident: Incident, publishes: Sequence[Publish]) -> None:
        """The versions the opening page listed: recorded, not posted again."""
        for publish in publishes:
            await self.store.add_incident_note(
                _id(incident), f"{_NOTE}{publish.version}", _publish_line(publish)
            )


def _id(incident: Incident) -> int:
    if incident.id is None:
        raise ValueError(f"{incident.dedup_key}: not a stored incident")
    return incident.id
