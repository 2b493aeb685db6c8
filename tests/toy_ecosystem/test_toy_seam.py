"""The ecosystem seam: a third registry, registered by this test package alone, runs one release
through the real service wiring (feed → store → scan workers → policy → outbox → webhook page),
its containment probe resolves the incident, and its config section and name are accepted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.receivers import webhook_receiver
from tests.toy_ecosystem.registry import ToyRegistry, free_port
from tests.toy_ecosystem.unit import ToyUnit
from watcher import ecosystems
from watcher.config import parse_config
from watcher.ecosystems.runbook import RunbookInputs
from watcher.errors import ConfigError
from watcher.incidents.runbook import build_runbook
from watcher.model import Category, Finding, IncidentState, Severity, incident_key
from watcher.service.daemon import Service
from watcher.store import open_store
from watcher.store.types import ContainmentJob, JobState, ReleaseState

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = (
    "whsec_" + "dG95LWVjb3N5c3RlbS1zZWFtLXRlc3Qta2V5"
)  # a test signing secret, not a credential


def leaky_files() -> dict[str, bytes]:
    """A build shipping a source map that embeds its original sources (a critical finding)."""
    smap = {
        "version": 3,
        "file": "index.js",
        "sources": ["../src/lib.rs", "../src/internal.rs"],
        "sourcesContent": ["pub fn a() -> u32 { 1 }\n", "pub fn b() -> u32 { 2 }\n"],
        "mappings": "AAAA",
    }
    return {
        "web/index.js": b"module.exports=1;\n//# sourceMappingURL=index.js.map\n",
        "web/index.js.map": json.dumps(smap).encode(),
    }


def config_yaml(state: Path, registry: str, hook: str) -> str:
    return (
        f"store: {{path: {json.dumps(str(state))}}}\n"
        f'server: {{listen: "127.0.0.1:{free_port()}"}}\n'
        f"registries:\n  toycrates: {{url: {json.dumps(registry)}, poll_interval: 0.2s}}\n"
        "packages:\n  - {ecosystem: toycrates, name: toy-widget, owner: team}\n"
        "owners:\n"
        f"  team:\n    webhook: {{url: {json.dumps(hook)}, secret: {json.dumps(SECRET)}}}\n"
        "containment: {check_interval: 0.3s}\n"
        "scan: {workers: 1, concurrency: 1}\n"
        "shutdown: {grace_period: 2s}\n"
    )


@pytest.fixture
async def toy() -> AsyncIterator[ToyRegistry]:
    registry = await ToyRegistry().start()
    with ecosystems.registered(ToyUnit()):
        yield registry
    await registry.stop()


async def until_true(check: object, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_a_registered_ecosystem_goes_from_feed_to_page_and_containment(
    toy: ToyRegistry, tmp_path: Path
) -> None:
    toy.publish("toy-widget", "1.0.0")
    state = tmp_path / "state.db"
    async with webhook_receiver(SECRET) as hook:
        config = parse_config(config_yaml(state, toy.url, hook.url))
        service = Service(config)
        task = asyncio.create_task(service.run(install_signals=False))
        try:

            async def baseline_scanned() -> bool:
                if not state.exists():
                    return False
                store = await open_store(state)
                try:
                    found = await store.get_release("toycrates", "toy-widget", "1.0.0")
                finally:
                    await store.close()
                return found is not None and found.state is ReleaseState.SCANNED

            await until_true(baseline_scanned)
            toy.publish("toy-widget", "1.1.0", leaky_files())
            (page,) = await hook.wait_for(1, within=30.0)
            body = page.json()
            assert body["type"] == "incident.opened"
            assert body["data"]["ecosystem"] == "toycrates"
            assert body["data"]["package"] == "toy-widget" and body["data"]["version"] == "1.1.0"
            assert body["data"]["dedup_key"] == incident_key("toycrates", "toy-widget", "1.1.0")
            steps = [step["text"] for step in body["data"]["runbook"]]
            assert "Yank toy-widget@1.1.0 from the toy index." in steps

            toy.remove("toy-widget", "1.1.0")
            resolved = await hook.wait_for(2, within=30.0)
            assert resolved[1].json()["type"] == "incident.resolved"
        finally:
            service.stop()
            await asyncio.wait_for(task, timeout=30.0)
    hook.assert_valid()
    store = await open_store(state)
    try:
        incident = await store.get_incident(incident_key("toycrates", "toy-widget", "1.1.0"))
    finally:
        await store.close()
    assert incident is not None and incident.state is IncidentState.RESOLVED


async def test_the_config_takes_the_registered_name_and_its_section(toy: ToyRegistry) -> None:
    config = parse_config(config_yaml(Path("s.db"), toy.url, "https://hooks.test/x"))
    assert config.registries.for_ecosystem(ToyUnit.name).url == toy.url
    with pytest.raises(ConfigError) as err:
        parse_config(
            config_yaml(Path("s.db"), toy.url, "https://hooks.test/x").replace(
                "ecosystem: toycrates", "ecosystem: gems"
            )
        )
    assert "expected 'npm', 'pypi' or 'toycrates', got 'gems'" in str(err.value)


async def test_unregistered_the_name_is_an_error_again() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            "packages: [{ecosystem: toycrates, name: a, owner: o}]\nowners: {o: {console: true}}\n"
        )
    assert "packages[0].ecosystem: expected 'npm' or 'pypi', got 'toycrates'" in str(err.value)


async def test_its_runbook_and_its_write_actions_are_its_own(toy: ToyRegistry) -> None:
    config = parse_config(config_yaml(Path("s.db"), toy.url, "https://hooks.test/x"))
    unit = ecosystems.get(ToyUnit.name.value)
    lost = Finding(
        "provenance-lost",
        Category.PROVENANCE,
        Severity.HIGH,
        "(registry)",
        "published without the attestation 1.0.0 had",
    )
    steps = build_runbook(
        RunbookInputs(ToyUnit.name, "toy-widget", "1.1.0", [lost], datetime.now(UTC)),
        revoke_hints={},
    )
    assert steps[0].text.startswith("Revoke the toy publishing token: toy-widget@1.1.0 was not")
    assert steps[-1].command == "toy yank toy-widget@1.1.0"
    assert not any("npm " in (s.command or "") or "pypi" in s.text.lower() for s in steps)

    actions = unit.containment_actions(
        config.registries.for_ecosystem(ToyUnit.name), config.containment.auto
    )
    job = ContainmentJob(
        1, 1, ToyUnit.name, "toy-widget", "deprecate", "1.1.0", {"manual": "toy yank"},
        JobState.PENDING, 0, 0.0, None, 0.0, None,
    )  # fmt: skip
    result = await actions.perform(job)
    assert not result.done and result.detail == "the toy index has no write API"
    assert result.manual == "toy yank"
    assert unit.takedown_command("toy-widget", "1.1.0") == "toy yank toy-widget@1.1.0"
