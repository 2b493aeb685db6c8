"""The values the store protocols exchange: what is stored and what each call returns.

Plain frozen dataclasses and enums, independent of any database, so every implementation of
`watcher.store.api` returns the same things. Times are unix seconds (float).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from watcher.errors import WatcherError
from watcher.model import AlertEvent, Ecosystem, EventType, Incident, Release


class StoreError(WatcherError):
    """The state cannot be used (newer schema, unknown release id, not a database)."""


class StateDamaged(StoreError):
    """The state file failed SQLite's integrity check: restore it from a backup, never start
    afresh over it (that would re-baseline every package and forget open incidents)."""


class ClaimLost(StoreError):
    """A result was written for a release whose claim is no longer the writer's (its lease
    expired and another owner took it): the other owner's result counts, this one is dropped."""


class StaleEpoch(StoreError):
    """A cursor write named an epoch older than the feed's current leader's: refused, so a paused
    old leader cannot move the cursor."""


class ReleaseState(StrEnum):
    PENDING = "pending"
    SCANNING = "scanning"
    SCANNED = "scanned"
    FAILED = "failed"


class Topic(StrEnum):
    """What a store notification is about (see `api.Notifications`)."""

    RELEASES = "releases"  # releases became pending: the scan workers may claim
    OUTBOX = "outbox"  # pages were queued or requeued, or a channel was enabled
    ORIGIN_CHECKS = "origin_checks"  # a deferred origin check was scheduled


# ------------------------------------------------------------------------------------ releases


@dataclass(frozen=True, slots=True)
class StoredRelease:
    id: int
    release: Release
    state: ReleaseState
    attempts: int
    baseline: bool  # first sight of the package: scanned for its manifest, never paged
    last_error: str | None
    next_attempt_at: float | None
    created_at: float
    updated_at: float
    scanned_at: float | None
    feed: str | None = None
    # the claim while scanning: who holds it and until when (None: held until recovered at start)
    claimed_by: str | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class SeenRelease:
    """A release a feed saw: pending until scanned. `baseline`: first sight of the package."""

    release: Release
    feed: str | None = None
    baseline: bool = False


@dataclass(frozen=True, slots=True)
class SeenRemoval:
    """A version (or one file of it) left the registry."""

    ecosystem: Ecosystem
    name: str
    version: str
    reason: str  # unpublished | yanked | removed
    filename: str | None = None
    removed_at: datetime | None = None
    feed: str | None = None


@dataclass(frozen=True, slots=True)
class CursorWrite:
    """A feed's position. `epoch`: the writer's feed-leader epoch; a store that elects leaders
    refuses a write whose epoch is stale (`StaleEpoch`); the embedded store has one writer and
    ignores it."""

    feed: str
    cursor: str
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class FeedBatch:
    """What one feed step produced, stored in one transaction: the releases and removals, the
    package states and the cursor that follow from them (a crash repeats the step, never skips)."""

    releases: Sequence[SeenRelease] = ()
    removals: Sequence[SeenRemoval] = ()
    package_states: Sequence[tuple[Ecosystem, str, PackageState]] = ()
    cursor: CursorWrite | None = None


@dataclass(frozen=True, slots=True)
class Claimant:
    """Who claims releases and for how long: `owner` names one worker set of one process (unique
    per run), `lease_s` how long a claim holds before another owner may take it over. The holder
    renews its claims while it works on them (`ReleaseQueue.renew_claims`)."""

    owner: str
    lease_s: float


@dataclass(frozen=True, slots=True)
class Lease:
    """A named lease (feed leader, channel sender): held by `owner` until `expires_at`; `epoch`
    rises on each change of holder, so a write can name the epoch it was made under."""

    name: str
    owner: str
    epoch: int
    expires_at: float


# ------------------------------------------------------------------------------------ feed state


@dataclass(frozen=True, slots=True)
class PackageState:
    """What a feed knew of a package after the last diff. Its existence means "seen before"."""

    versions: frozenset[str] = frozenset()
    # Every artifact filename seen, so files added to an existing release are noticed (PyPI).
    files: frozenset[str] = frozenset()
    # Versions already reported as yanked (PyPI), so a yank is an event once.
    yanked: frozenset[str] = frozenset()
    etag: str | None = None
    # The document's own change counter when it has one (npm `_rev` prefix, PyPI last serial).
    generation: int | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    feed: str
    cursor: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class Removal:
    ecosystem: Ecosystem
    name: str
    version: str
    filename: str | None
    reason: str
    removed_at: float | None
    seen_at: float


# ------------------------------------------------------------------------------------ incidents


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """New findings for an incident already paged (files added to its release after the page):
    its content and worst severity are replaced by `incident`'s, it is open again if it had been
    resolved, and the update pages are queued, all once per `note_kind` (a rescan repeats
    nothing). `incident.id` names the stored incident."""

    incident: Incident
    note_kind: str
    note: str

    @property
    def incident_id(self) -> int:
        if self.incident.id is None:
            raise ValueError(f"{self.incident.dedup_key}: an update needs the stored incident")
        return self.incident.id


# ------------------------------------------------------------------------------------ outbox


