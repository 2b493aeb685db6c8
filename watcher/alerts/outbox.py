"""Durable page delivery: the outbox table in the store is the queue, this loop empties it.

One task per channel, so a channel that is down holds up only its own pages. Within a channel,
pages leave strictly in the order they were queued: the head waits for its retry time and nothing
overtakes it. A page is removed only once the channel accepted it; a crash between the send and the
removal sends it again with the same event id (the receivers' idempotency key). Retries back off
with jitter, honour the endpoint's `Retry-After` and the channel's `min_interval`; a page that
exhausts the retry policy becomes a dead letter that keeps its reason. A channel whose endpoint is
gone (`disable`) stops, logged, counted and recorded in the store; its pages stay queued and it
tries its oldest page again after `disabled_recheck`, or as soon as an operator enables it
(`watcher outbox requeue --channel NAME` deletes the record from another process). Everything an
operator changes in the store (dead letters requeued, a channel enabled) is noticed within one
`idle_poll`: no wait here is longer than that.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from watcher import metrics
from watcher.alerts.base import Channel, DeliveryResult, Outcome
from watcher.alerts.payload import first_action
from watcher.model import (
    EventType,
    log_keys,
)
from watcher.store.api import OutboxStore
from watcher.store.types import OutboxItem
from watcher.waits import sleep_or_stop

log = structlog.get_logger(__name__)


class RetryPolicyLike(Protocol):
    """What the loop needs of `config.RetryPolicy`."""

    def delay(self, attempt: int, rand: float = 0.5) -> float: ...

    def exhausted(self, attempts: int, age_s: float) -> bool: ...


# ---------------------------------------------------------------------------------- the loop


@dataclass(slots=True)
class _ChannelState:
    channel: Channel
    wake: asyncio.Event
    last_send: float = 0.0  # monotonic time of the last send, for `min_interval`
    disabled: bool = False


class Outbox:
    """Delivers queued pages. `run(stop)` owns one task per channel until `stop` is set; an
    in-flight send is allowed to finish (its result is recorded) before the task ends."""

    def __init__(
        self,
        store: OutboxStore,
        channels: Mapping[str, Channel],
        retry: RetryPolicyLike,
        *,
        idle_poll: float = 1.0,
        disabled_recheck: float = 3600.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.retry = retry
        self.idle_poll = idle_poll
        self.disabled_recheck = disabled_recheck
        self._rand = rand
        self._channels = {
            name: _ChannelState(channel, asyncio.Event()) for name, channel in channels.items()
        }

    @property
    def channel_names(self) -> list[str]:
        return sorted(self._channels)

    def disabled(self) -> list[str]:
        return sorted(name for name, state in self._channels.items() if state.disabled)

    def wake(self) -> None:
        """New pages were queued: look at once instead of at the next idle poll."""
        for state in self._channels.values():
            state.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.prepare()
        async with asyncio.TaskGroup() as group:
            for name in self._channels:
                group.create_task(self.run_channel(name, stop), name=f"outbox:{name}")

    async def prepare(self) -> None:
        """At service start: channels disabled by an earlier run are tried again."""
        cleared = await self.store.clear_disabled_channels()
        if cleared:
            log.info("channels_reenabled", count=cleared, reason="service start")
        await self._warn_unknown_channels()

    async def run_channel(
        self, name: str, stop: asyncio.Event, *, may_send: Callable[[], bool] = lambda: True
    ) -> None:
        """Drain one channel until `stop`. `may_send`: asked right before each send (a replica
        sends only while it surely holds the channel's lease)."""
        await self._channel_loop(self._channels[name], stop, may_send)

    async def _warn_unknown_channels(self) -> None:
        for name in await self.store.outbox_channels():
            if name not in self._channels:
                log.warning(
                    "outbox_channel_unconfigured",
                    channel=name,
                    hint="pages stay queued until a channel with this name is configured",
                )

    async def _channel_loop(
        self, state: _ChannelState, stop: asyncio.Event, may_send: Callable[[], bool]
    ) -> None:
        name = state.channel.name
        while not stop.is_set():
            if not may_send():
                await self._idle(state, stop, self.idle_poll)
                continue
            if state.disabled and not await self._may_try_again(state):
                await self._idle(state, stop, self.idle_poll)
                continue
            head = await self.store.outbox_head(name)
            if head is None:
                if state.disabled:  # nothing left to try it with: the next page will tell
                    await self._enable(state, "queue empty at recheck")
                await self._idle(state, stop, self.idle_poll)
                continue
            # re-read at least every idle_poll: a requeued dead letter may now be the head
            wait = head.next_attempt_at - time.time()
            if wait > 0:
                await self._idle(state, stop, min(wait, self.idle_poll))
                continue
            pause = state.last_send + state.channel.min_interval - time.monotonic()
            if pause > 0 and await sleep_or_stop(stop, pause):
                return
            if not may_send():  # the lease ran out meanwhile: the next holder sends it
                continue
            await self._deliver(state, head)

    async def _may_try_again(self, state: _ChannelState) -> bool:
        """A disabled channel tries again once its recheck time has come, or at once when an
        operator deleted its record."""
        record = await self.store.disabled_channel(state.channel.name)
        if record is None:
            await self._enable(state, "enabled by an operator")
            return True
        return record.recheck_at <= time.time()

    async def _disable(self, state: _ChannelState, reason: str, status: int | None) -> None:
        recheck_at = time.time() + self.disabled_recheck
        await self.store.disable_channel(state.channel.name, reason, recheck_at)
        state.disabled = True
        metrics.CHANNEL_DISABLED.labels(state.channel.name).set(1)
        log.error(
            "channel_disabled",
            channel=state.channel.name,
            reason=reason,
            status=status,
            recheck_in_s=round(self.disabled_recheck, 1),
        )

    async def _enable(self, state: _ChannelState, why: str) -> None:
        await self.store.enable_channel(state.channel.name)
        state.disabled = False
        metrics.CHANNEL_DISABLED.labels(state.channel.name).set(0)
        log.info("channel_enabled", channel=state.channel.name, reason=why)

    async def _idle(self, state: _ChannelState, stop: asyncio.Event, seconds: float) -> None:
        state.wake.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(state.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _deliver(self, state: _ChannelState, item: OutboxItem) -> None:
        """Send one page and record what became of it (and of the channel)."""
        channel = state.channel
        bound = log.bind(
            channel=channel.name,
            outbox_id=item.id,
            attempt=item.attempts + 1,
            dedup_key=item.dedup_key,
            event=item.event_type.value if item.event_type is not None else None,
        )
        event = item.event
        if event is None:  # the stored event cannot be read back: never sendable
            await self.store.mark_dead(item.id, f"unreadable payload: {item.unreadable}")
            metrics.DELIVERIES.labels(channel.name, "dead").inc()
            bound.error("page_dead", reason="unreadable payload")
            return
        started = time.monotonic()
        state.last_send = started
        try:
            result = await channel.send(event)
        except Exception as exc:  # a channel must not raise; if it does, treat as transient
            result = DeliveryResult.retry(f"channel raised {type(exc).__name__}: {exc}")
        duration = time.monotonic() - started
        metrics.DELIVERIES.labels(channel.name, result.outcome.value).inc()
        if state.disabled and result.outcome is not Outcome.DISABLE:
            await self._enable(state, f"endpoint answered: {result.outcome.value}")
        if result.outcome is Outcome.DELIVERED:
            await self.store.mark_delivered(item.id)
            published = event.incident.published_at
            if event.type is EventType.OPENED and published is not None and not event.incident.test:
                latency = max(0.0, datetime.now(UTC).timestamp() - published.timestamp())
                metrics.PUBLISH_TO_PAGE.labels(
                    event.incident.ecosystem.value, channel.name
                ).observe(latency)
            incident = event.incident
            bound.info(  # the one log line per page and channel
                "page_delivered",
                stage="deliver",
                event_type=event.type.value,
                event_id=event.event_id,
                **log_keys(incident),
                owner=incident.owner,
                severity=incident.worst().value,
                findings=len(incident.findings),
                first_action=first_action(incident),
                test=incident.test,
                status=result.status,
                duration_s=round(duration, 3),
            )
            return
        reason = result.reason or result.outcome.value
        if result.outcome is Outcome.DISABLE:
            await self.store.mark_retry(item.id, time.time(), reason)
            await self._disable(state, reason, result.status)
            return
        attempts = item.attempts + 1
        age = max(0.0, time.time() - item.created_at)
        if result.outcome is Outcome.FAILED or self.retry.exhausted(attempts, age):
            await self.store.mark_dead(item.id, reason)
            metrics.DELIVERIES.labels(channel.name, "dead").inc()
            bound.error("page_dead", reason=reason, status=result.status, age_s=round(age, 1))
            return
        delay = self.retry.delay(attempts, self._rand())
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        await self.store.mark_retry(item.id, time.time() + delay, reason)
        bound.warning("page_retry", reason=reason, status=result.status, retry_in_s=round(delay, 2))
