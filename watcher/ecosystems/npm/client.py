"""npm registry client: packuments (full form, conditional), their parsing, tarball download with
integrity verification, and the one-shot `npm:NAME@VERSION` fetch used by `watcher scan`.

The packument parser is defensive on purpose: mirrors trim documents, a full unpublish leaves a
tombstone whose `time.unpublished` is an object, and old documents carry odd values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import structlog

from watcher.ecosystems.http import Download, HttpSettings, HttpStatusError, RegistryHttp, safe_url
from watcher.ecosystems.npm.settings import (
    NpmRegistries,
    NpmScopeSetting,
    package_scope,
    resolve_npm_registries,
)
from watcher.ecosystems.versions import select_baseline
from watcher.errors import IntegrityError, RegistryError
from watcher.model import Artifact, Ecosystem, Provenance, Release
from watcher.timefmt import parse_iso

log = structlog.get_logger(__name__)

ECOSYSTEM = Ecosystem.NPM.value
# Exactly this: content negotiation hands out the abbreviated document (no `time`, no `scripts`,
# no `_rev`) whenever the abbreviated type or `*/*` is named, whatever the q-values.
FULL_DOC_ACCEPT = "application/json"
DEFAULT_MAX_TARBALL_BYTES = 512 * 1024 * 1024
_TIME_META_KEYS = frozenset({"created", "modified", "unpublished"})
_NAME = re.compile(r"^(?:@[a-z0-9][\w.~-]*/)?[a-z0-9_.~-][\w.~-]*$", re.IGNORECASE)
# Strongest first; sha1 only as the legacy `dist.shasum`.
_SRI_PREFERENCE = ("sha512", "sha384", "sha256", "sha1")


# ----------------------------------------------------------------------------------- parsing


def escape_name(name: str) -> str:
    """`@scope/name` → `@scope%2fname` (npm-package-arg's escapedName: literal `@`, lowercase
    `%2f`). One form everywhere, because CDN cache keys and ETags are per URL."""
    if not _NAME.match(name):
        raise RegistryError(f"not a valid npm package name: {name!r}")
    return name.replace("/", "%2f", 1) if name.startswith("@") else name


def packument_url(registry_url: str, name: str) -> str:
    base = registry_url if registry_url.endswith("/") else registry_url + "/"
    return urljoin(base, escape_name(name))


def rev_generation(rev: Any) -> int | None:
    """CouchDB revisions are `<n>-<hash>`; `n` grows with every change of the document."""
    if isinstance(rev, str):
        head = rev.split("-", 1)[0]
        if head.isdigit():
            return int(head)
    return None


@dataclass(frozen=True, slots=True)
class NpmVersion:
    version: str
    tarball: str | None
    integrity: str | None
    shasum: str | None
    deprecated: str | None = None
    published_at: datetime | None = None
    provenance: Provenance | None = None  # None: the document carries no publisher fields

    @property
    def filename(self) -> str:
        if self.tarball:
            tail = urlsplit(self.tarball).path.rsplit("/", 1)[-1]
            if tail:
                return tail
        return f"{self.version}.tgz"

    @property
    def artifact_integrity(self) -> str | None:
        """`dist.integrity` (SRI) when present, else `sha1-<hex>` from the legacy `dist.shasum`."""
        if self.integrity:
            return self.integrity
        return f"sha1-{self.shasum.lower()}" if self.shasum else None


@dataclass(frozen=True, slots=True)
class Unpublished:
    """A full-unpublish tombstone (`time.unpublished`)."""

    at: datetime | None
    versions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Packument:
    name: str
    rev: str | None
    versions: dict[str, NpmVersion]
    times: dict[str, datetime]  # version -> publish time, unpublished ones included
    dist_tags: dict[str, str] = field(default_factory=dict)
    unpublished: Unpublished | None = None

    @property
    def generation(self) -> int | None:
        return rev_generation(self.rev)

    @property
    def removed_versions(self) -> frozenset[str]:
        """Versions unpublished one by one: still in `time`, gone from `versions`. (Verdaccio
        drops the `time` entry too, so a diff against stored state is still needed.)"""
        return frozenset(self.times) - frozenset(self.versions)

    def release(self, version: str) -> Release:
        info = self.versions.get(version)
        if info is None:
            raise RegistryError(f"npm:{self.name}@{version} is not in the registry's document")
        artifact = Artifact(
            filename=info.filename,
            url=info.tarball,
            integrity=info.artifact_integrity,
            provenance=info.provenance,
        )
        return Release(Ecosystem.NPM, self.name, version, info.published_at, (artifact,))

    def releases(self) -> dict[str, Release]:
        return {version: self.release(version) for version in self.versions}


def _parse_unpublished(value: Any) -> Unpublished | None:
    if isinstance(value, dict):
        versions = value.get("versions")
        listed = (
            tuple(v for v in versions if isinstance(v, str)) if isinstance(versions, list) else ()
        )
        return Unpublished(parse_iso(value.get("time")), listed)
    if value is not None:
        # Some mirrors flatten it to a timestamp string; still a tombstone.
        return Unpublished(parse_iso(value), ())
    return None


def parse_packument(doc: Any, name: str | None = None) -> Packument:
    if not isinstance(doc, dict):
        raise RegistryError(f"npm document for {name or '?'} is not a JSON object")
    doc_name = _str(doc.get("name")) or name or ""
    raw_time = _dict(doc.get("time"))
    times: dict[str, datetime] = {}
    for key, value in raw_time.items():
        if key in _TIME_META_KEYS:
            continue
        stamp = parse_iso(value)
        if stamp is not None:
            times[key] = stamp
    versions: dict[str, NpmVersion] = {}
    raw_versions = _dict(doc.get("versions"))
    for version, manifest in raw_versions.items():
        if not isinstance(version, str) or not isinstance(manifest, dict):
            continue
        dist = _dict(manifest.get("dist"))
        deprecated = manifest.get("deprecated")
        versions[version] = NpmVersion(
            version=version,
            tarball=_str(dist.get("tarball")),
            integrity=_str(dist.get("integrity")),
            shasum=_str(dist.get("shasum")),
            deprecated=deprecated if isinstance(deprecated, str) and deprecated else None,
            published_at=times.get(version),
            provenance=parse_provenance(manifest, dist),
        )
    raw_tags = _dict(doc.get("dist-tags"))
    tags = {k: v for k, v in raw_tags.items() if isinstance(k, str) and isinstance(v, str)}
    return Packument(
        name=doc_name,
        rev=_str(doc.get("_rev")),
        versions=versions,
        times=times,
        dist_tags=tags,
        unpublished=_parse_unpublished(raw_time.get("unpublished")),
    )


def parse_provenance(manifest: dict[Any, Any], dist: dict[Any, Any]) -> Provenance | None:
    """`dist.attestations` and `_npmUser` of one version document. None when the document has
    neither: mirrors strip both, so their absence says nothing about how the version was
    published. With `_npmUser` present, no `dist.attestations` means none were published."""
    user = manifest.get("_npmUser")
    attestations = dist.get("attestations")
    if not isinstance(user, dict) and not isinstance(attestations, dict):
        return None
    user = _dict(user)
    trusted = _dict(user.get("trustedPublisher"))
    attested = _dict(attestations)
    predicate = _dict(attested.get("provenance")).get("predicateType")
    return Provenance(
        attested=isinstance(attestations, dict),
        url=_str(attested.get("url")),
        predicate_types=(predicate,) if isinstance(predicate, str) and predicate else (),
        publisher=_str(user.get("name")),
        trusted_publisher=_str(trusted.get("id")) or ("unknown" if trusted else None),
        trusted_config=_str(trusted.get("oidcConfigId")),
    )


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -------------------------------------------------------------------------------- integrity


def _expected_digests(integrity: str) -> list[tuple[str, bytes]]:
    """SRI tokens (`sha512-<b64>`, several allowed, options after `?` ignored) plus our
    `sha1-<hex>` form of `dist.shasum`; strongest first."""
    found: list[tuple[str, bytes]] = []
    for token in integrity.split():
        algo, _, value = token.partition("-")
        value = value.split("?", 1)[0]
        algo = algo.lower()
        if algo not in _SRI_PREFERENCE or not value:
            continue
        try:
            if algo == "sha1" and re.fullmatch(r"[0-9a-fA-F]{40}", value):
                digest = bytes.fromhex(value)
            else:
                digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        found.append((algo, digest))
    return sorted(found, key=lambda item: _SRI_PREFERENCE.index(item[0]))


def verify_download(artifact: Artifact, download: Download) -> None:
    """Raise IntegrityError unless the strongest published digest matches what we received."""
    if not artifact.integrity:
        log.warning("integrity_unverifiable", url=safe_url(download.url), reason="no digest")
        return
    expected = _expected_digests(artifact.integrity)
    if not expected:
        raise IntegrityError(f"{artifact.filename}: unusable integrity string")
    algo, digest = expected[0]
    got_hex = download.digests.get(algo)
    if got_hex is None:  # pragma: no cover - download() always computes the preferred ones
        got_hex = hashlib.new(algo, download.path.read_bytes()).hexdigest()
    if not hmac.compare_digest(bytes.fromhex(got_hex), digest):
        raise IntegrityError(
            f"{artifact.filename}: {algo} of the download does not match the registry's "
            f"(expected {digest.hex()[:16]}…, got {got_hex[:16]}…)"
        )


# ----------------------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class PackumentFetch:
    packument: Packument | None  # None when not modified or missing
    etag: str | None
    not_modified: bool = False
    missing: bool = False  # 404: never published, or fully unpublished on some registries


@dataclass(frozen=True, slots=True)
class FetchedArtifact:
    release: Release
    path: Path
    size: int
    sha256: str


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


class NpmClient:
    """Packuments and tarballs. A scoped name goes to its scope's registry when `scopes` names one
    (`{"@acme": url}`), every other name to `registry_url`; the HTTP layer picks the credential by
    URL, so each registry only ever sees its own."""

    def __init__(
        self, http: RegistryHttp, registry_url: str, scopes: Mapping[str, str] | None = None
    ) -> None:
        self.http = http
        self.registry_url = _slash(registry_url)
        self.scopes = {scope: _slash(url) for scope, url in (scopes or {}).items()}

    @classmethod
    def for_registries(cls, http: RegistryHttp, registries: NpmRegistries) -> NpmClient:
        return cls(http, registries.default.url, registries.scope_urls())

    def registry_for(self, name: str) -> str:
        """The registry that serves `name`: its scope's, else the default one."""
        scope = package_scope(name)
        return self.scopes.get(scope, self.registry_url) if scope else self.registry_url

    async def fetch_packument(self, name: str, etag: str | None = None) -> PackumentFetch:
        url = packument_url(self.registry_for(name), name)
        try:
            response = await self.http.get_json(
                url, ecosystem=ECOSYSTEM, etag=etag, accept=FULL_DOC_ACCEPT
            )
        except HttpStatusError as exc:
            if exc.status == 404:
                return PackumentFetch(None, None, missing=True)
            raise
        if response.not_modified:
            return PackumentFetch(None, response.etag or etag, not_modified=True)
        return PackumentFetch(parse_packument(response.data, name), response.etag)

    async def download(
        self, release: Release, dest_dir: Path, *, max_bytes: int = DEFAULT_MAX_TARBALL_BYTES
    ) -> FetchedArtifact:
        """Download the release's tarball into `dest_dir` and verify it; IntegrityError on a
        mismatch (the file is removed, never handed on)."""
        if not release.artifacts or not release.artifacts[0].url:
            raise RegistryError(f"npm:{release.name}@{release.version} has no tarball URL")
        artifact = release.artifacts[0]
        assert artifact.url is not None
        safe_name = re.sub(r"[^\w.+-]", "_", artifact.filename) or "package.tgz"
        dest = dest_dir / safe_name
        download = await self.http.download(
            artifact.url, dest, ecosystem=ECOSYSTEM, max_bytes=max_bytes
        )
        try:
            verify_download(artifact, download)
        except IntegrityError:
            dest.unlink(missing_ok=True)
            raise
        final = replace(artifact, size=download.size, sha256=download.digests["sha256"])
        fetched = Release(
            release.ecosystem, release.name, release.version, release.published_at, (final,)
        )
        return FetchedArtifact(fetched, dest, download.size, download.digests["sha256"])


