"""Run every check over one artifact, then compare with the baseline release.

`scan_artifact` reads the archive once: each member is hashed for the manifest, decoded once if it is
text, and a source map is parsed once; checks get what they ask for. `compare_with_baseline` marks
findings new or not by fingerprint and adds the findings that need both releases (size, new kinds of
content). Pure: no I/O beyond the archive file.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import brotli

from watcher import ecosystems
from watcher.ecosystems.base import EcosystemUnit
from watcher.model import (
    ArtifactSummary,
    Ecosystem,
    Finding,
    Manifest,
    ManifestEntry,
    Member,
    MemberKind,
    Release,
    Report,
    fingerprint,
    stable_path,
)
from watcher.scanning.archive import ArchiveLimits, ArchiveReader, sniff_format
from watcher.scanning.checks import comparison_checks, default_checks
from watcher.scanning.checks.base import Check, ScanContext, ScanOptions, SourceMapDoc, TextDoc
from watcher.scanning.checks.changes import merge_facts, raise_with_origin, stable_facts
from watcher.scanning.checks.locations import conftest_dir
from watcher.scanning.checks.secrets import SecretCheck
from watcher.scanning.checks.sourcemap import (
    SOURCE_DIGESTS,
    find_inline_maps,
    looks_like_source_map,
    map_urls,
    parse_source_map,
)
from watcher.scanning.checks.unexpected import (
    fixture_archive_anomalies,
    nested_package_findings,
)
from watcher.scanning.extract import decode_text, pyc_strings, runs_at
from watcher.scanning.needles import Gate, NeedleIndex

_BINARY_SUFFIXES = frozenset(
    [
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".webp",
        ".ico",
        ".bmp",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".eot",
        ".node",
        ".so",
        ".dylib",
        ".dll",
        ".exe",
        ".wasm",
        ".pyc",
        ".pyo",
        ".gz",
        ".tgz",
        ".zip",
        ".jar",
        ".whl",
        ".pdf",
        ".mp3",
        ".mp4",
        ".avif",
    ]
)


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """Everything a scan needs, picklable so it can run in a worker process."""

    path: Path
    ecosystem: Ecosystem | None = None
    name: str | None = None
    version: str | None = None
    options: ScanOptions = field(default_factory=ScanOptions)
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)


def scan_artifact(request: ScanRequest) -> Report:
    """Scan one archive on its own; findings are all `new` until compared with a baseline."""
    started = time.perf_counter()
    reader = ArchiveReader(request.path, request.limits)
    ctx = ScanContext(
        ecosystem=None, name=request.name, version=request.version, options=request.options
    )
    if request.ecosystem is not None:
        # a unit registered only in the parent process (a plugin) has no installer hooks here
        ctx.ecosystem = request.ecosystem
        unit = ecosystems.find(request.ecosystem)
        ctx.install_hook_files = unit.install_hook_files if unit is not None else frozenset()
    else:
        _claim(ctx, _ecosystem_from_filename(request.path.name))
    checks = default_checks(request.options)
    content = _ContentScanner(checks, ctx)
    findings: list[Finding] = []
    raw_files: dict[str, ManifestEntry] = {}
    for member in reader.members():
        if member.kind is MemberKind.FILE:
            digest = hashlib.sha256(member.data).hexdigest() if member.data is not None else ""
            raw_files[member.path] = ManifestEntry(member.size, digest)
        _identify(member, ctx)
        if (directory := conftest_dir(member.path)) is not None:
            ctx.test_dirs.add(directory)
        for check in checks:
            findings.extend(check.member(member, ctx))
        if member.data is not None and member.kind is MemberKind.FILE:
            findings.extend(content.member(member))
    for check in checks:
        findings.extend(check.finish(ctx))
    for check in checks:
        check.revise(findings, ctx)
    findings.extend(fixture_archive_anomalies(reader.anomalies))
    findings.extend(nested_package_findings(reader.nested_packages, findings))
    _identify_from_filename(request.path.name, ctx)

    manifest = Manifest(
        files={stable_path(path, ctx.version): entry for path, entry in raw_files.items()},
        sources={
            key for f in findings for pair in f.evidence.get(SOURCE_DIGESTS, ()) for key in pair
        },
        facts=stable_facts(ctx.facts, ctx.version),
    )
    findings = _fingerprint(findings, ctx.version)
    manifest.fingerprints = {f.fingerprint: f.severity for f in findings}
    summary = ArtifactSummary(
        ecosystem=ctx.ecosystem.value if ctx.ecosystem else None,
        name=ctx.name,
        version=ctx.version,
        filename=request.path.name,
        sha256=reader.sha256,
        files=len(raw_files),
        bytes=sum(entry.size for entry in raw_files.values()),
    )
    return Report(
        target=summary,
        findings=findings,
        manifest=manifest,
        elapsed_s=time.perf_counter() - started,
        bytes_read=reader.bytes_read,
        credentials=[
            c for check in checks if isinstance(check, SecretCheck) for c in check.credentials
        ],
    )


def compare_with_baseline(
    report: Report,
    baseline: Manifest | None,
    baseline_summary: ArtifactSummary | None = None,
    options: ScanOptions | None = None,
    *,
    releases: tuple[Release, Release] | None = None,
) -> Report:
    """Mark each finding new or not; raise what is new to its `severity_if_new`; add the findings
    that compare the two releases' contents and, given the registry's (target, baseline) release
    metadata, how they were published."""
    options = options or ScanOptions()
    findings = list(report.findings)
    if baseline is not None:
        for check in comparison_checks():
            findings.extend(check.compare(report.manifest, baseline, options))
            if releases is not None:
                findings.extend(check.compare_releases(*releases))
        findings = _fingerprint(findings, report.target.version)
    for finding in findings:
        finding.new = baseline is None or finding.fingerprint not in baseline.fingerprints
        digests = finding.evidence.pop(SOURCE_DIGESTS, None)
        if digests is not None and baseline is not None and baseline.sources:
            # a map is new when it embeds sources the baseline did not carry, by content or by
            # source path (an edited file is the same file), whatever the map's own path
            fresh = sum(
                1
                for digest, source in set(map(tuple, digests))
                if digest not in baseline.sources and source not in baseline.sources
            )
            finding.evidence["first_party_files_new"] = fresh
            finding.new = fresh > 0
        if finding.new and finding.severity_if_new is not None:
            finding.severity = finding.severity_if_new
    raise_with_origin(findings)
    report.manifest.fingerprints = {f.fingerprint: f.severity for f in findings}
    findings.sort(key=lambda f: (-f.severity.rank, f.category.value, f.path, f.line or 0))
    report.findings = findings
    report.baseline = baseline_summary
    return report


def scan(target: ScanRequest, baseline: ScanRequest | None = None) -> Report:
    """Scan one archive and, when given, its baseline, the two in parallel."""
    return scan_release([target], [baseline] if baseline else [])


def scan_release(
    targets: Sequence[ScanRequest],
    baselines: Sequence[ScanRequest] = (),
    *,
    prefix_paths: bool = False,
    releases: tuple[Release, Release] | None = None,
) -> Report:
    """Scan every file of a release (a PyPI release has an sdist and wheels) and of its baseline,
    in worker processes, as one report. With `prefix_paths` each path is `<filename>/<member>`, so
    findings name the file they came from. `releases`: the registry's (target, baseline) release
    metadata when both came from the registry (provenance is compared then)."""
    if not targets:
        raise ValueError("nothing to scan")
    started = time.perf_counter()
    jobs = [*targets, *baselines]
    if len(jobs) == 1:
        reports = [scan_artifact(jobs[0])]
    else:
        # This process scans the first target while one worker takes the rest: two busy
        # processes on two cores, and no idle parent holding memory. The needle indexes are
        # compiled before the worker forks, so it inherits them instead of compiling its own.
        _warm(jobs[0].options)
        with ProcessPoolExecutor(max_workers=1) as pool:
            futures = [pool.submit(scan_artifact, job) for job in jobs[1:]]
            reports = [scan_artifact(jobs[0])]
            for job, future in zip(jobs[1:], futures, strict=True):
                # a job the worker has not started yet is run here instead
                reports.append(scan_artifact(job) if future.cancel() else future.result())
    target = _merge(reports[: len(targets)], prefix_paths)
    base = _merge(reports[len(targets) :], prefix_paths) if baselines else None
    report = compare_with_baseline(
        target,
        base.manifest if base else None,
        base.target if base else None,
        targets[0].options,
        releases=releases,
    )
    if base is not None:
        report.bytes_read += base.bytes_read
    report.elapsed_s = time.perf_counter() - started
    return report


def merge_reports(reports: list[Report], *, prefix_paths: bool) -> Report:
    """One report for several files of one release, as `scan_release` builds it (for callers that
    run `scan_artifact` in their own process pool)."""
    return _merge(reports, prefix_paths)


def _merge(reports: list[Report], prefix_paths: bool) -> Report:
    """One report for several files of one release."""
    if len(reports) == 1 and not prefix_paths:
        return reports[0]
    first = reports[0].target
    version = next((r.target.version for r in reports if r.target.version), None)
    findings: list[Finding] = []
    files: dict[str, ManifestEntry] = {}
    sources: set[str] = set()
    facts: list[dict[str, set[str]] | None] = []
    for report in reports:
        prefix = stable_path(report.target.filename, version) + "/" if prefix_paths else ""
        facts.append(_prefixed_facts(report.manifest.facts, prefix))
        for finding in report.findings:
            if prefix_paths:
                finding.path = f"{report.target.filename}/{finding.path}"
            findings.append(finding)
        files.update({prefix + path: entry for path, entry in report.manifest.files.items()})
        sources.update(report.manifest.sources)
    findings = _fingerprint(findings, version)
    summary = ArtifactSummary(
        ecosystem=next((r.target.ecosystem for r in reports if r.target.ecosystem), None),
        name=next((r.target.name for r in reports if r.target.name), None),
        version=version,
        filename=", ".join(r.target.filename for r in reports),
        sha256=first.sha256,
        files=sum(r.target.files for r in reports),
        bytes=sum(r.target.bytes for r in reports),
    )
    return Report(
        target=summary,
        findings=findings,
        manifest=Manifest(
            files=files,
            fingerprints={f.fingerprint: f.severity for f in findings},
            sources=sources,
            facts=merge_facts(facts),
        ),
        bytes_read=sum(r.bytes_read for r in reports),
        credentials=[c for r in reports for c in r.credentials],
    )


# -- helpers ------------------------------------------------------------------------------------


def _prefixed_facts(facts: dict[str, set[str]] | None, prefix: str) -> dict[str, set[str]] | None:
    """A file's facts with their paths (the last column) named as the release's paths are."""
    if facts is None or not prefix:
        return facts
    return {
        kind: {
            f"{head}{sep}{prefix}{path}" if sep else f"{prefix}{head}"
            for head, sep, path in (fact.rpartition("\t") for fact in values)
        }
        for kind, values in facts.items()
    }


class _ContentScanner:
    """Hands each member's content to the checks: decoded once, source maps parsed once.

    Builds often ship the same original sources in several maps (ESM, CJS, UMD, minified): an
    embedded source seen before (same source path, same text) is not scanned again; its findings
    are reissued at the new map's path, so every place it leaks is still reported."""

    def __init__(self, checks: list[Check], ctx: ScanContext) -> None:
        self._checks = checks
        self._ctx = ctx
        self._embedded: dict[tuple[str, int, int], list[Finding]] = {}
        # One pass over each text finds every check's needles (secret keywords, `://`, home paths).
        self._needles = _needle_index(tuple(checks))
        self._binary_needles = _needle_index(tuple(checks), binary=True)
        self._referenced_maps: set[str] = set()

    def member(self, member: Member) -> Iterable[Finding]:
        """The one dispatch every member's content goes through (nested archives' members too):
        source map, text in any encoding, .pyc constants, or a binary's printable runs."""
        data = member.data
        assert data is not None
        path = member.path
        if looks_like_source_map(path, data) or path in self._referenced_maps:
            named = path.endswith(".br") or path in self._referenced_maps
            smap = parse_source_map(_maybe_brotli(data, named=named), path, inline=False)
            if smap is not None:
                if isinstance(data, bytearray):
                    # Nothing reads a map's raw bytes once parsed (digest, member checks and the
                    # nested-archive sniff came first): release them before the sources are
                    # searched, so a 60 MB map is not held twice.
                    data.clear()
                yield from self._source_map(smap)
                return
        suffix = PurePosixPath(path).suffix.lower()
        if suffix in _PYC_SUFFIXES:
            constants = pyc_strings(data)
            if constants is not None:
                text = "\n".join(constants.strings)
                yield from self._text(
                    TextDoc(path=path, text=text, member_path=path, origin="pyc-strings")
                )
                return
        decoded = None if suffix in _BINARY_SUFFIXES else decode_text(data)
        if decoded is None:
            # brotli has no magic bytes: a binary member whose first bytes inflate as brotli to
            # a source map's start is one, whatever it is called and wherever the file naming
            # it sits in the archive
            if _brotli_map_head(data):
                smap = parse_source_map(_maybe_brotli(data, named=True), path, inline=False)
                if smap is not None:
                    yield from self._source_map(smap)
                    return
            yield from self._binary(path, data)
            return
        text, encoding = decoded
        yield from self._text(TextDoc(path=path, text=text, member_path=path, origin=encoding))
        self._note_map_references(path, text)
        for smap in find_inline_maps(text, path):
            yield from self._source_map(smap)

    def _binary(self, path: str, data: bytes | bytearray) -> Iterable[Finding]:
        """Printable runs around the binary needles, for the checks that read them."""
        if self._binary_needles is None or sniff_format(data[:512]) is not None:
            return  # a nested archive's compressed bytes: its members are scanned instead
        hits = self._binary_needles.find_bytes(data)
        if not hits:
            return
        runs = runs_at(data, [offset for offsets in hits.values() for offset in offsets])
        if not runs:
            return
        doc = TextDoc(path=path, text="\n".join(runs), member_path=path, origin="binary-strings")
        for check in self._checks:
            if check.reads_binary_strings:
                yield from self._tagged(check.text(doc, self._ctx), doc)

    def _note_map_references(self, path: str, text: str) -> None:
        """`//# sourceMappingURL=<name>`: that member is read as a map whatever it is called (a
        member that comes later in the archive; npm packs a file before its `.map`)."""
        tail = text[-_MAP_URL_TAIL:]
        if "sourceMappingURL=" not in tail:
            return
        for url in map_urls(tail):
            if not url.startswith(("data:", "http:", "https:", "//")):
                self._referenced_maps.add(_resolve(path, url))

    def _source_map(self, smap: SourceMapDoc) -> Iterable[Finding]:
        for check in self._checks:
            yield from check.source_map(smap, self._ctx)
        for source, content in zip(smap.sources, smap.contents, strict=False):
            if not content:
                continue
            path = f"{smap.path} → {source}"
            key = (source, len(content), hash(content))
            seen = self._embedded.get(key)
            if seen is None:
                doc = TextDoc(
                    path=path, text=content, member_path=smap.path, embedded_source=source
                )
                self._embedded[key] = seen = list(self._text(doc))
                yield from seen
            else:
                for finding in seen:
                    yield replace(finding, path=path, evidence=dict(finding.evidence))

    def _text(self, doc: TextDoc) -> Iterable[Finding]:
        if self._needles is not None:
            doc.hits = self._needles.find(doc.text)
        for check in self._checks:
            yield from self._tagged(check.text(doc, self._ctx), doc)

    @staticmethod
    def _tagged(findings: Iterable[Finding], doc: TextDoc) -> Iterable[Finding]:
        """Findings in text that was not UTF-8 say how it was read (`evidence.text_origin`)."""
        if doc.origin == "utf-8":
            yield from findings
            return
        for finding in findings:
            finding.evidence.setdefault("text_origin", doc.origin)
            yield finding


