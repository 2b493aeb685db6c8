"""`canary-found`: a value the owner planted in a private place is in the release. Critical, named
by the canary's id; the value is never reported. The literals (values, or prefixes of hashed
values) are needles of the scanner's one pass, so canaries cost nothing extra per text."""

from __future__ import annotations

from collections.abc import Iterable

from watcher.model import Category, Finding, Severity
from watcher.private.canaries import Canary
from watcher.scanning.checks.base import Check, ScanContext, TextDoc, line_of
from watcher.scanning.needles import occurrences


class CanaryCheck(Check):
    category = Category.SECRET
    # a canary is a long, unique literal: it cannot appear in machine code by chance
    reads_binary_strings = True

    def __init__(self, canaries: Iterable[Canary]) -> None:
        self._by_needle: dict[str, list[Canary]] = {}
        for canary in canaries:
            self._by_needle.setdefault(canary.needle, []).append(canary)

    def needles(self) -> Iterable[str]:
        return self._by_needle.keys()

    def binary_needles(self) -> Iterable[str]:
        return [needle for needle in self._by_needle if needle.isascii()]

    def text(self, doc: TextDoc, ctx: ScanContext) -> Iterable[Finding]:
        hits = doc.hits
        for needle, canaries in self._by_needle.items():
            reported: set[str] = set()
            for offset in occurrences(doc.text, needle, hits):
                for canary in canaries:
                    if canary.id in reported or not canary.found_at(doc.text, offset):
                        continue
                    reported.add(canary.id)
                    yield self.finding(
                        "canary-found",
                        Severity.CRITICAL,
                        doc.path,
                        f"canary {canary.id!r} found: this release carries a value planted in a "
                        "private place",
                        line=line_of(doc.text, offset),
                        key=canary.id,
                        evidence={"canary": canary.id},
                    )
