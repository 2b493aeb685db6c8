"""The store as the rest of the service sees it: one protocol per concern.

Callers type against these, never against an implementation (`watcher.store.open_store` picks
one). They are written for a store shared by several processes on several machines, not only for
the embedded one-file store:

- a release is *claimed* by an owner for a lease (`Claimant`); the holder renews its claims while
  it works and every result it writes names it, so a result written after the lease went to
  another owner is refused (`ClaimLost`) instead of overwriting that owner's;
- a cursor write may carry the writer's feed-leader epoch (`CursorWrite.epoch`), refused when
  stale (`StaleEpoch`) by a store that elects feed leaders;
- wake-ups are the store's `notifications`: an implementation tells subscribers that releases
  became pending or pages were queued, in this process (embedded) or across processes (a server
  database's notify), so no caller assumes the writer shares its process;
- pages leave a channel in the order they were queued (`outbox_head`); only the head is tried;
- an incident is `watcher.model.Incident` (its `id` is the store's); the outbox keeps each event
  of an incident once, as it was when it happened, and one delivery of it per channel.

Every write that must not be half-done is one call: a feed step (`record_batch`), a scan result
with its incident and pages (`mark_scanned`), an incident and its pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from watcher.model import Ecosystem, Finding, Incident, Manifest
from watcher.store.types import (
    Approval,
    ChannelMessage,
    ChannelQueue,
    Claimant,
    ContainmentJob,
    Cursor,
    Delivery,
    DisabledChannel,
    FeedBatch,
    IncidentUpdate,
    JobState,
    Lease,
    NewApproval,
    NewJob,
    OriginCheck,
    OutboxItem,
    PackageState,
    ReleaseState,
    Removal,
    Requeued,
    StatusSummary,
    StoreCounts,
    StoredRelease,
    Topic,
)

Listener = Callable[[], None]


@runtime_checkable
class Notifications(Protocol):
    """Wake-ups after a committed change. A listener is a cheap, non-blocking callable (it sets an
    event); it may be called more often than needed, and a subscriber still polls now and then,
    since changes made by other processes may arrive late or not at all."""

    def subscribe(self, topic: Topic, listener: Listener) -> Callable[[], None]:
        """Call `listener` after each change on `topic`; returns the unsubscribe function."""
        ...

    def notify(self, topic: Topic) -> None: ...


@runtime_checkable
class FeedStateStore(Protocol):
    """Feed memory: cursors, per-package state, what left the registry."""

    async def get_cursor(self, feed: str) -> str | None: ...

    async def set_cursor(
        self, feed: str, cursor: str, *, epoch: int | None = None, now: float | None = None
    ) -> None: ...

    async def cursors(self) -> list[Cursor]: ...

    async def get_package_state(self, ecosystem: Ecosystem, name: str) -> PackageState | None: ...

    async def set_package_state(
        self, ecosystem: Ecosystem, name: str, state: PackageState, *, now: float | None = None
    ) -> None: ...

    async def known_packages(self, ecosystem: Ecosystem) -> list[str]: ...

    async def removals(self, ecosystem: Ecosystem, name: str, version: str) -> list[Removal]: ...


@runtime_checkable
class ReleaseQueue(Protocol):
    """Releases and the scan queue: pending → scanning (claimed) → scanned | failed."""

    async def record_batch(
        self, batch: FeedBatch, *, now: float | None = None
    ) -> list[StoredRelease]:
        """Store a feed step in one transaction (see `FeedBatch`). New releases are pending; a
        known release that gained files is pending again (or rescanned after the scan in hand).
        Returns the releases that are new or got new files, in batch order."""
        ...

    async def get_release(
        self, ecosystem: Ecosystem, name: str, version: str
    ) -> StoredRelease | None: ...

    async def get_release_by_id(self, release_id: int) -> StoredRelease | None: ...

    async def releases_in_state(
        self, states: Iterable[ReleaseState], *, limit: int | None = None
    ) -> list[StoredRelease]: ...

    async def claim_pending(
        self, limit: int, *, claimant: Claimant | None = None, now: float | None = None
    ) -> list[StoredRelease]:
        """Claim up to `limit` due releases (attempts + 1), oldest first, at most one per package
        and none of a package with a live claim: a package's releases are scanned in order. A
        claim whose lease expired is taken over like a pending release. Without a claimant the
        claim has no lease (held until `requeue_scanning`)."""
        ...

    async def renew_claims(
        self, ids: Sequence[int], claimant: Claimant, *, now: float | None = None
    ) -> list[int]:
        """Extend the leases `claimant` still holds among `ids`; returns those (others: lost)."""
        ...

    async def next_due_at(self) -> float | None: ...

    async def requeue_scanning(self, *, now: float | None = None) -> int:
        """At start: claims whose holder is gone go back to pending, their attempt counted. The
        embedded store has one service per file, so every claim is such a one; a shared store
        only requeues claims whose lease expired."""
        ...

    async def unclaim(
        self, release_id: int, *, owner: str | None = None, now: float | None = None
    ) -> None:
        """Graceful shutdown: back to pending, the attempt not counted."""
        ...

    async def mark_scanned(
        self,
        release_id: int,
        findings: Sequence[Finding],
        manifest: Manifest,
        *,
        incident: Incident | None = None,
        update: IncidentUpdate | None = None,
        deliveries: Sequence[Delivery] = (),
        owner: str | None = None,
        now: float | None = None,
    ) -> tuple[Incident | None, bool]:
        """Findings, manifest, state and the incident with its pages in one transaction; returns
        (incident, created) or with `update` (incident, applied). With `owner`: `ClaimLost` when
        the claim is no longer theirs."""
        ...

    async def schedule_retry(
        self,
        release_id: int,
        error: str,
        next_attempt_at: float,
        *,
        owner: str | None = None,
        now: float | None = None,
    ) -> None: ...

    async def mark_failed(
        self, release_id: int, error: str, *, owner: str | None = None, now: float | None = None
    ) -> None: ...

    async def retry_failed(self, release_id: int, *, now: float | None = None) -> bool: ...

    async def retry_all_failed(self, *, now: float | None = None) -> list[StoredRelease]: ...


@runtime_checkable
class ManifestStore(Protocol):
    """What a scan leaves behind: findings and the manifest (the baseline of the next version)."""

    async def get_findings(self, release_id: int) -> list[Finding]: ...

    async def get_manifest(
        self, ecosystem: Ecosystem, name: str, version: str
    ) -> Manifest | None: ...

    async def manifest_versions(self, ecosystem: Ecosystem, name: str) -> list[str]:
        """Every version of the package that has a manifest (in no particular order)."""
        ...


@runtime_checkable
class IncidentStore(Protocol):
    """Incidents (one per dedup key) and the notes recorded on them, each with its pages."""

    async def open_incident_with_outbox(
        self, incident: Incident, deliveries: Sequence[Delivery], *, now: float | None = None
    ) -> tuple[Incident, bool]: ...

    async def resolve_incident(
        self,
        dedup_key: str,
        resolution: str,
        deliveries: Sequence[Delivery] = (),
        *,
        now: float | None = None,
    ) -> tuple[Incident | None, bool]: ...

    async def get_incident(self, dedup_key: str) -> Incident | None: ...

    async def open_incidents(self) -> list[Incident]: ...

    async def incident_notes(self, incident_id: int) -> dict[str, str]: ...

    async def add_incident_note(
        self,
        incident_id: int,
        kind: str,
        detail: str,
        deliveries: Sequence[Delivery] = (),
        *,
        now: float | None = None,
    ) -> bool: ...


@runtime_checkable
class OutboxStore(Protocol):
    """Pages per channel, delivered in queue order, and channels their endpoint disabled."""

    async def enqueue(
        self,
        deliveries: Sequence[Delivery],
        *,
        incident_id: int | None = None,
        now: float | None = None,
    ) -> list[int]: ...

    async def amend_held_event(
        self,
        incident_id: int,
        event_id: str,
        message: str | None,
        *,
        release: bool,
        now: float | None = None,
        margin: float = 0.5,
    ) -> bool: ...

    async def outbox_channels(self) -> list[str]: ...

    async def outbox_head(self, channel: str) -> OutboxItem | None: ...

    async def next_outbox_item(
        self, channel: str, *, now: float | None = None
    ) -> OutboxItem | None: ...

    async def mark_delivered(self, item_id: int) -> None: ...

    async def mark_retry(self, item_id: int, next_attempt_at: float, error: str) -> None: ...

    async def mark_dead(self, item_id: int, reason: str, *, now: float | None = None) -> None: ...

    async def dead_letters(self, limit: int | None = 100) -> list[OutboxItem]: ...

    async def outbox_queues(self) -> list[ChannelQueue]: ...

    async def requeue_dead(
        self,
        ids: Sequence[int] = (),
        *,
        channel: str | None = None,
        everything: bool = False,
        now: float | None = None,
    ) -> Requeued: ...

    async def disable_channel(
        self, channel: str, reason: str, recheck_at: float, *, now: float | None = None
    ) -> None: ...

    async def enable_channel(self, channel: str) -> bool: ...

    async def clear_disabled_channels(self) -> int: ...

    async def disabled_channel(self, channel: str) -> DisabledChannel | None: ...

    async def disabled_channels(self) -> list[DisabledChannel]: ...


@runtime_checkable
class LeaseStore(Protocol):
    """Named leases with epochs: one holder at a time (a feed's leader, a channel's sender)."""

    async def acquire_lease(
        self, name: str, owner: str, lease_s: float, *, now: float | None = None
    ) -> Lease | None:
        """Take the lease when it is free or expired (epoch + 1), renew it when `owner` holds it
        (same epoch); None while another owner holds it."""
        ...

    async def release_lease(self, name: str, owner: str) -> bool:
        """Give the lease up (only its holder can); the next acquirer gets a new epoch."""
        ...

    async def get_lease(self, name: str) -> Lease | None: ...

    async def leases(self) -> list[Lease]:
        """Every lease by name (who holds which role, until when: `watcher status`)."""
        ...


@runtime_checkable
class ContainmentJobStore(Protocol):
    """Automatic containment actions of incidents: durable jobs, each done at most once."""

    async def add_containment_jobs(
        self,
        incident_id: int,
        ecosystem: Ecosystem,
        name: str,
        jobs: Sequence[NewJob],
        *,
        now: float | None = None,
    ) -> list[ContainmentJob]:
        """Add the jobs the incident does not have yet (same action + target: kept as it is);
        returns every job of the incident, oldest first."""
        ...

    async def containment_jobs(self, incident_id: int) -> list[ContainmentJob]: ...

    async def due_containment_jobs(
        self, *, now: float | None = None, limit: int = 100
    ) -> list[ContainmentJob]: ...

    async def next_containment_job_at(self) -> float | None: ...

    async def finish_containment_job(
        self, job_id: int, state: JobState, detail: str, *, now: float | None = None
    ) -> bool:
        """Record the final outcome (not pending); False when the job already had one."""
        ...

    async def retry_containment_job(self, job_id: int, next_attempt_at: float, error: str) -> int:
        """A failed attempt, tried again at `next_attempt_at`; returns the attempts so far
        (0 when the job is no longer pending)."""
        ...

    async def containment_actions_since(
        self, ecosystem: Ecosystem, name: str, since: float
    ) -> int: ...


@runtime_checkable
class ApprovalStore(Protocol):
    """Approvals from the team's pre-publish gate: one per artifact, with who and when."""

    async def add_approval(
        self, approval: NewApproval, *, now: float | None = None
    ) -> tuple[Approval, bool]:
        """Record it; (stored, True) when new, (the earlier one, False) when this artifact
        (ecosystem, name, version, sha256) was approved before."""
        ...

    async def approvals(
        self, ecosystem: Ecosystem, name: str, version: str | None = None
    ) -> list[Approval]:
        """The package's approvals (of one version when given), oldest first."""
        ...

    async def recent_approvals(self, limit: int = 10) -> list[Approval]:
        """The last ones recorded, newest first."""
        ...


