"""Turn `watcher scan` targets into local files: a local archive as it is, `npm:NAME@VERSION` and
`pypi:NAME==VERSION` downloaded from the configured (or the machine's) registry and verified, and
`--baseline auto` resolved to the previous release in the ecosystem's own version order."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from watcher.ecosystems.config_sources import (
    NpmScopeSetting,
    resolve_npm_registries,
    resolve_pypi_index,
)
from watcher.ecosystems.http import RegistryHttp
from watcher.ecosystems.npm.client import NpmClient, fetch_npm_release, npm_http, parse_npm_target
from watcher.ecosystems.pypi.client import (
    PypiClient,
    baseline_version,
    fetch_for_scan,
    parse_target,
)
from watcher.ecosystems.versions import select_baseline
from watcher.errors import RegistryError
from watcher.model import Ecosystem, Release
from watcher.scanning.archive import ArchiveReader


@dataclass(frozen=True, slots=True)
class ScanFiles:
    targets: list[Path]
    baselines: list[Path]
    ecosystem: Ecosystem | None
    from_registry: bool  # PyPI releases have several files: findings then name their file
    # (target, baseline) as the registry describes them, when both came from it: their
    # provenance is compared. None for local files.
    releases: tuple[Release, Release] | None = None


@dataclass(frozen=True, slots=True)
class Registries:
    npm_url: str | None = None  # None: the machine's npm setting
    pypi_url: str | None = None  # None: the machine's pip setting
    # per-scope npm registries from the configuration; the machine's `@scope:registry` otherwise
    npm_scopes: Mapping[str, NpmScopeSetting] = field(default_factory=dict)


async def resolve(
    target: str, baseline: str | None, workdir: Path, registries: Registries
) -> ScanFiles:
    """Local files for the target and its baseline. `baseline`: None (the default: auto for
    registry targets, none for local files), "auto", "none", a local path or a registry target."""
    if target.startswith("npm:"):
        return await _npm_target(target, baseline or "auto", workdir, registries)
    if target.startswith("pypi:"):
        return await _pypi_target(target, baseline or "auto", workdir, registries)
    path = Path(target)
    ArchiveReader(path)  # fail early and clearly on a missing or unknown file
    if baseline in (None, "none"):
        return ScanFiles([path], [], None, False)
    if baseline == "auto":
        ecosystem, name, version = peek_identity(path)
        return ScanFiles(
            [path],
            await _previous_release(ecosystem, name, version, workdir, registries),
            ecosystem,
            False,
        )
    if baseline.startswith(("npm:", "pypi:")):
        other = await resolve(baseline, "none", workdir / "baseline-target", registries)
        return ScanFiles([path], other.targets, other.ecosystem, False)
    return ScanFiles([path], [Path(baseline)], None, False)


async def _npm_target(
    target: str, baseline: str, workdir: Path, registries: Registries
) -> ScanFiles:
    name, version = parse_npm_target(target)
    explicit = _explicit_baseline(baseline, "npm:", name)
    fetched = await fetch_npm_release(
        name,
        version,
        baseline=None if baseline == "none" else explicit or "auto",
        dest_dir=workdir,
        registry_url=registries.npm_url,
        scopes=registries.npm_scopes,
    )
    base = [fetched.baseline.path] if fetched.baseline else []
    releases = (fetched.target.release, fetched.baseline.release) if fetched.baseline else None
    if baseline not in ("none", "auto") and explicit is None:
        base, releases = [Path(baseline)], None
    return ScanFiles([fetched.target.path], base, Ecosystem.NPM, False, releases)


async def _pypi_target(
    target: str, baseline: str, workdir: Path, registries: Registries
) -> ScanFiles:
    name, version = parse_target(target)
    explicit = _explicit_baseline(baseline, "pypi:", name)
    index = resolve_pypi_index(registries.pypi_url).url
    download = await fetch_for_scan(
        name,
        version,
        dest_dir=workdir,
        index_url=index,
        baseline=explicit or (baseline if baseline in ("auto", "none") else "none"),
    )
    base = list(download.baseline.paths) if download.baseline else []
    releases = (download.target.release, download.baseline.release) if download.baseline else None
    if baseline not in ("none", "auto") and explicit is None:
        base, releases = [Path(baseline)], None
    return ScanFiles(list(download.target.paths), base, Ecosystem.PYPI, True, releases)


def _explicit_baseline(baseline: str, prefix: str, name: str) -> str | None:
    """`--baseline npm:NAME@V` / `pypi:NAME==V` for the same package → V."""
    if not baseline.startswith(prefix):
        return None
    other_name, other_version = (
        parse_npm_target(baseline) if prefix == "npm:" else parse_target(baseline)
    )
    if other_name != name:
        raise RegistryError(f"baseline {baseline} is another package than {name}")
    return other_version


def peek_identity(path: Path) -> tuple[Ecosystem, str, str]:
    """Read a local archive's own metadata (npm package.json, PKG-INFO / METADATA) for
    `--baseline auto`; stops at the first metadata file, which packers put near the start."""
    for member in ArchiveReader(path).members():
        parts = member.path.split("/")
        if member.data is None or len(parts) != 2:
            continue
        if parts[1] == "package.json":
            doc = orjson.loads(member.data)
            if (
                isinstance(doc, dict)
                and isinstance(doc.get("name"), str)
                and isinstance(doc.get("version"), str)
            ):
                return Ecosystem.NPM, doc["name"], doc["version"]
        if parts[1] in ("PKG-INFO", "METADATA"):
            text = member.data[:65536].decode("utf-8", "replace")
            name = re.search(r"(?m)^Name:\s*(\S+)", text)
            version = re.search(r"(?m)^Version:\s*(\S+)", text)
            if name and version:
                return Ecosystem.PYPI, name.group(1), version.group(1)
    raise RegistryError(
        f"{path}: no package.json or PKG-INFO/METADATA found; cannot find its previous release (use --baseline FILE or none)"
    )


async def _previous_release(
    ecosystem: Ecosystem, name: str, version: str, workdir: Path, registries: Registries
) -> list[Path]:
    dest = workdir / "baseline"
    dest.mkdir(parents=True, exist_ok=True)
    if ecosystem is Ecosystem.NPM:
        resolved = resolve_npm_registries(registries.npm_url, registries.npm_scopes)
        async with npm_http(resolved) as http:
            client = NpmClient.for_registries(http, resolved)
            fetched = await client.fetch_packument(name)
            if fetched.packument is None:
                return []  # never published: nothing to compare with
            previous = select_baseline(Ecosystem.NPM, version, fetched.packument.versions)
            if previous is None:
                return []
            artifact = await client.download(fetched.packument.release(previous), dest)
            return [artifact.path]
    index = resolve_pypi_index(registries.pypi_url).url
    async with RegistryHttp() as http:
        pypi = PypiClient(http, index)
        try:
            page = await pypi.project(name)
        except RegistryError:
            return []
        if page is None:
            return []
        previous = baseline_version(page, version)
        if previous is None:
            return []
        fetched_release = await pypi.fetch_release(
            page, previous, dest, max_bytes=1024 * 1024 * 1024
        )
        return list(fetched_release.paths)
