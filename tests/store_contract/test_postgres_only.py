"""What only the shared store does: a stale leader's cursor write is refused, a live replica's
claims survive another replica's start, the password never shows."""

from __future__ import annotations

import pytest

from tests.pgserver import PgServer
from tests.store_contract.builders import T0, rel
from tests.storekit import record_releases
from watcher.store import open_store
from watcher.store.types import Claimant, CursorWrite, FeedBatch, StaleEpoch, StoreError


async def test_a_stale_leader_cannot_move_the_cursor(pg_server: PgServer) -> None:
    url = pg_server.fresh_database()
    old, new = await open_store(url), await open_store(url)
    try:
        first = await old.acquire_lease("feed:npm-changes", "a", 15, now=T0)
        assert first is not None
        await old.set_cursor("npm-changes", "10", epoch=first.epoch, now=T0)
        taken = await new.acquire_lease("feed:npm-changes", "b", 15, now=T0 + 20)
        assert taken is not None and taken.epoch == first.epoch + 1
        await new.set_cursor("npm-changes", "12", epoch=taken.epoch, now=T0 + 20)
        with pytest.raises(StaleEpoch):
            await old.set_cursor("npm-changes", "11", epoch=first.epoch, now=T0 + 21)
        with pytest.raises(StaleEpoch):  # a whole feed step of the old leader is refused
            await old.record_batch(
                FeedBatch(
                    releases=(),
                    cursor=CursorWrite("npm-changes", "9", epoch=first.epoch),
                ),
                now=T0 + 21,
            )
        assert await new.get_cursor("npm-changes") == "12"
    finally:
        await old.close()
        await new.close()


async def test_a_replica_starting_leaves_live_claims_alone(pg_server: PgServer) -> None:
    url = pg_server.fresh_database()
    one, two = await open_store(url), await open_store(url)
    try:
        await record_releases(one, [rel("a", "1.0.0")], "f", "1", now=T0)
        [held] = await one.claim_pending(1, claimant=Claimant("one", 15), now=T0)
        assert await two.requeue_scanning(now=T0 + 5) == 0
        assert await two.requeue_scanning(now=T0 + 16) == 1  # lapsed: taken back
        assert held.claimed_by == "one"
    finally:
        await one.close()
        await two.close()


async def test_the_password_is_masked(pg_server: PgServer) -> None:
    store = await open_store(pg_server.fresh_database())
    try:
        assert "***" not in store.location
    finally:
        await store.close()
    secret = "s3cretPassw0rdValue"
    gone = f"postgresql://watcher:{secret}@127.0.0.1:1/none"
    with pytest.raises(StoreError) as raised:
        await open_store(gone)
    assert secret not in str(raised.value) and "watcher:***@" in str(raised.value)


async def test_leases_expire_by_the_servers_clock(pg_server: PgServer) -> None:
    """Without a `now` of the caller's, a lease is judged by the database server's clock, so
    replicas whose machine clocks disagree agree on when it expired."""
    url = pg_server.fresh_database()
    store = await open_store(url)
    try:
        from watcher.store.postgres.store import PostgresStore  # noqa: PLC0415

        assert isinstance(store, PostgresStore)
        before = await store.server_time()
        lease = await store.acquire_lease("feed:npm-changes", "a", 15)
        after = await store.server_time()
        assert lease is not None and before + 15 <= lease.expires_at <= after + 15
        assert await store.acquire_lease("feed:npm-changes", "b", 15) is None, "still live"
    finally:
        await store.close()
