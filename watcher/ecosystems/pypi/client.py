"""PyPI-protocol client: project pages from the Simple API, release files with integrity checks.

The Simple API is the one interface every index speaks (PyPI, devpi, pypiserver, Artifactory,
corporate mirrors), so it is the primary source: PEP 691 JSON first, PEP 503 HTML as the fallback.
Fields a mirror strips (serials, sizes, upload times, ETags) are optional everywhere: we degrade,
never fail, when they are absent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import orjson
import structlog
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from watcher import metrics
from watcher.ecosystems.http import HttpStatusError, RegistryHttp, safe_url
from watcher.ecosystems.pypi.settings import resolve_pypi_index
from watcher.ecosystems.versions import select_baseline
from watcher.errors import IntegrityError, RegistryError
from watcher.model import Artifact, Ecosystem, Provenance, Release
from watcher.timefmt import parse_iso

log = structlog.get_logger(__name__)

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
# PEP 691 content negotiation: JSON preferred, HTML accepted from indexes that only speak PEP 503.
SIMPLE_ACCEPT = f"{SIMPLE_JSON}, {SIMPLE_HTML};q=0.2, text/html;q=0.01"
SERIAL_HEADER = "X-PyPI-Last-Serial"
DEFAULT_MAX_BYTES = 2 * 1024**3  # per file; config `scan.max_download_bytes` overrides

# Hashes we can check when an index publishes something other than sha256 (PEP 503 allows any
# hashlib name in the URL fragment); strongest first.
_HASH_PREFERENCE = ("sha256", "sha512", "sha384", "sha224", "sha1", "md5")
_LEGACY_SUFFIXES = (
    ".tar.gz",
    ".tar.bz2",
    ".tar.xz",
    ".tgz",
    ".tar",
    ".zip",
    ".egg",
    ".exe",
    ".msi",
)
_HTML_SERIAL = re.compile(r"^\s*SERIAL\s+(\d+)\s*$")


def normalize(name: str) -> str:
    """PEP 503 normalized project name: the only form used as a key or in a URL."""
    return str(canonicalize_name(name))


@dataclass(frozen=True, slots=True)
class PypiFile:
    """One file of a project as the index lists it."""

    filename: str
    url: str
    version: str | None  # None when the filename cannot be parsed for this project
    hashes: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None
    upload_time: datetime | None = None
    yanked: bool = False
    yanked_reason: str | None = None
    requires_python: str | None = None
    # PEP 740: None when the page has no `provenance` key (HTML pages, indexes that do not serve
    # it), so "not attested" is only said where the index would have said otherwise.
    provenance: Provenance | None = None

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    def artifact(self) -> Artifact:
        return Artifact(
            filename=self.filename,
            url=self.url,
            size=self.size,
            sha256=self.sha256,
            provenance=self.provenance,
        )


@dataclass(frozen=True, slots=True)
class ProjectPage:
    """A project's Simple API page, whichever form the index served."""

    name: str  # normalized
    files: tuple[PypiFile, ...]
    versions: tuple[str, ...]  # PEP 700 `versions` when served, else the versions of the files
    last_serial: int | None = None  # `_last-serial` / X-PyPI-Last-Serial / <!--SERIAL n-->
    etag: str | None = None
    form: str = "json"  # "json" (PEP 691) or "html" (PEP 503)

    def files_of(self, version: str) -> tuple[PypiFile, ...]:
        wanted = _version_key(version)
        return tuple(f for f in self.files if f.version and _version_key(f.version) == wanted)

    def release(self, version: str) -> Release:
        """The release with every file listed so far (files keep arriving for days)."""
        files = sorted(self.files_of(version), key=lambda f: f.filename)
        if not files and not any(_version_key(v) == _version_key(version) for v in self.versions):
            raise RegistryError(f"pypi:{self.name}=={version} is not published")
        times = [f.upload_time for f in files if f.upload_time is not None]
        return Release(
            ecosystem=Ecosystem.PYPI,
            name=self.name,
            version=files[0].version if files and files[0].version else version,
            published_at=min(times) if times else None,
            artifacts=tuple(f.artifact() for f in files),
        )