@dataclass(frozen=True, slots=True)
class Delivery:
    """One page to queue: an event of an incident, for one channel. The store keeps each event
    once (its id, type, message and the incident as it was then) and one delivery of it per
    channel."""

    channel: str
    event: AlertEvent
    # not sent before this time (epoch seconds): an opening page held for the outcome of
    # automatic containment, which may amend it and release it earlier (`amend_held_event`)
    hold_until: float | None = None


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A message a channel posted for an incident and may edit or thread under (Slack's `ts`)."""

    channel: str  # the outbox channel, `<owner>/slack`
    dedup_key: str
    remote_channel: str  # the receiver's channel id (Slack's `C…`)
    ref: str  # the receiver's message id (Slack's `ts`)
    created_at: float
    resolved_at: float | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One delivery of an event to one channel, with its attempt state. `event` is what the
    channel is sent (the incident as it was when the event happened); None when the stored event
    cannot be read back (`unreadable` says why), which the outbox dead-letters."""

    id: int
    incident_id: int | None
    channel: str
    event_id: str
    event_type: EventType | None
    dedup_key: str | None
    event: AlertEvent | None
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    state: Literal["pending", "dead"]
    dead_at: float | None = None
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelQueue:
    """One channel's pending pages, as the operator sees them."""

    channel: str
    depth: int
    oldest_created_at: float
    head_id: int
    head_attempts: int
    head_next_attempt_at: float
    last_error: str | None  # the head's: only the head is being tried


@dataclass(frozen=True, slots=True)
class DisabledChannel:
    channel: str
    reason: str
    disabled_at: float
    recheck_at: float


@dataclass(frozen=True, slots=True)
class Requeued:
    """What `requeue_dead` did: dead letters back to pending, channels enabled again."""

    items: list[OutboxItem]
    enabled: list[str]


# ------------------------------------------------------------------------------------ status


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """What the metrics gauges show."""

    releases_by_state: dict[ReleaseState, int]
    outbox_depth: dict[str, int]  # pending items per channel
    outbox_oldest_age_s: float | None
    dead_letters: int
    open_incidents: int
    # age of the oldest open incident per ecosystem (absent: none open there)
    oldest_open_incident_age_s: dict[Ecosystem, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusSummary:
    """What `watcher status` prints."""

    cursors: list[Cursor]
    last_releases: list[StoredRelease]  # the newest stored release of each package
    open_incidents: list[Incident]
    counts: StoreCounts
    disabled_channels: list[DisabledChannel] = field(default_factory=list)


class JobState(StrEnum):
    """Where an automatic containment job is: pending until it has an outcome, which is final."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class NewJob:
    """An automatic containment action to do once (`action` + `target` are its identity within
    the incident: a second enqueue of the same pair changes nothing)."""

    action: str  # dist_tag | deprecate | unpublish | github_revoke (and their undo_ forms)
    target: str  # what it acts on: the dist-tag, the version, the credential's digest
    params: dict[str, str] = field(default_factory=dict)  # e.g. {"from": "1.0.1", "to": "1.0.0"}


@dataclass(frozen=True, slots=True)
class ContainmentJob:
    id: int
    incident_id: int
    ecosystem: Ecosystem
    name: str
    action: str
    target: str
    params: dict[str, str]
    state: JobState
    attempts: int
    next_attempt_at: float
    detail: str | None  # the outcome in words (or the last error while pending)
    created_at: float
    finished_at: float | None


# ----------------------------------------------------------------------------------- approvals


@dataclass(frozen=True, slots=True)
class NewApproval:
    """The team's gate passed this exact artifact (`POST /api/v1/approvals`). `name` as its
    ecosystem compares it; `sha256` lowercase hex."""

    ecosystem: Ecosystem
    name: str
    version: str
    sha256: str
    token_name: str  # who: the API token's name (never the token)
    integrity: str | None = None  # npm's `dist.integrity` (SRI), when the gate sent it
    report: dict[str, object] | None = None  # the gate's scan report, as it sent it


@dataclass(frozen=True, slots=True)
class Approval:
    id: int
    ecosystem: Ecosystem
    name: str
    version: str
    sha256: str
    integrity: str | None
    token_name: str
    created_at: float
    report: dict[str, object] | None = None


# ------------------------------------------------------------------------------- origin checks


class OriginCheckState(StrEnum):
    PENDING = "pending"  # due at `due_at` (claimed while `claimed_by` holds its lease)
    DONE = "done"  # judged: its findings (if any) are on the release and its incident


@dataclass(frozen=True, slots=True)
class OriginCheck:
    """A check of a release's origin (approval, tag, late attestations) deferred until its grace
    ran out: durable, so a restart or another replica picks it up when it is due."""

    id: int
    release_id: int
    kind: str  # "approval", "tag", "attestations": the registered check that judges it
    params: dict[str, object]  # what the check needs beyond the release (e.g. artifact digests)
    state: OriginCheckState
    due_at: float
    attempts: int
    detail: str | None  # the verdict in words (or the last error while pending)
    claimed_by: str | None
    created_at: float
    finished_at: float | None