@runtime_checkable
class OriginCheckStore(Protocol):
    """Origin checks deferred until their grace ran out (approval, tag, late attestations):
    durable, claimed with a lease, finished with their findings and pages in one transaction."""

    async def schedule_origin_check(
        self,
        release_id: int,
        kind: str,
        due_at: float,
        params: Mapping[str, object] | None = None,
        *,
        now: float | None = None,
    ) -> OriginCheck:
        """One check per release and kind: a pending one keeps its due time (takes the new
        params), a done one is armed again at `due_at`."""
        ...

    async def origin_checks(self, release_id: int) -> list[OriginCheck]: ...

    async def claim_due_origin_checks(
        self, claimant: Claimant, *, now: float | None = None, limit: int = 20
    ) -> list[OriginCheck]:
        """Due checks, claimed (attempts + 1); expired claims are taken over."""
        ...

    async def next_origin_check_at(self) -> float | None: ...

    async def oldest_due_origin_check(self, *, now: float | None = None) -> float | None:
        """The due time of the oldest pending check that is due (None: none is)."""
        ...

    async def finish_origin_check(
        self,
        check_id: int,
        detail: str,
        *,
        owner: str,
        findings: Sequence[Finding] = (),
        incident: Incident | None = None,
        update: IncidentUpdate | None = None,
        deliveries: Sequence[Delivery] = (),
        now: float | None = None,
    ) -> tuple[Incident | None, bool]:
        """Done, with its findings on the release and the incident opened (or updated) with its
        pages; ClaimLost when `owner` no longer holds it."""
        ...

    async def reschedule_origin_check(
        self, check_id: int, due_at: float, detail: str, *, owner: str
    ) -> int:
        """Due again at `due_at`, claim released; returns the attempts so far."""
        ...