# --------------------------------------------------------------------------- filenames → versions


def version_from_filename(filename: str, project: str) -> str | None:
    """The version a distribution filename names, or None when it does not belong to `project`
    or cannot be parsed (indexes list odd legacy files; they must not break the page)."""
    want = normalize(project)
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return str(version) if name == want else None
        if filename.endswith((".tar.gz", ".zip")):
            sname, sversion = parse_sdist_filename(filename)
            return str(sversion) if sname == want else None
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        pass
    return _legacy_version(filename, want)


def _legacy_version(filename: str, want: str) -> str | None:
    """Eggs, bdist_wininst and sdists whose name has dashes: find the prefix that is the project."""
    stem = filename
    for suffix in _LEGACY_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        return None
    parts = stem.split("-")
    for cut in range(1, len(parts)):
        if normalize("-".join(parts[:cut])) == want:
            candidate = parts[cut]
            try:
                return str(Version(candidate))
            except InvalidVersion:
                return None
    return None


def _version_key(version: str) -> Version | str:
    """PEP 440 equality (`1.1` is `1.1.0`), as pip sees it; the text for legacy versions."""
    try:
        return Version(version)
    except InvalidVersion:
        return version


# --------------------------------------------------------------------------- PEP 691 JSON


def parse_simple_json(
    body: bytes,
    page_url: str,
    *,
    project: str,
    header_serial: str | None = None,
    etag: str | None = None,
) -> ProjectPage:
    """Parse a PEP 691 project page. Relative file URLs resolve against the page's own URL."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"simple JSON page for {project} is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise RegistryError(f"simple JSON page for {project} has no files list")
    meta = doc.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    name = normalize(str(doc.get("name") or project))
    files = tuple(
        parsed
        for raw in doc["files"]
        if isinstance(raw, dict) and (parsed := _json_file(raw, page_url, name)) is not None
    )
    raw_versions = doc.get("versions")
    versions = (
        tuple(str(v) for v in raw_versions)
        if isinstance(raw_versions, list)
        else _versions_of(files)
    )
    serial = _serial(header_serial)
    if serial is None:
        serial = _serial(meta.get("_last-serial"))
    return ProjectPage(name, files, versions, serial, etag, "json")


def _json_file(raw: Mapping[str, Any], page_url: str, project: str) -> PypiFile | None:
    filename = raw.get("filename")
    url = raw.get("url")
    if not isinstance(filename, str) or not isinstance(url, str):
        return None
    hashes = raw.get("hashes")
    yanked = raw.get("yanked", False)
    size = raw.get("size")
    requires = raw.get("requires-python")
    return PypiFile(
        filename=filename,
        url=urljoin(page_url, url),
        version=version_from_filename(filename, project),
        hashes={
            str(k).lower(): str(v).lower()
            for k, v in (hashes.items() if isinstance(hashes, dict) else ())
        },
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=parse_iso(raw.get("upload-time")),
        # PEP 592 in JSON: false, true, or the reason as a string.
        yanked=bool(yanked),
        yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
        requires_python=requires if isinstance(requires, str) and requires else None,
        provenance=_json_provenance(raw, page_url),
    )


def _json_provenance(raw: Mapping[str, Any], page_url: str) -> Provenance | None:
    """PEP 740 `provenance`: the URL of the file's attestations, or null for a file without any.
    An index that does not implement PEP 740 leaves the key out: unknown, not "none"."""
    if "provenance" not in raw:
        return None
    url = raw["provenance"]
    if isinstance(url, str) and url:
        return Provenance(attested=True, url=urljoin(page_url, url))
    if url is None:
        return Provenance(attested=False)
    return None  # some other value: not a document we can read this from


# --------------------------------------------------------------------------- PEP 503 HTML


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.serial: int | None = None
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None

    def handle_comment(self, data: str) -> None:
        # PyPI ends each page with <!--SERIAL n-->; mirrors copy it verbatim.
        if match := _HTML_SERIAL.match(data):
            self.serial = int(match.group(1))


def parse_simple_html(
    text: str,
    page_url: str,
    *,
    project: str,
    header_serial: str | None = None,
    etag: str | None = None,
) -> ProjectPage:
    """Parse a PEP 503 project page (plus PEP 592 `data-yanked` and PEP 503 hash fragments)."""
    parser = _AnchorParser()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    name = normalize(project)
    files: list[PypiFile] = []
    for attrs, text_ in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url = urljoin(base, href)
        parts = urlsplit(url)
        filename = unquote(parts.path.rsplit("/", 1)[-1]) or text_
        hashes = {}
        if "=" in parts.fragment:
            algo, _, digest = parts.fragment.partition("=")
            hashes[algo.lower()] = digest.lower()
        yanked = attrs.get("data-yanked")
        files.append(
            PypiFile(
                filename=filename,
                url=parts._replace(fragment="").geturl(),
                version=version_from_filename(filename, name),
                hashes=hashes,
                yanked="data-yanked" in attrs,
                yanked_reason=yanked or None,
                requires_python=attrs.get("data-requires-python") or None,
            )
        )
    serial = _serial(header_serial)
    if serial is None:
        serial = parser.serial
    return ProjectPage(name, tuple(files), _versions_of(files), serial, etag, "html")


# --------------------------------------------------------------------------- helpers


def _versions_of(files: Iterable[PypiFile]) -> tuple[str, ...]:
    seen: dict[Version | str, str] = {}
    for f in files:
        if f.version is not None:
            seen.setdefault(_version_key(f.version), f.version)
    return tuple(seen.values())


def _serial(value: object) -> int | None:
    """Serials arrive as int (PyPI), str (mirrors) or not at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def best_hash(hashes: Mapping[str, str]) -> tuple[str, str] | None:
    """The strongest (algorithm, hex digest) we can verify, if the index published any."""
    for algo in _HASH_PREFERENCE:
        if algo in hashes:
            return algo, hashes[algo]
    return None


