"""The service's durable state in one SQLite file (WAL): the only module that speaks SQL.

It is the queue and the memory: feed cursors and per-package state, releases and their scan state
(pending → scanning → scanned | failed), per-version manifests (the baseline of the next version),
findings, incidents and the alert outbox. Everything is idempotent on (ecosystem, name, version) and
on an incident's dedup key, and every step that must not be half-done is one transaction: releases
and the cursor that follows them, a scan result and the incident it opens, an incident and its pages.

One connection, used through aiosqlite; an asyncio lock keeps each transaction whole, since several
coroutines share the connection. Times are unix seconds (float).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import orjson

from watcher.ecosystems.versions import select_baseline
from watcher.errors import WatcherError
from watcher.feeds.base import (
    BaselineSeen,
    FeedEvent,
    PackageState,
    PackageUnpublished,
    ReleaseSeen,
    VersionRemoved,
)
from watcher.model import (
    Artifact,
    Category,
    Ecosystem,
    Finding,
    Manifest,
    ManifestEntry,
    Provenance,
    Release,
    Severity,
    incident_key,
)


class StoreError(WatcherError):
    """The state file cannot be used (newer schema, unknown release id, not a database)."""


# --------------------------------------------------------------------------------- the schema

# Ordered migrations: entry N brings the schema from version N to N + 1 (`PRAGMA user_version`).
# Never edit a shipped entry; append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE feed_cursors (
            feed TEXT PRIMARY KEY,
            cursor TEXT NOT NULL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE packages (
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            versions TEXT NOT NULL,      -- JSON array of every version seen
            files TEXT NOT NULL,         -- JSON array of every artifact filename seen
            etag TEXT,
            generation INTEGER,          -- npm _rev prefix / PyPI last serial
            first_seen REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (ecosystem, name)
        ) WITHOUT ROWID""",
        """CREATE TABLE releases (
            id INTEGER PRIMARY KEY,
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            published_at REAL,
            artifacts TEXT NOT NULL,     -- JSON array of artifacts
            baseline INTEGER NOT NULL DEFAULT 0,  -- first sight: scanned, never paged
            feed TEXT,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'scanning', 'scanned', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            next_attempt_at REAL,
            rescan INTEGER NOT NULL DEFAULT 0,    -- files were added while it was being scanned
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            scanned_at REAL,
            UNIQUE (ecosystem, name, version)
        )""",
        "CREATE INDEX releases_by_state ON releases (state, next_attempt_at)",
        "CREATE INDEX releases_by_package ON releases (ecosystem, name, state)",
        """CREATE TABLE manifests (
            release_id INTEGER PRIMARY KEY REFERENCES releases (id) ON DELETE CASCADE,
            files INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            data BLOB NOT NULL           -- zlib(JSON {files: {path: [size, sha256]}, fingerprints})
        )""",
        """CREATE TABLE findings (
            id INTEGER PRIMARY KEY,
            release_id INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
            rule TEXT NOT NULL,
            category TEXT NOT NULL,
            severity TEXT NOT NULL,
            path TEXT NOT NULL,
            line INTEGER,
            message TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            is_new INTEGER NOT NULL,
            severity_if_new TEXT,
            evidence TEXT NOT NULL
        )""",
        "CREATE INDEX findings_by_release ON findings (release_id)",
        """CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            dedup_key TEXT NOT NULL UNIQUE,
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            owner TEXT NOT NULL,
            release_id INTEGER REFERENCES releases (id),
            state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
            worst_severity TEXT NOT NULL,
            opened_at REAL NOT NULL,
            resolved_at REAL,
            resolution TEXT,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX incidents_by_state ON incidents (state)",
        # AUTOINCREMENT: ids are never reused, so per-channel order by id is delivery order.
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            incident_id INTEGER REFERENCES incidents (id),
            channel TEXT NOT NULL,
            event TEXT NOT NULL CHECK (event IN ('opened', 'resolved', 'update', 'test')),
            payload TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
            dead_at REAL
        )""",
        "CREATE INDEX outbox_by_channel ON outbox (channel, state, id)",
        """CREATE TABLE removals (
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            filename TEXT NOT NULL,      -- '' when the whole version went
            reason TEXT NOT NULL,        -- unpublished | yanked | removed
            removed_at REAL,
            seen_at REAL NOT NULL,
            feed TEXT,
            PRIMARY KEY (ecosystem, name, version, filename)
        ) WITHOUT ROWID""",
    ),
    # 2: versions already reported as yanked (PyPI), so a yank is an event once
    ("ALTER TABLE packages ADD COLUMN yanked TEXT NOT NULL DEFAULT '[]'",),
    # 3: what the containment watcher recorded per incident (a mitigation posted once, the
    # dist-tags first seen on the version), so a restart never posts an update twice
    (
        """CREATE TABLE incident_notes (
            incident_id INTEGER NOT NULL REFERENCES incidents (id),
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (incident_id, kind)
        ) WITHOUT ROWID""",
    ),
    # 4: channels whose endpoint said it is gone (a row while disabled), so the operator commands
    # and `watcher status` see them and an operator can re-enable one from another process
    (
        """CREATE TABLE disabled_channels (
            channel TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            disabled_at REAL NOT NULL,   -- first refusal of this outage
            recheck_at REAL NOT NULL     -- when the running outbox tries the channel again
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


# ------------------------------------------------------------------------------ stored values


class ReleaseState(StrEnum):
    PENDING = "pending"
    SCANNING = "scanning"
    SCANNED = "scanned"
    FAILED = "failed"


class IncidentState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class OutboxEvent(StrEnum):
    OPENED = "opened"
    RESOLVED = "resolved"
    UPDATE = "update"
    TEST = "test"


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


@dataclass(frozen=True, slots=True)
class NewIncident:
    ecosystem: Ecosystem
    name: str
    version: str
    owner: str
    worst_severity: Severity
    payload: dict[str, Any] = field(default_factory=dict)
    release_id: int | None = None

    @property
    def dedup_key(self) -> str:
        return incident_key(self.ecosystem, self.name, self.version)


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """New findings for an incident already paged (files added to its release after the page):
    its payload and worst severity are replaced, it is open again if it had been resolved, and the
    update pages are queued, all once per `note_kind` (a rescan repeats nothing)."""

    incident_id: int
    note_kind: str
    note: str
    worst_severity: Severity
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    dedup_key: str
    ecosystem: Ecosystem
    name: str
    version: str
    owner: str
    state: IncidentState
    worst_severity: Severity
    opened_at: float
    resolved_at: float | None
    resolution: str | None
    payload: dict[str, Any]
    release_id: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One page to queue: which channel gets it and what it says."""

    channel: str
    event: OutboxEvent
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    incident_id: int | None
    channel: str
    event: OutboxEvent
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    state: Literal["pending", "dead"]
    dead_at: float | None = None

    @property
    def dedup_key(self) -> str | None:
        incident = self.payload.get("incident")
        return incident.get("dedup_key") if isinstance(incident, dict) else None


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


# ------------------------------------------------------------------------------ conversions


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # a naive time from a registry is UTC
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _artifacts_json(artifacts: Iterable[Artifact]) -> str:
    return _json(
        [
            {
                "filename": a.filename,
                "url": a.url,
                "size": a.size,
                "sha256": a.sha256,
                "integrity": a.integrity,
                "provenance": a.provenance.to_dict() if a.provenance is not None else None,
            }
            for a in artifacts
        ]
    )


def _artifacts(text: str) -> tuple[Artifact, ...]:
    # `provenance` is absent from rows stored before it was captured: unknown, like None.
    return tuple(
        Artifact(**{**item, "provenance": Provenance.from_dict(item.get("provenance"))})
        for item in orjson.loads(text)
    )


def _release(row: aiosqlite.Row) -> StoredRelease:
    published = row["published_at"]
    return StoredRelease(
        id=row["id"],
        release=Release(
            ecosystem=Ecosystem(row["ecosystem"]),
            name=row["name"],
            version=row["version"],
            published_at=None if published is None else datetime.fromtimestamp(published, UTC),
            artifacts=_artifacts(row["artifacts"]),
        ),
        state=ReleaseState(row["state"]),
        attempts=row["attempts"],
        baseline=bool(row["baseline"]),
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        scanned_at=row["scanned_at"],
        feed=row["feed"],
    )


def _incident(row: aiosqlite.Row) -> Incident:
    return Incident(
        id=row["id"],
        dedup_key=row["dedup_key"],
        ecosystem=Ecosystem(row["ecosystem"]),
        name=row["name"],
        version=row["version"],
        owner=row["owner"],
        state=IncidentState(row["state"]),
        worst_severity=Severity(row["worst_severity"]),
        opened_at=row["opened_at"],
        resolved_at=row["resolved_at"],
        resolution=row["resolution"],
        payload=orjson.loads(row["payload"]),
        release_id=row["release_id"],
    )


def _outbox_item(row: aiosqlite.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        incident_id=row["incident_id"],
        channel=row["channel"],
        event=OutboxEvent(row["event"]),
        payload=orjson.loads(row["payload"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        state=row["state"],
        dead_at=row["dead_at"],
    )


def _disabled_channel(row: aiosqlite.Row) -> DisabledChannel:
    return DisabledChannel(
        channel=row["channel"],
        reason=row["reason"],
        disabled_at=row["disabled_at"],
        recheck_at=row["recheck_at"],
    )


def encode_manifest(manifest: Manifest) -> bytes:
    data = {
        "files": {path: [e.size, e.sha256] for path, e in manifest.files.items()},
        "fingerprints": {fp: sev.value for fp, sev in manifest.fingerprints.items()},
    }
    return zlib.compress(orjson.dumps(data), 6)


def decode_manifest(blob: bytes) -> Manifest:
    data = orjson.loads(zlib.decompress(blob))
    return Manifest(
        files={path: ManifestEntry(size, sha) for path, (size, sha) in data["files"].items()},
        fingerprints={fp: Severity(sev) for fp, sev in data["fingerprints"].items()},
    )


def _finding(row: aiosqlite.Row) -> Finding:
    return Finding(
        rule=row["rule"],
        category=Category(row["category"]),
        severity=Severity(row["severity"]),
        path=row["path"],
        message=row["message"],
        line=row["line"],
        evidence=orjson.loads(row["evidence"]),
        key=row["key"],
        severity_if_new=None
        if row["severity_if_new"] is None
        else Severity(row["severity_if_new"]),
        new=bool(row["is_new"]),
        fingerprint=row["fingerprint"],
    )


_RELEASE_COLUMNS = (
    "id, ecosystem, name, version, published_at, artifacts, baseline, feed, state, attempts, "
    "last_error, next_attempt_at, created_at, updated_at, scanned_at"
)


# --------------------------------------------------------------------------------- the store


class Store:
    """Open with `await Store.open(path)`; close with `await store.close()` (or `async with`)."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = asyncio.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, path: str | Path, *, synchronous: Literal["full", "normal"] = "full"
    ) -> Store:
        """Open (creating if needed) and bring the schema up to date."""
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous: expected 'full' or 'normal', got {synchronous!r}")
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA busy_timeout = 10000")
            mode = await db.execute_fetchall("PRAGMA journal_mode = WAL")
            if next(iter(mode))[0] != "wal":
                raise StoreError(f"{path}: cannot switch the state file to WAL mode")
            await db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            await db.execute("PRAGMA foreign_keys = ON")
            store = cls(db, path)
            await store._migrate()
        except aiosqlite.DatabaseError as exc:
            await db.close()
            raise StoreError(f"{path}: not a usable state file: {exc}") from None
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        async with self._lock:
            # a clean close folds the WAL back so the file can be copied on its own
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        async with self._lock:
            return await self._user_version()

    async def _user_version(self) -> int:
        rows = await self._db.execute_fetchall("PRAGMA user_version")
        return int(next(iter(rows))[0])

    async def _migrate(self) -> None:
        current = await self._user_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: state schema version {current} is newer than this watcher "
                f"supports ({SCHEMA_VERSION}); upgrade the watcher"
            )
        for target in range(current + 1, SCHEMA_VERSION + 1):
            async with self._tx() as db:
                # another process may have migrated while we waited for the write lock
                if await self._user_version() >= target:
                    continue
                for statement in MIGRATIONS[target - 1]:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {target}")

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, whole or not at all."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    # -- feed state (watcher.feeds.base.FeedStateStore) --------------------------------------

    async def get_cursor(self, feed: str) -> str | None:
        rows = await self._read("SELECT cursor FROM feed_cursors WHERE feed = ?", (feed,))
        return rows[0]["cursor"] if rows else None

    async def set_cursor(self, feed: str, cursor: str, *, now: float | None = None) -> None:
        async with self._tx() as db:
            await _set_cursor(db, feed, cursor, _now(now))

    async def cursors(self) -> list[Cursor]:
        rows = await self._read("SELECT feed, cursor, updated_at FROM feed_cursors ORDER BY feed")
        return [Cursor(r["feed"], r["cursor"], r["updated_at"]) for r in rows]

    async def get_package_state(self, ecosystem: Ecosystem, name: str) -> PackageState | None:
        rows = await self._read(
            "SELECT versions, files, yanked, etag, generation FROM packages "
            "WHERE ecosystem = ? AND name = ?",
            (Ecosystem(ecosystem).value, name),
        )
        if not rows:
            return None
        row = rows[0]
        return PackageState(
            versions=frozenset(orjson.loads(row["versions"])),
            files=frozenset(orjson.loads(row["files"])),
            yanked=frozenset(orjson.loads(row["yanked"])),
            etag=row["etag"],
            generation=row["generation"],
        )

    async def set_package_state(
        self, ecosystem: Ecosystem, name: str, state: PackageState, *, now: float | None = None
    ) -> None:
        async with self._tx() as db:
            await _set_package_state(db, Ecosystem(ecosystem), name, state, _now(now))

    async def known_packages(self, ecosystem: Ecosystem) -> list[str]:
        rows = await self._read(
            "SELECT name FROM packages WHERE ecosystem = ? ORDER BY name",
            (Ecosystem(ecosystem).value,),
        )
        return [row["name"] for row in rows]

    # -- what feeds produce ------------------------------------------------------------------

    async def store_events(
        self,
        events: Sequence[FeedEvent],
        *,
        cursor: tuple[str, str] | None = None,
        package_states: Sequence[tuple[Ecosystem, str, PackageState]] = (),
        now: float | None = None,
    ) -> list[StoredRelease]:
        """Store a feed's events (releases as pending, baselines as pending baselines, removals)
        and, in the same transaction, the cursor `(feed, cursor)` and package states that follow
        from them. Returns the releases that are new or got new files (to be scanned).
        Usable as the feeds' `EventSink`."""
        at = _now(now)
        changed: list[int] = []
        async with self._tx() as db:
            for event in events:
                if isinstance(event, ReleaseSeen | BaselineSeen):
                    release_id = await _upsert_release(
                        db,
                        event.release,
                        baseline=isinstance(event, BaselineSeen),
                        feed=event.feed,
                        now=at,
                    )
                    if release_id is not None:
                        changed.append(release_id)
                elif isinstance(event, VersionRemoved):
                    await _record_removal(db, event, at)
                elif isinstance(event, PackageUnpublished):
                    for version in event.versions:
                        removed = VersionRemoved(
                            ecosystem=event.ecosystem,
                            name=event.name,
                            version=version,
                            feed=event.feed,
                            seen_at=event.seen_at,
                            reason="unpublished",
                            removed_at=event.unpublished_at,
                        )
                        await _record_removal(db, removed, at)
            for ecosystem, name, state in package_states:
                await _set_package_state(db, Ecosystem(ecosystem), name, state, at)
            if cursor is not None:
                await _set_cursor(db, cursor[0], cursor[1], at)
            return await _releases_by_id(db, changed)

    async def __call__(self, events: Sequence[FeedEvent]) -> None:
        """The `EventSink` protocol: returns once the events are durable."""
        await self.store_events(events)

    async def record_releases_and_cursor(
        self,
        releases: Sequence[Release],
        feed: str,
        cursor: str,
        *,
        baselines: Sequence[Release] = (),
        now: float | None = None,
    ) -> list[StoredRelease]:
        """Releases as pending and the feed's cursor after them, in one transaction."""
        at = _now(now)
        seen = datetime.fromtimestamp(at, UTC)
        events: list[FeedEvent] = [BaselineSeen(r, feed, seen) for r in baselines]
        events += [ReleaseSeen(r, feed, seen) for r in releases]
        return await self.store_events(events, cursor=(feed, cursor), now=at)

    async def removals(self, ecosystem: Ecosystem, name: str, version: str) -> list[Removal]:
        rows = await self._read(
            "SELECT * FROM removals WHERE ecosystem = ? AND name = ? AND version = ? "
            "ORDER BY seen_at",
            (Ecosystem(ecosystem).value, name, version),
        )
        return [
            Removal(
                ecosystem=Ecosystem(r["ecosystem"]),
                name=r["name"],
                version=r["version"],
                filename=r["filename"] or None,
                reason=r["reason"],
                removed_at=r["removed_at"],
                seen_at=r["seen_at"],
            )
            for r in rows
        ]

    # -- scan queue --------------------------------------------------------------------------

    async def get_release(
        self, ecosystem: Ecosystem, name: str, version: str
    ) -> StoredRelease | None:
        rows = await self._read(
            f"SELECT {_RELEASE_COLUMNS} FROM releases "  # noqa: S608 - constant column list
            "WHERE ecosystem = ? AND name = ? AND version = ?",
            (Ecosystem(ecosystem).value, name, version),
        )
        return _release(rows[0]) if rows else None

    async def get_release_by_id(self, release_id: int) -> StoredRelease | None:
        rows = await self._read(
            f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE id = ?",  # noqa: S608
            (release_id,),
        )
        return _release(rows[0]) if rows else None

    async def claim_pending(self, limit: int, *, now: float | None = None) -> list[StoredRelease]:
        """Atomically move up to `limit` due pending releases to scanning (attempts + 1), oldest
        first, at most one per package and none of a package that already has one scanning:
        a package's releases are scanned in order, so each finds its predecessor's manifest."""
        at = _now(now)
        async with self._tx() as db:
            rows = await db.execute_fetchall(
                f"""UPDATE releases
                    SET state = 'scanning', attempts = attempts + 1, updated_at = :now
                    WHERE id IN (
                        SELECT MIN(r.id) FROM releases AS r
                        WHERE r.state = 'pending' AND COALESCE(r.next_attempt_at, 0) <= :now
                          AND NOT EXISTS (
                              SELECT 1 FROM releases AS s
                              WHERE s.ecosystem = r.ecosystem AND s.name = r.name
                                AND s.state = 'scanning')
                        GROUP BY r.ecosystem, r.name
                        ORDER BY MIN(r.id)
                        LIMIT :limit)
                    RETURNING {_RELEASE_COLUMNS}""",  # noqa: S608 - constant column list
                {"now": at, "limit": limit},
            )
        return sorted((_release(row) for row in rows), key=lambda r: r.id)

    async def next_due_at(self) -> float | None:
        """When the earliest pending release becomes due (None: nothing pending)."""
        rows = await self._read(
            "SELECT MIN(COALESCE(next_attempt_at, 0)) AS due FROM releases WHERE state = 'pending'"
        )
        return rows[0]["due"] if rows else None

    async def requeue_scanning(self, *, now: float | None = None) -> int:
        """At start: releases left scanning by a crash go back to pending. The attempt stays
        counted, so a release that kills the process every time ends up failed, not looping."""
        at = _now(now)
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE releases SET state = 'pending', updated_at = ? WHERE state = 'scanning'",
                (at,),
            )
            return cursor.rowcount

    async def unclaim(self, release_id: int, *, now: float | None = None) -> None:
        """Graceful shutdown: an unfinished scan goes back to pending, its attempt not counted."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE releases SET state = 'pending', attempts = MAX(0, attempts - 1), "
                "updated_at = ? WHERE id = ? AND state = 'scanning'",
                (_now(now), release_id),
            )

    async def mark_scanned(
        self,
        release_id: int,
        findings: Sequence[Finding],
        manifest: Manifest,
        *,
        incident: NewIncident | None = None,
        update: IncidentUpdate | None = None,
        deliveries: Sequence[Delivery] = (),
        now: float | None = None,
    ) -> tuple[Incident | None, bool]:
        """Store a scan's findings and manifest and mark the release scanned; in the same
        transaction open the incident it warrants and queue its pages, so a crash can neither
        lose the page nor send it twice. Returns (incident, created). With `update` instead of
        `incident`: apply it (see IncidentUpdate) and return (incident, whether it was applied)."""
        at = _now(now)
        async with self._tx() as db:
            rows = await db.execute_fetchall(
                "SELECT rescan FROM releases WHERE id = ?", (release_id,)
            )
            if not rows:
                raise StoreError(f"no release with id {release_id}")
            # files were added while this scan ran: scan again, with all of them
            state = "pending" if next(iter(rows))["rescan"] else "scanned"
            await db.execute(
                "UPDATE releases SET state = ?, rescan = 0, last_error = NULL, "
                "next_attempt_at = NULL, updated_at = ?, scanned_at = ? WHERE id = ?",
                (state, at, at, release_id),
            )
            await db.execute("DELETE FROM findings WHERE release_id = ?", (release_id,))
            await db.executemany(
                "INSERT INTO findings (release_id, rule, category, severity, path, line, message, "
                "key, fingerprint, is_new, severity_if_new, evidence) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        release_id,
                        f.rule,
                        Category(f.category).value,
                        Severity(f.severity).value,
                        f.path,
                        f.line,
                        f.message,
                        f.key,
                        f.fingerprint,
                        int(f.new),
                        None if f.severity_if_new is None else Severity(f.severity_if_new).value,
                        _json(f.evidence),
                    )
                    for f in findings
                ],
            )
            await db.execute(
                "INSERT OR REPLACE INTO manifests (release_id, files, bytes, data) "
                "VALUES (?, ?, ?, ?)",
                (release_id, len(manifest.files), manifest.total_bytes, encode_manifest(manifest)),
            )
            if update is not None:
                return await _update_incident(db, update, deliveries, at)
            if incident is None:
                return None, False
            return await _open_incident(db, incident, deliveries, at)

    async def schedule_retry(
        self, release_id: int, error: str, next_attempt_at: float, *, now: float | None = None
    ) -> None:
        """The scan failed but may heal: back to pending, due at `next_attempt_at`."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE releases SET state = 'pending', last_error = ?, next_attempt_at = ?, "
                "updated_at = ? WHERE id = ?",
                (error, next_attempt_at, _now(now), release_id),
            )

    async def mark_failed(self, release_id: int, error: str, *, now: float | None = None) -> None:
        """Given up: kept with its reason (never silently dropped)."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE releases SET state = 'failed', last_error = ?, next_attempt_at = NULL, "
                "updated_at = ? WHERE id = ?",
                (error, _now(now), release_id),
            )

    async def retry_failed(self, release_id: int, *, now: float | None = None) -> bool:
        """An operator's second chance for a failed release: pending again, attempts reset."""
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE releases SET state = 'pending', attempts = 0, next_attempt_at = NULL, "
                "updated_at = ? WHERE id = ? AND state = 'failed'",
                (_now(now), release_id),
            )
            return cursor.rowcount == 1

    async def retry_all_failed(self, *, now: float | None = None) -> list[StoredRelease]:
        """`retry_failed` for every failed release, in one transaction; returns them."""
        async with self._tx() as db:
            rows = await db.execute_fetchall(
                f"UPDATE releases SET state = 'pending', attempts = 0, "  # noqa: S608
                f"next_attempt_at = NULL, updated_at = ? WHERE state = 'failed' "
                f"RETURNING {_RELEASE_COLUMNS}",
                (_now(now),),
            )
        return sorted((_release(row) for row in rows), key=lambda r: r.id)

    async def releases_in_state(
        self, states: Iterable[ReleaseState], *, limit: int | None = None
    ) -> list[StoredRelease]:
        """Releases in any of `states`, oldest first."""
        wanted = [ReleaseState(state).value for state in states]
        marks = ", ".join("?" for _ in wanted)
        rows = await self._read(
            f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE state IN ({marks}) "  # noqa: S608
            "ORDER BY id LIMIT ?",
            (*wanted, -1 if limit is None else limit),
        )
        return [_release(row) for row in rows]

    async def get_findings(self, release_id: int) -> list[Finding]:
        rows = await self._read(
            "SELECT * FROM findings WHERE release_id = ? ORDER BY id", (release_id,)
        )
        return [_finding(row) for row in rows]

    async def get_manifest(self, ecosystem: Ecosystem, name: str, version: str) -> Manifest | None:
        rows = await self._read(
            "SELECT m.data FROM manifests AS m JOIN releases AS r ON r.id = m.release_id "
            "WHERE r.ecosystem = ? AND r.name = ? AND r.version = ?",
            (Ecosystem(ecosystem).value, name, version),
        )
        return decode_manifest(rows[0]["data"]) if rows else None

    async def baseline_manifest(
        self, ecosystem: Ecosystem, name: str, version: str
    ) -> tuple[str, Manifest] | None:
        """The manifest of the greatest scanned version below `version` (in the ecosystem's
        version order, not publish order), with that version."""
        eco = Ecosystem(ecosystem)
        rows = await self._read(
            "SELECT r.version FROM releases AS r JOIN manifests AS m ON m.release_id = r.id "
            "WHERE r.ecosystem = ? AND r.name = ? AND r.version != ?",
            (eco.value, name, version),
        )
        below = select_baseline(eco, version, [row["version"] for row in rows])
        if below is None:
            return None
        manifest = await self.get_manifest(eco, name, below)
        return None if manifest is None else (below, manifest)

    # -- incidents ---------------------------------------------------------------------------

    async def open_incident_with_outbox(
        self, incident: NewIncident, deliveries: Sequence[Delivery], *, now: float | None = None
    ) -> tuple[Incident, bool]:
        """Create the incident and queue its pages in one transaction. Idempotent on the dedup
        key: a second call for the same key changes nothing and returns (existing, False)."""
        async with self._tx() as db:
            found, created = await _open_incident(db, incident, deliveries, _now(now))
        return found, created

    async def resolve_incident(
        self,
        dedup_key: str,
        resolution: str,
        deliveries: Sequence[Delivery] = (),
        *,
        now: float | None = None,
    ) -> tuple[Incident | None, bool]:
        """Resolve an open incident and queue its `resolved` pages, in one transaction.
        Returns (incident or None if unknown, whether this call resolved it)."""
        at = _now(now)
        async with self._tx() as db:
            rows = await db.execute_fetchall(
                "SELECT * FROM incidents WHERE dedup_key = ?", (dedup_key,)
            )
            if not rows:
                return None, False
            row = next(iter(rows))
            if row["state"] != IncidentState.OPEN:
                return _incident(row), False
            await db.execute(
                "UPDATE incidents SET state = 'resolved', resolved_at = ?, resolution = ? "
                "WHERE id = ?",
                (at, resolution, row["id"]),
            )
            await _enqueue(db, row["id"], deliveries, at)
            rows = await db.execute_fetchall("SELECT * FROM incidents WHERE id = ?", (row["id"],))
            return _incident(next(iter(rows))), True

    async def get_incident(self, dedup_key: str) -> Incident | None:
        rows = await self._read("SELECT * FROM incidents WHERE dedup_key = ?", (dedup_key,))
        return _incident(rows[0]) if rows else None

    async def open_incidents(self) -> list[Incident]:
        rows = await self._read("SELECT * FROM incidents WHERE state = 'open' ORDER BY id")
        return [_incident(row) for row in rows]

    async def incident_notes(self, incident_id: int) -> dict[str, str]:
        """What the containment watcher recorded for an incident: kind -> detail."""
        rows = await self._read(
            "SELECT kind, detail FROM incident_notes WHERE incident_id = ? ORDER BY kind",
            (incident_id,),
        )
        return {row["kind"]: row["detail"] for row in rows}

    async def add_incident_note(
        self,
        incident_id: int,
        kind: str,
        detail: str,
        deliveries: Sequence[Delivery] = (),
        *,
        now: float | None = None,
    ) -> bool:
        """Record a note once per (incident, kind) and queue its pages in the same transaction.
        False (and nothing queued) when that kind was already recorded."""
        at = _now(now)
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT INTO incident_notes (incident_id, kind, detail, recorded_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, kind) DO NOTHING",
                (incident_id, kind, detail, at),
            )
            if cursor.rowcount != 1:
                return False
            await _enqueue(db, incident_id, deliveries, at)
            return True

    # -- outbox ------------------------------------------------------------------------------

    async def enqueue(
        self,
        deliveries: Sequence[Delivery],
        *,
        incident_id: int | None = None,
        now: float | None = None,
    ) -> list[int]:
        """Queue pages outside an incident's creation (test alerts, updates)."""
        async with self._tx() as db:
            return await _enqueue(db, incident_id, deliveries, _now(now))

    async def outbox_channels(self) -> list[str]:
        rows = await self._read(
            "SELECT DISTINCT channel FROM outbox WHERE state = 'pending' ORDER BY channel"
        )
        return [row["channel"] for row in rows]

    async def outbox_head(self, channel: str) -> OutboxItem | None:
        """The oldest pending item of a channel, due or not: pages leave a channel in order."""
        rows = await self._read(
            "SELECT * FROM outbox WHERE channel = ? AND state = 'pending' ORDER BY id LIMIT 1",
            (channel,),
        )
        return _outbox_item(rows[0]) if rows else None

    async def next_outbox_item(
        self, channel: str, *, now: float | None = None
    ) -> OutboxItem | None:
        """The channel's head item if it is due; None while the head waits for its retry time
        (later items never overtake it)."""
        head = await self.outbox_head(channel)
        if head is None or head.next_attempt_at > _now(now):
            return None
        return head

    async def mark_delivered(self, item_id: int) -> None:
        """The channel accepted it: only now does it leave the outbox."""
        async with self._tx() as db:
            await db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    async def mark_retry(self, item_id: int, next_attempt_at: float, error: str) -> None:
        """Not accepted this time: the item stays at the head of its channel until then."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
                "WHERE id = ? AND state = 'pending'",
                (next_attempt_at, error, item_id),
            )

    async def mark_dead(self, item_id: int, reason: str, *, now: float | None = None) -> None:
        """Given up on this page: kept as a dead letter with its reason, and counted."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, "
                "dead_at = ? WHERE id = ?",
                (reason, _now(now), item_id),
            )

    async def dead_letters(self, limit: int | None = 100) -> list[OutboxItem]:
        rows = await self._read(
            "SELECT * FROM outbox WHERE state = 'dead' ORDER BY id LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [_outbox_item(row) for row in rows]

    async def outbox_queues(self) -> list[ChannelQueue]:
        """Each channel with pending pages: depth, oldest page, and its head (the page being
        tried, whose last error is the channel's)."""
        rows = await self._read(
            "SELECT o.channel, q.depth, q.oldest, o.id, o.attempts, o.next_attempt_at, "
            "o.last_error FROM outbox AS o JOIN ("
            "  SELECT channel, COUNT(*) AS depth, MIN(created_at) AS oldest, MIN(id) AS head "
            "  FROM outbox WHERE state = 'pending' GROUP BY channel"
            ") AS q ON o.id = q.head ORDER BY o.channel"
        )
        return [
            ChannelQueue(
                channel=row["channel"],
                depth=row["depth"],
                oldest_created_at=row["oldest"],
                head_id=row["id"],
                head_attempts=row["attempts"],
                head_next_attempt_at=row["next_attempt_at"],
                last_error=row["last_error"],
            )
            for row in rows
        ]

    async def requeue_dead(
        self,
        ids: Sequence[int] = (),
        *,
        channel: str | None = None,
        everything: bool = False,
        now: float | None = None,
    ) -> Requeued:
        """Dead letters back to pending, in one short transaction (safe beside a running
        service): those with `ids`, those of `channel`, or all with `everything`. Attempts reset,
        due now, and a whole retry window again (`created_at` is now); they keep their ids, so
        their order within a channel is the order they were queued in. `channel` and `everything`
        also enable the disabled channels they name, which the running outbox notices within its
        idle poll."""
        at = _now(now)
        where: str
        params: list[str | int]
        if everything:
            where, params = "1", []
        elif channel is not None:
            where, params = "channel = ?", [channel]
        elif ids:
            where, params = f"id IN ({', '.join('?' for _ in ids)})", [int(i) for i in ids]
        else:
            return Requeued([], [])
        async with self._tx() as db:
            rows = await db.execute_fetchall(
                f"UPDATE outbox SET state = 'pending', attempts = 0, "  # noqa: S608 - placeholders
                f"next_attempt_at = ?, created_at = ?, dead_at = NULL "
                f"WHERE state = 'dead' AND ({where}) RETURNING *",
                (at, at, *params),
            )
            items = sorted((_outbox_item(row) for row in rows), key=lambda i: i.id)
            enabled: list[str] = []
            if everything or channel is not None:
                gone = await db.execute_fetchall(
                    f"DELETE FROM disabled_channels WHERE {where} RETURNING channel",  # noqa: S608
                    params,
                )
                enabled = sorted(row["channel"] for row in gone)
        return Requeued(items, enabled)

    # -- channels disabled by their endpoint -----------------------------------------------

    async def disable_channel(
        self, channel: str, reason: str, recheck_at: float, *, now: float | None = None
    ) -> None:
        """The endpoint said it is gone: record it (keeping when this outage began)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO disabled_channels (channel, reason, disabled_at, recheck_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (channel) DO UPDATE SET "
                "reason = excluded.reason, recheck_at = excluded.recheck_at",
                (channel, reason, _now(now), recheck_at),
            )

    async def enable_channel(self, channel: str) -> bool:
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM disabled_channels WHERE channel = ?", (channel,))
            return cursor.rowcount == 1

    async def clear_disabled_channels(self) -> int:
        """At start: every channel gets a fresh try (its configuration may have been fixed)."""
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM disabled_channels")
            return cursor.rowcount

    async def disabled_channel(self, channel: str) -> DisabledChannel | None:
        rows = await self._read("SELECT * FROM disabled_channels WHERE channel = ?", (channel,))
        return _disabled_channel(rows[0]) if rows else None

    async def disabled_channels(self) -> list[DisabledChannel]:
        rows = await self._read("SELECT * FROM disabled_channels ORDER BY channel")
        return [_disabled_channel(row) for row in rows]

    # -- metrics and status ------------------------------------------------------------------

    async def counts(self, *, now: float | None = None) -> StoreCounts:
        at = _now(now)
        async with self._lock:
            by_state = {state: 0 for state in ReleaseState}
            for row in await self._db.execute_fetchall(
                "SELECT state, COUNT(*) AS n FROM releases GROUP BY state"
            ):
                by_state[ReleaseState(row["state"])] = row["n"]
            depth = {
                row["channel"]: row["n"]
                for row in await self._db.execute_fetchall(
                    "SELECT channel, COUNT(*) AS n FROM outbox WHERE state = 'pending' "
                    "GROUP BY channel ORDER BY channel"
                )
            }
            rows = list(
                await self._db.execute_fetchall(
                    "SELECT COUNT(*) AS dead FROM outbox WHERE state = 'dead'"
                )
            )
            oldest_rows = list(
                await self._db.execute_fetchall(
                    "SELECT MIN(created_at) AS oldest FROM outbox WHERE state = 'pending'"
                )
            )
            open_rows = list(
                await self._db.execute_fetchall(
                    "SELECT COUNT(*) AS n FROM incidents WHERE state = 'open'"
                )
            )
            oldest_open = {
                Ecosystem(row["ecosystem"]): max(0.0, at - row["opened"])
                for row in await self._db.execute_fetchall(
                    "SELECT ecosystem, MIN(opened_at) AS opened FROM incidents "
                    "WHERE state = 'open' GROUP BY ecosystem"
                )
            }
        oldest = oldest_rows[0]["oldest"]
        return StoreCounts(
            releases_by_state=by_state,
            outbox_depth=depth,
            outbox_oldest_age_s=None if oldest is None else max(0.0, at - oldest),
            dead_letters=int(rows[0]["dead"] or 0),
            open_incidents=int(open_rows[0]["n"]),
            oldest_open_incident_age_s=oldest_open,
        )

    async def status(self, *, now: float | None = None) -> StatusSummary:
        cursors = await self.cursors()
        rows = await self._read(
            f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE id IN ("  # noqa: S608
            "SELECT MAX(id) FROM releases GROUP BY ecosystem, name) ORDER BY ecosystem, name"
        )
        return StatusSummary(
            cursors=cursors,
            last_releases=[_release(row) for row in rows],
            open_incidents=await self.open_incidents(),
            counts=await self.counts(now=now),
            disabled_channels=await self.disabled_channels(),
        )


# ----------------------------------------------------------------- statements inside a transaction


def _now(now: float | None) -> float:
    return time.time() if now is None else now


async def _set_cursor(db: aiosqlite.Connection, feed: str, cursor: str, at: float) -> None:
    await db.execute(
        "INSERT INTO feed_cursors (feed, cursor, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (feed) DO UPDATE SET cursor = excluded.cursor, "
        "updated_at = excluded.updated_at",
        (feed, cursor, at),
    )


async def _set_package_state(
    db: aiosqlite.Connection, ecosystem: Ecosystem, name: str, state: PackageState, at: float
) -> None:
    await db.execute(
        "INSERT INTO packages (ecosystem, name, versions, files, yanked, etag, generation, "
        "first_seen, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (ecosystem, name) DO UPDATE SET versions = excluded.versions, "
        "files = excluded.files, yanked = excluded.yanked, etag = excluded.etag, "
        "generation = excluded.generation, updated_at = excluded.updated_at",
        (
            ecosystem.value,
            name,
            _json(sorted(state.versions)),
            _json(sorted(state.files)),
            _json(sorted(state.yanked)),
            state.etag,
            state.generation,
            at,
            at,
        ),
    )


async def _upsert_release(
    db: aiosqlite.Connection, release: Release, *, baseline: bool, feed: str | None, now: float
) -> int | None:
    """Insert a pending release; for one already stored, add the files it did not have and
    queue it to be scanned again. Returns its id when there is something to scan, else None."""
    key = (Ecosystem(release.ecosystem).value, release.name, release.version)
    rows = list(
        await db.execute_fetchall(
            "SELECT id, artifacts, state FROM releases "
            "WHERE ecosystem = ? AND name = ? AND version = ?",
            key,
        )
    )
    if not rows:
        cursor = await db.execute(
            "INSERT INTO releases (ecosystem, name, version, published_at, artifacts, baseline, "
            "feed, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (
                *key,
                _epoch(release.published_at),
                _artifacts_json(release.artifacts),
                int(baseline),
                feed,
                now,
                now,
            ),
        )
        return cursor.lastrowid
    row = rows[0]
    stored = _artifacts(row["artifacts"])
    known = {a.filename for a in stored}
    added = [a for a in release.artifacts if a.filename not in known]
    if not added:
        return None
    artifacts = _artifacts_json((*stored, *added))
    if row["state"] == ReleaseState.SCANNING:
        await db.execute(
            "UPDATE releases SET artifacts = ?, rescan = 1, updated_at = ? WHERE id = ?",
            (artifacts, now, row["id"]),
        )
    else:
        await db.execute(
            "UPDATE releases SET artifacts = ?, state = 'pending', attempts = 0, "
            "next_attempt_at = NULL, last_error = NULL, updated_at = ? WHERE id = ?",
            (artifacts, now, row["id"]),
        )
    return int(row["id"])


async def _record_removal(db: aiosqlite.Connection, event: VersionRemoved, at: float) -> None:
    await db.execute(
        "INSERT OR IGNORE INTO removals (ecosystem, name, version, filename, reason, removed_at, "
        "seen_at, feed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            Ecosystem(event.ecosystem).value,
            event.name,
            event.version,
            event.filename or "",
            event.reason,
            _epoch(event.removed_at),
            at,
            event.feed,
        ),
    )


async def _releases_by_id(db: aiosqlite.Connection, ids: Sequence[int]) -> list[StoredRelease]:
    out = []
    for release_id in ids:
        rows = list(
            await db.execute_fetchall(
                f"SELECT {_RELEASE_COLUMNS} FROM releases WHERE id = ?",  # noqa: S608
                (release_id,),
            )
        )
        out.append(_release(rows[0]))
    return out


async def _enqueue(
    db: aiosqlite.Connection, incident_id: int | None, deliveries: Sequence[Delivery], at: float
) -> list[int]:
    ids = []
    for delivery in deliveries:
        cursor = await db.execute(
            "INSERT INTO outbox (incident_id, channel, event, payload, next_attempt_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                incident_id,
                delivery.channel,
                OutboxEvent(delivery.event).value,
                _json(delivery.payload),
                at,
                at,
            ),
        )
        assert cursor.lastrowid is not None
        ids.append(cursor.lastrowid)
    return ids


async def _open_incident(
    db: aiosqlite.Connection, incident: NewIncident, deliveries: Sequence[Delivery], at: float
) -> tuple[Incident, bool]:
    cursor = await db.execute(
        "INSERT INTO incidents (dedup_key, ecosystem, name, version, owner, release_id, state, "
        "worst_severity, opened_at, payload) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?) "
        "ON CONFLICT (dedup_key) DO NOTHING",
        (
            incident.dedup_key,
            Ecosystem(incident.ecosystem).value,
            incident.name,
            incident.version,
            incident.owner,
            incident.release_id,
            Severity(incident.worst_severity).value,
            at,
            _json(incident.payload),
        ),
    )
    created = cursor.rowcount == 1
    rows = list(
        await db.execute_fetchall(
            "SELECT * FROM incidents WHERE dedup_key = ?", (incident.dedup_key,)
        )
    )
    stored = _incident(rows[0])
    if created:
        await _enqueue(db, stored.id, deliveries, at)
    return stored, created


async def _update_incident(
    db: aiosqlite.Connection, update: IncidentUpdate, deliveries: Sequence[Delivery], at: float
) -> tuple[Incident | None, bool]:
    cursor = await db.execute(
        "INSERT INTO incident_notes (incident_id, kind, detail, recorded_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, kind) DO NOTHING",
        (update.incident_id, update.note_kind, update.note, at),
    )
    applied = cursor.rowcount == 1
    if applied:
        # New exposure in a release whose incident was resolved: it is open again.
        await db.execute(
            "UPDATE incidents SET payload = ?, worst_severity = ?, state = 'open', "
            "resolved_at = NULL, resolution = NULL WHERE id = ?",
            (_json(update.payload), Severity(update.worst_severity).value, update.incident_id),
        )
        await _enqueue(db, update.incident_id, deliveries, at)
    rows = list(
        await db.execute_fetchall("SELECT * FROM incidents WHERE id = ?", (update.incident_id,))
    )
    return (_incident(rows[0]) if rows else None), applied