@runtime_checkable
class ChannelMessageStore(Protocol):
    """What a channel that edits its messages keeps of them (Slack's `ts` per incident)."""

    async def record_channel_message(
        self,
        channel: str,
        dedup_key: str,
        remote_channel: str,
        ref: str,
        *,
        now: float | None = None,
    ) -> bool: ...

    async def channel_message(self, channel: str, dedup_key: str) -> ChannelMessage | None: ...

    async def mark_channel_message_resolved(
        self, channel: str, dedup_key: str, *, now: float | None = None
    ) -> None: ...


@runtime_checkable
class StatusStore(Protocol):
    """Counts for the metrics and the summary `watcher status` prints."""

    async def counts(self, *, now: float | None = None) -> StoreCounts: ...

    async def status(self, *, now: float | None = None) -> StatusSummary: ...


@runtime_checkable
class Store(
    FeedStateStore,
    ReleaseQueue,
    ManifestStore,
    IncidentStore,
    OutboxStore,
    LeaseStore,
    StatusStore,
    ContainmentJobStore,
    ApprovalStore,
    OriginCheckStore,
    ChannelMessageStore,
    Protocol,
):
    """Every concern, as `open_store` returns it; `close()` when done (or `async with`)."""

    @property
    def notifications(self) -> Notifications: ...

    @property
    def location(self) -> str:
        """Where the state lives, for logs (a path, or a URL with the password masked)."""
        ...

    async def schema_version(self) -> int: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc: object) -> None: ...