def npm_http(registries: NpmRegistries, settings: HttpSettings | None = None) -> RegistryHttp:
    """An HTTP layer holding each registry's credential under its own URL prefix."""
    base = settings or HttpSettings()
    return RegistryHttp(replace(base, credentials={**base.credentials, **registries.credentials()}))


# ---------------------------------------------------------------------------- one-shot scan


@dataclass(frozen=True, slots=True)
class NpmFetch:
    target: FetchedArtifact
    baseline: FetchedArtifact | None
    workdir: Path  # the caller removes it when done


def parse_npm_target(spec: str) -> tuple[str, str]:
    """`npm:NAME@VERSION` (NAME may be scoped) → (name, version)."""
    body = spec.removeprefix("npm:")
    at = body.rfind("@")
    if at <= 0:
        raise RegistryError(f"expected npm:NAME@VERSION, got {spec!r}")
    name, version = body[:at], body[at + 1 :]
    escape_name(name)
    if not version:
        raise RegistryError(f"expected npm:NAME@VERSION, got {spec!r}")
    return name, version


async def fetch_npm_release(
    name: str,
    version: str,
    *,
    baseline: str | None = None,
    dest_dir: Path | None = None,
    registry_url: str | None = None,
    scopes: Mapping[str, NpmScopeSetting] | None = None,
    http: RegistryHttp | None = None,
    max_bytes: int = DEFAULT_MAX_TARBALL_BYTES,
) -> NpmFetch:
    """Resolve `name@version` (a dist-tag such as `latest` works too), download and verify its
    tarball, and with `baseline="auto"` (or an explicit version) the baseline's as well.

    The package's registry is its scope's (`scopes`, then the machine's `@scope:registry`), else
    `registry_url`, else the machine's npm setting; credentials are the machine's per registry
    unless a scope names its own. With `http` given, it is used as it is and only
    `registry_url` (required then) and `scopes` route. Files land in `dest_dir` (a new temporary
    directory when None; the caller removes `NpmFetch.workdir`)."""
    owned_http = http is None
    if http is None:
        registries = resolve_npm_registries(registry_url, scopes)
        http = npm_http(registries)
        client = NpmClient.for_registries(http, registries)
    else:
        if registry_url is None:
            raise RegistryError("fetch_npm_release: registry_url is required with an http session")
        urls = {scope: setting.url for scope, setting in (scopes or {}).items()}
        client = NpmClient(http, registry_url, urls)
    workdir = dest_dir or Path(tempfile.mkdtemp(prefix="watcher-npm-"))
    try:
        fetched = await client.fetch_packument(name)
        if fetched.missing or fetched.packument is None:
            where = safe_url(client.registry_for(name))
            raise RegistryError(f"npm:{name} does not exist on {where}")
        packument = fetched.packument
        version = packument.dist_tags.get(version, version)
        if version not in packument.versions:
            gone = " (unpublished)" if version in packument.removed_versions else ""
            raise RegistryError(f"npm:{name}@{version} is not published{gone}")
        target_dir = workdir / "target"
        target_dir.mkdir(parents=True, exist_ok=True)
        target = await client.download(packument.release(version), target_dir, max_bytes=max_bytes)
        base: FetchedArtifact | None = None
        base_version = (
            select_baseline(Ecosystem.NPM, version, packument.versions)
            if baseline == "auto"
            else baseline
        )
        if base_version is not None:
            if base_version not in packument.versions:
                raise RegistryError(f"baseline npm:{name}@{base_version} is not published")
            base_dir = workdir / "baseline"
            base_dir.mkdir(parents=True, exist_ok=True)
            base = await client.download(
                packument.release(base_version), base_dir, max_bytes=max_bytes
            )
        return NpmFetch(target, base, workdir)
    finally:
        if owned_http:
            await http.close()
