"""`source-map`: shipped source maps, and what their `sourcesContent` gives away.

A map's `sourcesContent` can carry every original file of the build. We count the first-party ones
(not from `node_modules/`, bundler runtimes or virtual modules) and their lines: that is the size of
the disclosure. Parsing helpers live here too, so the scanner parses each map once and hands the
result to every check (secrets scan the embedded sources).
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from watcher.model import Category, Finding, Member, MemberKind, Severity
from watcher.scanning.checks.base import Check, ScanContext, SourceMapDoc, TextDoc, line_of
from watcher.scanning.checks.hosts import internal_host_reason

# Sources that are not the publisher's own code: dependencies, bundler runtimes, virtual modules.
_THIRD_PARTY = re.compile(
    r"(^|[/\\])(node_modules|bower_components|jspm_packages|\.pnpm|\.yarn)[/\\]"
    r"|^webpack/(bootstrap|runtime|universalModuleDefinition)"
    r"|^\(webpack\)|webpack:///(\(webpack\)|webpack/|node_modules/)|^external[ \"]"
    r"|^\x00|^\(ignored\)|ignored\||^vite/|__vite-browser-external|^\\0|^rollupPluginBabelHelpers"
    r"|^/?~/|^\.\./\.\./(\.\./)*node_modules/"
    # webpack's runtime under a namespace (`output.devtoolNamespace`): webpack://pdf.js/webpack/…
    r"|^webpack://[^/]*/(webpack/(bootstrap|runtime|universalModuleDefinition)|\(webpack\))"
    r"|(^|[/\\])tslib([/\\]|\.es6\.m?js$|\.m?js$)"
)
# Where a source path is relative to the project root rather than to the map.
_BUNDLER_PREFIX = re.compile(r"^(?:webpack|rollup|vite|turbopack)://[^/]*/|^[a-z-]+:///")
_SOURCE_MAPPING_URL = re.compile(r"[#@]\s*sourceMappingURL=([^\s'\"*]+)")
_DATA_URL_PREFIX = "data:"
_MAX_INLINE_MAP_CHARS = 256 * 1024 * 1024


def looks_like_source_map(path: str, data: bytes | bytearray) -> bool:
    if path.endswith((".map", ".map.br")):
        return True
    # Some builds ship maps under other names (.js.map.json, .map.txt): sniff the JSON keys,
    # wherever they are (bundlers write `mappings` before or after a long `sourcesContent`, and
    # `version` after a long `mappings`), so a map is one whatever the order of the archive's
    # members (a sourceMappingURL naming it may come later, or never)
    if data[:512].lstrip()[:1] != b"{" or b'"version"' not in data:
        return False
    return b'"mappings"' in data or b'"sources"' in data


def parse_source_map(
    data: bytes | bytearray | str, path: str, *, inline: bool, url: str | None = None
) -> SourceMapDoc | None:
    """Parse a source map (or index map with sections); None when it is not one."""
    try:
        doc: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    sources: list[str] = []
    contents: list[str | None] = []
    _collect(doc, sources, contents, depth=0)
    if not sources and "mappings" not in doc and "sections" not in doc:
        return None
    root = doc.get("sourceRoot")
    return SourceMapDoc(
        path=path,
        inline=inline,
        source_root=root if isinstance(root, str) else "",
        sources=sources,
        contents=contents,
        url=url,
    )


def _collect(
    doc: dict[str, Any], sources: list[str], contents: list[str | None], depth: int
) -> None:
    raw_sources = doc.get("sources")
    raw_contents = doc.get("sourcesContent")
    if isinstance(raw_sources, list):
        content_list = raw_contents if isinstance(raw_contents, list) else []
        for index, source in enumerate(raw_sources):
            sources.append(source if isinstance(source, str) else str(source))
            content = content_list[index] if index < len(content_list) else None
            contents.append(content if isinstance(content, str) else None)
    sections = doc.get("sections")
    if isinstance(sections, list) and depth < 4:
        for section in sections:
            if isinstance(section, dict) and isinstance(section.get("map"), dict):
                _collect(section["map"], sources, contents, depth + 1)


def map_urls(text: str) -> list[str]:
    """Every `sourceMappingURL=` value in the text."""
    return [match.group(1) for match in _SOURCE_MAPPING_URL.finditer(text)]


def find_inline_maps(text: str, path: str) -> list[SourceMapDoc]:
    """Maps embedded as `//# sourceMappingURL=data:application/json;base64,…`."""
    if "sourceMappingURL=data:" not in text:
        return []
    maps = []
    for match in _SOURCE_MAPPING_URL.finditer(text):
        url = match.group(1)
        if not url.startswith(_DATA_URL_PREFIX) or len(url) > _MAX_INLINE_MAP_CHARS:
            continue
        header, _, payload = url.partition(",")
        try:
            raw = (
                base64.b64decode(payload, validate=False)
                if header.endswith(";base64")
                else unquote(payload).encode()
            )
        except (binascii.Error, ValueError):
            continue
        smap = parse_source_map(raw, path, inline=True, url="data:…")
        if smap is not None:
            maps.append(smap)
    return maps


def is_first_party(source: str, own_scope: str | None = None) -> bool:
    """Not a dependency, bundler runtime or virtual module. A dependency in the publisher's own npm
    scope (`node_modules/@tensorflow/tfjs-core/…` inside `@tensorflow/tfjs`) is their own code."""
    if not _THIRD_PARTY.search(source):
        return True
    if own_scope:
        _, found, rest = source.replace("\\", "/").rpartition("node_modules/")
        return bool(found) and rest.startswith(own_scope + "/")
    return False


def _joined(root: str, source: str) -> str:
    """A source as the map resolves it: `sourceRoot` applies to relative sources."""
    if not root or "://" in source or source.startswith("/") or "://" in root:
        return source
    return root.rstrip("/") + "/" + source


def _is_shipped(source: str, map_path: str, shipped: set[str]) -> bool:
    """The source, resolved against the map's directory (or, for a bundler URL, the package
    root), is a file of the package."""
    relative = _BUNDLER_PREFIX.sub("", source)
    if relative != source:
        base = map_path.split("/", 1)[0] if "/" in map_path else ""
        candidate = posixpath.normpath(posixpath.join(base, relative))
        return candidate in shipped
    if "://" in source or source.startswith("/"):
        return False
    candidate = posixpath.normpath(posixpath.join(posixpath.dirname(map_path), source))
    return candidate in shipped


def npm_scope(name: str | None) -> str | None:
    if name and name.startswith("@") and "/" in name:
        return name.split("/", 1)[0]
    return None


@dataclass(slots=True)
class _EmbeddedMap:
    path: str
    inline: bool
    sources_total: int
    embedded: list[tuple[str, int]]  # (source path, lines) of every source with content
    digests: list[str]  # aligned with `embedded`: `source_digest` of each content


SOURCE_DIGESTS = "_source_digests"
SOURCE_PATH = "path:"  # how a source path is kept beside the content digests

try:
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - exercised where the wheel is missing
    from zlib import crc32 as _crc32


def source_digest(content: str) -> str:
    """A short content digest of one embedded source: two CRC-32s (ISA-L's, gigabytes per second;
    zlib's where the wheel is missing) with different seeds and the length, enough to tell
    thousands of files apart; it decides newness, it authenticates nothing."""
    data = content.encode("utf-8", "surrogatepass")
    return f"{_crc32(data):08x}{_crc32(data, 0x9E3779B9):08x}{len(data):x}"


class SourceMapCheck(Check):
    """Maps are summarised as they come and judged at the end, once the package's own identity
    (and so its npm scope) is known: packers do not always put package.json first."""

    category = Category.SOURCE_MAP

    def __init__(self) -> None:
        self._without_content: list[str] = []
        self._embedded: list[_EmbeddedMap] = []
        self._shipped: set[str] = set()

    def member(self, member: Member, ctx: ScanContext) -> Iterable[Finding]:
        if member.kind is MemberKind.FILE:
            self._shipped.add(member.path)
        return ()

    def source_map(self, smap: SourceMapDoc, ctx: ScanContext) -> Iterable[Finding]:
        yield from self._internal_sources(smap, ctx)
        embedded: list[tuple[str, int]] = []
        digests: list[str] = []
        for source, content in zip(smap.sources, smap.contents, strict=False):
            if content:
                joined = _joined(smap.source_root, source)
                embedded.append((joined, content.count("\n") + 1))
                # only what can be first-party is digested (the own npm scope is known later)
                maybe_own = is_first_party(joined) or "node_modules/@" in joined
                digests.append(source_digest(content) if maybe_own else "")
        if embedded:
            self._embedded.append(
                _EmbeddedMap(smap.path, smap.inline, len(smap.sources), embedded, digests)
            )
        else:
            # Only paths and mappings: harmless on its own, and packages ship hundreds. One
            # summary finding, not one per map.
            self._without_content.append(smap.path)

    def finish(self, ctx: ScanContext) -> Iterable[Finding]:
        scope = npm_scope(ctx.name)
        for smap in self._embedded:
            yield self._judge(smap, scope)
        maps = self._without_content
        if maps:
            yield self.finding(
                "sourcemap-shipped",
                Severity.INFO,
                maps[0],
                f"{len(maps):,} source map{'s' if len(maps) > 1 else ''} without sourcesContent "
                "(source paths and mappings only)",
                evidence={"maps": len(maps), "examples": maps[:10]},
            )

    def _judge(self, smap: _EmbeddedMap, scope: str | None) -> Finding:
        kind = "inline source map" if smap.inline else "source map"
        rule_suffix = "-inline" if smap.inline else ""
        own = [
            (s, lines, digest)
            for (s, lines), digest in zip(smap.embedded, smap.digests, strict=True)
            if is_first_party(s, scope)
        ]
        # The package's own files shipped beside the map (axios ships lib/ and a map of it):
        # embedding them discloses nothing the package does not already publish.
        first_party = [(s, n, d) for s, n, d in own if not _is_shipped(s, smap.path, self._shipped)]
        if own and not first_party:
            return self.finding(
                "sourcemap-embedded-shipped-sources" + rule_suffix,
                Severity.LOW,
                smap.path,
                f"{kind} embeds {len(own):,} first-party source files the package also ships",
                evidence={
                    "first_party_files_shipped": len(own),
                    "third_party_files": len(smap.embedded) - len(own),
                    "sources_total": smap.sources_total,
                },
            )
        if not first_party:
            return self.finding(
                "sourcemap-third-party-sources" + rule_suffix,
                Severity.LOW,
                smap.path,
                f"{kind} embeds {len(smap.embedded):,} third-party source files only",
                evidence={
                    "third_party_files": len(smap.embedded),
                    "sources_total": smap.sources_total,
                },
            )
        lines = sum(count for _, count, _ in first_party)
        return self.finding(
            "sourcemap-embedded-sources" + rule_suffix,
            Severity.HIGH,
            smap.path,
            f"{kind} embeds {len(first_party):,} first-party source files ({lines:,} lines)",
            severity_if_new=Severity.CRITICAL,
            evidence={
                "first_party_files": len(first_party),
                "first_party_lines": lines,
                "first_party_files_shipped": len(own) - len(first_party),
                "third_party_files": len(smap.embedded) - len(own),
                "sources_total": smap.sources_total,
                "examples": [source for source, _, _ in first_party[:10]],
                # newness follows these (compare_with_baseline), then they are dropped
                # (content digest, source path) of each: a source the baseline carried under
                # either is not new
                SOURCE_DIGESTS: [(digest, SOURCE_PATH + s) for s, _, digest in first_party],
            },
        )

    def _internal_sources(self, smap: SourceMapDoc, ctx: ScanContext) -> Iterable[Finding]:
        """A sourceRoot on a private host tells where the code lives."""
        if smap.source_root:
            reason = internal_host_reason(smap.source_root, ctx.options.internal_domains)
            if reason:
                yield Finding(
                    rule="sourcemap-internal-source-root",
                    category=Category.INTERNAL_REFERENCE,
                    severity=Severity.MEDIUM,
                    path=smap.path,
                    message=f"source map's sourceRoot points at {reason}",
                    key=smap.source_root,
                    evidence={"source_root": smap.source_root},
                )

    def text(self, doc: TextDoc, ctx: ScanContext) -> Iterable[Finding]:
        if doc.embedded_source is not None or "sourceMappingURL=" not in doc.text:
            return
        for match in _SOURCE_MAPPING_URL.finditer(doc.text):
            url = match.group(1)
            if url.startswith(_DATA_URL_PREFIX):
                continue
            if not urlsplit(url).scheme:
                continue  # relative: the map is (or is not) in the package; seen as a member
            reason = internal_host_reason(url, ctx.options.internal_domains)
            if reason:
                yield Finding(
                    rule="sourcemap-internal-url",
                    category=Category.INTERNAL_REFERENCE,
                    severity=Severity.MEDIUM,
                    path=doc.path,
                    line=line_of(doc.text, match.start()),
                    message=f"sourceMappingURL points at {reason}",
                    key=url,
                    evidence={"url": url},
                )
