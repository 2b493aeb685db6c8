"""Slack with a bot token, end to end: `watcher run` against a real Verdaccio and a loopback
stand-in of Slack's Web API. The channel shows one message per incident whose state is current:
the page, a deprecation as a reply in its thread, the unpublish as an edit of the original."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from servers_common import free_port
from service_harness import ServiceProcess, wait_release
from test_containment_e2e import leak, until

from tests import fakecreds
from tests.slack_standin import slack_standin

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHANNEL = "C0SLACKBOT1"


def config_for(tmp_path: Path, port: int, registry: str, name: str, api: str, token: str) -> Path:
    path = tmp_path / "watcher.yaml"
    path.write_text(
        f"store: {{path: {json.dumps(str(tmp_path / 'state.db'))}}}\n"
        f'server: {{listen: "127.0.0.1:{port}"}}\n'
        f"registries:\n  npm: {{url: {json.dumps(registry)}, poll_interval: 1s}}\n"
        f"packages:\n  - {{ecosystem: npm, name: {json.dumps(name)}, owner: team}}\n"
        "owners:\n  team:\n"
        f"    slack: {{bot_token: {json.dumps(token)}, channel: {CHANNEL}, "
        f"api_url: {json.dumps(api)}}}\n"
        "containment: {check_interval: 500ms}\n"
        "scan: {workers: 1, concurrency: 1}\n"
        "retry:\n  outbox: {initial: 0.2s, max: 1s, give_up_after: 1h}\n"
        "shutdown: {grace_period: 5s}\n"
        "log: {format: json, level: info}\n"
    )
    return path


async def test_one_message_per_incident_threaded_updates_and_edited_on_resolution(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    token = "xoxb-" + fakecreds.chars(random.Random(31), "0123456789", 12) + "-e2e"
    name = f"slackbot-{free_port()}"
    port = free_port()
    async with slack_standin(token, {CHANNEL}) as slack:
        config = config_for(tmp_path, port, verdaccio.url, name, slack.url, token)
        await asyncio.to_thread(verdaccio.publish, name, "1.0.0")
        service = ServiceProcess(config, port, tmp_path)
        service.start()
        try:
            await service.wait_ready()
            await wait_release(tmp_path / "state.db", name, "1.0.0")
            await asyncio.to_thread(
                verdaccio.publish, name, "1.1.0", leak(fakecreds.npm_token(random.Random(32)))
            )
            await until(lambda: len(slack.of("chat.postMessage")) == 1, "the page", 60)
            [ts] = list(slack.messages)
            assert f"{name}@1.1.0" in slack.messages[ts]["text"]

            done = await asyncio.to_thread(
                verdaccio.npm, "deprecate", f"{name}@1.1.0", "leaked; use 1.0.0"
            )
            assert done.returncode == 0, done.stderr
            await until(lambda: len(slack.of("chat.postMessage")) == 2, "the update", 30)
            reply = slack.of("chat.postMessage")[1]
            assert reply["thread_ts"] == ts and "deprecated" in reply["text"]

            await asyncio.to_thread(verdaccio.unpublish, name, "1.1.0")
            await until(lambda: len(slack.of("chat.update")) == 1, "the resolution", 30)
            [edit] = slack.of("chat.update")
            assert edit["ts"] == ts
            assert edit["blocks"][0]["text"]["text"].startswith(":white_check_mark: Resolved:")
            assert "contained" in edit["text"]
            await asyncio.sleep(1.5)
            # one message in the channel (plus its thread), its state current
            top = [b for b in slack.of("chat.postMessage") if "thread_ts" not in b]
            assert len(top) == 1 and slack.messages[ts] is edit
            assert token not in service.stdout()
        finally:
            service.terminate()
