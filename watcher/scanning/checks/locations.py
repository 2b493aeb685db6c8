"""Where in a package a file sits: its tests and fixtures, its documentation and examples, or the
code and data it ships to run.

Libraries ship their test suites and docs (sdists nearly always do), and those are full of
deliberate credentials: fixture TLS keys, `scott:tiger` connection strings, `password: "secret"`
examples. Checks use this to tell a fixture from a leak — the finding stays, flagged, at the
severity its rule gives for such locations (`test_severity`), so it is seen without paging.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Location(StrEnum):
    TESTS = "tests"
    DOCS = "docs"


# A directory component that holds tests or their data.
_TEST_DIRS = frozenset(
    [
        "test",
        "tests",
        "testing",
        "__tests__",
        "spec",
        "specs",
        "fixture",
        "fixtures",
        "__fixtures__",
        "__mocks__",
        "testdata",
        "test_data",
        "test-data",
        "testcases",
        "test-fixtures",
        "test_fixtures",
    ]
)
# A file that is a test on its own, wherever it sits.
_TEST_FILE = re.compile(
    r"(?:^test_[^/]*\.py|_test\.py|^conftest\.py|\.(?:test|spec)\.[cm]?[jt]sx?)$", re.IGNORECASE
)
_DOC_DIRS = frozenset(
    ["doc", "docs", "documentation", "example", "examples", "sample", "samples", "demo", "demos"]
)
# Prose and examples: READMEs, reStructuredText docs, `examples-1.json` / `*.examples.json`
# (documented API request/response samples).
_DOC_FILE = re.compile(
    r"\.(?:md|markdown|rst|adoc|ipynb)$|(?:^|[._-])examples?(?:[._-][^/]*)?\.json$", re.IGNORECASE
)


def location_of(path: str) -> Location | None:
    """Tests, docs, or None for what the package runs. `path` may be a finding path: a member path,
    `<file>/<member>` for a PyPI release, or `<map> → <original source>`."""
    parts = re.split(r"[/\\]| → ", path)
    name = parts[-1]
    directories = {part.lower() for part in parts[:-1]}
    if _TEST_FILE.search(name) or not directories.isdisjoint(_TEST_DIRS):
        return Location.TESTS
    if _DOC_FILE.search(name) or not directories.isdisjoint(_DOC_DIRS):
        return Location.DOCS
    return None


def location_evidence(location: Location | None) -> dict[str, bool]:
    """The evidence flag a finding carries for its location."""
    if location is Location.TESTS:
        return {"in_test_path": True}
    if location is Location.DOCS:
        return {"in_docs_path": True}
    return {}
