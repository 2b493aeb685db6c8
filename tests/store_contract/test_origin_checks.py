"""Deferred origin checks: one per release and kind, claimed when due with a lease (an expired
claim is taken over, a live one is not), finished once with their findings and incident, put off
again, armed again after they were done, kept across a reopen."""

from __future__ import annotations

import dataclasses

import pytest

from tests.store_contract.builders import T0, finding, incident, manifest, pages, rel
from tests.store_contract.conftest import OpenState
from tests.storekit import record_releases
from watcher.store.api import Store
from watcher.store.types import Claimant, ClaimLost, OriginCheckState

A = Claimant("replica-a", 30.0)
B = Claimant("replica-b", 30.0)


async def _release_id(store: Store, version: str = "1.0.1") -> int:
    await record_releases(store, [rel("@acme/cli", version)], "f", version, now=T0)
    stored = await store.get_release(rel("@acme/cli", version).ecosystem, "@acme/cli", version)
    assert stored is not None
    return stored.id


async def test_a_check_is_scheduled_once_and_claimed_when_due(store: Store) -> None:
    rid = await _release_id(store)
    first = await store.schedule_origin_check(rid, "approval", T0 + 120, {"a": [1]}, now=T0)
    again = await store.schedule_origin_check(rid, "approval", T0 + 999, {"a": [2]}, now=T0 + 1)
    assert again.id == first.id and again.due_at == T0 + 120 and again.params == {"a": [2]}
    assert first.state is OriginCheckState.PENDING and first.attempts == 0
    assert await store.next_origin_check_at() == T0 + 120
    assert await store.oldest_due_origin_check(now=T0 + 119) is None  # not due yet
    assert await store.oldest_due_origin_check(now=T0 + 130) == T0 + 120  # 10 s behind
    assert await store.claim_due_origin_checks(A, now=T0 + 119) == []
    [claimed] = await store.claim_due_origin_checks(A, now=T0 + 120)
    assert claimed.id == first.id and claimed.claimed_by == "replica-a" and claimed.attempts == 1
    assert await store.claim_due_origin_checks(B, now=T0 + 121) == []  # a live claim is kept
    assert await store.next_origin_check_at() == T0 + 150  # when that claim expires
    [taken] = await store.claim_due_origin_checks(B, now=T0 + 151)  # the lease ran out
    assert taken.claimed_by == "replica-b" and taken.attempts == 2
    with pytest.raises(ClaimLost):
        await store.finish_origin_check(first.id, "late", owner="replica-a", now=T0 + 152)


async def test_finishing_adds_the_findings_and_opens_the_incident_once(store: Store) -> None:
    rid = await _release_id(store)
    [scanned] = await store.claim_pending(1, now=T0)
    await store.mark_scanned(scanned.id, [finding("scan")], manifest("x"), now=T0)
    check = await store.schedule_origin_check(rid, "approval", T0, now=T0)
    await store.claim_due_origin_checks(A, now=T0 + 1)
    opened, created = await store.finish_origin_check(
        check.id,
        "no approval matches",
        owner="replica-a",
        findings=[
            dataclasses.replace(finding("release-unapproved"), fingerprint="u" * 64),
            finding("already-on-the-release"),  # the scan's fingerprint: not added twice
        ],
        incident=incident(),
        deliveries=pages("platform/console"),
        now=T0 + 2,
    )
    assert created and opened is not None and opened.dedup_key == incident().dedup_key
    assert [f.rule for f in await store.get_findings(rid)] == ["scan", "release-unapproved"]
    [done] = await store.origin_checks(rid)
    assert done.state is OriginCheckState.DONE and done.detail == "no approval matches"
    assert done.finished_at == T0 + 2 and done.claimed_by is None
    assert await store.next_origin_check_at() is None
    assert await store.oldest_due_origin_check(now=T0 + 999) is None  # judged
    assert (await store.counts(now=T0)).outbox_depth == {"platform/console": 1}
    with pytest.raises(ClaimLost):  # done: never judged twice
        await store.finish_origin_check(check.id, "again", owner="replica-a", now=T0 + 3)


async def test_a_check_put_off_is_due_again_and_a_done_one_can_be_armed_again(store: Store) -> None:
    rid = await _release_id(store)
    check = await store.schedule_origin_check(rid, "tag", T0, now=T0)
    await store.claim_due_origin_checks(A, now=T0)
    attempts = await store.reschedule_origin_check(
        check.id, T0 + 60, "git: timeout", owner="replica-a"
    )
    assert attempts == 1
    [waiting] = await store.origin_checks(rid)
    assert (
        waiting.due_at == T0 + 60
        and waiting.detail == "git: timeout"
        and waiting.claimed_by is None
    )
    assert await store.claim_due_origin_checks(B, now=T0 + 59) == []
    await store.claim_due_origin_checks(B, now=T0 + 60)
    await store.finish_origin_check(check.id, "tagged", owner="replica-b", now=T0 + 61)
    armed = await store.schedule_origin_check(rid, "tag", T0 + 500, {"files": 2}, now=T0 + 400)
    assert armed.id == check.id and armed.state is OriginCheckState.PENDING
    assert armed.due_at == T0 + 500 and armed.finished_at is None
    other = await store.schedule_origin_check(rid, "approval", T0 + 10, now=T0)
    assert {c.kind for c in await store.origin_checks(rid)} == {"tag", "approval"}
    assert other.id != check.id


async def test_a_pending_check_survives_a_reopen(open_state: OpenState) -> None:
    first = await open_state()
    try:
        rid = await _release_id(first)
        await first.schedule_origin_check(rid, "approval", T0 + 120, {"k": "v"}, now=T0)
    finally:
        await first.close()
    second = await open_state()
    try:
        [check] = await second.claim_due_origin_checks(A, now=T0 + 200)
        assert check.release_id == rid and check.params == {"k": "v"}
    finally:
        await second.close()
