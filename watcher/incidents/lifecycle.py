"""The incident lifecycle: report → incident → events (opened, updated, resolved).

One home for every change an incident goes through, whoever notices it: the scan workers hand over
a report (policy decides, the runbook is built, the incident opens, or files added to the release
update it); the containment watcher hands over what the registry now serves (a mitigation updates
it, containment resolves it); the operator commands ask for a test incident or a runbook. Each
change is one store transaction that records the incident and queues one delivery of its event per
channel of the owner, so a crash can neither lose a page nor send it twice.

Event ids are stable (`<dedup key>#<event type>[:<kind>]`): the receivers' idempotency key, the
same across retries and restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import structlog

from watcher import ecosystems, metrics
from watcher.alerts.payload import describe_finding, time_to_contain
from watcher.config.schema import Config, channel_id
from watcher.incidents.eligibility import opening_hold
from watcher.incidents.policy import decide
from watcher.incidents.runbook import RegistryFor, RunbookWriter, rotation_reminder
from watcher.intent.approvals import RULE as UNAPPROVED_RULE
from watcher.model import (
    AlertEvent,
    Category,
    Ecosystem,
    EventType,
    Finding,
    Incident,
    IncidentState,
    Manifest,
    Release,
    Report,
    RunbookStep,
    Severity,
    fingerprint,
    incident_key,
    log_keys,
)
from watcher.scanning.checks.changes import raise_with_origin
from watcher.store.api import Store
from watcher.store.types import (
    Approval,
    Delivery,
    IncidentUpdate,
    OriginCheck,
    StoredRelease,
)
from watcher.timefmt import iso

log = structlog.get_logger(__name__)

TEST_PACKAGE = "registry-watcher-test-alert"

# The registry serving one package (npm scopes may live elsewhere), for the runbook's commands.


def event_id_for(dedup_key: str, event: EventType, kind: str | None = None) -> str:
    """Stable across retries and restarts: the same incident event always has the same id. An
    update names its kind (one per mitigation, one per set of added findings)."""
    base = f"{dedup_key}#{event.value}"
    return base if kind is None else f"{base}:{kind}"


# ------------------------------------------------------------------------------------- events


def opened(incident: Incident) -> AlertEvent:
    return AlertEvent(
        EventType.OPENED, incident, event_id_for(incident.dedup_key, EventType.OPENED)
    )


def updated(incident: Incident, kind: str, message: str) -> AlertEvent:
    return AlertEvent(
        EventType.UPDATED,
        incident,
        event_id_for(incident.dedup_key, EventType.UPDATED, kind),
        message=message,
    )


def resolved(incident: Incident, message: str | None) -> AlertEvent:
    return AlertEvent(
        EventType.RESOLVED,
        incident,
        event_id_for(incident.dedup_key, EventType.RESOLVED),
        message=message,
    )


def test_incident(owner: str, now: datetime, ecosystem: Ecosystem | None = None) -> Incident:
    """A test incident no one can mistake for a page: `test` set (channels mark it [TEST]), an
    info finding that says so, a one-step runbook, and a dedup key of its own each time. It
    concerns no registry; it names the first registered ecosystem unless told otherwise."""
    version = f"0.0.0-test.{int(now.timestamp())}"
    eco = ecosystem if ecosystem is not None else ecosystems.names()[0]
    return Incident(
        dedup_key=incident_key(eco, TEST_PACKAGE, version),
        ecosystem=eco,
        name=TEST_PACKAGE,
        version=version,
        owner=owner,
        opened_at=now,
        published_at=now,
        findings=[
            Finding(
                rule="test-alert",
                category=Category.UNEXPECTED_CONTENT,
                severity=Severity.INFO,
                path="(test)",
                message="This is a test alert from registry-watcher: no release is affected.",
            )
        ],
        runbook=[
            RunbookStep(
                "This is a test: nothing to contain. Check that it reached the right people and "
                "place, then close it."
            )
        ],
        test=True,
    )


# ---------------------------------------------------------------------------------- lifecycle


@dataclass(frozen=True, slots=True)
class _Write:
    """What a result writes with it in its transaction: the incident opened (`opening`) or an
    update of the one that exists, with their deliveries."""

    opening: Incident | None = None
    update: IncidentUpdate | None = None
    deliveries: tuple[Delivery, ...] = ()
    existing: Incident | None = None


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """What a scan's report did to incidents."""

    paged: bool  # an event was queued (an incident opened, or updated with new findings)
    incident: Incident | None = None  # the stored incident it opened or updated


