"""Approvals from the team's pre-publish gate (table approvals): one row per artifact (ecosystem,
name, version, sha256), with who posted it (the API token's name) and when. Posting the same
artifact again returns the stored row unchanged (a CI retry)."""

from __future__ import annotations

import orjson

from watcher.model import Ecosystem
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import now_or, to_json
from watcher.store.sqlite.connection import Row, fetch
from watcher.store.types import Approval, NewApproval

_BY_ARTIFACT = (
    "SELECT * FROM approvals WHERE ecosystem = ? AND name = ? AND version = ? AND sha256 = ?"
)


class ApprovalRepository(Repository):
    async def add_approval(
        self, approval: NewApproval, *, now: float | None = None
    ) -> tuple[Approval, bool]:
        """Record the approval; (the stored one, True) when new, (the earlier one, False) when
        this artifact was approved before."""
        key = (approval.ecosystem.value, approval.name, approval.version, approval.sha256.lower())
        async with self._conn.tx() as db:
            cursor = await db.execute(
                """INSERT INTO approvals
                    (ecosystem, name, version, sha256, integrity, report, token_name, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (ecosystem, name, version, sha256) DO NOTHING""",
                (
                    *key,
                    approval.integrity,
                    None if approval.report is None else to_json(approval.report),
                    approval.token_name,
                    now_or(now),
                ),
            )
            created = cursor.rowcount == 1
            rows = await fetch(db, _BY_ARTIFACT, key)
        return approval_of(rows[0]), created

    async def approvals(
        self, ecosystem: Ecosystem, name: str, version: str | None = None
    ) -> list[Approval]:
        """The package's approvals (of one version when given), oldest first."""
        if version is None:
            rows = await self._conn.read(
                "SELECT * FROM approvals WHERE ecosystem = ? AND name = ? ORDER BY id",
                (Ecosystem(ecosystem).value, name),
            )
        else:
            rows = await self._conn.read(
                "SELECT * FROM approvals WHERE ecosystem = ? AND name = ? AND version = ? "
                "ORDER BY id",
                (Ecosystem(ecosystem).value, name, version),
            )
        return [approval_of(r) for r in rows]

    async def recent_approvals(self, limit: int = 10) -> list[Approval]:
        """The last approvals recorded, newest first (`watcher status`)."""
        rows = await self._conn.read(
            "SELECT * FROM approvals ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
        )
        return [approval_of(r) for r in rows]


def approval_of(row: Row) -> Approval:
    report = orjson.loads(row["report"]) if row["report"] else None
    return Approval(
        id=int(row["id"]),
        ecosystem=Ecosystem(row["ecosystem"]),
        name=row["name"],
        version=row["version"],
        sha256=row["sha256"],
        integrity=row["integrity"],
        token_name=row["token_name"],
        created_at=float(row["created_at"]),
        report=report if isinstance(report, dict) else None,
    )
