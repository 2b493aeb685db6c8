"""Deferred origin checks (table origin_checks): a release's approval, tag or late attestations
judged once their grace ran out. A check is scheduled once per release and kind, claimed with a
lease when due (another replica, or this one after a restart, takes over an expired claim), and
finished in the same transaction as the findings it adds and the incident it opens or updates,
so a crash can neither lose its page nor send it twice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from watcher.model import Finding, Incident
from watcher.store.sqlite import incidents
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or, to_json
from watcher.store.sqlite.connection import Db, Row, fetch
from watcher.store.sqlite.manifests import add_findings
from watcher.store.types import (
    Claimant,
    ClaimLost,
    Delivery,
    IncidentUpdate,
    OriginCheck,
    OriginCheckState,
    StoreError,
    Topic,
)


class OriginCheckRepository(Repository):
    async def schedule_origin_check(
        self,
        release_id: int,
        kind: str,
        due_at: float,
        params: Mapping[str, object] | None = None,
        *,
        now: float | None = None,
    ) -> OriginCheck:
        """Schedule the release's check of this kind at `due_at`. A pending one keeps its due
        time and takes the new params; a done one is armed again (files were added to the
        release: they are judged too)."""
        at = now_or(now)
        async with self._conn.tx() as db:
            await db.execute(
                """INSERT INTO origin_checks (release_id, kind, params, due_at, created_at)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (release_id, kind) DO UPDATE SET
                    params = excluded.params,
                    due_at = CASE WHEN origin_checks.state = 'done' THEN excluded.due_at
                        ELSE origin_checks.due_at END,
                    state = 'pending', finished_at = NULL""",
                (release_id, kind, to_json(dict(params or {})), due_at, at),
            )
            rows = await fetch(
                db,
                "SELECT * FROM origin_checks WHERE release_id = ? AND kind = ?",
                (release_id, kind),
            )
        self._notifications.notify(Topic.ORIGIN_CHECKS)
        return origin_check_of(rows[0])

    async def origin_checks(self, release_id: int) -> list[OriginCheck]:
        rows = await self._conn.read(
            "SELECT * FROM origin_checks WHERE release_id = ? ORDER BY id", (release_id,)
        )
        return [origin_check_of(r) for r in rows]

    async def claim_due_origin_checks(
        self, claimant: Claimant, *, now: float | None = None, limit: int = 20
    ) -> list[OriginCheck]:
        """Claim due checks (attempts + 1), oldest due first; a claim whose lease expired is
        taken over."""
        at = now_or(now)
        async with self._conn.tx() as db:
            rows = await fetch(
                db,
                """UPDATE origin_checks
                    SET attempts = attempts + 1, claimed_by = :owner, lease_expires_at = :until
                    WHERE id IN (
                        SELECT c.id FROM origin_checks AS c
                        WHERE c.state = 'pending' AND c.due_at <= :now
                          AND (c.claimed_by IS NULL OR c.lease_expires_at <= :now)
                        ORDER BY c.due_at, c.id
                        LIMIT :limit)
                    RETURNING *""",
                {
                    "now": at,
                    "owner": claimant.owner,
                    "until": at + claimant.lease_s,
                    "limit": limit,
                },
            )
        return sorted((origin_check_of(r) for r in rows), key=lambda c: (c.due_at, c.id))

    async def next_origin_check_at(self) -> float | None:
        """When the next pending check is due (or its claim expires); None: none pending."""
        rows = await self._conn.read(
            """SELECT MIN(due_at) AS at FROM origin_checks
            WHERE state = 'pending' AND claimed_by IS NULL
            UNION ALL
            SELECT MIN(lease_expires_at) AS at FROM origin_checks
            WHERE state = 'pending' AND claimed_by IS NOT NULL"""
        )
        times = [float(r["at"]) for r in rows if r["at"] is not None]
        return min(times) if times else None

    async def oldest_due_origin_check(self, *, now: float | None = None) -> float | None:
        """The due time of the oldest pending check that is due (None: none is): how far the
        judges are behind."""
        rows = await self._conn.read(
            "SELECT MIN(due_at) AS at FROM origin_checks WHERE state = 'pending' AND due_at <= ?",
            (now_or(now),),
        )
        value = rows[0]["at"] if rows else None
        return None if value is None else float(value)

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
        """The verdict: the check done, its findings added to the release's, and the incident
        they open (or the update of the release's incident) with its pages, in one transaction.
        Returns (incident, whether it was opened or updated). ClaimLost when `owner` no longer
        holds the claim (another holder's verdict counts)."""
        at = now_or(now)
        async with self._conn.tx() as db:
            check = await _held(db, check_id, owner)
            await db.execute(
                """UPDATE origin_checks SET state = 'done', detail = ?, finished_at = ?,
                    claimed_by = NULL, lease_expires_at = NULL WHERE id = ?""",
                (detail, at, check_id),
            )
            await add_findings(db, check.release_id, findings)
            result = await incidents.open_or_update(db, incident, update, deliveries, at)
        if result[1] and deliveries:
            self._notifications.notify(Topic.OUTBOX)
        return result

    async def reschedule_origin_check(
        self, check_id: int, due_at: float, detail: str, *, owner: str
    ) -> int:
        """Not judged yet (a source could not be read, or the check wants another look): due
        again at `due_at`, claim released. Returns the attempts so far."""
        async with self._conn.tx() as db:
            check = await _held(db, check_id, owner)
            await db.execute(
                """UPDATE origin_checks SET due_at = ?, detail = ?, claimed_by = NULL,
                    lease_expires_at = NULL WHERE id = ?""",
                (due_at, detail, check_id),
            )
        self._notifications.notify(Topic.ORIGIN_CHECKS)
        return check.attempts


async def _held(db: Db, check_id: int, owner: str) -> OriginCheck:
    rows = await fetch(db, "SELECT * FROM origin_checks WHERE id = ?", (check_id,))
    if not rows:
        raise StoreError(f"no origin check with id {check_id}")
    check = origin_check_of(rows[0])
    if check.state is not OriginCheckState.PENDING or check.claimed_by != owner:
        raise ClaimLost(f"origin check {check_id} is no longer claimed by {owner}")
    return check


def origin_check_of(row: Row) -> OriginCheck:
    params = orjson.loads(row["params"])
    return OriginCheck(
        id=int(row["id"]),
        release_id=int(row["release_id"]),
        kind=row["kind"],
        params=params if isinstance(params, dict) else {},
        state=OriginCheckState(row["state"]),
        due_at=float(row["due_at"]),
        attempts=int(row["attempts"]),
        detail=row["detail"],
        claimed_by=row["claimed_by"],
        created_at=float(row["created_at"]),
        finished_at=None if row["finished_at"] is None else float(row["finished_at"]),
    )