def _needle_index(checks: tuple[Check, ...], *, binary: bool = False) -> NeedleIndex | None:
    needles = frozenset(
        needle
        for check in checks
        for needle in (check.binary_needles() if binary else check.needles())
    )
    gates = frozenset(() if binary else (gate for check in checks for gate in check.gates()))
    return _compiled(needles, gates) if needles or gates else None


def _warm(options: ScanOptions) -> None:
    """Import and compile what every scan with these options uses (cached per process)."""
    ecosystems.all_units()
    checks = tuple(default_checks(options))
    _needle_index(checks)
    _needle_index(checks, binary=True)


_PYC_SUFFIXES = frozenset([".pyc", ".pyo"])
_MAP_URL_TAIL = 4096


def _resolve(path: str, url: str) -> str:
    """A sourceMappingURL relative to the file that names it."""
    base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    parts: list[str] = []
    for part in (base + unquote(url.split("?", 1)[0].split("#", 1)[0])).split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


_JSON_START = (b"{", b" ", b"\n", b"\r", b"\t")


def _brotli_map_head(data: bytes | bytearray) -> bool:
    """Whether the first bytes inflate as brotli to the start of a source map (bounded: a
    binary that is not brotli fails within its first bytes)."""
    if len(data) < 16 or data[:1] in _JSON_START or sniff_format(data[:512]) is not None:
        return False
    try:
        head = brotli.Decompressor().process(bytes(data[:_BROTLI_SNIFF]), output_buffer_limit=4096)
    except (brotli.error, TypeError):
        return False
    return head.lstrip()[:1] == b"{" and b'"version"' in head


