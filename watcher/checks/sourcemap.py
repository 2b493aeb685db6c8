"""`source-map`: shipped source maps, and what their `sourcesContent` gives away.

A map's `sourcesContent` can carry every original file of the build. We count the first-party ones
(not from `node_modules/`, bundler runtimes or virtual modules) and their lines: that is the size of
the disclosure. Parsing helpers live here too, so the scanner parses each map once and hands the
result to every check (secrets scan the embedded sources).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from watcher.checks.base import Check, ScanContext, SourceMapDoc, TextDoc, line_of
from watcher.checks.hosts import internal_host_reason
from watcher.model import Category, Finding, Severity

# Sources that are not the publisher's own code: dependencies, bundler runtimes, virtual modules.
_THIRD_PARTY = re.compile(
    r"(^|[/\\])(node_modules|bower_components|jspm_packages|\.pnpm|\.yarn)[/\\]"
    r"|^webpack/(bootstrap|runtime|universalModuleDefinition)"
    r"|^\(webpack\)|webpack:///(\(webpack\)|webpack/|node_modules/)|^external[ \"]"
    r"|^\x00|^\(ignored\)|ignored\||^vite/|__vite-browser-external|^\\0|^rollupPluginBabelHelpers"
    r"|^/?~/|^\.\./\.\./(\.\./)*node_modules/"
)
_SOURCE_MAPPING_URL = re.compile(r"[#@]\s*sourceMappingURL=([^\s'\"*]+)")
_DATA_URL_PREFIX = "data:"
_MAX_INLINE_MAP_CHARS = 256 * 1024 * 1024


def looks_like_source_map(path: str, data: bytes) -> bool:
    if path.endswith(".map"):
        return True
    # Some builds ship maps under other names (.js.map.json, .map.txt): sniff the JSON keys.
    head = data[:512]
    return head.lstrip()[:1] == b"{" and b'"mappings"' in data[:4096] and b'"version"' in head


def parse_source_map(
    data: bytes | str, path: str, *, inline: bool, url: str | None = None
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


def is_first_party(source: str) -> bool:
    return not _THIRD_PARTY.search(source)


class SourceMapCheck(Check):
    category = Category.SOURCE_MAP

    def __init__(self) -> None:
        self._without_content: list[str] = []

    def source_map(self, smap: SourceMapDoc, ctx: ScanContext) -> Iterable[Finding]:
        kind = "inline source map" if smap.inline else "source map"
        rule_suffix = "-inline" if smap.inline else ""
        embedded = [
            (source, content)
            for source, content in zip(smap.sources, smap.contents, strict=False)
            if content
        ]
        first_party = [(s, c) for s, c in embedded if is_first_party(s)]
        yield from self._internal_sources(smap, ctx)
        if first_party:
            lines = sum(content.count("\n") + 1 for _, content in first_party)
            yield self.finding(
                "sourcemap-embedded-sources" + rule_suffix,
                Severity.HIGH,
                smap.path,
                f"{kind} embeds {len(first_party):,} first-party source files ({lines:,} lines)",
                severity_if_new=Severity.CRITICAL,
                evidence={
                    "first_party_files": len(first_party),
                    "first_party_lines": lines,
                    "third_party_files": len(embedded) - len(first_party),
                    "sources_total": len(smap.sources),
                    "examples": [source for source, _ in first_party[:10]],
                },
            )
        elif embedded:
            yield self.finding(
                "sourcemap-third-party-sources" + rule_suffix,
                Severity.LOW,
                smap.path,
                f"{kind} embeds {len(embedded):,} third-party source files only",
                evidence={"third_party_files": len(embedded), "sources_total": len(smap.sources)},
            )
        else:
            # Only paths and mappings: harmless on its own, and packages ship hundreds. One
            # summary finding, not one per map.
            self._without_content.append(smap.path)

    def finish(self, ctx: ScanContext) -> Iterable[Finding]:
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
