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


# A directory component that holds tests or their data: the layouts of popular projects across
# ecosystems (JS `__tests__`/`spec`/`e2e`, Python `tests`/`testing`, Go `testdata`, Perl and git
# `t/`, Maven `src/test` and `src/it`, Gradle `testFixtures`/`integrationTest`, Ruby `spec`,
# fixtures, mocks and snapshots). Not `features/` (React apps keep code there) nor a bare `it/`
# (a locale).
_TEST_DIRS = frozenset(
    [
        "t",
        "e2e",
        "test",
        "tests",
        "testing",
        "__tests__",
        "spec",
        "specs",
        "__specs__",
        "fixture",
        "fixtures",
        "__fixtures__",
        "mock",
        "mocks",
        "__mocks__",
        "__snapshots__",
        "testdata",
        "test_data",
        "test-data",
        "testcases",
        "test-fixtures",
        "test_fixtures",
        "testfixtures",
        "integrationtest",
        "integration-tests",
        "integration_tests",
        "unittests",
        "unit-tests",
        "unit_tests",
        "testutil",
        "testutils",
        "test-utils",
        "test_utils",
        "testhelpers",
        "cypress",
        "playwright",
    ]
)
# .NET test projects: `Acme.Tests/`, `Acme.UnitTests/`, `Acme.IntegrationTests/`, `Acme.Specs/`.
_TEST_DIR_SUFFIX = re.compile(r"\.(?:Unit|Integration|Functional)?(?:Tests?|Specs)$")
_MAVEN_IT = re.compile(r"(?:^|/)src/it/")
# A file that is a test on its own, wherever it sits.
_TEST_FILE = re.compile(
    r"(?:^test_[^/]*\.py|_tests?\.py|^tests\.py|^conftest\.py"
    r"|\.(?:test|spec|e2e|e2e-spec|cy)\.[cm]?[jt]sx?|_test\.go|_spec\.rb|_test\.rb"
    r"|_test\.(?:exs|dart|rs))$",
    re.IGNORECASE,
)
# JVM and .NET test classes by convention, case-sensitive: `ClientTest.java`, `ClientIT.kt`.
_TEST_CLASS = re.compile(r"[a-z0-9](?:Test|Tests|IT)\.(?:java|kt|scala|groovy|cs)$")
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
    parts = re.split(r"[/\\!]| → ", path)  # `!` joins the layers of nested archives
    name = parts[-1]
    directories = {part.lower() for part in parts[:-1]}
    if _TEST_FILE.search(name) or not directories.isdisjoint(_TEST_DIRS):
        return Location.TESTS
    if _TEST_CLASS.search(name) or _MAVEN_IT.search(path):
        return Location.TESTS
    if any(_TEST_DIR_SUFFIX.search(part) for part in parts[:-1]):
        return Location.TESTS
    if _DOC_FILE.search(name) or not directories.isdisjoint(_DOC_DIRS):
        return Location.DOCS
    return None


def conftest_dir(member_path: str) -> str | None:
    """The directory a `conftest.py` member marks as tests, None for any other member and for a
    conftest at the archive's (or a nested archive's) top level, which configures the whole
    project, not one test directory."""
    directory, _, name = member_path.rpartition("/")
    if name != "conftest.py" or "/" not in directory.rsplit("!", 1)[-1]:
        return None
    return directory


def in_test_dir(path: str, test_dirs: set[str]) -> bool:
    """Whether a finding path's member sits in one of `test_dirs` (beside a `conftest.py`)."""
    if not test_dirs:
        return False
    member = path.split(" → ", 1)[0]
    return member.rpartition("/")[0] in test_dirs


# Where an application's production configuration lives, by the conventions of common frameworks:
# dotenv, Rails, Django/Flask settings, Spring, ASP.NET, Angular, Node `config/`.
_PRODUCTION_CONFIG = re.compile(
    r"(?:^|/)(?:\.env\.prod(?:uction)?(?:\.local)?|[^/]*\.prod(?:uction)?\.env"
    r"|(?:config|settings|conf|environments)/(?:[^/]*/)?(?:prod|production)(?:[._-][^/]*)?"
    r"\.(?:ya?ml|json|toml|ini|py|rb|[cm]?[jt]s|exs|php|properties|conf|cfg)"
    r"|settings[._-]prod(?:uction)?\.py|application-prod(?:uction)?\.(?:ya?ml|properties)"
    r"|appsettings\.Production\.json|credentials/production\.ya?ml)$",
    re.IGNORECASE,
)


def is_production_config(path: str) -> bool:
    """A production configuration file (`.env.production`, `config/production.json`, …)."""
    return _PRODUCTION_CONFIG.search(re.split(r"!| → ", path)[-1]) is not None


def location_evidence(location: Location | None) -> dict[str, bool]:
    """The evidence flag a finding carries for its location."""
    if location is Location.TESTS:
        return {"in_test_path": True}
    if location is Location.DOCS:
        return {"in_docs_path": True}
    return {}
