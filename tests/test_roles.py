"""Roles elected with lease rows on a real PostgreSQL (two runners as two replicas, each with its
own pool): one holder at a time, a follower sees a live holder, a clean stop hands the role over
under the next epoch, and the old leader's cursor write through `FeedEpochs` is then refused.
On the embedded store every role simply runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.pgserver import PgServer, session_server
from watcher.service.roles import FeedEpochs, Held, Role, RoleRunner
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.types import StaleEpoch

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    yield from session_server()


async def _until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.05)


async def test_one_holder_a_live_follower_and_a_handover_under_the_next_epoch(
    pg_server: PgServer,
) -> None:
    url = pg_server.fresh_database()
    store_a, store_b = await open_store(url), await open_store(url)
    try:
        runs: dict[str, int] = {"a": 0, "b": 0}
        changes: dict[str, list[int | None]] = {"a": [], "b": []}

        def runner(name: str, store: Store) -> tuple[RoleRunner, FeedEpochs, Role]:
            roles = RoleRunner(store, f"host/{name}", 3.0)
            epochs = FeedEpochs(store)

            async def loop(stop: asyncio.Event) -> None:
                runs[name] += 1
                await stop.wait()

            def change(held: Held | None) -> None:
                changes[name].append(None if held is None else held.epoch)
                epochs.lead("npm-changes", None if held is None else held.epoch)

            return roles, epochs, roles.role("feed:npm-changes", loop, change)

        roles_a, epochs_a, role_a = runner("a", store_a)
        roles_b, epochs_b, role_b = runner("b", store_b)
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        task_a = asyncio.create_task(roles_a.run(role_a, stop_a))
        await _until(lambda: runs["a"] == 1)
        task_b = asyncio.create_task(roles_b.run(role_b, stop_b))
        await _until(lambda: role_b.holder == "host/a")
        assert runs["b"] == 0, "a follower does not run the loop"
        assert roles_b.live(role_b), "the follower sees a live leader"
        await epochs_a.set_cursor("npm-changes", "10")

        stop_a.set()  # a clean stop gives the lease up: the follower takes it, epoch 2
        await task_a
        await _until(lambda: runs["b"] == 1, within=5)
        assert changes["a"] == [1, None] and changes["b"] == [2]
        await epochs_b.set_cursor("npm-changes", "20")
        with pytest.raises(StaleEpoch):  # the old leader's late write is refused
            await epochs_a.set_cursor("npm-changes", "15")
        assert await store_a.get_cursor("npm-changes") == "20"
        stop_b.set()
        await task_b
    finally:
        await store_a.close()
        await store_b.close()


async def test_on_the_embedded_store_every_role_runs_without_a_lease(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "state.db")
    try:
        roles = RoleRunner(store, "host/x", 15.0, shared=False)
        ran = asyncio.Event()

        async def loop(stop: asyncio.Event) -> None:
            ran.set()
            await stop.wait()

        role = roles.role("feed:npm-poll", loop)
        stop = asyncio.Event()
        task = asyncio.create_task(roles.run(role, stop))
        await asyncio.wait_for(ran.wait(), 5)
        assert roles.live(role) and role.held is not None and role.held.valid()
        assert await store.get_lease("feed:npm-poll") is None
        stop.set()
        await task
    finally:
        await store.close()
