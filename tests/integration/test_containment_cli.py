"""`watcher test-alert` against real loopback PagerDuty, Slack and Standard Webhooks receivers, and
`watcher runbook` reading a real state file, both run as the real CLI process."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from service_harness import webhook_secret

from tests.receivers import (
    Receivers,
    Scripted,
    all_receivers,
)
from watcher.incidents.lifecycle import event_id_for
from watcher.model import AlertEvent, Category, Ecosystem, EventType, Finding, Incident, Severity
from watcher.model import RunbookStep as Step
from watcher.store import open_store
from watcher.store.types import Delivery

pytestmark = pytest.mark.asyncio(loop_scope="session")

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Done:
    code: int
    out: str
    err: str


async def watcher(*argv: str) -> Done:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher.cli",
        "--log-format",
        "json",
        *argv,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def rx() -> AsyncIterator[Receivers]:
    async with all_receivers(webhook_secret()) as found:
        yield found


def config_file(tmp_path: Path, rx: Receivers) -> Path:
    path = tmp_path / "watcher.yaml"
    path.write_text(
        f"store: {{path: {json.dumps(str(tmp_path / 'state.db'))}}}\n"
        "registries: {npm: {url: 'http://127.0.0.1:9/'}, pypi: {url: 'http://127.0.0.1:9/simple/'}}\n"
        "packages:\n"
        "  - {ecosystem: npm, name: '@acme/cli', owner: platform}\n"
        "  - {ecosystem: pypi, name: acme-sdk, owner: platform}\n"
        "owners:\n"
        "  platform:\n"
        f"    pagerduty: {{routing_key: {'k' * 32}, url: {json.dumps(rx.pd.url)}}}\n"
        f"    slack: {{webhook_url: {json.dumps(rx.slack.url)}}}\n"
        f"    webhook: {{url: {json.dumps(rx.hook.url)}, secret: {json.dumps(rx.secret)}}}\n"
        "    console: true\n"
        "  quiet:\n"
        "    console: true\n"
    )
    return path


# ---------------------------------------------------------------------------------- test-alert


async def test_test_alert_reaches_every_channel_marked_as_a_test(
    rx: Receivers, tmp_path: Path
) -> None:
    done = await watcher(
        "test-alert", "--owner", "platform", "--config", str(config_file(tmp_path, rx))
    )
    assert done.code == 0, done.err
    lines = [line for line in done.out.splitlines() if line.startswith("platform/")]
    assert lines == [
        "platform/pagerduty: delivered (HTTP 202)",
        "platform/slack: delivered (HTTP 200)",
        "platform/webhook: delivered (HTTP 204)",
        "platform/console: delivered",
    ]
    for receiver in (rx.pd, rx.slack, rx.hook):
        receiver.assert_valid()
        assert len(receiver.requests) == 1
    pd = rx.pd.requests[0].json()
    assert pd["event_action"] == "trigger" and pd["payload"]["summary"].startswith("[TEST]")
    assert pd["payload"]["severity"] == "info"
    assert "[TEST]" in rx.slack.requests[0].json()["text"]
    data = rx.hook.requests[0].json()["data"]
    assert data["test"] is True and data["findings"][0]["severity"] == "info"
    assert data["runbook"][0]["text"].startswith("This is a test")
    assert "[TEST]" in done.out  # the console channel's page


async def test_test_alert_reports_each_failing_channel_and_exits_1(
    rx: Receivers, tmp_path: Path
) -> None:
    config = config_file(tmp_path, rx)
    rx.slack.script(Scripted(404, "no_service"))
    await rx.hook.stop()  # connection refused
    done = await watcher("test-alert", "--owner", "platform", "--config", str(config))
    assert done.code == 1, done.err
    by_channel = dict(line.split(": ", 1) for line in done.out.splitlines() if ": " in line)
    assert by_channel["platform/pagerduty"] == "delivered (HTTP 202)"
    assert by_channel["platform/slack"].startswith("disable (HTTP 404)")
    assert by_channel["platform/webhook"].startswith("retry")
    assert by_channel["platform/console"] == "delivered"
    assert rx.slack.url.split("/services/", 1)[1] not in done.out + done.err  # the URL is a secret


async def test_test_alert_unknown_owner_or_bad_config_exits_2(
    rx: Receivers, tmp_path: Path
) -> None:
    config = config_file(tmp_path, rx)
    done = await watcher("test-alert", "--owner", "nobody", "--config", str(config))
    assert done.code == 2 and "unknown owner 'nobody'" in done.err and "platform" in done.err
    broken = tmp_path / "broken.yaml"
    broken.write_text("owners: {}\n")
    done = await watcher("test-alert", "--owner", "platform", "--config", str(broken))
    assert done.code == 2 and "configuration error" in done.err
    assert not rx.pd.requests and not rx.slack.requests and not rx.hook.requests
    # an owner with only the console: exit 0, nothing sent anywhere else
    done = await watcher("test-alert", "--owner", "quiet", "--config", str(config))
    assert done.code == 0 and "quiet/console: delivered" in done.out


# ------------------------------------------------------------------------------------- runbook


def finding(path: str = "package/.env") -> Finding:
    return Finding(
        rule="dotenv-file",
        category=Category.SENSITIVE_FILE,
        severity=Severity.HIGH,
        path=path,
        message="environment file shipped",
    )


async def seed(state: Path) -> None:
    now = datetime.now(UTC)
    page = Incident(
        dedup_key=Incident.key_for("npm", "@acme/cli", "1.1.0"),
        ecosystem=Ecosystem.NPM,
        name="@acme/cli",
        version="1.1.0",
        owner="platform",
        opened_at=now,
        published_at=now - timedelta(minutes=3),
        findings=[finding()],
        runbook=[
            Step("Unpublish it while npm allows.", command="npm unpublish @acme/cli@1.1.0"),
            Step("Check it is gone.", url="http://127.0.0.1:9/@acme%2fcli"),
        ],
    )
    event = AlertEvent(EventType.OPENED, page, event_id_for(page.dedup_key, EventType.OPENED))
    store = await open_store(state)
    try:
        await store.open_incident_with_outbox(page, [Delivery("platform/console", event)])
    finally:
        await store.close()


async def test_runbook_prints_the_stored_runbook_again_or_rebuilds_it(
    rx: Receivers, tmp_path: Path
) -> None:
    config = config_file(tmp_path, rx)
    done = await watcher("runbook", "@acme/cli@1.1.0", "--config", str(config))
    assert done.code == 1 and "no state yet" in done.err

    await seed(tmp_path / "state.db")
    done = await watcher("runbook", "@acme/cli@1.1.0", "--config", str(config))
    assert done.code == 0, done.err
    assert done.out.splitlines()[0] == "Runbook for npm @acme/cli@1.1.0 (as paged)"
    assert "incident open, owner platform" in done.out
    assert "1. Unpublish it while npm allows.\n     $ npm unpublish @acme/cli@1.1.0" in done.out
    assert "2. Check it is gone.\n     http://127.0.0.1:9/@acme%2fcli" in done.out

    done = await watcher(
        "runbook", "npm:@acme/cli@1.1.0", "--format", "json", "--config", str(config)
    )
    document = json.loads(done.out)
    assert document["source"] == "incident" and document["incident"]["state"] == "open"
    assert document["steps"][0]["command"] == "npm unpublish @acme/cli@1.1.0"

    # rebuilt from the stored findings by the runbook builder, with the current window
    done = await watcher("runbook", "@acme/cli@1.1.0", "--fresh", "--config", str(config))
    assert done.code == 0, done.err
    assert "rebuilt now from the stored findings" in done.out
    assert "npm unpublish @acme/cli@1.1.0" in done.out

    done = await watcher("runbook", "pypi:acme-sdk==9.9", "--config", str(config))
    assert done.code == 1 and "no incident or findings for pypi acme-sdk 9.9" in done.err
    done = await watcher("runbook", "not a spec", "--config", str(config))
    assert done.code == 2
