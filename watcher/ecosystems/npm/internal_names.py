"""npm's side of `internal_names`: read a name on the default (public) registry, never on a scope's
own registry, where internal names legitimately live; say who published each version
(`_npmUser`) and who maintains it; and npm's runbook for a name that should not be public."""

from __future__ import annotations

from typing import Any

from watcher.ecosystems.http import HttpStatusError, RegistryHttp, safe_url
from watcher.ecosystems.npm.client import (
    ECOSYSTEM,
    FULL_DOC_ACCEPT,
    packument_url,
    parse_packument,
)
from watcher.ecosystems.versions import version_key
from watcher.feeds.internal import PublicPackage, Publish
from watcher.model import Ecosystem, RunbookStep


def _person(value: Any) -> str | None:
    """`{name, email}` (or npm's old `"name <email>"` string) → `name <email>`."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if not isinstance(value, dict):
        return None
    name = value.get("name") if isinstance(value.get("name"), str) else None
    email = value.get("email") if isinstance(value.get("email"), str) else None
    if name and email:
        return f"{name} <{email}>"
    return name or email or None


def public_package_of(doc: Any, name: str, url: str | None = None) -> PublicPackage:
    """The packument as the page needs it: each version with its time and `_npmUser`, oldest
    first, and the package's `maintainers`."""
    packument = parse_packument(doc, name)
    raw_versions = doc.get("versions") if isinstance(doc, dict) else None
    raw_versions = raw_versions if isinstance(raw_versions, dict) else {}
    publishes = []
    for version, parsed in packument.versions.items():
        manifest = raw_versions.get(version)
        user = _person(manifest.get("_npmUser")) if isinstance(manifest, dict) else None
        if user is None and parsed.provenance is not None:
            user = parsed.provenance.publisher
        publishes.append(Publish(version, parsed.published_at, user))

    def order(p: Publish) -> tuple[float, Any, str]:
        stamp = p.published_at.timestamp() if p.published_at else float("inf")
        key = version_key(Ecosystem.NPM, p.version)
        return (stamp, 0 if key is None else 1, p.version)

    publishes.sort(key=order)
    raw_maintainers = doc.get("maintainers") if isinstance(doc, dict) else None
    maintainers = tuple(
        m
        for m in (
            _person(x) for x in (raw_maintainers if isinstance(raw_maintainers, list) else [])
        )
        if m
    )
    return PublicPackage(packument.name or name, tuple(publishes), maintainers, url)


class NpmPublicLookup:
    """Reads names on `registry_url` (the default registry: the one the changes feed follows)."""

    def __init__(self, http: RegistryHttp, registry_url: str) -> None:
        self.http = http
        self.registry_url = registry_url

    async def public_package(self, name: str) -> PublicPackage | None:
        url = packument_url(self.registry_url, name)
        try:
            response = await self.http.get_json(url, ecosystem=ECOSYSTEM, accept=FULL_DOC_ACCEPT)
        except HttpStatusError as exc:
            if exc.status in (404, 410):
                return None
            raise
        package = public_package_of(response.data, name, safe_url(url))
        return package if package.publishes else None  # a tombstone: nothing to resolve

    def internal_name_runbook(self, package: PublicPackage) -> list[RunbookStep]:
        return internal_name_steps(package.name, self.registry_url)


def internal_name_steps(name: str, registry_url: str) -> list[RunbookStep]:
    scope = name.split("/", 1)[0] if name.startswith("@") else None
    steps = [
        RunbookStep(
            f"Report {name} to npm as a dependency-confusion / name-squatting package: the "
            "package page's 'Report malware' link (npm security), or `npm support` for a name "
            "dispute under npm's dispute policy. Do not install it to look at it.",
            url=packument_url(registry_url, name),
        ),
    ]
    if scope is not None:
        steps.append(
            RunbookStep(
                f"Pin the scope to the private registry on every machine and CI runner, so "
                f"{scope} never resolves on the public one.",
                command=f"npm config set {scope}:registry <private-registry-url>",
            )
        )
    steps += [
        RunbookStep(
            f"Block {name} in the private registry's proxy (uplink) configuration: serve it "
            "only from the private registry, never proxy it from the public one (Verdaccio: a "
            "`packages` entry without `proxy`; Artifactory/Nexus: an exclude pattern on the "
            "remote repository)."
        ),
        RunbookStep(
            f"Check every build that could have resolved {name} since it appeared: lockfiles "
            "whose `resolved` URL points at the public registry, CI logs and caches; treat a "
            "machine that installed it as compromised (its install scripts ran)."
        ),
    ]
    return steps
