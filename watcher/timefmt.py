"""The one place timestamps and durations become text (and epoch seconds or registries' ISO 8601
times become datetimes).

A naive datetime is UTC everywhere (registries publish UTC without saying so). Each duration form has
one audience, so they differ on purpose: `format_duration` writes what the configuration accepts
(`1h30m`, `500ms`), `human_duration` what a page shows (`3h12m`, `5m07s`), `span` what an operator
view shows (`42s`, `7m`, `3h05m`, `2d4h`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 time as a registry document writes it (`Z` or an offset; a naive one is UTC,
    as Warehouse's `upload_time` is); None for anything that is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def epoch(moment: datetime | None) -> float | None:
    return None if moment is None else utc(moment).timestamp()


def iso(moment: datetime | float | None) -> str | None:
    """UTC ISO 8601 with a `Z`, seconds precision (`2026-05-01T12:00:00Z`): what pages, reports and
    operator views show. Takes a datetime or epoch seconds."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(moment: datetime) -> str:
    """`2026-05-01 12:00 UTC`: a deadline in a sentence."""
    return utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def hours_minutes(delta: timedelta) -> str:
    """`71h05m`: time left to a deadline, whole minutes, never negative."""
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_duration(seconds: float) -> str:
    """The configuration's own form, the inverse of `parse_duration`: 90 → `1m30s`, 0.5 → `500ms`."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def human_duration(seconds: float) -> str:
    """3h12m, 45m, 5m07s, 20s: the form a page shows durations in."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s" if minutes < 10 else f"{minutes}m"
    return f"{secs}s"


def span(seconds: float) -> str:
    """Short operator-view duration: 42s, 7m, 3h05m, 2d4h."""
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


def ago(moment: float | None, now: float) -> str:
    """`7m ago`, or `never`."""
    return "never" if moment is None else f"{span(now - moment)} ago"


def seconds_ago(moment: float | None, now: float) -> str:
    """`42s ago`, or `never`: `watcher status` counts in plain seconds."""
    return "never" if moment is None else f"{max(0.0, now - moment):.0f}s ago"


def until(moment: float, now: float) -> str:
    """`in 7m`, or `at the next poll` once it is due."""
    return "at the next poll" if moment <= now else f"in {span(moment - now)}"
