"""PyPI-protocol client: project pages from the Simple API, release files with integrity checks.

The Simple API is the one interface every index speaks (PyPI, devpi, pypiserver, Artifactory,
corporate mirrors), so it is the primary source: PEP 691 JSON first, PEP 503 HTML as the fallback.
Fields a mirror strips (serials, sizes, upload times, ETags) are optional everywhere: we degrade,
never fail, when they are absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import orjson
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from watcher.errors import RegistryError
from watcher.model import Artifact, Ecosystem, Release

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
# PEP 691 content negotiation: JSON preferred, HTML accepted from indexes that only speak PEP 503.
SIMPLE_ACCEPT = f"{SIMPLE_JSON}, {SIMPLE_HTML};q=0.2, text/html;q=0.01"
SERIAL_HEADER = "X-PyPI-Last-Serial"

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

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    def artifact(self) -> Artifact:
        return Artifact(filename=self.filename, url=self.url, size=self.size, sha256=self.sha256)


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
            raise RegistryError(f"pypi:{self.name}=={version} not found on the index")
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


def _version_key(version: str) -> str:
    try:
        return str(Version(version))
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
        upload_time=_timestamp(raw.get("upload-time")),
        # PEP 592 in JSON: false, true, or the reason as a string.
        yanked=bool(yanked),
        yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
        requires_python=requires if isinstance(requires, str) and requires else None,
    )


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
    seen: dict[str, str] = {}
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


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def best_hash(hashes: Mapping[str, str]) -> tuple[str, str] | None:
    """The strongest (algorithm, hex digest) we can verify, if the index published any."""
    for algo in _HASH_PREFERENCE:
        if algo in hashes:
            return algo, hashes[algo]
    return None
