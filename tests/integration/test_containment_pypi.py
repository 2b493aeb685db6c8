"""The containment watcher on PyPI-protocol servers: a real devpi (deleting a release from a
volatile index) and the PyPI stand-in (PEP 592 yank, then the release removed), with a real
SQLite store. A yank is posted once as an update; only the deletion resolves."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pypi_servers import Devpi, Warehouse, build_dists

from watcher.config import Config, parse_config
from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.ecosystems.pypi.client import PypiClient
from watcher.ecosystems.pypi.containment import RELEASE_DELETED
from watcher.ecosystems.pypi.unit import PypiRegistry
from watcher.incidents.lifecycle import event_id_for
from watcher.model import (
    AlertEvent,
    Category,
    Ecosystem,
    EventType,
    Finding,
    Incident,
    IncidentState,
    Severity,
)
from watcher.service.containment import ContainmentWatcher
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.types import Delivery

pytestmark = pytest.mark.asyncio(loop_scope="session")

_names = itertools.count()


def config(index: str, name: str) -> Config:
    return parse_config(
        f"registries: {{pypi: {{url: '{index}'}}}}\n"
        f"packages: [{{ecosystem: pypi, name: {name}, owner: team}}]\n"
        "owners: {team: {console: true}}\n"
    )


async def open_incident(store: Store, name: str, version: str) -> None:
    now = datetime.now(UTC)
    page = Incident(
        dedup_key=Incident.key_for("pypi", name, version),
        ecosystem=Ecosystem.PYPI,
        name=name,
        version=version,
        owner="team",
        opened_at=now,
        published_at=now,
        findings=[
            Finding("dotenv-file", Category.SENSITIVE_FILE, Severity.HIGH, ".env", "env file")
        ],
    )
    event = AlertEvent(EventType.OPENED, page, event_id_for(page.dedup_key, EventType.OPENED))
    await store.open_incident_with_outbox(page, [Delivery("team/console", event)])


async def drain(store: Store, channel: str) -> list[EventType | None]:
    events = []
    while (item := await store.outbox_head(channel)) is not None:
        events.append(item.event_type)
        await store.mark_delivered(item.id)
    return events


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path / "state.db")
    yield opened
    await opened.close()


async def test_devpi_release_deleted_resolves(devpi: Devpi, store: Store, tmp_path: Path) -> None:
    name = f"contain-devpi-{next(_names)}"
    for version in ("1.0", "1.1"):
        dists = build_dists(tmp_path / version, name, version)
        await asyncio.to_thread(devpi.upload, dists)
    await open_incident(store, name, "1.1")
    async with RegistryHttp(HttpSettings(attempts=2)) as http:
        watcher = ContainmentWatcher(
            store,
            config(devpi.simple_url, name),
            {Ecosystem.PYPI: PypiRegistry(PypiClient(http, devpi.simple_url))},
        )
        (still,) = await watcher.check_once()
        assert not still.contained and still.error is None
        await asyncio.to_thread(devpi.delete_release, name, "1.1")
        (gone,) = await watcher.check_once()
    assert gone.resolved and gone.resolution == RELEASE_DELETED
    found = await store.get_incident(Incident.key_for("pypi", name, "1.1"))
    assert found is not None and found.state is IncidentState.RESOLVED
    assert await drain(store, "team/console") == [EventType.OPENED, EventType.RESOLVED]


async def test_yank_is_an_update_once_and_removal_resolves(
    warehouse: Warehouse, store: Store, tmp_path: Path
) -> None:
    name = "contain-yank"
    for version in ("1.0", "1.1"):
        for path in build_dists(tmp_path / version, name, version):
            warehouse.upload(path, name, version)
    await open_incident(store, name, "1.1")
    async with RegistryHttp(HttpSettings(attempts=2)) as http:
        watcher = ContainmentWatcher(
            store,
            config(warehouse.simple_url, name),
            {Ecosystem.PYPI: PypiRegistry(PypiClient(http, warehouse.simple_url))},
        )
        warehouse.yank(name, "1.1", "leaked .env")
        (yanked,) = await watcher.check_once()
        (again,) = await watcher.check_once()
        warehouse.remove_release(name, "1.1")
        (removed,) = await watcher.check_once()
    assert yanked.posted == ("yanked",) and not yanked.contained
    assert again.posted == ()
    assert removed.resolved and removed.resolution == RELEASE_DELETED
    events = await drain(store, "team/console")
    assert events == [EventType.OPENED, EventType.UPDATED, EventType.RESOLVED]
