"""Operator views of the service's two queues and the actions an SRE takes on them, behind
`watcher outbox` and `watcher releases`: what waits per channel, dead letters, disabled channels,
releases by scan state; dead letters requeued, failed releases retried.

Every action is one short store transaction on the state file, safe while the service runs (WAL):
the running outbox and scan workers re-read the store at least once per idle poll (1s), so what is
requeued here is picked up within that, without a restart or a signal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from watcher.model import Ecosystem
from watcher.store.api import Store
from watcher.store.types import (
    ChannelQueue,
    DisabledChannel,
    IncidentState,
    OutboxEvent,
    OutboxItem,
    ReleaseState,
    StoredRelease,
)

# ---------------------------------------------------------------------------------- helpers


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _span(seconds: float) -> str:
    """Short human duration: 42s, 7m, 3h05m, 2d4h."""
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def _ago(moment: float | None, now: float) -> str:
    return "never" if moment is None else f"{_span(now - moment)} ago"


def _one_line(text: str | None, limit: int = 160) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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


def render_outbox(view: OutboxView, fmt: str = "text", *, now: float) -> str:
    queues = {q.channel: q for q in view.queues}
    disabled = {d.channel: d for d in view.disabled}
    if fmt == "json":
        return json.dumps(
            {
                "channels": [
                    _channel_json(name, queues.get(name), disabled.get(name), view, now)
                    for name in view.channels()
                ],
                "dead_letters": [_dead_json(item, now) for item in view.dead],
            },
            indent=2,
            ensure_ascii=False,
        )
    lines = ["pending pages per channel:"]
    for name in view.channels():
        lines.append("  " + _channel_line(name, queues.get(name), disabled.get(name), view, now))
    if not view.channels():
        lines.append("  (no channels)")
    lines.append(f"dead letters: {len(view.dead)}")
    for item in view.dead:
        lines.append(
            f"  #{item.id} {item.channel} {item.dedup_key or '(no incident)'} {item.event.value}"
            f" — dead {_ago(item.dead_at, now)} ({_iso(item.dead_at)}), attempts {item.attempts}:"
            f" {_one_line(item.last_error)}"
        )
    if view.dead:
        lines.append(
            "  requeue with: watcher outbox requeue --config FILE (ID... | --all | --channel NAME)"
        )
    return "\n".join(lines)


def _channel_line(
    name: str,
    queue: ChannelQueue | None,
    disabled: DisabledChannel | None,
    view: OutboxView,
    now: float,
) -> str:
    parts = [f"{name}:"]
    if queue is None:
        parts.append("0 waiting")
    else:
        parts.append(f"{queue.depth} waiting, oldest {_span(now - queue.oldest_created_at)}")
        wait = queue.head_next_attempt_at - now
        parts.append(
            f"(head #{queue.head_id}, attempts {queue.head_attempts}, "
            + (f"next try in {_span(wait)})" if wait > 0 else "due now)")
        )
    if name not in view.configured:
        parts.append("[not configured: its pages wait for a channel of this name]")
    line = " ".join(parts)
    if disabled is not None:
        line += (
            f" — DISABLED since {_ago(disabled.disabled_at, now)}, tried again "
            f"{_until(disabled.recheck_at, now)} (or now: requeue --channel {name}):"
            f" {_one_line(disabled.reason)}"
        )
    elif queue is not None and queue.last_error:
        line += f" — last error: {_one_line(queue.last_error)}"
    return line


def _until(moment: float, now: float) -> str:
    return "at the next poll" if moment <= now else f"in {_span(moment - now)}"


def _channel_json(
    name: str,
    queue: ChannelQueue | None,
    disabled: DisabledChannel | None,
    view: OutboxView,
    now: float,
) -> dict[str, object]:
    return {
        "channel": name,
        "configured": name in view.configured,
        "depth": 0 if queue is None else queue.depth,
        "oldest_age_s": None if queue is None else round(now - queue.oldest_created_at, 3),
        "head_id": None if queue is None else queue.head_id,
        "head_attempts": None if queue is None else queue.head_attempts,
        "next_attempt_at": None if queue is None else _iso(queue.head_next_attempt_at),
        "last_error": None if queue is None else queue.last_error,
        "disabled": None
        if disabled is None
        else {
            "reason": disabled.reason,
            "since": _iso(disabled.disabled_at),
            "recheck_at": _iso(disabled.recheck_at),
        },
    }


def _dead_json(item: OutboxItem, now: float) -> dict[str, object]:
    return {
        "id": item.id,
        "channel": item.channel,
        "dedup_key": item.dedup_key,
        "event": item.event.value,
        "reason": item.last_error,
        "attempts": item.attempts,
        "dead_at": _iso(item.dead_at),
        "dead_age_s": None if item.dead_at is None else round(now - item.dead_at, 3),
    }


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
        if item.event is OutboxEvent.OPENED and item.dedup_key:
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


def render_requeue(result: RequeueResult) -> str:
    lines = [
        f"requeued #{item.id} {item.channel} {item.dedup_key or '(no incident)'} {item.event.value}"
        for item in result.items
    ]
    lines += [f"enabled channel {name} (it tries its oldest page now)" for name in result.enabled]
    if not lines:
        lines.append("nothing to requeue")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- releases


UNFINISHED = (ReleaseState.FAILED, ReleaseState.PENDING, ReleaseState.SCANNING)


def release_ref(stored: StoredRelease) -> str:
    release = stored.release
    if release.ecosystem is Ecosystem.PYPI:
        return f"pypi:{release.name}=={release.version}"
    return f"npm:{release.name}@{release.version}"


def render_releases(
    releases: Sequence[StoredRelease], fmt: str = "text", *, now: float, total: int | None = None
) -> str:
    more = 0 if total is None else max(0, total - len(releases))
    if fmt == "json":
        return json.dumps(
            {
                "releases": [
                    {
                        "id": r.id,
                        "ecosystem": r.release.ecosystem.value,
                        "package": r.release.name,
                        "version": r.release.version,
                        "state": r.state.value,
                        "attempts": r.attempts,
                        "baseline": r.baseline,
                        "last_error": r.last_error,
                        "next_attempt_at": _iso(r.next_attempt_at),
                        "created_at": _iso(r.created_at),
                        "updated_at": _iso(r.updated_at),
                    }
                    for r in releases
                ],
                "not_shown": more,
            },
            indent=2,
            ensure_ascii=False,
        )
    lines = []
    for r in releases:
        extra = ", baseline" if r.baseline else ""
        due = ""
        if r.state is ReleaseState.PENDING:
            wait = (r.next_attempt_at or 0.0) - now
            due = f", next try in {_span(wait)}" if wait > 0 else ", due now"
        error = f" — {_one_line(r.last_error)}" if r.last_error else ""
        lines.append(
            f"#{r.id} {release_ref(r)}: {r.state.value} (attempts {r.attempts}{extra}, "
            f"updated {_ago(r.updated_at, now)}{due}){error}"
        )
    if not releases:
        lines.append("(none)")
    if more:
        lines.append(f"... and {more} more (raise --limit)")
    if any(r.state is ReleaseState.FAILED for r in releases):
        lines.append("retry with: watcher releases retry --config FILE (ID... | --all-failed)")
    return "\n".join(lines)


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


def render_retry(result: RetryResult) -> str:
    lines = [f"retrying #{r.id} {release_ref(r)}" for r in result.retried]
    return "\n".join(lines) if lines else "nothing to retry"
