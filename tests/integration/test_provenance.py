"""`provenance` against real local registries: Verdaccio keeps a version document's
`dist.attestations` and `_npmUser` verbatim (checked here too), so a release published with them
followed by one without is what a stolen token publishing around CI looks like. `watcher scan`
reports it; the service pages it with the stolen-token step first. The warehouse stand-in serves
PEP 740 `provenance` in its Simple JSON pages for the PyPI side."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from npm_servers import Verdaccio
from pypi_servers import Warehouse, build_wheel
from service_harness import ServiceProcess, start_config, unique, wait_release

from tests.receivers import Receiver

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")

SLSA = "https://slsa.dev/provenance/v1"


def ci_publish(verdaccio: Verdaccio, name: str, version: str) -> None:
    """What npm's trusted publishing from CI leaves in the version document."""
    verdaccio.publish_raw(
        name,
        version,
        extra={
            "_npmUser": {
                "name": "GitHub Actions",
                "email": "npm-oidc-no-reply@example.invalid",
                "trustedPublisher": {"id": "github", "oidcConfigId": "oidc:test-1"},
            }
        },
        dist_extra={
            "attestations": {
                "url": f"{verdaccio.url}/-/npm/v1/attestations/{name}@{version}",
                "provenance": {"predicateType": SLSA},
            }
        },
    )


def token_publish(verdaccio: Verdaccio, name: str, version: str) -> None:
    """A publish with a person's token from outside CI: the publisher is shown, no attestations."""
    verdaccio.publish_raw(
        name, version, extra={"_npmUser": {"name": "mallory", "email": "m@example.invalid"}}
    )


