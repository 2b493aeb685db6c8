"""Releases and the scan queue with its claims (table releases).

pending → scanning (claimed: holder and lease) → scanned | failed. A feed step lands in one
transaction with the package states and cursor that follow from it (`record_batch`); a scan result
lands in one transaction with its findings, manifest, incident and pages (`mark_scanned`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from watcher.model import Ecosystem, Finding, Incident, Manifest, Release
from watcher.store.sqlite import feed_state, incidents, manifests
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import artifacts_json, artifacts_of, now_or
from watcher.store.sqlite.connection import Db, Row, fetch
from watcher.store.types import (
    Claimant,
    ClaimLost,
    Delivery,
    FeedBatch,
    IncidentUpdate,
    ReleaseState,
    StoredRelease,
    StoreError,
    Topic,
)
from watcher.timefmt import epoch, from_epoch

RELEASE_COLUMNS = (
    "id, ecosystem, name, version, published_at, artifacts, baseline, feed, state, attempts, "
    "last_error, next_attempt_at, created_at, updated_at, scanned_at, claimed_by, "
    "lease_expires_at"
)
# a claim ends with the scan: whoever held it, the release is no one's
_UNCLAIMED = "claimed_by = NULL, lease_expires_at = NULL"


class ReleaseRepository(Repository):
    # -- what feeds produce ------------------------------------------------------------------

    async def record_batch(
        self, batch: FeedBatch, *, now: float | None = None
    ) -> list[StoredRelease]:
        at = now_or(now)
        changed: list[int] = []
        async with self._conn.tx() as db:
            for seen in batch.releases:
                release_id = await upsert_release(
                    db, seen.release, baseline=seen.baseline, feed=seen.feed, now=at
                )
                if release_id is not None:
                    changed.append(release_id)
            for removal in batch.removals:
                await feed_state.write_removal(db, removal, at)
            for ecosystem, name, state in batch.package_states:
                await feed_state.write_package_state(db, Ecosystem(ecosystem), name, state, at)
            if batch.cursor is not None:
                await feed_state.write_cursor(db, batch.cursor.feed, batch.cursor.cursor, at)
            stored = await releases_by_id(db, changed)
        if stored:
            self._notifications.notify(Topic.RELEASES)
        return stored

    # -- reads -------------------------------------------------------------------------------

    async def get_release(
        self, ecosystem: Ecosystem, name: str, version: str
    ) -> StoredRelease | None:
        rows = await self._conn.read(
            f"SELECT {RELEASE_COLUMNS} FROM releases "  # noqa: S608 - constant column list
            "WHERE ecosystem = ? AND name = ? AND version = ?",
            (Ecosystem(ecosystem).value, name, version),
        )
        return release_of(rows[0]) if rows else None

    async def get_release_by_id(self, release_id: int) -> StoredRelease | None:
        rows = await self._conn.read(
            f"SELECT {RELEASE_COLUMNS} FROM releases WHERE id = ?",  # noqa: S608
            (release_id,),
        )
        return release_of(rows[0]) if rows else None

    async def releases_in_state(
        self, states: Iterable[ReleaseState], *, limit: int | None = None
    ) -> list[StoredRelease]:
        """Releases in any of `states`, oldest first."""
        wanted = [ReleaseState(state).value for state in states]
        marks = ", ".join("?" for _ in wanted)
        rows = await self._conn.read(
            f"SELECT {RELEASE_COLUMNS} FROM releases WHERE state IN ({marks}) "  # noqa: S608
            "ORDER BY id LIMIT ?",
            (*wanted, -1 if limit is None else limit),
        )
        return [release_of(row) for row in rows]

    async def next_due_at(self) -> float | None:
        """When the earliest pending release becomes due (None: nothing pending)."""
        rows = await self._conn.read(
            "SELECT MIN(COALESCE(next_attempt_at, 0)) AS due FROM releases WHERE state = 'pending'"
        )
        return rows[0]["due"] if rows else None

    # -- claims ------------------------------------------------------------------------------

    async def claim_pending(
        self, limit: int, *, claimant: Claimant | None = None, now: float | None = None
    ) -> list[StoredRelease]:
        """Atomically move up to `limit` due releases to scanning (attempts + 1), oldest first,
        at most one per package and none of a package with a live claim: a package's releases
        are scanned in order, so each finds its predecessor's manifest. A claim whose lease
        expired counts as abandoned and is taken over."""
        at = now_or(now)
        async with self._conn.tx() as db:
            rows = await fetch(
                db,
                f"""UPDATE releases
                    SET state = 'scanning', attempts = attempts + 1, updated_at = :now,
                        claimed_by = :owner, lease_expires_at = :until
                    WHERE id IN (
                        SELECT MIN(r.id) FROM releases AS r
                        WHERE ((r.state = 'pending' AND COALESCE(r.next_attempt_at, 0) <= :now)
                               OR (r.state = 'scanning' AND r.lease_expires_at <= :now))
                          AND NOT EXISTS (
                              SELECT 1 FROM releases AS s
                              WHERE s.ecosystem = r.ecosystem AND s.name = r.name
                                AND s.state = 'scanning' AND s.id != r.id
                                AND (s.lease_expires_at IS NULL OR s.lease_expires_at > :now))
                        GROUP BY r.ecosystem, r.name
                        ORDER BY MIN(r.id)
                        LIMIT :limit)
                    RETURNING {RELEASE_COLUMNS}""",  # noqa: S608 - constant column list
                {
                    "now": at,
                    "limit": limit,
                    "owner": None if claimant is None else claimant.owner,
                    "until": None if claimant is None else at + claimant.lease_s,
                },
            )
        return sorted((release_of(row) for row in rows), key=lambda r: r.id)

    async def renew_claims(
        self, ids: Sequence[int], claimant: Claimant, *, now: float | None = None
    ) -> list[int]:
        if not ids:
            return []
        at = now_or(now)
        marks = ", ".join("?" for _ in ids)
        async with self._conn.tx() as db:
            rows = await fetch(
                db,
                f"UPDATE releases SET lease_expires_at = ? "  # noqa: S608 - placeholders
                f"WHERE state = 'scanning' AND claimed_by = ? AND id IN ({marks}) RETURNING id",
                (at + claimant.lease_s, claimant.owner, *(int(i) for i in ids)),
            )
        return sorted(int(row["id"]) for row in rows)

    async def requeue_scanning(self, *, now: float | None = None) -> int:
        """At start: releases left scanning by a crash go back to pending (one service per state
        file, so every claim is abandoned). The attempt stays counted, so a release that kills
        the process every time ends up failed, not looping."""
        async with self._conn.tx() as db:
            cursor = await db.execute(
                f"UPDATE releases SET state = 'pending', {_UNCLAIMED}, updated_at = ? "  # noqa: S608
                "WHERE state = 'scanning'",
                (now_or(now),),
            )
            count = cursor.rowcount
        if count:
            self._notifications.notify(Topic.RELEASES)
        return count

    async def unclaim(
        self, release_id: int, *, owner: str | None = None, now: float | None = None
    ) -> None:
        """Graceful shutdown: an unfinished scan goes back to pending, its attempt not counted."""
        async with self._conn.tx() as db:
            if await _held_by_other(db, release_id, owner):
                return  # someone else's now: nothing of ours to give back
            await db.execute(
                f"UPDATE releases SET state = 'pending', attempts = MAX(0, attempts - 1), "  # noqa: S608
                f"{_UNCLAIMED}, updated_at = ? WHERE id = ? AND state = 'scanning'",
                (now_or(now), release_id),
            )

    # -- results -----------------------------------------------------------------------------

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
        """Store a scan's findings and manifest and mark the release scanned; in the same
        transaction open the incident it warrants and queue its pages, so a crash can neither
        lose the page nor send it twice. Returns (incident, created). With `update` instead of
        `incident`: apply it (see IncidentUpdate) and return (incident, whether it was applied)."""
        at = now_or(now)
        async with self._conn.tx() as db:
            rows = await fetch(db, "SELECT rescan FROM releases WHERE id = ?", (release_id,))
            if not rows:
                raise StoreError(f"no release with id {release_id}")
            if await _held_by_other(db, release_id, owner):
                raise ClaimLost(f"release {release_id} is no longer claimed by {owner}")
            # files were added while this scan ran: scan again, with all of them
            state = "pending" if rows[0]["rescan"] else "scanned"
            await db.execute(
                f"UPDATE releases SET state = ?, rescan = 0, last_error = NULL, "  # noqa: S608
                f"next_attempt_at = NULL, {_UNCLAIMED}, updated_at = ?, scanned_at = ? "
                f"WHERE id = ?",
                (state, at, at, release_id),
            )
            await manifests.write_scan(db, release_id, findings, manifest)
            result = await incidents.open_or_update(db, incident, update, deliveries, at)
        if state == "pending":
            self._notifications.notify(Topic.RELEASES)
        if result[1] and deliveries:
            self._notifications.notify(Topic.OUTBOX)
        return result

    async def schedule_retry(
        self,
        release_id: int,
        error: str,
        next_attempt_at: float,
        *,
        owner: str | None = None,
        now: float | None = None,
    ) -> None:
        """The scan failed but may heal: back to pending, due at `next_attempt_at`."""
        await self._end_attempt(release_id, "pending", error, next_attempt_at, owner=owner, now=now)

    async def mark_failed(
        self, release_id: int, error: str, *, owner: str | None = None, now: float | None = None
    ) -> None:
        """Given up: kept with its reason (never silently dropped)."""
        await self._end_attempt(release_id, "failed", error, None, owner=owner, now=now)

    async def _end_attempt(
        self,
        release_id: int,
        state: str,
        error: str,
        next_attempt_at: float | None,
        *,
        owner: str | None,
        now: float | None,
    ) -> None:
        """A failed scan's claim released, the release in `state` with its error."""
        async with self._conn.tx() as db:
            if await _held_by_other(db, release_id, owner):
                raise ClaimLost(f"release {release_id} is no longer claimed by {owner}")
            await db.execute(
                f"UPDATE releases SET state = ?, last_error = ?, next_attempt_at = ?, "  # noqa: S608
                f"{_UNCLAIMED}, updated_at = ? WHERE id = ?",
                (state, error, next_attempt_at, now_or(now), release_id),
            )

    async def retry_failed(self, release_id: int, *, now: float | None = None) -> bool:
        """An operator's second chance for a failed release: pending again, attempts reset."""
        async with self._conn.tx() as db:
            cursor = await db.execute(
                "UPDATE releases SET state = 'pending', attempts = 0, next_attempt_at = NULL, "
                "updated_at = ? WHERE id = ? AND state = 'failed'",
                (now_or(now), release_id),
            )
            retried = cursor.rowcount == 1
        if retried:
            self._notifications.notify(Topic.RELEASES)
        return retried

    async def retry_all_failed(self, *, now: float | None = None) -> list[StoredRelease]:
        """`retry_failed` for every failed release, in one transaction; returns them."""
        async with self._conn.tx() as db:
            rows = await fetch(
                db,
                f"UPDATE releases SET state = 'pending', attempts = 0, "  # noqa: S608
                f"next_attempt_at = NULL, updated_at = ? WHERE state = 'failed' "
                f"RETURNING {RELEASE_COLUMNS}",
                (now_or(now),),
            )
        if rows:
            self._notifications.notify(Topic.RELEASES)
        return sorted((release_of(row) for row in rows), key=lambda r: r.id)


