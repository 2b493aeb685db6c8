"""Operator views of the service's two queues and the actions an SRE takes on them, behind
`watcher outbox` and `watcher releases`: what waits per channel, dead letters, disabled channels,
releases by scan state; dead letters requeued, failed releases retried.

Every action is one short store transaction on the state file, safe while the service runs (WAL):
the running outbox and scan workers re-read the store at least once per idle poll (1s), so what is
requeued here is picked up within that, without a restart or a signal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from watcher.cli.context import EXIT_CLEAN, EXIT_FINDINGS, has_state, load_config, with_store
from watcher.cli.render import (
    release_ref,
    render_outbox,
    render_releases,
    render_requeue,
    render_retry,
)
from watcher.model import EventType, IncidentState
from watcher.store.api import Store
from watcher.store.types import (
    ChannelQueue,
    DisabledChannel,
    OutboxItem,
    ReleaseState,
    StoredRelease,
)

if TYPE_CHECKING:
    from watcher.config import Config

# ------------------------------------------------------------------------------------ outbox


@dataclass(frozen=True, slots=True)
class OutboxView:
    queues: list[ChannelQueue]
    disabled: list[DisabledChannel]
    dead: list[OutboxItem]
    configured: list[str]  # channel names the configuration defines

    def channels(self) -> list[str]:
        """Every channel worth a line: configured ones, and any with pages or a record."""
        named = {*self.configured, *(q.channel for q in self.queues)}
        named |= {d.channel for d in self.disabled}
        return sorted(named)


async def read_outbox(store: Store, configured: Iterable[str]) -> OutboxView:
    return OutboxView(
        queues=await store.outbox_queues(),
        disabled=await store.disabled_channels(),
        dead=await store.dead_letters(limit=None),
        configured=sorted(configured),
    )


@dataclass(frozen=True, slots=True)
class RequeueResult:
    items: list[OutboxItem]
    enabled: list[str]  # disabled channels enabled again
    unmatched: list[int] = field(default_factory=list)  # ids given that are not dead letters
    warnings: list[str] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return bool(self.items or self.enabled)


async def requeue(
    store: Store,
    ids: Sequence[int] = (),
    *,
    channel: str | None = None,
    everything: bool = False,
) -> RequeueResult:
    done = await store.requeue_dead(ids, channel=channel, everything=everything)
    back = {item.id for item in done.items}
    warnings = []
    for item in done.items:
        # an `opened` page after its incident was resolved re-opens it on the channel's side
        if item.event_type is EventType.OPENED and item.dedup_key:
            incident = await store.get_incident(item.dedup_key)
            if incident is not None and incident.state is IncidentState.RESOLVED:
                warnings.append(
                    f"#{item.id}: incident {item.dedup_key} is already resolved; this page "
                    f"opens it again on {item.channel} (a `resolved` page follows only if one "
                    "is queued after it)"
                )
    return RequeueResult(
        items=done.items,
        enabled=done.enabled,
        unmatched=[i for i in dict.fromkeys(ids) if i not in back],
        warnings=warnings,
    )


# ---------------------------------------------------------------------------------- releases


UNFINISHED = (ReleaseState.FAILED, ReleaseState.PENDING, ReleaseState.SCANNING)


@dataclass(frozen=True, slots=True)
class RetryResult:
    retried: list[StoredRelease]
    refused: list[str] = field(default_factory=list)  # why a given id was not retried


async def retry_releases(
    store: Store, ids: Sequence[int] = (), *, all_failed: bool = False
) -> RetryResult:
    """Failed releases back to pending (attempts reset, due now): the running scan workers claim
    them within their idle poll."""
    if all_failed:
        return RetryResult(await store.retry_all_failed())
    retried, refused = [], []
    for release_id in dict.fromkeys(ids):
        if await store.retry_failed(release_id):
            found = await store.get_release_by_id(release_id)
            if found is not None:
                retried.append(found)
            continue
        found = await store.get_release_by_id(release_id)
        refused.append(
            f"#{release_id}: no such release"
            if found is None
            else f"#{release_id} {release_ref(found)} is {found.state.value}, not failed"
        )
    return RetryResult(retried, refused)


# ---------------------------------------------------------------------------------- commands


def _queue_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config | None:
    """The configuration of `outbox`/`releases`, or None (message printed) when there is no state
    file yet. Usage errors exit 2 through argparse."""
    if getattr(args, "config", None) is None:
        parser.error(f"{args.command}: --config FILE is required")
    config = load_config(args.config)
    return config if has_state(config) else None


def outbox_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.action == "requeue":
        chosen = [bool(args.ids), args.all, args.channel is not None]
        if sum(chosen) != 1:
            parser.error("outbox requeue: give dead letter IDs, --all or --channel NAME (one)")
    config = _queue_config(parser, args)
    if config is None:
        return EXIT_FINDINGS
    from watcher.config import channel_id  # noqa: PLC0415

    if args.action != "requeue":
        configured = [channel_id(owner, kind) for owner, kind in config.channels()]
        view = asyncio.run(with_store(config, lambda store: read_outbox(store, configured)))
        sys.stdout.write(render_outbox(view, args.format, now=time.time()) + "\n")
        return EXIT_CLEAN
    result = asyncio.run(
        with_store(
            config,
            lambda store: requeue(store, args.ids, channel=args.channel, everything=args.all),
        )
    )
    sys.stdout.write(render_requeue(result) + "\n")
    for item_id in result.unmatched:
        print(f"watcher: #{item_id} is not a dead letter", file=sys.stderr)
    for warning in result.warnings:
        print(f"watcher: warning: {warning}", file=sys.stderr)
    return EXIT_CLEAN if result.matched else EXIT_FINDINGS


def releases_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.action == "retry" and bool(args.ids) == bool(args.all_failed):
        parser.error("releases retry: give release IDs or --all-failed (one)")
    config = _queue_config(parser, args)
    if config is None:
        return EXIT_FINDINGS
    if args.action == "retry":
        result = asyncio.run(
            with_store(
                config, lambda store: retry_releases(store, args.ids, all_failed=args.all_failed)
            )
        )
        sys.stdout.write(render_retry(result) + "\n")
        for refusal in result.refused:
            print(f"watcher: {refusal}", file=sys.stderr)
        return EXIT_CLEAN if result.retried else EXIT_FINDINGS
    states = [ReleaseState(args.state)] if args.state else list(UNFINISHED)

    async def listing(store: Store) -> tuple[list[StoredRelease], int]:
        counts = await store.counts()
        total = sum(counts.releases_by_state.get(state, 0) for state in states)
        return await store.releases_in_state(states, limit=max(0, args.limit)), total

    releases, total = asyncio.run(with_store(config, listing))
    sys.stdout.write(render_releases(releases, args.format, now=time.time(), total=total) + "\n")
    return EXIT_CLEAN
