"""Feed memory: cursors, package states, removals, and a feed step as one batch."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from tests.store_contract.builders import T0, rel
from tests.store_contract.conftest import OpenState
from tests.storekit import record_releases
from watcher.feeds.base import (
    BaselineSeen,
    FeedStateStore,
    PackageState,
    PackageUnpublished,
    VersionRemoved,
)
from watcher.feeds.sink import record_events
from watcher.model import Ecosystem
from watcher.store.api import Store
from watcher.store.types import (
    CursorWrite,
    ReleaseState,
)


async def test_reopen_keeps_data(open_state: OpenState) -> None:
    store = await open_state()
    version = await store.schema_version()
    await record_releases(store, [rel("a", "1.0.0")], "npm-changes", "7", now=T0)
    await store.close()
    store = await open_state()
    try:
        assert await store.schema_version() == version
        assert await store.get_cursor("npm-changes") == "7"
        stored = await store.get_release(Ecosystem.NPM, "a", "1.0.0")
        assert stored is not None and stored.state is ReleaseState.PENDING
    finally:
        await store.close()


async def test_store_implements_the_feed_state_protocol(store: Store) -> None:
    assert isinstance(store, FeedStateStore)
    assert await store.get_cursor("npm-changes") is None
    await store.set_cursor("npm-changes", "100")
    await store.set_cursor("npm-changes", "205")
    assert await store.get_cursor("npm-changes") == "205"

    assert await store.get_package_state(Ecosystem.NPM, "left-pad") is None
    state = PackageState(
        versions=frozenset({"1.0.0", "1.1.0"}),
        files=frozenset({"left-pad-1.1.0.tgz"}),
        etag='"abc"',
        generation=3,
    )
    await store.set_package_state(Ecosystem.NPM, "left-pad", state)
    await store.set_package_state(Ecosystem.PYPI, "six", PackageState())
    assert await store.get_package_state(Ecosystem.NPM, "left-pad") == state
    assert await store.get_package_state(Ecosystem.PYPI, "six") == PackageState()
    assert await store.known_packages(Ecosystem.NPM) == ["left-pad"]


async def test_every_package_state_field_round_trips(store: Store) -> None:
    """Fails when PackageState gains a field the store does not keep."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(PackageState):
        default = f.default
        if isinstance(default, frozenset):
            values[f.name] = frozenset({f"{f.name}-1", f"{f.name}-2"})
        elif f.name == "generation":
            values[f.name] = 42
        else:
            values[f.name] = f"{f.name}-value"
    state = PackageState(**values)  # type: ignore[arg-type]
    await store.set_package_state(Ecosystem.PYPI, "sdk", state)
    assert await store.get_package_state(Ecosystem.PYPI, "sdk") == state


async def test_events_with_package_state_and_cursor_in_one_call(store: Store) -> None:
    now = datetime.now(UTC)
    await record_events(
        store,
        [
            BaselineSeen(rel("a", "1.0.0"), "npm-poll", now),
            VersionRemoved(Ecosystem.NPM, "a", "0.9.0", "npm-poll", now, reason="unpublished"),
            PackageUnpublished(Ecosystem.NPM, "gone", ("1.0.0", "1.1.0"), "npm-poll", now),
        ],
        cursor=CursorWrite("npm-poll", "x"),
        package_states=[
            (Ecosystem.NPM, "a", PackageState(versions=frozenset({"1.0.0"}), etag="e1"))
        ],
    )
    assert await store.get_cursor("npm-poll") == "x"
    state = await store.get_package_state(Ecosystem.NPM, "a")
    assert state is not None and state.etag == "e1"
    [removal] = await store.removals(Ecosystem.NPM, "a", "0.9.0")
    assert removal.reason == "unpublished" and removal.filename is None
    assert [r.reason for r in await store.removals(Ecosystem.NPM, "gone", "1.1.0")] == [
        "unpublished"
    ]