def scan(
    tmp_path: Path, registries: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    """`watcher scan ARGS --format json` with a config naming these registries."""
    config = tmp_path / "watcher.yaml"
    doc = {
        "store": {"path": str(tmp_path / "state.db")},
        "registries": registries,
        "packages": [{"ecosystem": "npm", "name": "placeholder-pkg", "owner": "team"}],
        "owners": {"team": {"console": True}},
    }
    config.write_text(json.dumps(doc))  # JSON is YAML
    command = [sys.executable, "-m", "watcher.cli", "scan", *args, "--format", "json"]
    return subprocess.run(
        [*command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def npm(verdaccio: Verdaccio) -> dict[str, Any]:
    return {"npm": {"url": verdaccio.url}}


def provenance_rules(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["rule"]: f for f in report["findings"] if f["category"] == "provenance"}


def test_verdaccio_keeps_the_publisher_fields(verdaccio: Verdaccio) -> None:
    name = unique("prov-keep")
    ci_publish(verdaccio, name, "1.0.0")
    version = verdaccio.packument(name)["versions"]["1.0.0"]
    assert version["dist"]["attestations"]["provenance"]["predicateType"] == SLSA
    assert version["_npmUser"]["trustedPublisher"]["id"] == "github"


def test_scan_reports_a_release_that_lost_its_provenance(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    name = unique("prov-scan")
    ci_publish(verdaccio, name, "1.0.0")
    token_publish(verdaccio, name, "1.0.1")
    result = scan(tmp_path, npm(verdaccio), f"npm:{name}@1.0.1")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["baseline"]["version"] == "1.0.0"
    found = provenance_rules(report)
    assert set(found) == {"provenance-lost", "publisher-changed"}
    lost = found["provenance-lost"]
    assert (lost["severity"], lost["path"], lost["new"]) == ("high", "", True)
    assert "mallory" in lost["message"]
    assert found["publisher-changed"]["severity"] == "medium"

    # The release before, scanned against nothing older: no comparison, no finding.
    first = scan(tmp_path, npm(verdaccio), f"npm:{name}@1.0.0")
    assert first.returncode == 0, first.stderr
    assert provenance_rules(json.loads(first.stdout)) == {}


def test_scan_of_documents_without_publisher_fields_decides_nothing(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    """What a mirror serves (no `_npmUser`, no attestations) is not a loss."""
    name = unique("prov-plain")
    verdaccio.publish_raw(name, "1.0.0")
    ci_publish(verdaccio, name, "1.0.1")  # a gain is not a finding either
    verdaccio.publish_raw(name, "1.0.2")  # the data is missing, not the provenance
    for version in ("1.0.1", "1.0.2"):
        result = scan(tmp_path, npm(verdaccio), f"npm:{name}@{version}")
        assert result.returncode == 0, result.stderr
        assert provenance_rules(json.loads(result.stdout)) == {}, version


def test_scan_reports_a_pypi_file_that_lost_its_provenance(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    name = unique("prov-pyscan")
    dists = tmp_path / "dists"
    for version, url in (("1.0.0", "/integrity/x/provenance"), ("1.0.1", None)):
        wheel = build_wheel(dists / version, name, version)
        warehouse.upload(wheel, name, version, pep740=True, provenance=url)
    result = scan(tmp_path, {"pypi": {"url": warehouse.simple_url}}, f"pypi:{name}==1.0.1")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["baseline"]["version"] == "1.0.0"
    lost = provenance_rules(report)["provenance-lost"]
    assert lost["path"] == wheel.name and lost["severity"] == "high"


def make_service(
    tmp_path: Path, receiver: Receiver, secret: str, **registry: Any
) -> ServiceProcess:
    # a provenance-lost is re-read for policy.attestation_grace (late attestations) first
    return start_config(
        tmp_path,
        webhook_url=receiver.url,
        secret=secret,
        extra="policy: {attestation_grace: 2s}\n",
        **registry,
    )


@SESSION_LOOP
async def test_service_pages_an_npm_release_that_lost_its_provenance(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("prov-svc")
    await asyncio.to_thread(ci_publish, verdaccio, name, "1.0.0")
    service = make_service(tmp_path, receiver, secret, npm_url=verdaccio.url, packages=[name])
    service.start()
    try:
        await service.wait_ready()
        base = await wait_release(tmp_path / "state.db", name, "1.0.0")
        assert base.baseline
        stored = base.release.artifacts[0].provenance
        assert stored is not None and stored.attested, "the baseline's provenance is kept"

        await asyncio.to_thread(token_publish, verdaccio, name, "1.0.1")
        await receiver.wait_for(1, within=30)
        page = receiver.requests[0].json()["data"]
        assert page["dedup_key"] == f"watcher/npm/{name}/1.0.1"
        rules = {(f["rule"], f["severity"]) for f in page["findings"]}
        assert ("provenance-lost", "high") in rules
        first = page["runbook"][0]
        assert first["text"].startswith("Treat the publishing token as stolen")
        assert "npm token revoke <token-id>" in first["command"]
        assert f"npm owner ls {name}" in first["command"]

        await asyncio.to_thread(token_publish, verdaccio, name, "1.0.2")
        await wait_release(tmp_path / "state.db", name, "1.0.2")
        await asyncio.sleep(1.0)
        assert len(receiver.requests) == 1, "the next token release has nothing left to lose"
        assert service.terminate() == 0
    finally:
        service.ensure_stopped()


@SESSION_LOOP
async def test_service_pages_a_pypi_file_uploaded_without_provenance(
    warehouse: Warehouse, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("prov-py")
    dists = tmp_path / "dists"
    first = build_wheel(dists / "a", name, "1.0.0")
    warehouse.upload(
        first,
        name,
        "1.0.0",
        pep740=True,
        provenance=f"/integrity/{name}/1.0.0/{first.name}/provenance",
    )
    service = make_service(
        tmp_path,
        receiver,
        secret,
        pypi_url=warehouse.simple_url,
        pypi_packages=[name],
        pypi_warehouse=True,  # the stand-in is Warehouse-shaped: management pages exist
    )
    service.start()
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", name, "1.0.0", ecosystem="pypi")
        second = build_wheel(dists / "b", name, "1.0.1")
        warehouse.upload(second, name, "1.0.1", pep740=True, provenance=None)
        await receiver.wait_for(1, within=30)
        page = receiver.requests[0].json()["data"]
        assert page["dedup_key"] == f"watcher/pypi/{name}/1.0.1"
        assert ("provenance-lost", "high", second.name) in {
            (f["rule"], f["severity"], f["path"]) for f in page["findings"]
        }
        first_step = page["runbook"][0]
        assert first_step["text"].startswith("Treat the publishing token as stolen")
        web = warehouse.simple_url.rstrip("/").removesuffix("/simple")
        assert first_step["url"] == f"{web}/manage/project/{name}/settings/publishing/"

        # Provenance back (a gain: quiet), then a file whose page entry says nothing about
        # provenance (an index without PEP 740): unknown, not a loss, so quiet too.
        third = build_wheel(dists / "c", name, "1.0.2")
        warehouse.upload(third, name, "1.0.2", pep740=True, provenance="/integrity/x/provenance")
        await wait_release(tmp_path / "state.db", name, "1.0.2", ecosystem="pypi")
        fourth = build_wheel(dists / "d", name, "1.0.3")
        warehouse.upload(fourth, name, "1.0.3")
        await wait_release(tmp_path / "state.db", name, "1.0.3", ecosystem="pypi")
        await asyncio.sleep(1.0)
        assert len(receiver.requests) == 1
        assert service.terminate() == 0
    finally:
        service.ensure_stopped()
