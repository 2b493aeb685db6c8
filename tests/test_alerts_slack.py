"""Slack incoming-webhook channel: Block Kit within Slack's limits, and each error's outcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.receivers import Captured, Receiver, Scripted, slack_receiver, validate_slack
from tests.test_alerts_payload import finding, make_incident, opened, resolved
from watcher.alerts.base import DeliveryResult, Outcome
from watcher.alerts.slack import SlackChannel, message
from watcher.model import AlertEvent, Category, Ecosystem, EventType, RunbookStep, Severity


@pytest_asyncio.fixture(loop_scope="function")
async def slack() -> AsyncIterator[Receiver]:
    async with slack_receiver() as receiver:
        yield receiver


async def send(receiver: Receiver, *events: AlertEvent, wait: float = 10.0) -> list[DeliveryResult]:
    channel = SlackChannel("platform/slack", receiver.url, timeout=wait)
    try:
        return [await channel.send(e) for e in events]
    finally:
        await channel.close()


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]


async def test_page_layout(slack: Receiver) -> None:
    [result] = await send(slack, opened(make_incident()))
    assert result.outcome is Outcome.DELIVERED
    slack.assert_valid()
    msg = slack.requests[0].json()
    blocks = msg["blocks"]
    assert msg["text"].startswith(":rotating_light: [npm] @acme/cli@2.1.88")
    assert blocks[0]["type"] == "header"
    assert "@acme/cli@2.1.88" in blocks[0]["text"]["text"]
    assert blocks[1]["text"]["text"].startswith(
        "*First action (≤5 min):* Unpublish @acme/cli@2.1.88"
    )
    assert "```npm unpublish @acme/cli@2.1.88 --otp=<code>```" in blocks[1]["text"]["text"]
    assert any(
        "```npm dist-tag add @acme/cli@2.1.87 latest --otp=<code>```" in t
        for t in section_texts(blocks)
    ), "runbook commands are in code blocks"
    [actions] = [b for b in blocks if b["type"] == "actions"]
    urls = [e["url"] for e in actions["elements"]]
    assert "http://127.0.0.1:4873/-/web/detail/@acme/cli" in urls
    assert "https://github.com/jsdelivr/jsdelivr/issues/new" in urls


async def test_long_names_and_messages_are_cut_to_the_limits(slack: Receiver) -> None:
    incident = make_incident(
        [finding(message="y" * 9000, path="package/" + "d/" * 200 + "x.map")], name="n" * 300
    )
    await send(slack, opened(incident))
    slack.assert_valid()
    header = slack.requests[0].json()["blocks"][0]["text"]["text"]
    assert len(header) == 150


async def test_long_finding_lists_are_summarised_not_rejected(slack: Receiver) -> None:
    many = [
        finding(
            "secret-aws-key",
            Category.SECRET,
            Severity.CRITICAL,
            f"package/lib/f{i}.js",
            "AWS key " + "z" * 400,
        )
        for i in range(300)
    ]
    [result] = await send(slack, opened(make_incident(many)))
    assert result.ok
    slack.assert_valid()
    blocks = slack.requests[0].json()["blocks"]
    assert len(blocks) <= 50
    [summary] = [t for t in section_texts(blocks) if "more finding(s)" in t]
    shown = sum(1 for t in section_texts(blocks) if t.startswith("*CRITICAL* `secret-aws-key`"))
    assert summary.startswith(
        f"*{300 - shown} more finding(s):* {300 - shown}× secret-aws-key (critical)"
    )
    assert len(str(blocks)) < 13_000, "under Slack's aggregate block-text limit"


async def test_many_runbook_steps_fold_into_the_last_block(slack: Receiver) -> None:
    incident = make_incident()
    incident.runbook = [RunbookStep(f"step {i}", f"echo {i}") for i in range(80)]
    await send(slack, opened(incident))
    slack.assert_valid()
    blocks = slack.requests[0].json()["blocks"]
    assert len(blocks) == 50
    text = str(blocks)
    assert "echo 79" in text, "no step dropped"


async def test_update_and_resolution_are_new_posts(slack: Receiver) -> None:
    incident = make_incident()
    update = AlertEvent(EventType.UPDATED, incident, "evt-2", "deprecated on the registry")
    await send(slack, update, resolved(incident))
    slack.assert_valid()
    upd, res = (r.json() for r in slack.requests)
    assert "UPDATE" in upd["blocks"][0]["text"]["text"]
    assert "stays open" in upd["blocks"][1]["text"]["text"]
    assert upd["blocks"][2]["text"]["text"].startswith(
        "Still open: @acme/cli@2.1.88 is still served"
    )
    assert "First action" not in str(upd["blocks"]), "an update is short: no runbook again"
    assert not any("Runbook" in str(b) for b in upd["blocks"])
    assert (
        res["text"]
        == ":white_check_mark: Resolved: @acme/cli@2.1.88 — version unpublished; contained 3h15m after publish"
    )
    assert res["blocks"][0]["text"]["text"].startswith(
        ":white_check_mark: Resolved: npm @acme/cli@2.1.88"
    )


async def test_test_incidents_are_marked(slack: Receiver) -> None:
    await send(slack, opened(make_incident(test=True)))
    msg = slack.requests[0].json()
    assert "[TEST]" in msg["blocks"][0]["text"]["text"] and "[TEST]" in msg["text"]


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after"),
    [
        (Scripted(200, "ok"), Outcome.DELIVERED, None),
        (Scripted(400, "invalid_payload"), Outcome.FAILED, None),
        (Scripted(400, "invalid_blocks"), Outcome.FAILED, None),
        (Scripted(404, "no_service"), Outcome.DISABLE, None),
        (Scripted(404, "no_active_hooks"), Outcome.DISABLE, None),
        (Scripted(410, "channel_is_archived"), Outcome.DISABLE, None),
        (Scripted(403, "action_prohibited"), Outcome.DISABLE, None),
        (Scripted(403, "invalid_token"), Outcome.DISABLE, None),
        (Scripted(404), Outcome.DISABLE, None),
        (Scripted(410), Outcome.DISABLE, None),
        (Scripted(429, headers={"Retry-After": "3"}), Outcome.RETRY, 3.0),
        (Scripted(500, "rollup_error"), Outcome.RETRY, None),
        (Scripted(503), Outcome.RETRY, None),
    ],
)
async def test_classification(
    slack: Receiver, answer: Scripted, outcome: Outcome, retry_after: float | None
) -> None:
    slack.script(answer)
    [result] = await send(slack, opened(make_incident()))
    assert (result.outcome, result.retry_after) == (outcome, retry_after)
    if answer.body and outcome is not Outcome.DELIVERED:
        assert answer.body in result.reason


async def test_slow_and_refused_endpoints_retry(slack: Receiver) -> None:
    slack.script(Scripted(200, "ok", delay=2.0))
    [slow] = await send(slack, opened(make_incident()), wait=0.3)
    await slack.stop()
    [refused] = await send(slack, opened(make_incident()))
    assert slow.outcome is Outcome.RETRY and refused.outcome is Outcome.RETRY


def test_rate_limit_is_one_message_a_second() -> None:
    assert SlackChannel("o/slack", "https://hooks.invalid/x").min_interval == 1.0


@pytest.mark.parametrize("ecosystem_incident", ["npm", "pypi"])
def test_every_message_fits_the_limits_offline(ecosystem_incident: str) -> None:
    incident = make_incident(
        [
            finding(),
            finding(
                "dotenv-file", Category.SENSITIVE_FILE, Severity.CRITICAL, "pkg-1.0/.env", "dotenv"
            ),
        ],
        ecosystem=Ecosystem(ecosystem_incident),
    )
    for event in (
        opened(incident),
        AlertEvent(EventType.UPDATED, incident, "e2", "yanked"),
        resolved(incident),
    ):
        body = json.dumps(message(event)).encode()
        problems = validate_slack(
            Captured("POST", "/", {"content-type": "application/json"}, body, 0.0)
        )
        assert problems == []