_BROTLI_SNIFF = 64 * 1024


def _maybe_brotli(data: bytes | bytearray, *, named: bool) -> bytes | bytearray:
    """Brotli has no magic bytes: a member `named` as a map (a `.br` suffix, a sourceMappingURL
    naming it) or sniffed as one that does not parse as JSON is tried as brotli, bounded."""
    if data[:1] in _JSON_START or not named:
        return data
    try:
        inflater = brotli.Decompressor()
        out = inflater.process(bytes(data), output_buffer_limit=_MAX_BROTLI_MAP)
    except (brotli.error, TypeError):
        return data
    return out if inflater.is_finished() else data


_MAX_BROTLI_MAP = 256 * 1024 * 1024


@cache
def _compiled(needles: frozenset[str], gates: frozenset[Gate]) -> NeedleIndex:
    """Compiled once per process per needle set (the index is immutable)."""
    return NeedleIndex(needles, gates=gates)


def _identify(member: Member, ctx: ScanContext) -> None:
    """Learn the package's identity from its own top-level metadata file (npm's package.json,
    PKG-INFO / METADATA): each registered unit is asked whether the file is one of its own."""
    parts = member.path.split("/")
    if member.data is None or len(parts) != 2 or "!" in member.path:  # not a nested archive's
        return
    for unit in ecosystems.all_units():
        identity = unit.identify(parts[1], member.data, ctx.ecosystem)
        if identity is None:
            continue
        _claim(ctx, unit)
        if identity.manifest is not None:
            ctx.package_json = identity.manifest
        ctx.name = ctx.name or identity.name
        ctx.version = ctx.version or identity.version
        return


