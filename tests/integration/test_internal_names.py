"""`internal_names` (issue 14): an internal name published on the public registry by someone else
pages the entry's owner once (`internal-name-published`, provenance, high, dedup key
`watcher/<ecosystem>/<name>`); a later version is an update of that incident; a watched name the
pattern also matches is the owner's own release, never a sighting; a name that matches nothing
is ignored; a package public before the watch began is logged, not paged; the name gone from the
public registry resolves the incident. `watcher run` as a real subprocess:

* feed mode on npm: Verdaccio serves the packuments (the publisher's `_npmUser` and
  `maintainers`), the express-pouchdb stand-in serves `_changes`;
* feed mode on PyPI: the journal stand-in (`changelog_since_serial`, PEP 691 pages, the JSON API
  with `ownership`);
* poll mode: the entries naming one package are read by name on Verdaccio and pypiserver; their
  404s never count in `watcher_packages_not_found` (a watched name not yet published does).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from npm_servers import Couch, Verdaccio
from pypi_servers import PypiServer, Warehouse, build_wheel
from service_harness import start_config, unique, until, wait_release

from tests.receivers import Receiver
from watcher.model import Ecosystem
from watcher.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="session")

RULE = "internal-name-published"


def internal_yaml(*entries: tuple[str, str]) -> str:
    lines = "".join(
        f'  - {{ecosystem: {eco}, pattern: "{pattern}", owner: team}}\n' for eco, pattern in entries
    )
    return f"internal_names:\n{lines}"


def pages(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.requests]


async def quiet(receiver: Receiver, count: int, seconds: float = 2.0) -> None:
    """After `seconds` with nothing new, nothing more is coming: exactly `count` pages."""
    await asyncio.sleep(seconds)
    assert len(receiver.requests) == count, [
        (p["type"], p["data"]["dedup_key"]) for p in pages(receiver)
    ]


def assert_opened(page: dict[str, Any], ecosystem: str, name: str, publisher: str | None) -> None:
    assert page["type"] == "incident.opened"
    data = page["data"]
    assert data["dedup_key"] == f"watcher/{ecosystem}/{name}", "one incident per name"
    [finding] = data["findings"]
    assert finding["rule"] == RULE
    assert finding["category"] == "provenance" and finding["severity"] == "high"
    if publisher is not None:
        assert publisher in finding["message"], "the page says who published it"
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", finding["message"]), "and when"
    steps = " ".join(s["text"] for s in data["runbook"])
    assert "Report" in steps and "proxy" in steps and "build" in steps


async def test_npm_changes_feed_pages_an_internal_name_once_and_updates_for_later_versions(
    verdaccio: Verdaccio, couch: Couch, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    scope = f"@{unique('int-scope')}"
    squatted = f"{scope}/billing"
    own = f"{scope}/app"  # watched: the owner's own release, which the pattern also matches
    exact = unique("int-exact")
    unrelated = unique("int-other")
    state = tmp_path / "state.db"

    async def publish(name: str, version: str, user: str) -> None:
        def both() -> None:
            verdaccio.publish_raw(
                name,
                version,
                extra={"_npmUser": {"name": user, "email": f"{user}@example.invalid"}},
            )
            couch.mirror(name, verdaccio.packument(name)["_rev"])

        await asyncio.to_thread(both)

    older = f"{scope}/older"  # public before the watch began
    await publish(older, "1.0.0", "someone")
    service = start_config(
        tmp_path,
        npm_url=verdaccio.url,
        npm_changes_url=couch.changes_url,
        packages=[own],
        webhook_url=receiver.url,
        secret=secret,
        extra=internal_yaml(("npm", f"{scope}/*"), ("npm", exact)),
    )
    service.start()
    try:
        await service.wait_ready()
        await asyncio.sleep(1.5)  # the feed's first start (its cursor, when the watch began)

        await publish(squatted, "1.0.0", "squatter")
        await receiver.wait_for(1, within=20)
        assert_opened(receiver.requests[0].json(), "npm", squatted, "squatter")

        await publish(squatted, "1.0.1", "squatter")
        await receiver.wait_for(2, within=20)
        update = receiver.requests[1].json()
        assert update["type"] == "incident.updated", "a later version is an update"
        assert update["data"]["dedup_key"] == f"watcher/npm/{squatted}"
        assert "1.0.1" in update["data"]["message"] and "squatter" in update["data"]["message"]

        await publish(own, "1.0.0", "owner")  # watched: scanned as the owner's own, no sighting
        await publish(unrelated, "1.0.0", "someone")  # matches nothing
        couch.touch(squatted)  # the same versions announced again: nothing new to say
        couch.touch(older)  # a change row for a package public before the watch: not paged
        await wait_release(state, own, "1.0.0")
        await quiet(receiver, 2)

        await publish(exact, "0.0.1", "squatter")  # an entry without a wildcard, in feed mode
        await receiver.wait_for(3, within=20)
        assert_opened(receiver.requests[2].json(), "npm", exact, "squatter")

        # taken down (here: unpublished): the deletion row resolves the name's incident
        await asyncio.to_thread(verdaccio.unpublish, squatted)
        await asyncio.to_thread(couch.touch, squatted)
        await receiver.wait_for(4, within=20)
        resolved = receiver.requests[3].json()
        assert resolved["type"] == "incident.resolved"
        assert resolved["data"]["dedup_key"] == f"watcher/npm/{squatted}"
        await quiet(receiver, 4)
        receiver.assert_valid()
        assert service.terminate() == 0
    finally:
        service.ensure_stopped()

    async with await open_store(state) as store:
        assert [i.dedup_key for i in await store.open_incidents()] == [f"watcher/npm/{exact}"]
        assert await store.get_release(Ecosystem.NPM, squatted, "1.0.0") is None, "not scanned"


async def test_pypi_journal_pages_an_internal_name_once_and_updates_for_later_versions(
    warehouse: Warehouse, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    family = unique("int-fam")
    squatted = f"{family}-billing"
    own = f"{family}-app"
    unrelated = unique("int-other")
    dists = tmp_path / "dists"
    state = tmp_path / "state.db"
    service = start_config(
        tmp_path,
        pypi_url=warehouse.simple_url,
        pypi_changes_url=warehouse.xmlrpc_url,
        pypi_packages=[own],
        webhook_url=receiver.url,
        secret=secret,
        extra=internal_yaml(("pypi", f"{family}-*")),
    )
    service.start()
    try:
        await service.wait_ready()
        await asyncio.sleep(1.5)

        # display name spelled differently from the pattern: compared after PEP 503
        display = squatted.replace("-", "_").upper()
        warehouse.owners[squatted] = ["squatter"]
        warehouse.upload(build_wheel(dists, squatted, "1.0"), display, "1.0")
        await receiver.wait_for(1, within=30)
        assert_opened(receiver.requests[0].json(), "pypi", squatted, "squatter")

        warehouse.upload(build_wheel(dists, squatted, "1.1"), display, "1.1")
        await receiver.wait_for(2, within=30)
        update = receiver.requests[1].json()
        assert update["type"] == "incident.updated"
        assert update["data"]["dedup_key"] == f"watcher/pypi/{squatted}"
        assert "1.1" in update["data"]["message"]

        warehouse.upload(build_wheel(dists, own, "1.0"), own, "1.0")
        warehouse.upload(build_wheel(dists, unrelated, "1.0"), unrelated, "1.0")
        await wait_release(state, own, "1.0", ecosystem="pypi")
        await quiet(receiver, 2)
        receiver.assert_valid()
        assert service.terminate() == 0
    finally:
        service.ensure_stopped()


async def test_poll_mode_reads_internal_names_by_name_and_404_is_not_coverage_trouble(
    verdaccio: Verdaccio,
    pypiserver: PypiServer,
    hook: tuple[Receiver, str],
    tmp_path: Path,
) -> None:
    receiver, secret = hook
    npm_internal = unique("int-poll")
    npm_typo = unique("int-typo")  # watched, never published: that one is not found
    npm_own = unique("int-own")  # watched and an internal name: the owner's own
    pypi_internal = unique("int-poll-py")
    dists = tmp_path / "dists"
    await asyncio.to_thread(verdaccio.publish, npm_own, "1.0.0")
    service = start_config(
        tmp_path,
        npm_url=verdaccio.url,
        packages=[npm_typo, npm_own],
        pypi_url=pypiserver.simple_url,
        webhook_url=receiver.url,
        secret=secret,
        extra=internal_yaml(
            ("npm", npm_internal), ("npm", npm_own), ("npm", "int-never-*"), ("pypi", pypi_internal)
        ),
    )
    service.start()
    try:
        await service.wait_ready()

        def not_found() -> dict[str, float]:
            _, text = service.get("/metrics")
            found = re.findall(r'watcher_packages_not_found\{ecosystem="(\w+)"\} ([\d.]+)', text)
            return {eco: float(value) for eco, value in found}

        await until(lambda: not_found().get("npm") == 1.0, within=20)
        await asyncio.sleep(2.5)  # several polls of the absent internal names
        assert not_found().get("npm") == 1.0, "only the watched typo, not the internal names"
        assert not_found().get("pypi", 0.0) == 0.0
        assert receiver.requests == []

        await asyncio.to_thread(verdaccio.publish, npm_own, "1.0.1")
        await asyncio.to_thread(
            verdaccio.publish_raw,
            npm_internal,
            "1.0.0",
            extra={"_npmUser": {"name": "squatter", "email": "squatter@example.invalid"}},
        )
        await receiver.wait_for(1, within=20)
        assert_opened(receiver.requests[0].json(), "npm", npm_internal, "squatter")

        await asyncio.to_thread(pypiserver.upload, [build_wheel(dists, pypi_internal, "0.1")])
        await receiver.wait_for(2, within=20)
        assert_opened(receiver.requests[1].json(), "pypi", pypi_internal, None)

        await asyncio.to_thread(pypiserver.upload, [build_wheel(dists, pypi_internal, "0.2")])
        await receiver.wait_for(3, within=20)
        update = receiver.requests[2].json()
        assert update["type"] == "incident.updated"
        assert update["data"]["dedup_key"] == f"watcher/pypi/{pypi_internal}"
        await quiet(receiver, 3)  # repeated polls of the same versions say nothing new
        assert not_found().get("npm") == 1.0 and not_found().get("pypi", 0.0) == 0.0
        receiver.assert_valid()
        assert service.terminate() == 0
    finally:
        service.ensure_stopped()
