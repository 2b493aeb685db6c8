"""What every check sees and returns. Checks never do I/O: the scanner hands them members, decoded
text and parsed source maps, each produced once per artifact."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from watcher.model import Category, Ecosystem, Finding, Manifest, Member, Release, Severity
from watcher.private.canaries import Canary
from watcher.scanning.needles import Gate, Hits


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """The parts of the configuration the checks need."""

    internal_domains: tuple[str, ...] = ()
    # size-anomaly: unpacked bytes or file count this many times the baseline's (and past the floor)
    size_growth_factor: float = 3.0
    size_growth_floor_bytes: int = 5 * 1024 * 1024
    file_count_growth_factor: float = 2.0
    file_count_growth_floor: int = 50
    # liveness verification asked for: the secret check keeps the raw values of credentials a
    # provider can verify, in memory, on `Report.credentials` (watcher.verify)
    keep_credentials: bool = False
    # private-source: fingerprint index files, the key they are hashed with, and the share of a
    # private file's distinctive lines that makes a text count as that file
    fingerprints: tuple[str, ...] = ()
    fingerprint_key: str | None = field(default=None, repr=False)
    fingerprint_threshold: float = 0.5
    # canary-found: values planted by the owner (matched in the needle pass)
    canaries: tuple[Canary, ...] = ()


@dataclass(slots=True)
class TextDoc:
    """Text to scan: a member decoded once, or one original source embedded in a source map.

    `path` is what findings report: the member path, or `<map path> → <original source>` for a
    source map's `sourcesContent` entry."""

    path: str
    text: str
    member_path: str
    embedded_source: str | None = None  # the original source path inside a source map
    # Where each check's needles (`Check.needles`) occur, found by the scanner in one pass for all
    # checks; None when the doc was built outside a scan (a check then searches on its own).
    hits: Hits | None = None
    # how the text was obtained: `utf-8`, `utf-16-le` / `utf-16-be` / `utf-16`, `latin-1`,
    # `pyc-strings` (a .pyc's string constants), `binary-strings` (printable runs of a binary)
    origin: str = "utf-8"
    # every `scheme://…` of the text with its offset, found once for the checks that read them
    urls: list[tuple[int, str]] | None = None


@dataclass(slots=True)
class SourceMapDoc:
    path: str  # member path of the .map file, or of the file that carries an inline map
    inline: bool
    source_root: str
    sources: list[str]
    contents: list[str | None]  # aligned with `sources`; empty when the map has no sourcesContent
    url: str | None = None  # the sourceMappingURL that referred to it, if any


@dataclass(slots=True)
class ScanContext:
    ecosystem: Ecosystem | None
    name: str | None
    version: str | None
    options: ScanOptions = field(default_factory=ScanOptions)
    package_json: dict[str, Any] | None = None  # npm: the root package.json, once read
    # root files the artifact's installer runs (its unit's `install_hook_files`; every unit's
    # while the ecosystem is unknown)
    install_hook_files: frozenset[str] = frozenset()
    # directories holding a `conftest.py` (pytest's per-directory fixtures), below the archive's
    # top level: their files are tests wherever they sit (`watcher.scanning.checks.locations`)
    test_dirs: set[str] = field(default_factory=set)
    # what the artifact declares and carries, for the what-changed rules (Manifest.facts)
    facts: dict[str, set[str]] = field(default_factory=dict)


class Check:
    """Base of every check; override the hooks you need. Hooks return findings (or yield them)."""

    category: ClassVar[Category]
    # Whether `text` also gets the printable runs of binaries (`TextDoc.origin` "binary-strings");
    # only checks whose rules cannot fire by chance on machine code should say yes.
    reads_binary_strings: ClassVar[bool] = False

    def needles(self) -> Iterable[str]:
        """Literal strings whose offsets this check wants in `TextDoc.hits`."""
        return ()

    def gates(self) -> Iterable[Gate]:
        """Patterns the needle pass checks at this check's keywords (`watcher.scanning.needles`):
        `TextDoc.hits` then holds, under each gate's name, the keyword occurrences that pass."""
        return ()

    def binary_needles(self) -> Iterable[str]:
        """Literals (ASCII) that make the scanner cut a binary's printable run around them for
        this check (`reads_binary_strings`)."""
        return ()

    def member(self, member: Member, ctx: ScanContext) -> Iterable[Finding]:
        return ()

    def text(self, doc: TextDoc, ctx: ScanContext) -> Iterable[Finding]:
        return ()

    def source_map(self, smap: SourceMapDoc, ctx: ScanContext) -> Iterable[Finding]:
        return ()

    def finish(self, ctx: ScanContext) -> Iterable[Finding]:
        return ()

    def revise(self, findings: list[Finding], ctx: ScanContext) -> None:
        """Once every check has finished: adjust other checks' findings in place (the owner's
        fingerprints overrule the source-map heuristic)."""

    def finding(
        self,
        rule: str,
        severity: Severity,
        path: str,
        message: str,
        *,
        line: int | None = None,
        key: str = "",
        evidence: dict[str, Any] | None = None,
        severity_if_new: Severity | None = None,
    ) -> Finding:
        return Finding(
            rule=rule,
            category=self.category,
            severity=severity,
            path=path,
            message=message,
            line=line,
            key=key,
            evidence=evidence or {},
            severity_if_new=severity_if_new,
        )


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


class ComparisonCheck:
    """A check that needs both releases: their manifests (size growth, new kinds of content) or
    the registry's metadata of both (provenance)."""

    category: ClassVar[Category]

    def compare(self, target: Manifest, baseline: Manifest, options: ScanOptions) -> list[Finding]:
        return []

    def compare_releases(self, target: Release, baseline: Release) -> list[Finding]:
        """Given only when both releases came from the registry."""
        return []
