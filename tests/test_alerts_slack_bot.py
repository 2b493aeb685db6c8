"""Slack with a bot token against a loopback stand-in of chat.postMessage / chat.update: one
message per incident (updates in its thread, the original edited on resolution, its `ts` kept in
a real state file), and each Web API error's outcome."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests import fakecreds
from tests.slack_standin import SlackStandin, slack_standin
from tests.test_alerts_payload import make_incident, opened, resolved
from watcher.alerts import build_channels
from watcher.alerts.base import Outcome
from watcher.alerts.slack_bot import SlackBotChannel
from watcher.config import load_config
from watcher.config.plan import describe_plan
from watcher.errors import ConfigError
from watcher.model import AlertEvent, EventType
from watcher.store import open_store
from watcher.store.api import Store

CHANNEL = "C0123456789"


def bot_token() -> str:
    return "xoxb-" + fakecreds.chars(random.Random(5), "0123456789", 12) + "-test"


@pytest_asyncio.fixture(loop_scope="function")
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened_store = await open_store(tmp_path / "state.db")
    try:
        yield opened_store
    finally:
        await opened_store.close()


def channel_for(standin: SlackStandin, store: Store | None, token: str) -> SlackBotChannel:
    return SlackBotChannel("platform/slack", token, CHANNEL, store, api_url=standin.url)


def updated(event: AlertEvent, message: str) -> AlertEvent:
    return AlertEvent(EventType.UPDATED, event.incident, "evt-2", message)


async def test_one_message_per_incident_updates_in_its_thread_resolution_edits_it(
    store: Store,
) -> None:
    token = bot_token()
    async with slack_standin(token, {CHANNEL}) as slack:
        channel = channel_for(slack, store, token)
        try:
            incident = make_incident()
            page = opened(incident)
            assert (await channel.send(page)).outcome is Outcome.DELIVERED
            # the same page again (a crash before it was marked delivered): not posted twice
            assert (await channel.send(page)).outcome is Outcome.DELIVERED
            [posted] = slack.of("chat.postMessage")
            assert posted["channel"] == CHANNEL and "thread_ts" not in posted
            assert posted["text"].startswith(":rotating_light: [npm] @acme/cli@2.1.88")
            kept = await store.channel_message("platform/slack", incident.dedup_key)
            assert kept is not None and kept.remote_channel == CHANNEL
            ts = kept.ref

            update = updated(page, "1.0.1 deprecated")
            assert (await channel.send(update)).outcome is Outcome.DELIVERED
            reply = slack.of("chat.postMessage")[1]
            assert reply["thread_ts"] == ts and "1.0.1 deprecated" in reply["text"]

            done = resolved(incident)
            assert (await channel.send(done)).outcome is Outcome.DELIVERED
            [edit] = slack.of("chat.update")
            assert edit["ts"] == ts and edit["channel"] == CHANNEL
            header = edit["blocks"][0]["text"]["text"]
            assert header.startswith(":white_check_mark: Resolved: npm @acme/cli@2.1.88")
            assert "contained" in edit["text"] and "after" in edit["text"]
            assert slack.messages[ts] is edit  # the channel's one message is now the resolved one
            assert len(slack.of("chat.postMessage")) == 2
            kept = await store.channel_message("platform/slack", incident.dedup_key)
            assert kept is not None and kept.resolved_at is not None
        finally:
            await channel.close()


async def test_ratelimited_is_retried_after_retry_after(store: Store) -> None:
    token = bot_token()
    async with slack_standin(token, {CHANNEL}, rate_limited=1) as slack:
        channel = channel_for(slack, store, token)
        try:
            first = await channel.send(opened(make_incident()))
            assert first.outcome is Outcome.RETRY and first.retry_after == 1.0
            assert "ratelimited" in first.reason
            assert (await channel.send(opened(make_incident()))).outcome is Outcome.DELIVERED
        finally:
            await channel.close()


@pytest.mark.parametrize(
    ("token_ok", "channel", "error", "hint"),
    [
        (True, "C9999999999", "channel_not_found", "slack.channel"),
        (True, "CNOTINVITED", "not_in_channel", "invite it"),
        (False, CHANNEL, "invalid_auth", "slack.bot_token"),
    ],
)
async def test_a_refused_token_or_channel_disables_the_channel_with_a_clear_reason(
    store: Store, token_ok: bool, channel: str, error: str, hint: str
) -> None:
    token = bot_token()
    async with slack_standin(token, {CHANNEL, "CNOTINVITED"}, not_in={"CNOTINVITED"}) as slack:
        sent_token = token if token_ok else bot_token() + "x"
        bot = SlackBotChannel("platform/slack", sent_token, channel, store, api_url=slack.url)
        try:
            result = await bot.send(opened(make_incident()))
        finally:
            await bot.close()
    assert result.outcome is Outcome.DISABLE, result
    assert error in result.reason and hint in result.reason
    assert sent_token not in result.reason
    assert await store.channel_message("platform/slack", make_incident().dedup_key) is None


async def test_an_update_without_a_kept_message_is_a_message_of_its_own(store: Store) -> None:
    token = bot_token()
    async with slack_standin(token, {CHANNEL}) as slack:
        channel = channel_for(slack, store, token)
        try:
            result = await channel.send(resolved(make_incident()))
            assert result.outcome is Outcome.DELIVERED
            [posted] = slack.of("chat.postMessage")
            assert "thread_ts" not in posted and slack.of("chat.update") == []
        finally:
            await channel.close()


def _config(tmp_path: Path, slack: str) -> Path:
    path = tmp_path / "watcher.yaml"
    path.write_text(
        "registries: {npm: {url: 'http://127.0.0.1:9/'}}\n"
        "packages: [{ecosystem: npm, name: x, owner: team}]\n"
        f"owners: {{team: {{slack: {slack}}}}}\n"
    )
    return path


def test_webhook_url_xor_bot_token_and_channel(tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": bot_token()}
    both = "{webhook_url: 'https://127.0.0.1/x', bot_token: '${SLACK_BOT_TOKEN}', channel: C1}"
    with pytest.raises(ConfigError, match="not both"):
        load_config(_config(tmp_path, both), env=env)
    with pytest.raises(ConfigError, match="bot_token and channel"):
        load_config(_config(tmp_path, "{bot_token: '${SLACK_BOT_TOKEN}'}"), env=env)
    config = load_config(
        _config(tmp_path, "{bot_token: '${SLACK_BOT_TOKEN}', channel: C0123456789}"), env=env
    )
    [channel] = build_channels("team", config.owners["team"])
    assert isinstance(channel, SlackBotChannel) and channel.name == "team/slack"
    assert env["SLACK_BOT_TOKEN"] not in repr(channel)
    plan = describe_plan(config)
    assert "slack (bot token ****, channel C0123456789" in plan
    assert env["SLACK_BOT_TOKEN"] not in plan
