"""`Retry-After` as registry reads and alert channels both honour it (RFC 9110 §10.2.3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from watcher.retry_after import parse_retry_after

NOW = datetime(2026, 3, 31, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Tue, 31 Mar 2026 02:00:30 GMT", 30.0),
        ("Tue, 31 Mar 2026 02:00:30 -0000", 30.0),  # a zone-less date counts as UTC
        ("Tue, 31 Mar 2026 01:59:00 GMT", 0.0),  # a date in the past: no wait
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_in_either_form(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds
