"""Releases and the scan queue: idempotent recording, claims in package order, retries, failures, findings and manifests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tests.store_contract.builders import T0, finding, manifest, rel
from tests.store_contract.conftest import OpenState
from tests.storekit import record_releases
from watcher.feeds.base import (
    ReleaseSeen,
)
from watcher.feeds.sink import record_events
from watcher.model import Ecosystem
from watcher.scanning.baseline import baseline_manifest
from watcher.store.api import Store
from watcher.store.types import (
    ReleaseState,
)


async def test_recording_releases_is_idempotent(store: Store) -> None:
    first = await record_releases(
        store,
        [rel("a", "1.0.1"), rel("b", "2.0.0")],
        "npm-changes",
        "10",
        baselines=[rel("a", "1.0.0")],
        now=T0,
    )
    assert [(r.release.version, r.baseline) for r in first] == [
        ("1.0.0", True),
        ("1.0.1", False),
        ("2.0.0", False),
    ]
    again = await record_releases(
        store, [rel("a", "1.0.1"), rel("b", "2.0.0")], "npm-changes", "11", now=T0 + 1
    )
    assert again == []  # nothing new: a repeated feed page creates nothing
    assert await store.get_cursor("npm-changes") == "11"
    counts = await store.counts(now=T0)
    assert counts.releases_by_state[ReleaseState.PENDING] == 3
    stored = await store.get_release(Ecosystem.NPM, "a", "1.0.1")
    assert stored is not None
    assert stored.release == rel("a", "1.0.1")  # round trip, artifacts and publish time included
    assert stored.feed == "npm-changes" and stored.attempts == 0


async def test_new_files_of_a_known_version_are_scanned_again(store: Store) -> None:
    eco = Ecosystem.PYPI
    await record_events(
        store,
        [ReleaseSeen(rel("sdk", "1.0", "sdk-1.0.tar.gz", eco=eco), "pypi", datetime.now(UTC))],
    )
    [claimed] = await store.claim_pending(10, now=T0)
    await store.mark_scanned(claimed.id, [], manifest("a"), now=T0)
    # a wheel uploaded later to the same version
    changed = await record_events(
        store,
        [
            ReleaseSeen(
                rel("sdk", "1.0", "sdk-1.0-py3-none-any.whl", eco=eco), "pypi", datetime.now(UTC)
            )
        ],
    )
    assert [r.state for r in changed] == [ReleaseState.PENDING]
    assert [a.filename for a in changed[0].release.artifacts] == [
        "sdk-1.0.tar.gz",
        "sdk-1.0-py3-none-any.whl",
    ]
    # and while it is being scanned, yet another file: the scan finishing must not close it
    [claimed] = await store.claim_pending(10, now=T0)
    await record_events(
        store, [ReleaseSeen(rel("sdk", "1.0", "sdk-1.0.zip", eco=eco), "pypi", datetime.now(UTC))]
    )
    await store.mark_scanned(claimed.id, [], manifest("a"), now=T0)
    again = await store.get_release(eco, "sdk", "1.0")
    assert again is not None and again.state is ReleaseState.PENDING
    assert len(again.release.artifacts) == 3


async def test_claim_moves_pending_to_scanning_one_per_package_in_order(store: Store) -> None:
    await record_releases(
        store,
        [rel("a", "1.0.1"), rel("a", "1.0.2"), rel("b", "1.0.0"), rel("c", "1.0.0")],
        "f",
        "1",
        baselines=[rel("a", "1.0.0")],
        now=T0,
    )
    claimed = await store.claim_pending(10, now=T0)
    assert [(r.release.name, r.release.version) for r in claimed] == [
        ("a", "1.0.0"),
        ("b", "1.0.0"),
        ("c", "1.0.0"),
    ]
    assert all(r.state is ReleaseState.SCANNING and r.attempts == 1 for r in claimed)
    # a's next release waits until its predecessor is done, so it finds that manifest
    assert await store.claim_pending(10, now=T0) == []
    await store.mark_scanned(claimed[0].id, [], manifest("package/index.js"), now=T0)
    [nxt] = await store.claim_pending(10, now=T0)
    assert (nxt.release.name, nxt.release.version) == ("a", "1.0.1")


async def test_claim_respects_limit_and_retry_time(store: Store) -> None:
    await record_releases(store, [rel(n, "1.0.0") for n in "abcde"], "f", "1", now=T0)
    assert len(await store.claim_pending(2, now=T0)) == 2
    [c] = await store.claim_pending(1, now=T0)
    await store.schedule_retry(c.id, "registry answered 503", T0 + 60, now=T0)
    due = await store.claim_pending(10, now=T0 + 30)
    assert c.id not in [r.id for r in due]  # not yet due
    assert await store.next_due_at() == T0 + 60
    [retried] = await store.claim_pending(10, now=T0 + 60)
    assert (
        retried.id == c.id
        and retried.attempts == 2
        and retried.last_error == "registry answered 503"
    )


async def test_concurrent_claims_never_hand_out_a_release_twice(open_state: OpenState) -> None:
    stores = [await open_state() for _ in range(3)]  # separate handles on one state
    try:
        await record_releases(
            stores[0], [rel(f"p{i}", "1.0.0") for i in range(60)], "f", "1", now=T0
        )
        results = await asyncio.gather(
            *(s.claim_pending(7, now=T0) for s in stores for _ in range(4))
        )
        ids = [r.id for batch in results for r in batch]
        assert len(ids) == len(set(ids)) == 60
    finally:
        for s in stores:
            await s.close()


async def test_requeue_after_crash_keeps_the_attempt_unclaim_refunds_it(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0"), rel("b", "1.0.0")], "f", "1", now=T0)
    _a, b = await store.claim_pending(10, now=T0)
    await store.unclaim(b.id)
    assert await store.requeue_scanning(now=T0) == 1  # only a was still scanning
    again = {r.release.name: r for r in await store.claim_pending(10, now=T0)}
    assert again["a"].attempts == 2  # the crashed attempt counts
    assert again["b"].attempts == 1  # the graceful one does not


async def test_failed_releases_keep_their_reason(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0")], "f", "1", now=T0)
    [a] = await store.claim_pending(1, now=T0)
    await store.mark_failed(a.id, "integrity: sha512 mismatch", now=T0)
    failed = await store.get_release_by_id(a.id)
    assert failed is not None and failed.state is ReleaseState.FAILED
    assert failed.last_error == "integrity: sha512 mismatch"
    assert (await store.counts(now=T0)).releases_by_state[ReleaseState.FAILED] == 1
    assert await store.claim_pending(1, now=T0) == []
    assert await store.retry_failed(a.id)
    assert [r.id for r in await store.claim_pending(1, now=T0)] == [a.id]


async def test_findings_and_manifest_round_trip(store: Store) -> None:
    await record_releases(store, [rel("a", "1.0.0")], "f", "1", now=T0)
    [a] = await store.claim_pending(1, now=T0)
    f = finding()
    m = manifest("package/index.js", "package/cli.js.map")
    created = await store.mark_scanned(a.id, [f], m, now=T0 + 5)
    assert created == (None, False)
    assert await store.get_findings(a.id) == [f]
    assert await store.get_manifest(Ecosystem.NPM, "a", "1.0.0") == m
    done = await store.get_release_by_id(a.id)
    assert done is not None and done.state is ReleaseState.SCANNED and done.scanned_at == T0 + 5
    # scanning again replaces, never duplicates, the findings
    await store.mark_scanned(a.id, [f], m, now=T0 + 6)
    assert len(await store.get_findings(a.id)) == 1


async def test_baseline_manifest_follows_version_order_not_publish_order(store: Store) -> None:
    for version in ("1.2.4", "2.0.0", "1.2.5-beta.1"):
        await record_releases(store, [rel("a", version)], "f", version, now=T0)
        [r] = await store.claim_pending(1, now=T0)
        await store.mark_scanned(r.id, [], manifest(f"package/{version}.js"), now=T0)
    found = await baseline_manifest(store, Ecosystem.NPM, "a", "1.2.5")
    assert found is not None
    version, m = found
    assert version == "1.2.4" and "package/1.2.4.js" in m.files
    assert await baseline_manifest(store, Ecosystem.NPM, "a", "1.0.0") is None
    assert await store.get_manifest(Ecosystem.NPM, "a", "9.9.9") is None
