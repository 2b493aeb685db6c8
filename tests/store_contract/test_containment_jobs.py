"""Automatic containment jobs: added once per action and target, pending until one final outcome,
put off after a failed attempt, counted per package for the hourly cap, kept across a reopen."""

from __future__ import annotations

import pytest

from tests.store_contract.builders import T0, incident, pages
from tests.store_contract.conftest import OpenState
from watcher.model import Ecosystem
from watcher.store.api import Store
from watcher.store.types import JobState, NewJob

NPM = Ecosystem.NPM


async def _incident_id(store: Store) -> int:
    opened, _ = await store.open_incident_with_outbox(incident(), pages("platform/console"), now=T0)
    assert opened.id is not None
    return opened.id


async def test_jobs_are_added_once_per_action_and_target(store: Store) -> None:
    iid = await _incident_id(store)
    tag = NewJob("dist_tag", "latest", {"from": "1.0.1", "to": "1.0.0"})
    first = await store.add_containment_jobs(iid, NPM, "@acme/cli", [tag], now=T0)
    again = await store.add_containment_jobs(
        iid,
        NPM,
        "@acme/cli",
        [NewJob("dist_tag", "latest", {"to": "0.9.0"}), NewJob("deprecate", "1.0.1")],
        now=T0 + 1,
    )
    assert [j.id for j in first] == [again[0].id]
    assert [(j.action, j.target) for j in again] == [("dist_tag", "latest"), ("deprecate", "1.0.1")]
    assert again[0].params == {"from": "1.0.1", "to": "1.0.0"}  # the first plan is kept
    assert all(j.state is JobState.PENDING and j.attempts == 0 for j in again)
    assert again[0].ecosystem is NPM and again[0].name == "@acme/cli"


async def test_an_outcome_is_recorded_once_and_leaves_the_due_list(store: Store) -> None:
    iid = await _incident_id(store)
    [job] = await store.add_containment_jobs(
        iid, NPM, "@acme/cli", [NewJob("deprecate", "1.0.1")], now=T0
    )
    assert [j.id for j in await store.due_containment_jobs(now=T0)] == [job.id]
    assert await store.finish_containment_job(job.id, JobState.DONE, "deprecated", now=T0 + 2)
    assert not await store.finish_containment_job(job.id, JobState.FAILED, "again", now=T0 + 3)
    [stored] = await store.containment_jobs(iid)
    assert stored.state is JobState.DONE and stored.detail == "deprecated"
    assert stored.finished_at == T0 + 2 and stored.attempts == 1
    assert await store.due_containment_jobs(now=T0 + 10) == []
    with pytest.raises(ValueError):
        await store.finish_containment_job(job.id, JobState.PENDING, "no")


async def test_a_failed_attempt_puts_the_job_off(store: Store) -> None:
    iid = await _incident_id(store)
    [job] = await store.add_containment_jobs(
        iid, NPM, "@acme/cli", [NewJob("dist_tag", "latest")], now=T0
    )
    assert await store.retry_containment_job(job.id, T0 + 30, "HTTP 503") == 1
    assert await store.due_containment_jobs(now=T0 + 29) == []
    assert await store.next_containment_job_at() == T0 + 30
    [due] = await store.due_containment_jobs(now=T0 + 30)
    assert due.detail == "HTTP 503" and due.attempts == 1
    await store.finish_containment_job(job.id, JobState.SKIPPED, "cap", now=T0 + 31)
    assert await store.retry_containment_job(job.id, T0 + 60, "late") == 0
    assert await store.next_containment_job_at() is None


async def test_done_actions_are_counted_per_package_since_a_time(store: Store) -> None:
    iid = await _incident_id(store)
    jobs = await store.add_containment_jobs(
        iid, NPM, "@acme/cli", [NewJob("dist_tag", "latest"), NewJob("deprecate", "1.0.1")], now=T0
    )
    await store.finish_containment_job(jobs[0].id, JobState.DONE, "moved", now=T0 + 1)
    await store.finish_containment_job(jobs[1].id, JobState.DRY_RUN, "would", now=T0 + 2)
    assert await store.containment_actions_since(NPM, "@acme/cli", T0) == 1
    assert await store.containment_actions_since(NPM, "@acme/cli", T0 + 1.5) == 0
    assert await store.containment_actions_since(NPM, "other", T0) == 0


async def test_jobs_survive_a_reopen(open_state: OpenState) -> None:
    store = await open_state()
    iid = await _incident_id(store)
    await store.add_containment_jobs(iid, NPM, "@acme/cli", [NewJob("deprecate", "1.0.1")], now=T0)
    await store.close()
    again = await open_state()
    try:
        [job] = await again.due_containment_jobs(now=T0)
        assert job.action == "deprecate" and job.state is JobState.PENDING
    finally:
        await again.close()
