"""The `provenance` category: what the npm and PyPI parsers capture from the registry's documents
(built here from the documented shapes), the pure comparison of two releases, the state file
keeping it with the release, and the runbook's first step when a token is presumed stolen."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.storekit import record_releases
from watcher.ecosystems.npm.client import parse_packument
from watcher.ecosystems.pypi.client import parse_simple_html, parse_simple_json
from watcher.incidents.runbook import RunbookInputs, build_runbook
from watcher.model import (
    Artifact,
    Category,
    Ecosystem,
    Finding,
    Provenance,
    Release,
    Severity,
    fingerprint,
)
from watcher.scanning.checks.provenance import compare_provenance
from watcher.store import open_store
from watcher.store.sqlite import files as state_file

SLSA = "https://slsa.dev/provenance/v1"
PUBLISH = "https://github.com/npm/attestation/tree/main/specs/publish/v0.1"
REGISTRY = "http://registry.test"
PAGE = "http://index.test/simple/acme-sdk/"
NOW = datetime(2026, 4, 1, tzinfo=UTC)


# -- npm parsing --------------------------------------------------------------------------------


def npm_version(version: str, *, attested: bool = False, user: Any = None) -> dict[str, Any]:
    dist: dict[str, Any] = {
        "tarball": f"{REGISTRY}/@acme/cli/-/cli-{version}.tgz",
        "integrity": "sha512-" + "A" * 86 + "==",
    }
    if attested:
        dist["attestations"] = {
            "url": f"{REGISTRY}/-/npm/v1/attestations/@acme%2fcli@{version}",
            "provenance": {"predicateType": SLSA},
        }
    doc: dict[str, Any] = {"name": "@acme/cli", "version": version, "dist": dist}
    if user is not None:
        doc["_npmUser"] = user
    return doc


OIDC_USER = {
    "name": "GitHub Actions",
    "email": "npm-oidc-no-reply@github.com",
    "trustedPublisher": {"id": "github", "oidcConfigId": "oidc:1111"},
}
HUMAN = {"name": "alice", "email": "alice@example.invalid"}


def packument(*versions: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "@acme/cli",
        "dist-tags": {"latest": versions[-1]["version"]},
        "versions": {v["version"]: v for v in versions},
        "time": {v["version"]: "2026-03-31T00:59:04.644Z" for v in versions},
    }


def test_npm_trusted_publish_with_attestations_is_captured_on_the_artifact() -> None:
    doc = packument(npm_version("2.1.88", attested=True, user=OIDC_USER))
    [artifact] = parse_packument(doc).release("2.1.88").artifacts
    assert artifact.provenance == Provenance(
        attested=True,
        url=f"{REGISTRY}/-/npm/v1/attestations/@acme%2fcli@2.1.88",
        predicate_types=(SLSA,),
        publisher="GitHub Actions",
        trusted_publisher="github",
        trusted_config="oidc:1111",
    )


def test_npm_token_publish_is_known_to_have_no_attestations() -> None:
    doc = packument(npm_version("2.1.89", user=HUMAN))
    [artifact] = parse_packument(doc).release("2.1.89").artifacts
    assert artifact.provenance == Provenance(attested=False, publisher="alice")


def test_npm_document_without_publisher_fields_says_nothing() -> None:
    """Mirrors strip `_npmUser` and `dist.attestations` together: unknown, not "none"."""
    doc = packument(npm_version("2.1.89"))
    [artifact] = parse_packument(doc).release("2.1.89").artifacts
    assert artifact.provenance is None


def test_npm_attestations_without_a_publisher_are_still_attestations() -> None:
    doc = packument(npm_version("2.1.88", attested=True))
    [artifact] = parse_packument(doc).release("2.1.88").artifacts
    assert artifact.provenance is not None
    assert artifact.provenance.attested and artifact.provenance.publisher is None


def test_npm_odd_publisher_values_do_not_break_the_document() -> None:
    odd = npm_version("1.0.0", user={"name": 7, "trustedPublisher": {"oidcConfigId": 3}})
    [artifact] = parse_packument(packument(odd)).release("1.0.0").artifacts
    assert artifact.provenance == Provenance(trusted_publisher="unknown")
    broken = npm_version("1.0.1")
    broken["dist"]["attestations"] = "yes"
    broken["_npmUser"] = "alice"
    [artifact] = parse_packument(packument(broken)).release("1.0.1").artifacts
    assert artifact.provenance is None


# -- PyPI parsing -------------------------------------------------------------------------------


def simple_json(files: list[dict[str, Any]]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.4"}, "name": "acme-sdk", "files": files}).encode()


def pypi_file(filename: str, **extra: Any) -> dict[str, Any]:
    return {"filename": filename, "url": f"../../files/{filename}", "hashes": {}, **extra}


def test_pypi_provenance_url_null_and_absent_are_three_different_things() -> None:
    page = parse_simple_json(
        simple_json(
            [
                pypi_file(
                    "acme_sdk-1.0.0.tar.gz",
                    provenance="/integrity/acme-sdk/1.0.0/acme_sdk-1.0.0.tar.gz/provenance",
                ),
                pypi_file("acme_sdk-1.0.0-py3-none-any.whl", provenance=None),
                pypi_file("acme_sdk-1.0.1.tar.gz"),
            ]
        ),
        PAGE,
        project="acme-sdk",
    )
    by_name = {f.filename: f for f in page.files}
    assert by_name["acme_sdk-1.0.0.tar.gz"].provenance == Provenance(
        attested=True,
        url="http://index.test/integrity/acme-sdk/1.0.0/acme_sdk-1.0.0.tar.gz/provenance",
    )
    assert by_name["acme_sdk-1.0.0-py3-none-any.whl"].provenance == Provenance(attested=False)
    assert by_name["acme_sdk-1.0.1.tar.gz"].provenance is None, "index without PEP 740"
    release = page.release("1.0.0")
    assert [a.provenance is not None and a.provenance.attested for a in release.artifacts] == [
        False,
        True,
    ], "the release's artifacts carry what the page said, file by file (sorted by name)"


def test_pypi_html_page_knows_nothing_about_provenance() -> None:
    html = '<a href="../../files/acme_sdk-1.0.0.tar.gz#sha256=' + "a" * 64 + '">x</a>'
    page = parse_simple_html(html, PAGE, project="acme-sdk")
    assert [f.provenance for f in page.files] == [None]


# -- the comparison -----------------------------------------------------------------------------


def npm_release(version: str, provenance: Provenance | None) -> Release:
    return Release(
        Ecosystem.NPM,
        "@acme/cli",
        version,
        artifacts=(Artifact(f"cli-{version}.tgz", provenance=provenance),),
    )


ATTESTED_CI = Provenance(
    attested=True,
    predicate_types=(PUBLISH, SLSA),
    publisher="GitHub Actions",
    trusted_publisher="github",
    trusted_config="oidc:1111",
)
TOKEN_ALICE = Provenance(attested=False, publisher="alice")
TOKEN_MALLORY = Provenance(attested=False, publisher="mallory")
ATTESTED_ALICE = Provenance(attested=True, predicate_types=(SLSA,), publisher="alice")


def rules(findings: list[Finding]) -> list[tuple[str, Severity]]:
    return sorted((f.rule, f.severity) for f in findings)


def test_lost_provenance_from_trusted_publishing_to_a_token() -> None:
    findings = compare_provenance(
        npm_release("2.1.89", TOKEN_ALICE), npm_release("2.1.88", ATTESTED_CI)
    )
    assert rules(findings) == [
        ("provenance-lost", Severity.HIGH),
        ("publisher-changed", Severity.MEDIUM),
    ]
    lost = next(f for f in findings if f.rule == "provenance-lost")
    assert lost.category is Category.PROVENANCE and lost.path == ""
    assert "2.1.88" in lost.message and "alice" in lost.message
    assert lost.evidence["baseline_predicate_types"] == [PUBLISH, SLSA]
    changed = next(f for f in findings if f.rule == "publisher-changed")
    assert "token" in changed.message and "alice" in changed.message


def test_lost_provenance_by_the_same_account() -> None:
    """The CI job published with `--provenance` under alice's token; the laptop did not."""
    findings = compare_provenance(
        npm_release("1.0.1", TOKEN_ALICE), npm_release("1.0.0", ATTESTED_ALICE)
    )
    assert rules(findings) == [("provenance-lost", Severity.HIGH)]


