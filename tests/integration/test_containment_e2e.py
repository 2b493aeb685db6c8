"""Containment end to end: `watcher run` as a real subprocess polling a real Verdaccio and paging real
loopback PagerDuty, Slack and Standard Webhooks receivers.

A leak is published → one page on every channel with the commands for this release → the real
npm CLI deprecates it and moves `latest` back → one update per mitigation, the incident stays
open → `npm unpublish name@version` → the resolve arrives on every channel (PagerDuty `resolve`
with the same dedup_key, a Slack "Resolved" post, webhook `incident.resolved` with the same
webhook-id scheme). No captured body carries the leaked secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from servers_common import free_port
from service_harness import ServiceProcess, wait_release, webhook_secret

from tests import fakecreds
from tests.receivers import (
    Captured,
    Receiver,
    Receivers,
    all_receivers,
)
from watcher import cli
from watcher.alerts.webhook import message_id
from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.ecosystems.npm.containment import UNPUBLISHED
from watcher.incidents.lifecycle import event_id_for
from watcher.model import EventType, Incident, IncidentState, incident_key
from watcher.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    async with all_receivers(webhook_secret()) as found:
        yield found


def write_config(tmp_path: Path, port: int, registry: str, name: str, rx: Receivers) -> Path:
    routing_key = "R" + "0123456789abcdef0123456789abcde"  # 32 characters, as PagerDuty checks
    config = tmp_path / "watcher.yaml"
    config.write_text(
        f"store: {{path: {json.dumps(str(tmp_path / 'state.db'))}}}\n"
        f'server: {{listen: "127.0.0.1:{port}"}}\n'
        "registries:\n"
        f"  npm: {{url: {json.dumps(registry)}, poll_interval: 1s}}\n"
        f"packages:\n  - {{ecosystem: npm, name: {json.dumps(name)}, owner: team}}\n"
        "owners:\n"
        "  team:\n"
        f"    pagerduty: {{routing_key: {routing_key}, url: {json.dumps(rx.pd.url)}}}\n"
        f"    slack: {{webhook_url: {json.dumps(rx.slack.url)}}}\n"
        f"    webhook: {{url: {json.dumps(rx.hook.url)}, secret: {json.dumps(rx.secret)}}}\n"
        "containment: {check_interval: 500ms}\n"
        "scan: {workers: 1, concurrency: 1}\n"
        "retry:\n"
        "  outbox: {initial: 0.2s, max: 1s, give_up_after: 1h}\n"
        "shutdown: {grace_period: 5s}\n"
        "log: {format: json, level: info}\n"
    )
    return config


def leak(token: str) -> dict[str, bytes]:
    return {
        "index.js": b"module.exports = 2;\n",
        ".env": f"NPM_TOKEN={token}\n".encode(),  # npm never packs .npmrc; .env it does
    }


async def until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def read_incident(state: Path, key: str) -> tuple[Incident | None, dict[str, str]]:
    store = await open_store(state)
    try:
        found = await store.get_incident(key)
        notes = await store.incident_notes(found.id) if found else {}
        return found, notes
    finally:
        await store.close()


async def wait_notes(state: Path, key: str, kinds: set[str], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        _, notes = await read_incident(state, key)
        if kinds <= set(notes):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"notes {kinds} never recorded (have {sorted(notes)})")
        await asyncio.sleep(0.1)


def of_type(hook: Receiver, kind: str) -> list[Captured]:
    return [r for r in hook.requests if r.json().get("type") == kind]


def pd_actions(pd: Receiver) -> list[tuple[str, str]]:
    return [(r.json()["event_action"], r.json()["dedup_key"]) for r in pd.requests]


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


async def test_leak_paged_then_deprecate_updates_and_unpublish_resolves_everywhere(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    rx = receivers
    name = f"contain-e2e-{free_port()}"
    token = fakecreds.npm_token(random.Random(5))
    state = tmp_path / "state.db"
    port = free_port()
    config = write_config(tmp_path, port, verdaccio.url, name, rx)
    key = incident_key("npm", name, "1.1.0")

    await asyncio.to_thread(verdaccio.publish, name, "1.0.0")
    service = ServiceProcess(config, port, tmp_path)
    service.start()
    try:
        await service.wait_ready()
        await wait_release(state, name, "1.0.0")  # the baseline: scanned, never paged

        # 1. the leak: one page on every channel, with this release's commands
        await asyncio.to_thread(verdaccio.publish, name, "1.1.0", leak(token))
        await until(
            lambda: all(len(r.requests) >= 1 for r in rx.all), "the page on every channel", 60
        )
        assert pd_actions(rx.pd) == [("trigger", key)]
        (opened,) = of_type(rx.hook, "incident.opened")
        assert opened.headers["webhook-id"] == message_id(event_id_for(key, EventType.OPENED))
        commands = [s.get("command") or "" for s in opened.json()["data"]["runbook"]]
        assert any(f"npm unpublish {name}@1.1.0" in c for c in commands), commands

        # the runbook again, from the store
        code, printed = await asyncio.to_thread(
            run_cli, "runbook", f"{name}@1.1.0", "--config", str(config)
        )
        assert code == 0 and f"npm unpublish {name}@1.1.0" in printed and "as paged" in printed

        # 2. mitigations that are not containment: one update each, the incident stays open
        await wait_notes(state, key, {"dist-tags"})  # `latest` was seen on the bad version
        done = await asyncio.to_thread(
            verdaccio.npm, "deprecate", f"{name}@1.1.0", "leaked; use 1.1.1"
        )
        assert done.returncode == 0, done.stderr
        await until(lambda: len(of_type(rx.hook, "incident.updated")) == 1, "the deprecate update")
        done = await asyncio.to_thread(verdaccio.npm, "dist-tag", "add", f"{name}@1.0.0", "latest")
        assert done.returncode == 0, done.stderr
        await until(lambda: len(of_type(rx.hook, "incident.updated")) == 2, "the dist-tag update")
        await until(lambda: len(rx.pd.requests) == 3 and len(rx.slack.requests) == 3, "updates")
        updates = of_type(rx.hook, "incident.updated")
        messages = [u.json()["data"]["message"] for u in updates]
        assert "deprecated" in messages[0] and "leaked; use 1.1.1" in messages[0]
        assert "latest → 1.0.0" in messages[1]
        assert len({u.headers["webhook-id"] for u in updates}) == 2
        assert pd_actions(rx.pd) == [("trigger", key)] * 3
        assert all("UPDATE" in r.json()["text"] for r in rx.slack.requests[1:])
        incident, notes = await read_incident(state, key)
        assert incident is not None and incident.state is IncidentState.OPEN
        assert {"deprecated", "dist-tag-moved"} <= set(notes)
        await asyncio.sleep(1.5)  # three more containment checks: nothing is posted twice
        assert len(rx.hook.requests) == 3

        # 3. unpublished: resolved on every channel. The tarball answered 200 until now.
        tarball = f"{verdaccio.url}/{name}/-/{name}-1.1.0.tgz"
        async with RegistryHttp(HttpSettings(attempts=1)) as http:
            assert await http.head(tarball, ecosystem="npm") == 200
            await asyncio.to_thread(verdaccio.unpublish, name, "1.1.0")
            assert await http.head(tarball, ecosystem="npm") == 404
        await until(lambda: len(of_type(rx.hook, "incident.resolved")) == 1, "the resolve", 30)
        await until(lambda: len(rx.pd.requests) == 4 and len(rx.slack.requests) == 4, "resolves")
        (resolved,) = of_type(rx.hook, "incident.resolved")
        assert resolved.headers["webhook-id"] == message_id(event_id_for(key, EventType.RESOLVED))
        data = resolved.json()["data"]
        assert data["resolution"] == UNPUBLISHED and data["time_to_contain_s"] > 0
        assert "HTTP 404" in (data["message"] or "")
        # what containment did not undo: the leaked token still has to be revoked
        assert "Rotate every credential it carried" in data["message"]
        assert "npm token revoke" in data["message"], data["message"]
        assert token not in data["message"]
        assert pd_actions(rx.pd)[-1] == ("resolve", key)
        slack_text = rx.slack.requests[-1].json()["text"]
        assert "Resolved" in slack_text and UNPUBLISHED in slack_text
        incident, _ = await read_incident(state, key)
        assert incident is not None and incident.state is IncidentState.RESOLVED
        assert incident.resolution == UNPUBLISHED

        await asyncio.sleep(1.0)  # resolved incidents are not checked again
        assert len(rx.hook.requests) == 4
        status, metrics_text = await asyncio.to_thread(service.get, "/metrics")
        assert status == 200
        assert 'watcher_time_to_contain_seconds_count{ecosystem="npm"} 1.0' in metrics_text
    finally:
        service.ensure_stopped()

    for receiver in rx.all:
        receiver.assert_valid()
        for body in receiver.bodies():
            assert token.encode() not in body, f"{receiver.kind} body carries the secret"
            assert token[:12].encode() not in body