# --------------------------------------------------------------------------- the client


class StalePage(RegistryError):
    """The index kept serving a copy older than the journal says the project is (CDN cache)."""


@dataclass(frozen=True, slots=True)
class FetchedRelease:
    """A release whose files are on local disk, verified."""

    release: Release
    paths: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class ScanDownload:
    """What `watcher scan pypi:NAME==VERSION` scans: the target's files and the baseline's."""

    target: FetchedRelease
    baseline: FetchedRelease | None


class PypiClient:
    """Reads project pages from one Simple API index and downloads release files from it."""

    def __init__(
        self,
        http: RegistryHttp,
        index_url: str,
        *,
        stale_attempts: int = 4,
        stale_backoff: float = 1.0,
    ) -> None:
        self.http = http
        self.index_url = index_url if index_url.endswith("/") else index_url + "/"
        self.stale_attempts = stale_attempts
        self.stale_backoff = stale_backoff
        self._log = log.bind(ecosystem="pypi", index=safe_url(self.index_url))

    def project_url(self, name: str) -> str:
        return urljoin(self.index_url, normalize(name) + "/")

    async def project(
        self, name: str, *, etag: str | None = None, min_serial: int | None = None
    ) -> ProjectPage | None:
        """The project's page; None when `etag` still matches (304). With `min_serial` (the
        journal's serial for this project), a page that shows an older serial is a stale cache
        copy and is re-read with backoff; a page without any serial is accepted as it is."""
        delay = self.stale_backoff
        seen: int | None = None
        for attempt in range(1, self.stale_attempts + 1):
            page = await self._read_page(name, etag=etag, revalidate=attempt > 1)
            if page is None:
                if min_serial is None:
                    return None
                # A 304 from a cache proves nothing about the serial: read the full page.
                etag = None
                page = await self._read_page(name, etag=None, revalidate=True)
                assert page is not None
            if min_serial is None or page.last_serial is None or page.last_serial >= min_serial:
                return page
            seen = page.last_serial
            metrics.FEED_STALE_RETRIES.labels("pypi").inc()
            self._log.info(
                "pypi_stale_page",
                package=page.name,
                page_serial=page.last_serial,
                journal_serial=min_serial,
                attempt=attempt,
            )
            if attempt < self.stale_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        raise StalePage(
            f"{normalize(name)}: index still shows serial {seen} < journal {min_serial}"
        )

    async def _read_page(
        self, name: str, *, etag: str | None, revalidate: bool
    ) -> ProjectPage | None:
        url = self.project_url(name)
        headers = {"Accept": SIMPLE_ACCEPT}
        if revalidate:
            # Asks a CDN to revalidate instead of serving its copy; harmless where ignored.
            headers["Cache-Control"] = "no-cache"
        response = await self.http.get(url, ecosystem="pypi", headers=headers, etag=etag)
        if response.not_modified:
            return None
        return parse_page(
            response.body,
            response.url,
            content_type=response.headers.get("Content-Type", ""),
            project=name,
            header_serial=response.headers.get(SERIAL_HEADER),
            etag=response.etag,
        )

    async def release(self, name: str, version: str) -> tuple[ProjectPage, Release]:
        page = await self.project(name)
        assert page is not None
        return page, page.release(version)

    def json_api_url(self, name: str) -> str | None:
        """`<root>/pypi/<name>/json` when the index is a `<root>/simple/` (PyPI and its mirrors);
        None for indexes laid out otherwise (devpi's `+simple`, pypiserver's own paths)."""
        parts = urlsplit(self.index_url)
        path = parts.path.rstrip("/")
        if not path.endswith("/simple") and path != "simple":
            return None
        root = path[: -len("simple")]
        return parts._replace(path=f"{root}pypi/{normalize(name)}/json", query="").geturl()

    async def json_metadata(self, name: str) -> dict[str, Any] | None:
        """PyPI's JSON API document (`info`, `releases`, `urls`, `ownership`, `last_serial`) where
        the index has one: richer metadata, never required. None where it does not exist."""
        url = self.json_api_url(name)
        if url is None:
            return None
        try:
            response = await self.http.get_json(url, ecosystem="pypi")
        except HttpStatusError as exc:
            if exc.status in (404, 405, 410):
                return None
            raise
        return response.data if isinstance(response.data, dict) else None

    async def download(self, file: PypiFile | Artifact, dest_dir: Path, *, max_bytes: int) -> Path:
        """Download one file to `dest_dir`, verified against the digest the index published (the
        strongest one it offers). A mismatch raises IntegrityError and leaves nothing behind."""
        path, _size, _sha256 = await self._download(file, dest_dir, max_bytes=max_bytes)
        return path

    async def _download(
        self, file: PypiFile | Artifact, dest_dir: Path, *, max_bytes: int
    ) -> tuple[Path, int, str]:
        filename = _safe_filename(file.filename)
        if file.url is None:
            raise RegistryError(f"{filename}: the index gives no URL")
        hashes = dict(file.hashes) if isinstance(file, PypiFile) else {}
        if not hashes and file.sha256:
            hashes["sha256"] = file.sha256
        wanted = best_hash(hashes)
        algorithms = {"sha256"} | ({wanted[0]} if wanted else set())
        dest = dest_dir / filename
        got = await self.http.download(
            file.url, dest, ecosystem="pypi", max_bytes=max_bytes, algorithms=sorted(algorithms)
        )
        problem = None
        if wanted is not None and got.digests[wanted[0]] != wanted[1]:
            problem = f"{wanted[0]} {got.digests[wanted[0]]} != published {wanted[1]}"
        elif file.size is not None and got.size != file.size:
            problem = f"size {got.size} != published {file.size}"
        if problem is not None:
            await asyncio.to_thread(dest.unlink, missing_ok=True)
            raise IntegrityError(f"{filename}: {problem}")
        if wanted is None:
            self._log.warning(
                "pypi_file_unverified", filename=filename, sha256=got.digests["sha256"]
            )
        return dest, got.size, got.digests["sha256"]

    async def fetch_release(
        self, page: ProjectPage, version: str, dest_dir: Path, *, max_bytes: int
    ) -> FetchedRelease:
        """Every file of the release (sdist and all wheels), downloaded and verified."""
        release = page.release(version)
        if not release.artifacts:
            raise RegistryError(f"pypi:{page.name}=={version} has no files on the index")
        by_name = {f.filename: f for f in page.files_of(version)}
        await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
        paths: list[Path] = []
        artifacts: list[Artifact] = []
        for artifact in release.artifacts:
            path, size, sha256 = await self._download(
                by_name[artifact.filename], dest_dir, max_bytes=max_bytes
            )
            paths.append(path)
            # What we measured fills in what a stripped index left out.
            artifacts.append(replace(artifact, size=size, sha256=artifact.sha256 or sha256))
        return FetchedRelease(replace(release, artifacts=tuple(artifacts)), tuple(paths))


