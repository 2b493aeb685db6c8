"""The outbox: per-channel order, retries at the head, dead letters, pages without an incident."""

from __future__ import annotations

import dataclasses

from tests.store_contract.builders import T0, incident, pages
from watcher.model import EventType
from watcher.store.api import Store


async def test_outbox_delivers_in_order_per_channel_without_holding_up_others(store: Store) -> None:
    for version in ("1.0.1", "1.0.2", "1.0.3"):
        await store.open_incident_with_outbox(
            incident(version), pages("hook", "console", of=incident(version)), now=T0
        )
    assert await store.outbox_channels() == ["console", "hook"]

    head = await store.next_outbox_item("hook", now=T0)
    assert head is not None and head.channel == "hook" and head.event_type is EventType.OPENED
    assert head.event is not None and head.event.incident.version == "1.0.1"
    assert head.event_id == "watcher/npm/@acme/cli/1.0.1#incident.opened"
    # the webhook is down: its head waits, and nothing behind it overtakes
    await store.mark_retry(head.id, T0 + 30, "503 Service Unavailable")
    assert await store.next_outbox_item("hook", now=T0 + 10) is None
    waiting = await store.outbox_head("hook")
    assert waiting is not None and waiting.id == head.id and waiting.attempts == 1
    assert waiting.last_error == "503 Service Unavailable"
    # the console channel is not held up
    delivered = []
    while (item := await store.next_outbox_item("console", now=T0 + 10)) is not None:
        delivered.append(item.id)
        await store.mark_delivered(item.id)
    assert len(delivered) == 3 and delivered == sorted(delivered)
    # the webhook is back: every page, in order, once
    hook_order = []
    while (item := await store.next_outbox_item("hook", now=T0 + 30)) is not None:
        hook_order.append(item.id)
        await store.mark_delivered(item.id)
    assert hook_order[0] == head.id and hook_order == sorted(hook_order) and len(hook_order) == 3
    assert await store.outbox_channels() == []


async def test_dead_letters_keep_their_reason_and_are_counted(store: Store) -> None:
    opened, _ = await store.open_incident_with_outbox(incident(), pages("hook"), now=T0)
    await store.open_incident_with_outbox(
        incident("1.0.2"), pages("hook", of=incident("1.0.2")), now=T0 + 5
    )
    first = await store.next_outbox_item("hook", now=T0 + 5)
    assert first is not None
    counts = await store.counts(now=T0 + 100)
    assert counts.outbox_oldest_age_s == 100 and counts.dead_letters == 0
    await store.mark_dead(first.id, "410 Gone: endpoint disabled", now=T0 + 100)
    # the next page becomes the head of the channel
    nxt = await store.next_outbox_item("hook", now=T0 + 100)
    assert nxt is not None and nxt.id != first.id
    [dead] = await store.dead_letters()
    assert dead.id == first.id and dead.last_error == "410 Gone: endpoint disabled"
    assert dead.incident_id == opened.id and dead.state == "dead"
    counts = await store.counts(now=T0 + 100)
    assert counts.dead_letters == 1 and counts.outbox_depth == {"hook": 1}
    assert counts.outbox_oldest_age_s == 95


async def test_test_alerts_are_queued_without_an_incident(store: Store) -> None:
    test = dataclasses.replace(incident("0.0.0-test.1"), test=True)
    [item_id] = await store.enqueue(pages("demo/console", of=test), now=T0)
    item = await store.next_outbox_item("demo/console", now=T0)
    assert item is not None and item.id == item_id and item.incident_id is None
    assert item.event is not None and item.event.incident.test


async def test_a_held_opening_page_waits_and_is_amended_and_released_once(store: Store) -> None:
    """Automatic containment holds an opening page (at most a few seconds) to say its outcome."""
    held = [dataclasses.replace(d, hold_until=T0 + 5) for d in pages("hook", "console")]
    opened, _ = await store.open_incident_with_outbox(incident(), held, now=T0)
    assert opened.id is not None
    assert await store.next_outbox_item("hook", now=T0 + 1) is None  # held
    event_id = "watcher/npm/@acme/cli/1.0.1#incident.opened"
    # what is under way, without sending it yet
    assert await store.amend_held_event(opened.id, event_id, "under way", release=False, now=T0)
    assert await store.next_outbox_item("hook", now=T0 + 1) is None
    # the outcome: amended and due now, on every channel
    assert await store.amend_held_event(opened.id, event_id, "done", release=True, now=T0 + 2)
    for channel in ("hook", "console"):
        item = await store.next_outbox_item(channel, now=T0 + 2)
        assert item is not None and item.event is not None and item.event.message == "done"
    # no longer held: a second amendment changes nothing
    assert not await store.amend_held_event(opened.id, event_id, "late", release=True, now=T0 + 3)
    item = await store.next_outbox_item("hook", now=T0 + 3)
    assert item is not None and item.event is not None and item.event.message == "done"


async def test_a_held_page_whose_hold_ended_is_not_amended(store: Store) -> None:
    held = [dataclasses.replace(d, hold_until=T0 + 5) for d in pages("hook")]
    opened, _ = await store.open_incident_with_outbox(incident(), held, now=T0)
    assert opened.id is not None
    event_id = "watcher/npm/@acme/cli/1.0.1#incident.opened"
    # within the margin before the hold ends, a sender may already be reading it
    assert not await store.amend_held_event(opened.id, event_id, "x", release=True, now=T0 + 4.8)
    item = await store.next_outbox_item("hook", now=T0 + 5)
    assert item is not None and item.event is not None and item.event.message is None
    # a page that was never held is not amended either
    other, _ = await store.open_incident_with_outbox(
        incident("1.0.2"), pages("hook", of=incident("1.0.2")), now=T0
    )
    assert other.id is not None
    other_id = "watcher/npm/@acme/cli/1.0.2#incident.opened"
    assert not await store.amend_held_event(other.id, other_id, "x", release=True, now=T0)