# ------------------------------------------------------------------ rows and statements


def release_of(row: Row) -> StoredRelease:
    published = row["published_at"]
    return StoredRelease(
        id=row["id"],
        release=Release(
            ecosystem=Ecosystem(row["ecosystem"]),
            name=row["name"],
            version=row["version"],
            published_at=from_epoch(published),
            artifacts=artifacts_of(row["artifacts"]),
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
        claimed_by=row["claimed_by"],
        lease_expires_at=row["lease_expires_at"],
    )


async def _held_by_other(db: Db, release_id: int, owner: str | None) -> bool:
    """With an owner: whether the release is claimed by someone else (or by no one) now."""
    if owner is None:
        return False
    rows = await fetch(db, "SELECT state, claimed_by FROM releases WHERE id = ?", (release_id,))
    return bool(rows) and (rows[0]["state"] != "scanning" or rows[0]["claimed_by"] != owner)


async def upsert_release(
    db: Db, release: Release, *, baseline: bool, feed: str | None, now: float
) -> int | None:
    """Insert a pending release; for one already stored, add the files it did not have and
    queue it to be scanned again. Returns its id when there is something to scan, else None."""
    key = (Ecosystem(release.ecosystem).value, release.name, release.version)
    rows = await fetch(
        db,
        "SELECT id, artifacts, state FROM releases WHERE ecosystem = ? AND name = ? AND version = ?",
        key,
    )
    if not rows:
        cursor = await db.execute(
            "INSERT INTO releases (ecosystem, name, version, published_at, artifacts, baseline, "
            "feed, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (
                *key,
                epoch(release.published_at),
                artifacts_json(release.artifacts),
                int(baseline),
                feed,
                now,
                now,
            ),
        )
        return cursor.lastrowid
    row = rows[0]
    stored = artifacts_of(row["artifacts"])
    known = {a.filename for a in stored}
    added = [a for a in release.artifacts if a.filename not in known]
    if not added:
        return None
    artifacts = artifacts_json((*stored, *added))
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


async def releases_by_id(db: Db, ids: Sequence[int]) -> list[StoredRelease]:
    out = []
    for release_id in ids:
        rows = await fetch(
            db,
            f"SELECT {RELEASE_COLUMNS} FROM releases WHERE id = ?",  # noqa: S608
            (release_id,),
        )
        out.append(release_of(rows[0]))
    return out