def parse_page(
    body: bytes,
    page_url: str,
    *,
    content_type: str,
    project: str,
    header_serial: str | None = None,
    etag: str | None = None,
) -> ProjectPage:
    """Dispatch on what the index actually served (it may ignore our Accept header)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == SIMPLE_JSON or kind.endswith("+json") or kind == "application/json":
        return parse_simple_json(
            body, page_url, project=project, header_serial=header_serial, etag=etag
        )
    return parse_simple_html(
        body.decode("utf-8", "replace"),
        page_url,
        project=project,
        header_serial=header_serial,
        etag=etag,
    )


def baseline_version(page: ProjectPage, target: str) -> str | None:
    """The greatest release below `target` (PEP 440; pre-releases only for a pre-release target)
    that still has files and is not wholly yanked: a release yanked for leaking must not become
    the yardstick that makes the same leak look old."""
    usable = [
        v for v in page.versions if (files := page.files_of(v)) and not all(f.yanked for f in files)
    ]
    return select_baseline(Ecosystem.PYPI, target, usable)


async def fetch_for_scan(
    name: str,
    version: str,
    *,
    dest_dir: Path,
    index_url: str | None = None,
    baseline: str | None = "auto",
    http: RegistryHttp | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ScanDownload:
    """`watcher scan pypi:NAME==VERSION [--baseline auto|none|VERSION]`: download every file of
    the release (and of the baseline release) into `dest_dir/target` and `dest_dir/baseline`.
    `index_url` None = the machine's pip index setting. `baseline`: "auto", "none"/None, or an
    explicit version of the same project."""
    index = index_url or resolve_pypi_index().url
    own_http = http is None
    client_http = http or RegistryHttp()
    try:
        client = PypiClient(client_http, index)
        try:
            page = await client.project(name)
        except HttpStatusError as exc:
            if exc.status not in (404, 410):
                raise
            # as npm's "is not published": the index does not know the project at all
            raise RegistryError(f"pypi:{name} is not published on {safe_url(index)}") from None
        assert page is not None
        target = await client.fetch_release(page, version, dest_dir / "target", max_bytes=max_bytes)
        base_version: str | None
        if baseline in (None, "none"):
            base_version = None
        elif baseline == "auto":
            base_version = baseline_version(page, version)
        else:
            base_version = baseline
        base = None
        if base_version is not None:
            base = await client.fetch_release(
                page, base_version, dest_dir / "baseline", max_bytes=max_bytes
            )
        return ScanDownload(target, base)
    finally:
        if own_http:
            await client_http.close()


def parse_target(spec: str) -> tuple[str, str]:
    """`pypi:NAME==VERSION` (or `NAME==VERSION`) → (normalized name, version)."""
    body = spec.removeprefix("pypi:")
    name, sep, version = body.partition("==")
    if not sep or not name.strip() or not version.strip():
        raise RegistryError(f"expected pypi:NAME==VERSION, got {spec!r}")
    return normalize(name.strip()), version.strip()


def _safe_filename(filename: str) -> str:
    """Index data names the local file: never let it climb out of the download directory."""
    if (
        not filename
        or "/" in filename
        or "\\" in filename
        or filename.startswith(".")
        or "\0" in filename
    ):
        raise RegistryError(f"refusing unsafe file name from the index: {filename!r}")
    return filename
