"""`watcher run` following an npm CouchDB-style `_changes` feed, as a real subprocess: Verdaccio
serves packuments and tarballs, the express-pouchdb stand-in serves `_changes` (fed one document
per package as the test publishes, carrying the packument's own `_rev`). The watch list names one
package and a scope pattern: a package of the scope first published after the service started
pages for its first version; releases of unwatched packages never do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from npm_servers import Couch, Verdaccio
from service_harness import (
    leaky_files,
    start_config,
    unique,
    wait_release,
)

from tests.receivers import Receiver
from watcher.model import Ecosystem
from watcher.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def publish(
    verdaccio: Verdaccio,
    couch: Couch,
    name: str,
    version: str,
    files: dict[str, bytes] | None = None,
) -> None:
    """Publish, then let the feed announce it with the packument's own revision."""

    def both() -> None:
        verdaccio.publish(name, version, files)
        couch.mirror(name, verdaccio.packument(name)["_rev"])

    await asyncio.to_thread(both)


async def test_changes_feed_pages_for_a_watched_name_and_a_new_package_of_a_watched_scope(
    verdaccio: Verdaccio, couch: Couch, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("svc-chg")
    scope = f"@{unique('svc-scope')}"
    fresh = f"{scope}/fresh"
    stranger = unique("svc-unwatched")
    state = tmp_path / "state.db"
    await publish(verdaccio, couch, name, "1.0.0")
    service = start_config(
        tmp_path,
        npm_url=verdaccio.url,
        npm_changes_url=couch.changes_url,
        packages=[name, f"{scope}/*"],
        webhook_url=receiver.url,
        secret=secret,
    )
    service.start()
    try:
        await service.wait_ready()
        base = await wait_release(state, name, "1.0.0")
        assert base.baseline

        # A package nobody named, in the watched scope, born after the start: its first
        # version is a release, not history, so its leak pages.
        await publish(verdaccio, couch, fresh, "1.0.0", leaky_files("scoped"))
        await receiver.wait_for(1, within=20)
        first = receiver.requests[0].json()
        assert first["type"] == "incident.opened"
        assert first["data"]["dedup_key"] == f"watcher/npm/{fresh}/1.0.0"
        assert [f["rule"] for f in first["data"]["findings"]] == ["sourcemap-embedded-sources"]

        await publish(verdaccio, couch, name, "1.0.1", leaky_files("named"))
        await receiver.wait_for(2, within=20)
        assert receiver.requests[1].json()["data"]["dedup_key"] == f"watcher/npm/{name}/1.0.1"

        # Neither an unwatched package nor a clean follow-up pages.
        await publish(verdaccio, couch, stranger, "1.0.0", leaky_files("stranger"))
        await publish(verdaccio, couch, fresh, "1.0.1")
        await wait_release(state, fresh, "1.0.1")
        await asyncio.sleep(1.5)  # a page is queued with the scan: give it time to show
        assert len(receiver.requests) == 2
        receiver.assert_valid()

        status, text = await asyncio.to_thread(service.get, "/metrics")
        assert status == 200
        assert 'watcher_feed_polls_total{ecosystem="npm",feed="npm-changes",outcome="ok"}' in text
        assert service.terminate() == 0
    finally:
        service.ensure_stopped()

    async with await open_store(state) as store:
        stored = await store.get_release(Ecosystem.NPM, fresh, "1.0.0")
        assert stored is not None and not stored.baseline and stored.feed == "npm-changes"
        assert await store.get_release(Ecosystem.NPM, stranger, "1.0.0") is None
        assert fresh in await store.known_packages(Ecosystem.NPM)
        assert [i.dedup_key for i in await store.open_incidents()] == [
            f"watcher/npm/{fresh}/1.0.0",
            f"watcher/npm/{name}/1.0.1",
        ]