def test_unchanged_publishing_is_quiet() -> None:
    assert compare_provenance(npm_release("2", ATTESTED_CI), npm_release("1", ATTESTED_CI)) == []
    assert compare_provenance(npm_release("2", TOKEN_ALICE), npm_release("1", TOKEN_ALICE)) == []


def test_gaining_provenance_is_not_a_finding() -> None:
    assert compare_provenance(npm_release("2", ATTESTED_CI), npm_release("1", TOKEN_ALICE)) == []
    assert compare_provenance(npm_release("2", ATTESTED_ALICE), npm_release("1", TOKEN_ALICE)) == []


@pytest.mark.parametrize(
    ("target", "baseline"),
    [
        (None, None),
        (None, ATTESTED_CI),  # the target's document was stripped (a mirror): not loss
        (TOKEN_ALICE, None),  # the baseline was seen through a mirror: nothing to compare with
    ],
)
def test_missing_data_on_either_side_decides_nothing(
    target: Provenance | None, baseline: Provenance | None
) -> None:
    assert compare_provenance(npm_release("2", target), npm_release("1", baseline)) == []


def test_no_baseline_release_decides_nothing() -> None:
    assert compare_provenance(npm_release("2", TOKEN_ALICE), None) == []


def test_another_human_publisher_is_a_medium_finding() -> None:
    [changed] = compare_provenance(
        npm_release("1.0.1", TOKEN_MALLORY), npm_release("1.0.0", TOKEN_ALICE)
    )
    assert (changed.rule, changed.severity) == ("publisher-changed", Severity.MEDIUM)
    assert "alice → mallory" in changed.message


