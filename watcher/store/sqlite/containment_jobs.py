"""Automatic containment jobs (table containment_jobs): each action on an incident is one row,
added once, pending until its outcome is recorded, so a crash between two actions resumes the
second and never repeats the first."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from watcher.model import Ecosystem
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or, to_json
from watcher.store.sqlite.connection import Row, fetch
from watcher.store.types import ContainmentJob, JobState, NewJob

FINAL = (JobState.DONE, JobState.FAILED, JobState.DRY_RUN, JobState.SKIPPED)


class ContainmentJobRepository(Repository):
    async def add_containment_jobs(
        self,
        incident_id: int,
        ecosystem: Ecosystem,
        name: str,
        jobs: Sequence[NewJob],
        *,
        now: float | None = None,
    ) -> list[ContainmentJob]:
        at = now_or(now)
        async with self._conn.tx() as db:
            for job in jobs:
                await db.execute(
                    """INSERT INTO containment_jobs
                        (incident_id, ecosystem, name, action, target, params, next_attempt_at,
                         created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (incident_id, action, target) DO NOTHING""",
                    (
                        incident_id,
                        ecosystem.value,
                        name,
                        job.action,
                        job.target,
                        to_json(job.params),
                        at,
                        at,
                    ),
                )
            rows = await fetch(
                db,
                "SELECT * FROM containment_jobs WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            )
        return [job_of(r) for r in rows]

    async def containment_jobs(self, incident_id: int) -> list[ContainmentJob]:
        rows = await self._conn.read(
            "SELECT * FROM containment_jobs WHERE incident_id = ? ORDER BY id", (incident_id,)
        )
        return [job_of(r) for r in rows]

    async def due_containment_jobs(
        self, *, now: float | None = None, limit: int = 100
    ) -> list[ContainmentJob]:
        rows = await self._conn.read(
            """SELECT * FROM containment_jobs WHERE state = 'pending' AND next_attempt_at <= ?
            ORDER BY id LIMIT ?""",
            (now_or(now), limit),
        )
        return [job_of(r) for r in rows]

    async def next_containment_job_at(self) -> float | None:
        rows = await self._conn.read(
            "SELECT MIN(next_attempt_at) AS at FROM containment_jobs WHERE state = 'pending'"
        )
        value = rows[0]["at"] if rows else None
        return None if value is None else float(value)

    async def finish_containment_job(
        self, job_id: int, state: JobState, detail: str, *, now: float | None = None
    ) -> bool:
        """Record the job's final outcome; False when it already had one (never twice)."""
        if state not in FINAL:
            raise ValueError(f"not a final state: {state}")
        async with self._conn.tx() as db:
            cursor = await db.execute(
                """UPDATE containment_jobs SET state = ?, detail = ?, finished_at = ?,
                    attempts = attempts + 1
                WHERE id = ? AND state = 'pending'""",
                (state.value, detail, now_or(now), job_id),
            )
            return cursor.rowcount == 1

    async def retry_containment_job(self, job_id: int, next_attempt_at: float, error: str) -> int:
        """Count a failed attempt and put the job off; returns its attempts (0: not pending)."""
        async with self._conn.tx() as db:
            await db.execute(
                """UPDATE containment_jobs SET attempts = attempts + 1, next_attempt_at = ?,
                    detail = ?
                WHERE id = ? AND state = 'pending'""",
                (next_attempt_at, error, job_id),
            )
            rows = await fetch(
                db, "SELECT attempts, state FROM containment_jobs WHERE id = ?", (job_id,)
            )
        return int(rows[0]["attempts"]) if rows and rows[0]["state"] == "pending" else 0

    async def containment_actions_since(self, ecosystem: Ecosystem, name: str, since: float) -> int:
        """Actions done on the package's registry since `since` (the per-package hourly cap)."""
        rows = await self._conn.read(
            """SELECT COUNT(*) AS n FROM containment_jobs
            WHERE ecosystem = ? AND name = ? AND state = 'done' AND finished_at >= ?""",
            (ecosystem.value, name, since),
        )
        return int(rows[0]["n"])


def job_of(row: Row) -> ContainmentJob:
    params = orjson.loads(row["params"])
    return ContainmentJob(
        id=row["id"],
        incident_id=row["incident_id"],
        ecosystem=Ecosystem(row["ecosystem"]),
        name=row["name"],
        action=row["action"],
        target=row["target"],
        params={str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {},
        state=JobState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        detail=row["detail"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )
