"""Provenance identity from attestation documents in their documented shapes (npm's attestations
endpoint with SLSA v1 and v0.2 statements, PyPI's PEP 740 provenance object), and its comparison
with expect.provenance or the baseline's."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.integration.attested_registry import slsa_bundle
from watcher.ecosystems.npm import provenance as npm
from watcher.ecosystems.pypi import provenance as pypi
from watcher.intent.attestations import identity_findings, normal_repository, normal_workflow
from watcher.intent.model import ProvenanceExpectation
from watcher.model import Artifact, AttestationIdentity, Ecosystem, Provenance, Release


def test_npm_slsa_v1_and_v02() -> None:
    doc = {
        "attestations": [
            {"predicateType": "https://github.com/npm/attestation/tree/main/specs/publish/v0.1"},
            slsa_bundle(
                "demo",
                "1.0.0",
                b"x",
                "https://github.com/acme/sdk",
                ".github/workflows/release.yml",
            ),
        ]
    }
    found = npm.attestation_identity(doc)
    assert found == AttestationIdentity(
        "https://github.com/acme/sdk", ".github/workflows/release.yml", "refs/tags/v1.0.0"
    )
    v02: dict[str, Any] = {
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "predicate": {
            "invocation": {
                "configSource": {
                    "uri": "git+https://github.com/acme/sdk@refs/heads/main",
                    "entryPoint": ".github/workflows/publish.yml",
                }
            }
        },
    }
    payload = base64.b64encode(json.dumps(v02).encode()).decode()
    old = {
        "attestations": [
            {
                "predicateType": "https://slsa.dev/provenance/v0.2",
                "bundle": {"dsseEnvelope": {"payload": payload}},
            }
        ]
    }
    assert npm.attestation_identity(old) == AttestationIdentity(
        "https://github.com/acme/sdk", ".github/workflows/publish.yml", "refs/heads/main"
    )
    assert npm.attestation_identity({"attestations": []}) is None
    assert (
        npm.attestation_identity(
            {
                "attestations": [
                    {
                        "predicateType": "https://slsa.dev/provenance/v1",
                        "bundle": {"dsseEnvelope": {"payload": "!!"}},
                    }
                ]
            }
        )
        is None
    )


def test_npm_attestation_url_as_the_cli_builds_it() -> None:
    release = Release(Ecosystem.NPM, "@acme/sdk", "1.2.0", artifacts=(Artifact("sdk-1.2.0.tgz"),))
    assert (
        npm.attestation_url("http://r.example.invalid/", release, release.artifacts[0])
        == "http://r.example.invalid/-/npm/v1/attestations/@acme%2fsdk@1.2.0"
    )
    given = Artifact("x.tgz", provenance=Provenance(attested=True, url="http://a.invalid/att"))
    assert npm.attestation_url("http://r.invalid", release, given) == "http://a.invalid/att"


def test_pypi_trusted_publisher() -> None:
    doc = {
        "version": 1,
        "attestation_bundles": [
            {
                "publisher": {
                    "kind": "GitHub",
                    "repository": "acme/sdk",
                    "workflow": "release.yml",
                    "environment": "pypi",
                    "claims": None,
                },
                "attestations": [
                    {"version": 1, "envelope": {"statement": "e30=", "signature": "AA=="}}
                ],
            }
        ],
    }
    assert pypi.attestation_identity(doc) == AttestationIdentity(
        "acme/sdk", "release.yml", None, "GitHub"
    )
    gitlab = {
        "attestation_bundles": [
            {
                "publisher": {
                    "kind": "GitLab",
                    "repository": "acme/sdk",
                    "workflow_filepath": ".gitlab-ci.yml",
                }
            }
        ]
    }
    assert pypi.attestation_identity(gitlab) == AttestationIdentity(
        "acme/sdk", ".gitlab-ci.yml", None, "GitLab"
    )
    release = Release(
        Ecosystem.PYPI, "acme-sdk", "1.0", artifacts=(Artifact("acme_sdk-1.0.tar.gz"),)
    )
    assert (
        pypi.attestation_url("https://i.example.invalid/simple/", release, release.artifacts[0])
        == "https://i.example.invalid/integrity/acme-sdk/1.0/acme_sdk-1.0.tar.gz/provenance"
    )
    assert (
        pypi.attestation_url(
            "http://devpi.invalid/root/pypi/+simple/", release, release.artifacts[0]
        )
        is None
    )


def test_normal_forms() -> None:
    assert normal_repository("git+https://github.com/Acme/SDK.git") == "acme/sdk"
    assert normal_repository("acme/sdk") == "acme/sdk"
    assert normal_workflow(".github/workflows/release.yml") == "release.yml"


OURS = AttestationIdentity(
    "https://github.com/acme/sdk", ".github/workflows/release.yml", "refs/tags/v1"
)
THEIRS = AttestationIdentity("https://github.com/mallory/fork", ".github/workflows/release.yml")


def test_identity_against_the_baseline_and_against_the_expectation() -> None:
    same = identity_findings(
        {"a.tgz": OURS}, expected=None, before=[OURS], version="2", baseline_version="1"
    )
    assert same == []
    [changed] = identity_findings(
        {"a.tgz": THEIRS}, expected=None, before=[OURS], version="2", baseline_version="1"
    )
    assert changed.rule == "provenance-identity-changed" and changed.severity.value == "high"
    assert changed.evidence["verified"] is False and "not verified" in changed.message
    expect = ProvenanceExpectation(repository="acme/sdk", workflow="release.yml")
    assert (
        identity_findings(
            {"a.tgz": OURS}, expected=expect, before=[THEIRS], version="2", baseline_version="1"
        )
        == []
    )
    [wrong] = identity_findings(
        {"a.tgz": THEIRS}, expected=expect, before=[], version="2", baseline_version=None
    )
    assert "expect.provenance" in wrong.message
    assert (
        identity_findings(
            {"a.tgz": THEIRS}, expected=None, before=[], version="2", baseline_version=None
        )
        == []
    )
