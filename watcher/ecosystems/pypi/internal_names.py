"""PyPI's side of `internal_names`: read a project on the configured public index (its Simple API
page: versions and upload times), who uploaded what where the index says (the JSON API's
`ownership` roles and a file's `uploader` where given), and PyPI's runbook for a name that should
not be public."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from watcher.ecosystems.http import HttpStatusError, safe_url
from watcher.ecosystems.pypi.client import PypiClient, normalize
from watcher.ecosystems.versions import version_key
from watcher.feeds.internal import PublicPackage, Publish
from watcher.model import Ecosystem, RunbookStep
from watcher.timefmt import parse_iso


def _json_files(metadata: dict[str, Any] | None) -> dict[str, tuple[str | None, datetime | None]]:
    """Version → (uploader, earliest upload time) from the JSON API's files: the uploader where
    a file carries one (Warehouse does not; some indexes do), the time for pages that state none
    (PEP 503 HTML)."""
    found: dict[str, tuple[str | None, datetime | None]] = {}
    releases = metadata.get("releases") if metadata else None
    if not isinstance(releases, dict):
        return found
    for version, files in releases.items():
        if not isinstance(version, str):
            continue
        who: str | None = None
        when: datetime | None = None
        for raw in files if isinstance(files, list) else []:
            if not isinstance(raw, dict):
                continue
            if who is None and isinstance(raw.get("uploader"), str) and raw["uploader"]:
                who = raw["uploader"]
            stamp = parse_iso(raw.get("upload_time_iso_8601") or raw.get("upload_time"))
            if stamp is not None and (when is None or stamp < when):
                when = stamp
        found[version] = (who, when)
    return found


def _owners(metadata: dict[str, Any] | None) -> tuple[str, ...]:
    ownership = metadata.get("ownership") if metadata else None
    roles = ownership.get("roles") if isinstance(ownership, dict) else None
    people = []
    for role in roles if isinstance(roles, list) else []:
        if isinstance(role, dict) and isinstance(role.get("user"), str):
            kind = role.get("role") if isinstance(role.get("role"), str) else "role"
            people.append(f"{role['user']} ({kind})")
    return tuple(people)


class PypiPublicLookup:
    def __init__(self, client: PypiClient) -> None:
        self.client = client

    async def public_package(self, name: str) -> PublicPackage | None:
        try:
            page = await self.client.project(name)
        except HttpStatusError as exc:
            if exc.status in (404, 410):
                return None
            raise
        if page is None:  # no etag was sent: cannot be a 304
            return None
        try:
            metadata = await self.client.json_metadata(name)
        except HttpStatusError:
            metadata = None  # richer metadata, never required
        stated = _json_files(metadata)
        publishes = []
        for version in {f.version for f in page.files if f.version is not None}:
            release = page.release(version)
            who, when = stated.get(version, (None, None))
            publishes.append(Publish(release.version, release.published_at or when, who))

        def order(p: Publish) -> tuple[float, int, str]:
            stamp = p.published_at.timestamp() if p.published_at else float("inf")
            return (stamp, 0 if version_key(Ecosystem.PYPI, p.version) is None else 1, p.version)

        publishes.sort(key=order)
        if not publishes:
            return None  # a project without files has nothing anyone could install yet
        url = safe_url(self.client.project_url(name))
        return PublicPackage(page.name, tuple(publishes), _owners(metadata), url)

    def internal_name_runbook(self, package: PublicPackage) -> list[RunbookStep]:
        return internal_name_steps(package.name)


def internal_name_steps(name: str) -> list[RunbookStep]:
    project = normalize(name)
    return [
        RunbookStep(
            f"Report {project} to PyPI as dependency confusion / typosquatting: the project "
            "page's 'Report project as malware' button (PyPI's security route); a name claim "
            "goes through PEP 541. Do not install it to look at it."
        ),
        RunbookStep(
            f"Make pip take {project} only from the private index: `--index-url` the private "
            "index, never `--extra-index-url` beside the public one (pip then picks the "
            "highest version from either); or block the name in the private index's proxy of "
            "the public one (devpi: a `mirror_whitelist`/blocklist entry; Artifactory/Nexus: "
            "an exclude pattern on the remote repository).",
            command="pip config set global.index-url <private-index-url>",
        ),
        RunbookStep(
            f"Check every build that could have resolved {project} since it appeared: lock "
            "files and `pip download`/`pip install` logs naming the public index, CI caches; "
            "treat a machine that installed it as compromised (a setup.py runs on install)."
        ),
    ]
