"""`Retry-After` for every HTTP client here (registry reads and alert channels): one parser, below
both, so a 429 or 503 is honoured the same way everywhere."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait, from `Retry-After` in either form RFC 9110 allows: delta-seconds or an
    HTTP-date (a date in the past is 0). None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