def test_another_trusted_publishing_configuration_is_a_change() -> None:
    moved = Provenance(
        attested=True,
        publisher="GitHub Actions",
        trusted_publisher="github",
        trusted_config="oidc:2222",
    )
    [changed] = compare_provenance(npm_release("2", moved), npm_release("1", ATTESTED_CI))
    assert changed.rule == "publisher-changed" and "oidc:2222" in changed.message
    same_account_name = Provenance(attested=True, publisher="GitHub Actions")
    assert (
        compare_provenance(npm_release("2", ATTESTED_CI), npm_release("1", same_account_name)) == []
    ), "token → trusted publishing is a gain"


def test_fingerprints_are_stable_across_releases() -> None:
    first = compare_provenance(npm_release("1.0.1", TOKEN_ALICE), npm_release("1.0.0", ATTESTED_CI))
    again = compare_provenance(npm_release("1.0.1", TOKEN_ALICE), npm_release("1.0.0", ATTESTED_CI))
    later = compare_provenance(npm_release("3.0.1", TOKEN_ALICE), npm_release("3.0.0", ATTESTED_CI))
    assert [f.fingerprint for f in first] == [f.fingerprint for f in again]
    assert [f.fingerprint for f in first] == [f.fingerprint for f in later]
    lost = next(f for f in first if f.rule == "provenance-lost")
    assert lost.fingerprint == fingerprint("provenance-lost", "", "")


def pypi_release(version: str, files: dict[str, Provenance | None]) -> Release:
    return Release(
        Ecosystem.PYPI,
        "acme-sdk",
        version,
        artifacts=tuple(
            Artifact(name.format(v=version), provenance=p) for name, p in files.items()
        ),
    )


SDIST = "acme_sdk-{v}.tar.gz"
WHEEL = "acme_sdk-{v}-py3-none-any.whl"
PEP740 = Provenance(attested=True, url="http://index.test/integrity/x/provenance")
NONE740 = Provenance(attested=False)


def test_pypi_file_without_the_provenance_its_counterpart_had() -> None:
    findings = compare_provenance(
        pypi_release("1.0.1", {SDIST: NONE740, WHEEL: PEP740}),
        pypi_release("1.0.0", {SDIST: PEP740, WHEEL: PEP740}),
    )
    [lost] = findings
    assert (lost.rule, lost.severity, lost.path) == (
        "provenance-lost",
        Severity.HIGH,
        "acme_sdk-1.0.1.tar.gz",
    )
    assert lost.evidence["baseline_file"] == "acme_sdk-1.0.0.tar.gz"
    assert lost.fingerprint == fingerprint("provenance-lost", "acme_sdk-{version}.tar.gz", "")


def test_pypi_new_file_judged_against_a_fully_attested_baseline() -> None:
    wheel_311 = "acme_sdk-{v}-cp311-cp311-manylinux_2_28_x86_64.whl"
    [lost] = compare_provenance(
        pypi_release("1.0.1", {SDIST: PEP740, wheel_311: NONE740}),
        pypi_release("1.0.0", {SDIST: PEP740}),
    )
    assert lost.path.endswith("cp311-cp311-manylinux_2_28_x86_64.whl")
    partly = compare_provenance(
        pypi_release("1.0.1", {wheel_311: NONE740}),
        pypi_release("1.0.0", {SDIST: PEP740, WHEEL: NONE740}),
    )
    assert partly == [], "a baseline that was only partly attested says nothing for a new file"