def owner_channels(config: Config, owner: str) -> list[str] | None:
    """The owner's channel ids; None when the owner is no longer configured."""
    owner_config = config.owners.get(owner)
    if owner_config is None:
        return None
    return [channel_id(owner, kind) for kind in owner_config.channel_kinds()]


def deliveries_of(
    event: AlertEvent, channels: Sequence[str], hold_until: float | None = None
) -> list[Delivery]:
    """One delivery of `event` per channel (held until `hold_until` when set)."""
    return [Delivery(channel, event, hold_until) for channel in channels]


@dataclass(frozen=True, slots=True)
class IncidentBuilder:
    """The incident a scan or a check warrants, before anything is stored: policy's decision, the
    owner, the runbook."""

    config: Config
    runbooks: RunbookWriter

    def assess(
        self,
        stored: StoredRelease,
        report: Report,
        baseline_version: str | None,
        baseline: Manifest | None,
    ) -> Incident | None:
        """The page this scan warrants (findings, runbook), or None."""
        release = stored.release
        if stored.baseline:
            return None  # first sight of the package: its manifest is the yardstick only
        policy = self.config.policy
        previous = baseline.fingerprints if baseline is not None else None
        decision = decide(
            report.findings,
            package=release.name,
            page_at=policy.page_at,
            allow=policy.allow,
            today=date.today(),
            previous=previous,
        )
        for finding, reason in decision.allowed:
            log.info(
                "finding_allowed",
                **log_keys(release),
                rule=finding.rule,
                path=finding.path,
                reason=reason,
            )
        if not decision.pages:
            return None
        owner = self.config.owner_of(release.ecosystem, release.name)
        if owner is None:
            log.warning(
                "no_owner_to_page",
                **log_keys(release),
            )
            return None
        return self.new(release, owner, decision.page, baseline_version)

    def new(
        self, release: Release, owner: str, findings: list[Finding], baseline_version: str | None
    ) -> Incident:
        """A new incident of `release` with these findings and its runbook."""
        now = datetime.now(UTC)
        incident = Incident(
            dedup_key=incident_key(release.ecosystem, release.name, release.version),
            ecosystem=release.ecosystem,
            name=release.name,
            version=release.version,
            owner=owner,
            opened_at=now,
            findings=findings,
            published_at=release.published_at,
        )
        incident.runbook = self.runbooks.of(incident, baseline_version, now)
        return incident


