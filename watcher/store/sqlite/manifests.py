"""What a scan leaves behind: findings and the per-version manifest (tables findings, manifests).

A manifest is the baseline the next version of the package is compared with; which version that
is (version order) is the caller's choice, not the store's."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from watcher.model import Category, Ecosystem, Finding, Manifest, Severity
from watcher.store.sqlite.base import Repository
from watcher.store.sqlite.codec import decode_manifest, encode_manifest, to_json
from watcher.store.sqlite.connection import Db, Row, fetch


class ManifestRepository(Repository):
    async def get_findings(self, release_id: int) -> list[Finding]:
        rows = await self._conn.read(
            "SELECT * FROM findings WHERE release_id = ? ORDER BY id", (release_id,)
        )
        return [finding_of(row) for row in rows]

    async def get_manifest(self, ecosystem: Ecosystem, name: str, version: str) -> Manifest | None:
        rows = await self._conn.read(
            "SELECT m.data FROM manifests AS m JOIN releases AS r ON r.id = m.release_id "
            "WHERE r.ecosystem = ? AND r.name = ? AND r.version = ?",
            (Ecosystem(ecosystem).value, name, version),
        )
        return decode_manifest(rows[0]["data"]) if rows else None

    async def manifest_versions(self, ecosystem: Ecosystem, name: str) -> list[str]:
        rows = await self._conn.read(
            "SELECT r.version FROM releases AS r JOIN manifests AS m ON m.release_id = r.id "
            "WHERE r.ecosystem = ? AND r.name = ? ORDER BY r.id",
            (Ecosystem(ecosystem).value, name),
        )
        return [row["version"] for row in rows]


def finding_of(row: Row) -> Finding:
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


async def add_findings(db: Db, release_id: int, findings: Sequence[Finding]) -> None:
    """Findings judged after the scan (origin checks) beside the scan's; one already on the
    release (same fingerprint) is not added twice."""
    rows = await fetch(db, "SELECT fingerprint FROM findings WHERE release_id = ?", (release_id,))
    known = {row["fingerprint"] for row in rows}
    await _insert_findings(db, release_id, [f for f in findings if f.fingerprint not in known])


async def write_scan(
    db: Db, release_id: int, findings: Sequence[Finding], manifest: Manifest
) -> None:
    """A scan's findings (replacing the previous scan's) and its manifest."""
    await db.execute("DELETE FROM findings WHERE release_id = ?", (release_id,))
    await _insert_findings(db, release_id, findings)
    await db.execute(
        "INSERT OR REPLACE INTO manifests (release_id, files, bytes, data) VALUES (?, ?, ?, ?)",
        (release_id, len(manifest.files), manifest.total_bytes, encode_manifest(manifest)),
    )


async def _insert_findings(db: Db, release_id: int, findings: Sequence[Finding]) -> None:
    if not findings:
        return
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
                to_json(f.evidence),
            )
            for f in findings
        ],
    )
