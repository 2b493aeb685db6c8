"""expect.publishers (watcher/intent/publishers.py): who published each file, from the registry's
document, against the owner's list."""

from __future__ import annotations

from watcher.intent.publishers import publisher_findings
from watcher.model import Artifact, Category, Ecosystem, Provenance, Release, Severity


def _release(*publishers: str | None, stripped: bool = False) -> Release:
    return Release(
        Ecosystem.NPM,
        "demo",
        "1.2.0",
        artifacts=tuple(
            Artifact(
                f"demo-1.2.0-{i}.tgz",
                provenance=None if stripped else Provenance(publisher=who),
            )
            for i, who in enumerate(publishers)
        ),
    )


def test_a_publisher_outside_the_list_is_high() -> None:
    [finding] = publisher_findings(["alice", "GitHub Actions"], _release("mallory"))
    assert (finding.rule, finding.category, finding.severity) == (
        "publisher-unexpected",
        Category.PROVENANCE,
        Severity.HIGH,
    )
    assert "mallory" in finding.message and finding.evidence["publisher"] == "mallory"
    assert finding.fingerprint


def test_listed_publishers_case_insensitively_and_no_expectation_are_quiet() -> None:
    assert publisher_findings(["Alice"], _release("alice")) == []
    assert publisher_findings(None, _release("mallory")) == []


def test_a_document_without_a_publisher_decides_nothing() -> None:
    assert publisher_findings(["alice"], _release(None)) == []
    assert publisher_findings(["alice"], _release("x", stripped=True)) == []


def test_one_finding_per_unexpected_account() -> None:
    found = publisher_findings(["alice"], _release("mallory", "mallory", "eve", "alice"))
    assert [f.evidence["publisher"] for f in found] == ["eve", "mallory"]
    assert len(found[1].evidence["files"]) == 2
