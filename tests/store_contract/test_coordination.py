"""What several processes coordinate through: named leases with epochs, cursor writes that name
an epoch, and the notifications that wake the workers and the outbox."""

from __future__ import annotations

from tests.store_contract.builders import T0, incident, manifest, pages, rel
from tests.store_contract.conftest import OpenState
from tests.storekit import record_releases
from watcher.store.api import Notifications, Store
from watcher.store.types import CursorWrite, FeedBatch, Lease, Topic


async def test_a_lease_has_one_holder_and_a_new_epoch_on_each_takeover(
    open_state: OpenState,
) -> None:
    one, two = await open_state(), await open_state()
    try:
        first = await one.acquire_lease("feed:npm-changes", "a", 15, now=T0)
        assert first == Lease("feed:npm-changes", "a", 1, T0 + 15)
        assert await two.acquire_lease("feed:npm-changes", "b", 15, now=T0 + 14) is None
        renewed = await one.acquire_lease("feed:npm-changes", "a", 15, now=T0 + 10)
        assert renewed == Lease("feed:npm-changes", "a", 1, T0 + 25)
        # a stops renewing: b takes over with the next epoch
        taken = await two.acquire_lease("feed:npm-changes", "b", 15, now=T0 + 25)
        assert taken == Lease("feed:npm-changes", "b", 2, T0 + 40)
        assert await one.acquire_lease("feed:npm-changes", "a", 15, now=T0 + 26) is None
        assert await one.get_lease("feed:npm-changes") == taken
        # a holder hands it over at once; only the holder can
        assert not await one.release_lease("feed:npm-changes", "a")
        assert await two.release_lease("feed:npm-changes", "b")
        back = await one.acquire_lease("feed:npm-changes", "a", 15, now=T0 + 27)
        assert back is not None and back.owner == "a" and back.epoch == 3
        # leases are independent by name
        other = await two.acquire_lease("channel:platform/webhook", "b", 15, now=T0 + 27)
        assert other is not None and other.epoch == 1
        assert await one.get_lease("nothing") is None
        # every lease by name, as `watcher status` lists the roles
        assert await two.leases() == [other, await one.get_lease("feed:npm-changes")]
    finally:
        await one.close()
        await two.close()


async def test_a_cursor_write_may_name_the_leader_epoch(store: Store) -> None:
    await store.set_cursor("npm-changes", "10", epoch=1, now=T0)
    assert await store.get_cursor("npm-changes") == "10"
    await store.record_batch(FeedBatch(cursor=CursorWrite("npm-changes", "11", epoch=1)), now=T0)
    assert await store.get_cursor("npm-changes") == "11"
    [cursor] = await store.cursors()
    assert (cursor.feed, cursor.cursor, cursor.updated_at) == ("npm-changes", "11", T0)


async def test_notifications_follow_committed_work(store: Store) -> None:
    assert isinstance(store.notifications, Notifications)
    heard: list[Topic] = []
    stop_releases = store.notifications.subscribe(
        Topic.RELEASES, lambda: heard.append(Topic.RELEASES)
    )
    store.notifications.subscribe(Topic.OUTBOX, lambda: heard.append(Topic.OUTBOX))

    await record_releases(store, [rel("@acme/cli", "1.0.1")], "f", "1", now=T0)
    assert heard == [Topic.RELEASES]
    await record_releases(store, [rel("@acme/cli", "1.0.1")], "f", "2", now=T0)
    assert heard == [Topic.RELEASES]  # nothing new: nothing to wake for
    [claimed] = await store.claim_pending(1, now=T0)
    heard.clear()
    await store.mark_scanned(
        claimed.id, [], manifest("x"), incident=incident(), deliveries=pages("hook"), now=T0
    )
    assert heard == [Topic.OUTBOX]
    heard.clear()
    await store.enqueue(pages("hook"), now=T0)
    await store.resolve_incident(incident().dedup_key, "unpublished", pages("hook"), now=T0)
    assert heard == [Topic.OUTBOX, Topic.OUTBOX]
    stop_releases()
    heard.clear()
    await record_releases(store, [rel("@acme/cli", "1.0.2")], "f", "3", now=T0)
    assert heard == []


async def test_a_failing_listener_does_not_undo_the_write(store: Store) -> None:
    def broken() -> None:
        raise RuntimeError("listener bug")

    store.notifications.subscribe(Topic.RELEASES, broken)
    [stored] = await record_releases(store, [rel("a", "1.0.0")], "f", "1", now=T0)
    assert await store.get_release_by_id(stored.id) == stored