def _claim(ctx: ScanContext, unit: EcosystemUnit | None) -> None:
    """The artifact is `unit`'s (None: not known yet, every unit's installer hooks count)."""
    if unit is None:
        ctx.install_hook_files = frozenset().union(
            *(u.install_hook_files for u in ecosystems.all_units())
        )
        return
    ctx.ecosystem = unit.name
    ctx.install_hook_files = unit.install_hook_files


def _identify_from_filename(filename: str, ctx: ScanContext) -> None:
    """Wheels and sdists name themselves `name-version…`; fill what the metadata did not say."""
    if ctx.name and ctx.version:
        return
    stem = filename
    for suffix in (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz", ".tar"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    name, _, rest = stem.partition("-")
    version = rest.split("-", 1)[0]
    if name and version and version[:1].isdigit():
        ctx.name = ctx.name or name
        ctx.version = ctx.version or version


def _ecosystem_from_filename(filename: str) -> EcosystemUnit | None:
    return next((u for u in ecosystems.all_units() if u.claims_filename(filename)), None)


def _fingerprint(findings: list[Finding], version: str | None) -> list[Finding]:
    """Give each finding its fingerprint and merge repeats of the same one (counting them)."""
    merged: dict[str, Finding] = {}
    for finding in findings:
        finding.fingerprint = fingerprint(
            finding.rule, stable_path(finding.path, version), finding.key
        )
        first = merged.get(finding.fingerprint)
        if first is None:
            merged[finding.fingerprint] = finding
        elif first is not finding:
            first.evidence["occurrences"] = first.evidence.get("occurrences", 1) + 1
    return list(merged.values())
