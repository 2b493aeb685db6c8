"""Automatic containment's safeguards, in process against a real Verdaccio and a real state file:
a package that opted out, a release older than `within`, a severity below `at` and the hourly cap
each leave the registry as it was and say why; PyPI's jobs say it has no write API."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from servers_common import free_port

from tests.store_contract.builders import finding
from watcher.config import Config, load_config
from watcher.ecosystems.actions import NoWriteApi
from watcher.ecosystems.http import RegistryHttp
from watcher.ecosystems.npm.client import NpmClient
from watcher.model import Ecosystem, Incident, Severity, incident_key
from watcher.service.autocontain import PLANNED_NOTE, AutoContainment, npm_actions
from watcher.store import open_store
from watcher.store.types import JobState

pytestmark = pytest.mark.asyncio(loop_scope="session")


def config_for(
    tmp_path: Path, registry: str, names: dict[str, bool], auto: dict[str, object]
) -> Config:
    packages = "".join(
        f"  - {{ecosystem: npm, name: {json.dumps(n)}, owner: team, auto_contain: {str(on).lower()}}}\n"
        for n, on in names.items()
    )
    path = tmp_path / "watcher.yaml"
    path.write_text(
        f"store: {{path: {json.dumps(str(tmp_path / 'state.db'))}}}\n"
        f"registries: {{npm: {{url: {json.dumps(registry)}}}}}\n"
        f"packages:\n{packages}"
        "owners: {team: {console: true}}\n"
        f"containment: {{auto: {json.dumps(auto)}}}\n"
    )
    return load_config(path)


def leak_incident(
    name: str, *, age: timedelta = timedelta(0), severity: Severity = Severity.CRITICAL
) -> Incident:
    now = datetime.now(UTC)
    return Incident(
        dedup_key=incident_key("npm", name, "1.1.0"),
        ecosystem=Ecosystem.NPM,
        name=name,
        version="1.1.0",
        owner="team",
        opened_at=now,
        published_at=now - age,
        findings=[finding("x", severity=severity)],
    )


async def test_safeguards_leave_the_registry_alone_and_say_why(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    base = f"guard-{free_port()}"
    names = {f"{base}-optout": False, f"{base}-old": True, f"{base}-low": True, f"{base}-cap": True}
    for name in names:
        await asyncio.to_thread(verdaccio.publish, name, "1.0.0")
        await asyncio.to_thread(verdaccio.publish, name, "1.1.0")
    auto = {"at": "critical", "within": "1h", "max_per_hour": 1, "npm": {"token": verdaccio.token}}
    config = config_for(tmp_path, verdaccio.url, names, auto)
    store = await open_store(tmp_path / "state.db")
    async with RegistryHttp() as http:
        client = NpmClient(http, verdaccio.url)
        writer = npm_actions(config, verdaccio.url, {})
        runner = AutoContainment(
            store,
            config,
            {Ecosystem.NPM: client},
            {Ecosystem.NPM: writer, Ecosystem.PYPI: NoWriteApi("no API")},
        )
        pypi = dataclasses.replace(
            leak_incident(f"{base}-py"),
            dedup_key=incident_key("pypi", f"{base}-py", "1.1.0"),
            ecosystem=Ecosystem.PYPI,
        )
        incidents = {
            "pypi": pypi,
            "optout": leak_incident(f"{base}-optout"),
            "old": leak_incident(f"{base}-old", age=timedelta(hours=2)),
            "low": leak_incident(f"{base}-low", severity=Severity.HIGH),
            "cap": leak_incident(f"{base}-cap"),
        }
        ids = {}
        for label, incident in incidents.items():
            stored, _ = await store.open_incident_with_outbox(incident, [])
            assert stored.id is not None
            ids[label] = stored.id
        await runner.step()
        await runner.step()
        await writer.close()
    try:
        notes = {label: await store.incident_notes(iid) for label, iid in ids.items()}
        assert "auto_contain: false" in notes["optout"][PLANNED_NOTE]
        assert "older than containment.auto.within" in notes["old"][PLANNED_NOTE]
        assert "below containment.auto.at (critical)" in notes["low"][PLANNED_NOTE]
        for label in ("optout", "old", "low"):
            assert await store.containment_jobs(ids[label]) == []
            doc = verdaccio.packument(f"{base}-{label}")
            assert doc["dist-tags"]["latest"] == "1.1.0"
            assert not doc["versions"]["1.1.0"].get("deprecated")
        # the cap: one action this hour for the package, the second is skipped with its command
        jobs = await store.containment_jobs(ids["cap"])
        assert [(j.action, j.state) for j in jobs] == [
            ("dist_tag", JobState.DONE),
            ("deprecate", JobState.SKIPPED),
        ]
        assert "max_per_hour (1)" in (jobs[1].detail or "")
        doc = verdaccio.packument(f"{base}-cap")
        assert doc["dist-tags"]["latest"] == "1.0.0" and not doc["versions"]["1.1.0"].get(
            "deprecated"
        )
        # PyPI: nothing done, and the update says there is no API for it, with the runbook's way
        assert await store.containment_jobs(ids["pypi"]) == []
        said = (
            notes["pypi"][PLANNED_NOTE]
            + (await store.incident_notes(ids["pypi"]))["auto-contained"]
        )
        assert "pypi has no API for yank or delete" in said, said
        assert "follow the runbook" in said and "rotate every credential" in said
        cap_notes = await store.incident_notes(ids["cap"])
        assert "auto-containment skipped: deprecate 1.1.0" in cap_notes["auto-contained"]
        assert "run: npm deprecate" in cap_notes["auto-contained"]
    finally:
        await store.close()