def test_pypi_missing_data_and_gains_decide_nothing() -> None:
    assert (
        compare_provenance(
            pypi_release("1.0.1", {SDIST: None, WHEEL: None}),
            pypi_release("1.0.0", {SDIST: PEP740, WHEEL: PEP740}),
        )
        == []
    ), "an index without PEP 740 (stripped) is not a loss"
    assert (
        compare_provenance(
            pypi_release("1.0.1", {SDIST: NONE740}),
            pypi_release("1.0.0", {SDIST: None}),
        )
        == []
    )
    assert (
        compare_provenance(
            pypi_release("1.0.1", {SDIST: PEP740}), pypi_release("1.0.0", {SDIST: NONE740})
        )
        == []
    )


# -- the state file -----------------------------------------------------------------------------


async def test_the_store_keeps_provenance_with_the_release(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "state.db")
    try:
        await record_releases(
            store,
            [
                npm_release("1.0.0", ATTESTED_CI),
                npm_release("1.0.1", None),
                pypi_release("2.0.0", {SDIST: PEP740, WHEEL: NONE740}),
            ],
            "feed",
            "1",
        )
        stored = await store.get_release(Ecosystem.NPM, "@acme/cli", "1.0.0")
        assert stored is not None and stored.release.artifacts[0].provenance == ATTESTED_CI
        unknown = await store.get_release(Ecosystem.NPM, "@acme/cli", "1.0.1")
        assert unknown is not None and unknown.release.artifacts[0].provenance is None
        files = await store.get_release(Ecosystem.PYPI, "acme-sdk", "2.0.0")
        assert files is not None
        assert [a.provenance for a in files.release.artifacts] == [PEP740, NONE740]
    finally:
        await store.close()
    # A row written before provenance was captured has no such key: read as unknown.
    old_row = [{"filename": "cli-1.0.0.tgz", "url": None, "size": None, "sha256": None}]
    state_file.execute(
        tmp_path / "state.db",
        ("UPDATE releases SET artifacts = ? WHERE version = '1.0.0'", (json.dumps(old_row),)),
    )
    store = await open_store(tmp_path / "state.db")
    try:
        old = await store.get_release(Ecosystem.NPM, "@acme/cli", "1.0.0")
        assert old is not None and old.release.artifacts[0].provenance is None
    finally:
        await store.close()


# -- the runbook --------------------------------------------------------------------------------


def lost_finding(path: str = "") -> Finding:
    return Finding(
        "provenance-lost",
        Category.PROVENANCE,
        Severity.HIGH,
        path,
        "2.1.89 was published without provenance, 2.1.88 had it",
    )


def test_runbook_npm_first_step_revokes_the_publishing_token() -> None:
    steps = build_runbook(
        RunbookInputs(
            Ecosystem.NPM, "@acme/cli", "2.1.89", [lost_finding()], NOW, registry_url=None
        ),
        revoke_hints={},
    )
    first = steps[0]
    assert first.text.startswith("Treat the publishing token as stolen")
    assert first.command is not None
    assert "npm token list" in first.command and "npm token revoke <token-id>" in first.command
    assert "npm owner ls @acme/cli" in first.command
    assert "two-factor" in first.text
    assert any("npm unpublish @acme/cli@2.1.89" in (s.command or "") for s in steps[1:]), (
        "then the usual containment"
    )


def test_runbook_pypi_first_step_links_the_configured_index() -> None:
    steps = build_runbook(
        RunbookInputs(
            Ecosystem.PYPI,
            "Acme_SDK",
            "1.0.1",
            [lost_finding("acme_sdk-1.0.1.tar.gz")],
            NOW,
            registry_url="http://127.0.0.1:3141/simple/",
        ),
        revoke_hints={},
    )
    first = steps[0]
    assert first.text.startswith("Treat the publishing token as stolen")
    assert first.url == "http://127.0.0.1:3141/manage/project/acme-sdk/settings/publishing/"
    assert "http://127.0.0.1:3141/manage/account/" in first.text
    assert any("Delete release 1.0.1" in s.text for s in steps[1:])


def test_runbook_without_provenance_findings_has_no_stolen_token_step() -> None:
    other = Finding("vcs-git-directory", Category.VCS_METADATA, Severity.HIGH, "p/.git/HEAD", "m")
    steps = build_runbook(RunbookInputs(Ecosystem.NPM, "x", "1.0.1", [other], NOW), revoke_hints={})
    assert not any("stolen" in s.text for s in steps)