class IncidentLifecycle:
    """Every incident change, each one store transaction with its deliveries. `on_page` is called
    after deliveries were queued (the outbox's `wake`)."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        registry_for: RegistryFor | None = None,
        on_page: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.runbooks = RunbookWriter(config, registry_for)
        self.builder = IncidentBuilder(config, self.runbooks)
        self.on_page = on_page
        self.clock = clock

    # -- report → incident ----------------------------------------------------------------------

    async def record_scan(
        self,
        stored: StoredRelease,
        report: Report,
        baseline_version: str | None,
        baseline: Manifest | None,
        bound: structlog.BoundLogger | None = None,
    ) -> ScanOutcome:
        """The scan's findings and manifest, the release done, and the incident it opens or
        updates with its deliveries: one store transaction."""
        page = self.builder.assess(stored, report, baseline_version, baseline)
        # files added to the release after its page: only what is new pages again
        write = await self._write(
            page,
            stored,
            lambda existing, page: self._findings_added(existing, page, baseline_version),
        )
        # Shielded: once the result is computed, a shutdown must not cut its transaction short.
        recorded, queued = await asyncio.shield(
            self.store.mark_scanned(
                stored.id,
                report.findings,
                report.manifest,
                incident=write.opening,
                update=write.update,
                deliveries=write.deliveries,
                owner=stored.claimed_by,
            )
        )
        return self._announce(
            bound if bound is not None else log,
            write,
            queued=queued,
            recorded=recorded,
            reason="new findings in files added to the release",
            stage="policy",
        )

    def _findings_added(
        self, existing: Incident, page: Incident, baseline_version: str | None
    ) -> tuple[IncidentUpdate | None, list[Delivery]]:
        """The release was paged before and is scanned again because files were added to it
        (PyPI: a wheel uploaded after the sdist). Findings the incident already carries page
        nothing; new ones are posted as an update of the same incident (same dedup key, so
        PagerDuty adds it to the open alert), reopening it if it had been resolved."""

        def message(added: list[Finding]) -> str:
            files = sorted({f.path.split("/", 1)[0] for f in added})
            return (
                f"{len(added)} new finding(s) in file(s) added to the release after the first page"
                f" ({', '.join(files)}): {describe_finding(added[0])}"
            )

        return self._update_with_new(
            existing, page, baseline_version, kind="findings", message=message, first=False
        )

    def _update_with_new(
        self,
        existing: Incident,
        page: Incident,
        baseline_version: str | None,
        *,
        kind: str,
        message: Callable[[list[Finding]], str],
        first: bool,
    ) -> tuple[IncidentUpdate | None, list[Delivery]]:
        """The findings of `page` that `existing` does not carry yet, as one update of it (kind
        `<kind>-<digest of those findings>`, so the same set updates once), reopening it if it was
        resolved; `first`: the new findings go before the incident's own."""
        known = {f.fingerprint for f in existing.findings}
        added = sorted(
            (f for f in page.findings if f.fingerprint not in known),
            key=lambda f: (-f.severity.rank, f.path, f.line or 0, f.rule),
        )
        if not added:
            return None, []
        findings = [*added, *existing.findings] if first else [*existing.findings, *added]
        merged = replace(existing, findings=findings, resolved_at=None, resolution=None)
        merged.runbook = self.runbooks.of(merged, baseline_version, datetime.now(UTC))
        digest = hashlib.sha256(
            "\0".join(sorted(f.fingerprint for f in added)).encode()
        ).hexdigest()[:16]
        kind = f"{kind}-{digest}"
        text = message(added)
        if existing.state is IncidentState.RESOLVED:
            text += "; the incident is open again"
        update = IncidentUpdate(merged, kind, text)
        channels = owner_channels(self.config, merged.owner)
        if channels is None:
            log.warning("no_owner_to_page", dedup_key=merged.dedup_key, owner=merged.owner)
            return update, []
        return update, deliveries_of(updated(merged, kind, text), channels)

    # -- origin checks judged after their grace -------------------------------------------------

    async def origin_findings(
        self,
        stored: StoredRelease,
        check: OriginCheck,
        findings: Sequence[Finding],
        detail: str,
        *,
        owner: str,
        baseline_version: str | None = None,
        bound: structlog.BoundLogger | None = None,
    ) -> ScanOutcome:
        """A deferred origin check's verdict (approval, tag, attestations): its findings go on
        the release; those policy pages open the release's incident, or update it when it is
        open already (once per check kind and set of findings), in the same store transaction
        that finishes the check (`owner` must still hold its claim)."""
        release = stored.release
        bound = bound if bound is not None else log
        page = None
        if not stored.baseline and findings:
            policy = self.config.policy
            # what changed in the release (its scan's findings) is riskier beside an origin
            # finding: medium what-changed rules are raised to high and page with it
            scanned = await self.store.get_findings(stored.id)
            raised = raise_with_origin([*scanned, *findings])
            decision = decide(
                [*findings, *raised],
                package=release.name,
                page_at=policy.page_at,
                allow=policy.allow,
                today=date.today(),
                previous=None,
            )
            who = self.config.owner_of(release.ecosystem, release.name)
            if decision.pages and who is not None:
                page = self.builder.new(release, who, decision.page, baseline_version)
        write = await self._write(
            page,
            stored,
            lambda existing, page: self._origin_added(existing, page, check, baseline_version),
        )
        recorded, queued = await asyncio.shield(
            self.store.finish_origin_check(
                check.id,
                detail,
                owner=owner,
                findings=findings,
                incident=write.opening,
                update=write.update,
                deliveries=write.deliveries,
            )
        )
        return self._announce(
            bound,
            write,
            queued=queued,
            recorded=recorded,
            reason=f"{check.kind} check",
            stage="origin",
            check=check.kind,
        )

    def _opening(self, page: Incident, stored: StoredRelease) -> tuple[Incident, list[Delivery]]:
        """A new incident for `page` and its opening pages. Automatic containment will act: the
        pages wait (at most a few seconds) so they can say what was done."""
        opening = replace(page, release_id=stored.id)
        hold = opening_hold(self.config, opening, self.clock())
        return opening, deliveries_of(
            opened(opening), owner_channels(self.config, page.owner) or [], hold
        )

    async def _write(
        self,
        page: Incident | None,
        stored: StoredRelease,
        added: Callable[[Incident, Incident], tuple[IncidentUpdate | None, list[Delivery]]],
    ) -> _Write:
        """What `page` writes: a new incident with its opening pages, or, when the release has
        one already, what `added` makes of the page for it (an update, or nothing)."""
        if page is None:
            return _Write()
        existing = await self.store.get_incident(page.dedup_key)
        if existing is None:
            opening, deliveries = self._opening(page, stored)
            return _Write(opening=opening, deliveries=tuple(deliveries))
        update, deliveries = added(existing, page)
        return _Write(update=update, deliveries=tuple(deliveries), existing=existing)

    def _announce(
        self,
        bound: structlog.BoundLogger,
        write: _Write,
        *,
        queued: bool,
        recorded: Incident | None,
        reason: str,
        **context: str,
    ) -> ScanOutcome:
        """After the transaction: the log event and the outbox's wake-up for what it queued."""
        opening, update, existing = write.opening, write.update, write.existing
        channels = [d.channel for d in write.deliveries]
        if queued and opening is not None:
            metrics.INCIDENTS_OPENED.labels(opening.ecosystem.value).inc()
            bound.warning(
                "incident_opened",
                **context,
                dedup_key=opening.dedup_key,
                owner=opening.owner,
                severity=opening.worst().value,
                channels=channels,
            )
            self.on_page()
        elif queued and update is not None and recorded is not None:
            bound.warning(
                "incident_updated",
                **context,
                dedup_key=recorded.dedup_key,
                owner=recorded.owner,
                severity=update.incident.worst().value,
                reason=reason,
                reopened=existing is not None and existing.state is IncidentState.RESOLVED,
                channels=channels,
            )
            self.on_page()
        return ScanOutcome(queued, recorded if queued else None)

    def _origin_added(
        self,
        existing: Incident,
        page: Incident,
        check: OriginCheck,
        baseline_version: str | None,
    ) -> tuple[IncidentUpdate | None, list[Delivery]]:
        """The release already has an incident (its scan paged): the origin findings it does
        not carry yet are one update of it, once per check kind and set of findings."""
        return self._update_with_new(
            existing,
            page,
            baseline_version,
            kind=f"origin-{check.kind}",
            message=lambda added: f"{len(added)} origin finding(s): {describe_finding(added[0])}",
            first=True,
        )

    # -- an approval that arrives after the page ------------------------------------------------

    async def approval_arrived(self, approval: Approval) -> str | None:
        """The gate approved an artifact of a release already paged as unapproved (a publish by
        hand, approved afterwards): when every `release-unapproved` finding of the open incident
        is now covered and nothing else in it pages, it is resolved ("approved"); otherwise the
        approval is posted as an update and it stays open. Returns what was done, or None."""
        key = incident_key(approval.ecosystem, approval.name, approval.version)
        incident = await self.store.get_incident(key)
        if incident is None or incident.state is IncidentState.RESOLVED or incident.id is None:
            return None
        unapproved = [f for f in incident.findings if f.rule == UNAPPROVED_RULE]
        if not any(_covers(approval, f) for f in unapproved):
            return None
        known = await self.store.approvals(approval.ecosystem, approval.name, approval.version)
        uncovered = [f for f in unapproved if not any(_covers(a, f) for a in known)]
        others = [
            f
            for f in incident.findings
            if f.rule != UNAPPROVED_RULE and f.severity.at_least(self.config.policy.page_at)
        ]
        who = f"{approval.token_name} at {iso(approval.created_at)}"
        if not uncovered and not others:
            detail = (
                f"the gate approved the published artifact(s) after the page ({who}): every "
                "artifact of the release now matches an approval. If nobody on the team ran "
                "that gate, the token that posted it is compromised too: reopen and revoke it."
            )
            await self.resolve(incident, "approved", detail)
            return "resolved"
        left = (
            f"{len(uncovered)} artifact(s) still unapproved"
            if uncovered
            else f"{len(others)} other finding(s) still page"
        )
        message = (
            f"the gate approved {approval.sha256[:16]}… after the page ({who}); the incident "
            f"stays open: {left}"
        )
        await self.mitigated(incident, f"approved-{approval.sha256[:16]}", message)
        return "updated"

    # -- what the registry now serves ----------------------------------------------------------

    def _owner_channels(self, incident: Incident) -> list[str]:
        channels = owner_channels(self.config, incident.owner)
        if channels is None:
            log.warning(
                "containment_owner_unconfigured",
                dedup_key=incident.dedup_key,
                owner=incident.owner,
                hint="no channel gets this event",
            )
            return []
        return channels

    async def mitigated(self, incident: Incident, kind: str, message: str) -> bool:
        """A step that limits the damage without removing the artifact (deprecated, a dist-tag
        moved, yanked): one update per kind, recorded with the incident so it is posted once."""
        event = updated(incident, kind, message)
        posted = await self.store.add_incident_note(
            stored_id(incident),
            kind,
            message,
            deliveries_of(event, self._owner_channels(incident)),
        )
        if posted:
            metrics.MITIGATIONS.labels(incident.ecosystem.value, kind).inc()
            log.info(
                "mitigation_posted",
                **log_keys(incident),
                dedup_key=incident.dedup_key,
                kind=kind,
            )
            self.on_page()
        return posted

    async def resolve(self, incident: Incident, resolution: str | None, detail: str | None) -> bool:
        """The artifact is no longer served: resolve the incident on every channel of its owner,
        with what contained it and the time to contain. False when it was already resolved."""
        now = self.clock()
        page = replace(
            incident,
            resolved_at=datetime.fromtimestamp(now, UTC),
            resolution=resolution,
        )
        reminder = rotation_reminder(incident.findings)
        if reminder:
            detail = f"{detail}\n{reminder}" if detail else reminder
        event = resolved(page, detail)
        _, done = await self.store.resolve_incident(
            incident.dedup_key,
            resolution or "contained",
            deliveries_of(event, self._owner_channels(incident)),
            now=now,
        )
        if not done:
            return False
        eco = incident.ecosystem.value
        took = time_to_contain(page)
        metrics.INCIDENTS_RESOLVED.labels(eco).inc()
        if took is not None:
            metrics.TIME_TO_CONTAIN.labels(eco).observe(took)
        log.info(
            "incident_resolved",
            **log_keys(incident),
            dedup_key=incident.dedup_key,
            resolution=resolution,
            time_to_contain_s=None if took is None else round(took, 1),
        )
        self.on_page()
        return True


def stored_id(incident: Incident) -> int:
    """The store's id of an incident read from it (one that was never stored has none)."""
    if incident.id is None:
        raise ValueError(f"{incident.dedup_key}: not a stored incident")
    return incident.id


def _covers(approval: Approval, finding: Finding) -> bool:
    """Whether `approval` matches the artifact a `release-unapproved` finding names: its
    fingerprint is made of the file name and the artifact's sha256 (or its declared integrity
    when it was never downloaded), and a stored incident keeps the fingerprint."""
    return any(
        digest and fingerprint(UNAPPROVED_RULE, finding.path, digest) == finding.fingerprint
        for digest in (approval.sha256, approval.integrity)
    )
