"""Claims with an owner and a lease: several processes share one queue; a claim whose holder went
away is taken over when its lease expires, and the old holder's late result is refused."""

from __future__ import annotations

import pytest

from tests.store_contract.builders import T0, finding, incident, manifest, pages, rel
from tests.store_contract.conftest import OpenState
from tests.storekit import record_releases
from watcher.model import Ecosystem
from watcher.store.api import Store
from watcher.store.types import Claimant, ClaimLost, ReleaseState

A = Claimant("replica-a", lease_s=30)
B = Claimant("replica-b", lease_s=30)


async def test_a_claim_names_its_owner_and_lease(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0")], "f", "1", now=T0)
    [claimed] = await store.claim_pending(5, claimant=A, now=T0)
    assert claimed.claimed_by == "replica-a" and claimed.lease_expires_at == T0 + 30
    assert claimed.state is ReleaseState.SCANNING and claimed.attempts == 1
    # live: nobody else gets it, nor the package's next release
    await record_releases(store, [rel("a", "1.0.1")], "f", "2", now=T0)
    assert await store.claim_pending(5, claimant=B, now=T0 + 29) == []
    await store.mark_scanned(claimed.id, [], manifest("x"), owner="replica-a", now=T0 + 29)
    done = await store.get_release_by_id(claimed.id)
    assert done is not None and done.state is ReleaseState.SCANNED
    assert done.claimed_by is None and done.lease_expires_at is None
    [nxt] = await store.claim_pending(5, claimant=B, now=T0 + 29)
    assert nxt.release.version == "1.0.1" and nxt.claimed_by == "replica-b"


async def test_an_expired_claim_is_taken_over_and_the_old_result_refused(
    open_state: OpenState,
) -> None:
    one, two = await open_state(), await open_state()
    try:
        await record_releases(one, [rel("@acme/cli", "1.0.1")], "f", "1", now=T0)
        [mine] = await one.claim_pending(1, claimant=A, now=T0)
        # replica-a stalls past its lease: replica-b takes the release over (a new attempt)
        assert await two.claim_pending(1, claimant=B, now=T0 + 29) == []
        [theirs] = await two.claim_pending(1, claimant=B, now=T0 + 30)
        assert theirs.id == mine.id and theirs.claimed_by == "replica-b"
        assert theirs.attempts == 2
        # the stalled holder's result, retry, failure or hand-back change nothing
        with pytest.raises(ClaimLost):
            await one.mark_scanned(
                mine.id,
                [finding()],
                manifest("x"),
                incident=incident(),
                deliveries=pages("hook"),
                owner="replica-a",
                now=T0 + 31,
            )
        with pytest.raises(ClaimLost):
            await one.schedule_retry(mine.id, "boom", T0 + 90, owner="replica-a", now=T0 + 31)
        with pytest.raises(ClaimLost):
            await one.mark_failed(mine.id, "boom", owner="replica-a", now=T0 + 31)
        await one.unclaim(mine.id, owner="replica-a", now=T0 + 31)
        assert await one.get_incident(incident().dedup_key) is None
        assert (await one.counts(now=T0 + 31)).outbox_depth == {}
        still = await two.get_release_by_id(mine.id)
        assert still is not None and still.state is ReleaseState.SCANNING
        assert still.claimed_by == "replica-b" and still.attempts == 2
        # the new holder's result counts
        opened, created = await two.mark_scanned(
            mine.id,
            [finding()],
            manifest("x"),
            incident=incident(),
            deliveries=pages("hook"),
            owner="replica-b",
            now=T0 + 32,
        )
        assert created and opened is not None
        assert (await one.counts(now=T0 + 32)).outbox_depth == {"hook": 1}
    finally:
        await one.close()
        await two.close()


async def test_renewing_keeps_a_claim_and_reports_lost_ones(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0"), rel("b", "1.0.0")], "f", "1", now=T0)
    a, b = await store.claim_pending(5, claimant=A, now=T0)
    assert await store.renew_claims([a.id, b.id], A, now=T0 + 20) == sorted([a.id, b.id])
    # renewed until T0 + 50: still A's at T0 + 40
    assert await store.claim_pending(5, claimant=B, now=T0 + 40) == []
    # a lapses (not renewed) and B takes it; A learns it lost a and still holds b
    assert await store.renew_claims([b.id], A, now=T0 + 45) == [b.id]
    [taken] = await store.claim_pending(5, claimant=B, now=T0 + 50)
    assert taken.id == a.id
    assert await store.renew_claims([a.id, b.id], A, now=T0 + 51) == [b.id]
    assert await store.renew_claims([], A, now=T0 + 51) == []


async def test_a_claim_without_a_lease_waits_for_the_requeue_at_start(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0")], "f", "1", now=T0)
    [held] = await store.claim_pending(1, now=T0)
    assert held.claimed_by is None and held.lease_expires_at is None
    assert await store.claim_pending(1, claimant=B, now=T0 + 10_000) == []
    assert await store.requeue_scanning(now=T0 + 10_000) == 1
    [again] = await store.claim_pending(1, claimant=B, now=T0 + 10_000)
    assert again.id == held.id and again.attempts == 2


async def test_results_without_an_owner_are_accepted(store: Store) -> None:
    """Callers that do not name an owner (one-process tools) write as before."""
    await record_releases(store, [rel("a", "1.0.0")], "f", "1", now=T0)
    [claimed] = await store.claim_pending(1, claimant=A, now=T0)
    await store.schedule_retry(claimed.id, "503", T0 + 5, now=T0)
    retried = await store.get_release(Ecosystem.NPM, "a", "1.0.0")
    assert retried is not None and retried.state is ReleaseState.PENDING
    assert retried.claimed_by is None and retried.last_error == "503"
