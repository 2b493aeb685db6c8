"""The outbox loop and an operator working on the same state file from another connection (as
`watcher outbox requeue` does from another process): a channel its endpoint disabled is tried
again after `disabled_recheck` or at once when enabled, and a requeued dead letter is noticed
within one idle poll even while the channel's head waits for a long retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.receivers import Receiver, Scripted, webhook_receiver
from tests.test_outbox import FAST, SECRET, Running, queue, until, versions
from watcher import metrics
from watcher.alerts.outbox import Outbox
from watcher.alerts.webhook import WebhookChannel
from watcher.store import open_store
from watcher.store.api import Store

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHANNEL = "team/webhook"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path / "state.db")
    yield opened
    await opened.close()


@pytest.fixture
async def operator(tmp_path: Path, store: Store) -> AsyncIterator[Store]:
    """A second connection to the same file: what the CLI opens while the service runs."""
    opened = await open_store(tmp_path / "state.db")
    yield opened
    await opened.close()


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with webhook_receiver(SECRET) as receiver:
        yield receiver


def disabled_gauge() -> float:
    return float(metrics.CHANNEL_DISABLED.labels(CHANNEL)._value.get())


async def test_disabled_channel_is_tried_again_after_the_cool_down(
    store: Store, operator: Store, hook: Receiver
) -> None:
    hook.script(Scripted(410), Scripted(410))  # gone, still gone at the first recheck, then back
    channel = WebhookChannel(CHANNEL, hook.url, SECRET)
    # a recheck window wide enough to read the second record before the third try enables it
    outbox = Outbox(store, {CHANNEL: channel}, FAST, idle_poll=0.05, disabled_recheck=1.5)
    await queue(store, "9.0.1", [CHANNEL])
    await queue(store, "9.0.2", [CHANNEL])
    running = Running(outbox)
    try:
        await until(lambda: _recorded(operator))
        first = await operator.disabled_channel(CHANNEL)
        assert first is not None and "410" in first.reason
        assert outbox.disabled() == [CHANNEL] and disabled_gauge() == 1
        await hook.wait_for(2)  # the first recheck: refused again
        # the refusal is recorded just after the request arrives: wait for that record
        await until(lambda: _recheck_moved(operator, first.recheck_at))
        second = await operator.disabled_channel(CHANNEL)
        assert second is not None, "refused again: still disabled"
        assert second.disabled_at == first.disabled_at, "the outage keeps its start"
        assert second.recheck_at > first.recheck_at
        await until(lambda: _delivered(hook, 2))
    finally:
        await running.close()
        await channel.close()
    assert versions(hook) == ["9.0.1", "9.0.2"], "both pages, in order, once each"
    assert await operator.disabled_channel(CHANNEL) is None
    assert outbox.disabled() == [] and disabled_gauge() == 0
    assert len(hook.requests) == 4


async def test_operator_enables_a_disabled_channel_without_waiting(
    store: Store, operator: Store, hook: Receiver
) -> None:
    hook.script(Scripted(410))
    channel = WebhookChannel(CHANNEL, hook.url, SECRET)
    outbox = Outbox(store, {CHANNEL: channel}, FAST, idle_poll=0.1, disabled_recheck=3600)
    await queue(store, "9.1.0", [CHANNEL])
    running = Running(outbox)
    try:
        await until(lambda: _recorded(operator))
        done = await operator.requeue_dead(channel=CHANNEL)
        assert done.enabled == [CHANNEL] and done.items == []
        await until(lambda: _delivered(hook, 1), within=5)
    finally:
        await running.close()
        await channel.close()
    assert versions(hook) == ["9.1.0"] and outbox.disabled() == []


async def test_requeued_dead_letter_is_noticed_within_one_idle_poll(
    store: Store, operator: Store, hook: Receiver
) -> None:
    """The head of the channel waits a minute for its retry; a dead letter queued before it is
    requeued and must leave within about one idle poll (1s), not when the head is due."""
    channel = WebhookChannel(CHANNEL, hook.url, SECRET)
    await queue(store, "9.2.1", [CHANNEL])
    await queue(store, "9.2.2", [CHANNEL])
    dead = await store.outbox_head(CHANNEL)
    assert dead is not None
    await store.mark_dead(dead.id, "HTTP 400: rejected")
    waiting = await store.outbox_head(CHANNEL)
    assert waiting is not None
    await store.mark_retry(waiting.id, time.time() + 60, "HTTP 503")
    running = Running(Outbox(store, {CHANNEL: channel}, FAST, idle_poll=1.0))
    try:
        await _settle()
        assert hook.requests == [], "nothing is due yet"
        requeued = await operator.requeue_dead([dead.id])
        assert [i.id for i in requeued.items] == [dead.id]
        await until(lambda: _delivered(hook, 1), within=2.5)
    finally:
        await running.close()
        await channel.close()
    assert versions(hook) == ["9.2.1"], "the requeued page left; the waiting head did not jump"


async def test_a_restart_tries_every_channel_at_once(
    store: Store, operator: Store, hook: Receiver
) -> None:
    """A disabled record left by the previous run is cleared at start (its configuration may
    have been fixed): the queued page goes out without waiting for the recheck."""
    await queue(store, "9.3.0", [CHANNEL])
    await operator.disable_channel(CHANNEL, "HTTP 410: endpoint gone", time.time() + 3600)
    channel = WebhookChannel(CHANNEL, hook.url, SECRET)
    running = Running(Outbox(store, {CHANNEL: channel}, FAST, idle_poll=0.05))
    try:
        await until(lambda: _delivered(hook, 1))
    finally:
        await running.close()
        await channel.close()
    assert await operator.disabled_channels() == []


async def _recorded(store: Store) -> bool:
    return await store.disabled_channel(CHANNEL) is not None


async def _recheck_moved(store: Store, before: float) -> bool:
    record = await store.disabled_channel(CHANNEL)
    return record is None or record.recheck_at > before


async def _delivered(hook: Receiver, count: int) -> bool:
    return len(versions(hook)) >= count


async def _settle() -> None:
    await asyncio.sleep(0.3)
