"""Console channel: the readable page (its `page_delivered` line is the outbox's, as for every
channel: tests/test_outbox.py)."""

from __future__ import annotations

import io

from structlog.testing import capture_logs

from tests.test_alerts_payload import make_incident, opened, resolved
from watcher.alerts.base import Outcome
from watcher.alerts.console import ConsoleChannel, shell_lines
from watcher.model import AlertEvent, EventType


async def test_top_line_is_the_first_five_minute_action() -> None:
    out = io.StringIO()
    with capture_logs() as logs:
        result = await ConsoleChannel("platform/console", out).send(opened(make_incident()))
    assert result.outcome is Outcome.DELIVERED
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("FIRST (≤5 min): Unpublish @acme/cli@2.1.88 now")
    assert lines[1].endswith("→ npm unpublish @acme/cli@2.1.88 --otp=<code>")
    assert lines[2].startswith("[npm] @acme/cli@2.1.88 — critical source-map")
    assert "       $ npm dist-tag add @acme/cli@2.1.87 latest --otp=<code>" in lines
    assert not [e for e in logs if e["event"] == "page_delivered"], "logged once, by the outbox"


async def test_update_and_resolution_pages() -> None:
    out = io.StringIO()
    channel = ConsoleChannel("platform/console", out)
    incident = make_incident(test=True)
    await channel.send(AlertEvent(EventType.UPDATED, incident, "e2", "deprecated"))
    await channel.send(resolved(incident))
    text = out.getvalue()
    assert "UPDATE on @acme/cli@2.1.88: deprecated (incident stays open)" in text
    update = text.split("[TEST] Resolved")[0]
    assert "Still open: @acme/cli@2.1.88 is still served. Next: Unpublish" in update
    assert "Runbook:" not in update, "short: what changed, what is open, no runbook again"
    assert "Findings:" in update, "the findings as they are now (an update may add one)"
    assert (
        "[TEST] Resolved: @acme/cli@2.1.88 — version unpublished; contained 3h15m after publish"
        in text
    )


async def test_a_closed_stdout_is_a_retry_not_a_crash() -> None:
    out = io.StringIO()
    out.close()
    result = await ConsoleChannel("platform/console", out).send(opened(make_incident()))
    assert result.outcome is Outcome.RETRY


def test_here_document_body_is_pasted_as_written() -> None:
    command = "cat >> .npmignore <<'EOF'\n*.map\n/.env\nEOF\nnpm pack --dry-run"
    assert shell_lines(command) == [
        "$ cat >> .npmignore <<'EOF'",
        "*.map",
        "/.env",
        "EOF",
        "$ npm pack --dry-run",
    ]
