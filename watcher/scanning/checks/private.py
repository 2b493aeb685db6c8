"""`private-source`: the owner's private files, found by their fingerprints in any text of the
release: members under any name, source-map sources under any namespace, nested archives' members.

One finding per artifact says how many private files and lines, under which index, and where (the
first paths); never any code. With an index configured, the fingerprints are the owner's statement
of what is private: a map whose embedded sources match none of it is lowered to `low` (the
source-map check's first-party guess is a heuristic).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from watcher.model import Category, Finding, Severity
from watcher.private.keys import FingerprintKey, key_from_env
from watcher.private.match import FileMatch, Matcher, load_index
from watcher.scanning.checks.base import Check, ScanContext, ScanOptions, SourceMapDoc, TextDoc

_MAX_PATHS = 10
_EMBEDDED_RULES = ("sourcemap-embedded-sources", "sourcemap-embedded-sources-inline")

_SourceKey = tuple[str, int, int]


@dataclass(slots=True)
class _Found:
    lines: int
    how: str
    paths: list[str] = field(default_factory=list)


def matcher_for(options: ScanOptions) -> Matcher | None:
    """The matcher for the configured indexes (read once per process), or None without any."""
    if not options.fingerprints:
        return None
    key = FingerprintKey(options.fingerprint_key) if options.fingerprint_key else key_from_env()
    indexes = [load_index(Path(p)) for p in options.fingerprints]
    return Matcher(indexes, key, options.fingerprint_threshold)


class PrivateSourceCheck(Check):
    category = Category.UNEXPECTED_CONTENT

    def __init__(self, matcher: Matcher) -> None:
        self._matcher = matcher
        self._found: dict[tuple[str, int], _Found] = {}
        self._in_maps = False
        self._map_sources: dict[str, list[_SourceKey]] = {}
        self._matched_sources: set[_SourceKey] = set()
        self._paths: list[str] = []

    def source_map(self, smap: SourceMapDoc, ctx: ScanContext) -> Iterable[Finding]:
        # the scanner scans a source seen in an earlier map once: remember every map's sources
        # by the same key, so each map is judged by what its own sources matched
        self._map_sources.setdefault(smap.path, []).extend(
            (source, len(content), hash(content))
            for source, content in zip(smap.sources, smap.contents, strict=False)
            if content
        )
        return ()

    def text(self, doc: TextDoc, ctx: ScanContext) -> Iterable[Finding]:
        if doc.origin == "binary-strings":
            return ()
        matches = self._matcher.match(doc.text)
        if not matches:
            return ()
        if doc.embedded_source is not None:
            self._in_maps = True
            self._matched_sources.add((doc.embedded_source, len(doc.text), hash(doc.text)))
        if len(self._paths) < _MAX_PATHS:
            self._paths.append(doc.path)
        for match in matches:
            self._record(match, doc.path)
        return ()

    def _record(self, match: FileMatch, path: str) -> None:
        key = (match.index, match.file)
        known = self._found.get(key)
        if known is None:
            self._found[key] = _Found(match.lines, match.how, [path])
        else:
            known.lines = max(known.lines, match.lines)
            if len(known.paths) < 3:
                known.paths.append(path)

    def finish(self, ctx: ScanContext) -> Iterable[Finding]:
        if not self._found:
            return
        per_index: dict[str, dict[str, int]] = {}
        how: dict[str, int] = {}
        for (label, _), found in self._found.items():
            entry = per_index.setdefault(label, {"files": 0, "lines": 0})
            entry["files"] += 1
            entry["lines"] += found.lines
            how[found.how] = how.get(found.how, 0) + 1
        files = len(self._found)
        lines = sum(found.lines for found in self._found.values())
        labels = ", ".join(sorted(per_index))
        where = "source map sources" if self._in_maps else "the release's files"
        yield Finding(
            rule="private-source",
            category=Category.SOURCE_MAP if self._in_maps else Category.UNEXPECTED_CONTENT,
            severity=Severity.CRITICAL,
            path=self._paths[0],
            message=(
                f"{files:,} private source file{'s' if files != 1 else ''} ({lines:,} "
                f"distinctive lines) of index {labels} found in {where}"
            ),
            evidence={
                "private_files": files,
                "private_lines": lines,
                "indexes": per_index,
                "matched_by": how,
                "paths": self._paths,
            },
        )

    def revise(self, findings: list[Finding], ctx: ScanContext) -> None:
        private_maps = {
            path
            for path, keys in self._map_sources.items()
            if any(key in self._matched_sources for key in keys)
        }
        for finding in findings:
            if finding.rule in _EMBEDDED_RULES and finding.path not in private_maps:
                finding.severity = Severity.LOW
                finding.severity_if_new = None
                finding.evidence["private_source_match"] = False
                finding.message += "; none of them match the configured private fingerprints"
