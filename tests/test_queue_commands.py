"""`watcher outbox [requeue]` and `watcher releases [retry]` as an operator runs them, on real
SQLite state files: what they list, what they change, order kept per channel, exit codes
(0 ok, 1 nothing matched, 2 usage or configuration error), and `watcher status` showing a channel
its endpoint disabled."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.storekit import record_releases
from watcher.incidents.lifecycle import opened
from watcher.model import AlertEvent, Artifact, Ecosystem, Incident, Release
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.types import Delivery, ReleaseState

WEBHOOK = "team/webhook"
CONSOLE = "team/console"


def watcher(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_config(tmp_path: Path) -> Path:
    secret = "whsec_" + "c2lnbmluZy1rZXktZm9yLXRlc3Rz"  # base64 of a dummy key, built here
    config = tmp_path / "watcher.yaml"
    config.write_text(
        f"store: {{path: {json.dumps(str(tmp_path / 'state.db'))}}}\n"
        "packages:\n  - {ecosystem: npm, name: demo, owner: team}\n"
        "owners:\n  team:\n    console: true\n"
        f"    webhook: {{url: 'http://127.0.0.1:9/hook', secret: {json.dumps(secret)}}}\n"
    )
    return config


def release(version: str) -> Release:
    return Release(
        ecosystem=Ecosystem.NPM,
        name="demo",
        version=version,
        published_at=datetime(2026, 1, 2, tzinfo=UTC),
        artifacts=(
            Artifact(f"demo-{version}.tgz", f"http://127.0.0.1:1/demo-{version}.tgz", 10, "0" * 64),
        ),
    )


def demo_incident(version: str) -> Incident:
    return Incident(
        dedup_key=f"watcher/npm/demo/{version}",
        ecosystem=Ecosystem.NPM,
        name="demo",
        version=version,
        owner="team",
        opened_at=datetime(2026, 1, 2, 0, 5, tzinfo=UTC),
        findings=[],
    )


def page(version: str) -> AlertEvent:
    return opened(demo_incident(version))


@dataclass
class State:
    config: Path
    path: Path
    pages: dict[str, list[int]]  # version -> outbox ids [webhook, console]


@pytest.fixture
async def state(tmp_path: Path) -> State:
    """Three pages per channel (1.0.1, 1.0.2, 1.0.3); webhook pages of 1.0.1 and 1.0.3 dead, the
    console page of 1.0.2 dead; the webhook disabled by its endpoint; releases in every state."""
    config = write_config(tmp_path)
    path = tmp_path / "state.db"
    store = await open_store(path)
    pages: dict[str, list[int]] = {}
    try:
        for version in ("1.0.1", "1.0.2", "1.0.3"):
            ids = await store.enqueue(
                [
                    Delivery(WEBHOOK, page(version)),
                    Delivery(CONSOLE, page(version)),
                ]
            )
            pages[version] = ids
        await store.mark_dead(pages["1.0.1"][0], "HTTP 400: bad request")
        await store.mark_dead(pages["1.0.3"][0], "HTTP 400: bad request")
        await store.mark_dead(pages["1.0.2"][1], "HTTP 400: console said no")
        await store.mark_retry(pages["1.0.2"][0], time.time(), "HTTP 410: endpoint gone")
        await store.disable_channel(WEBHOOK, "HTTP 410: endpoint gone", time.time() + 3600)
        await record_releases(
            store, [release(v) for v in ("2.0.0", "2.0.1", "2.0.2")], "npm-poll", "1"
        )
        claimed = await store.claim_pending(1)
        await store.mark_failed(claimed[0].id, "download: HTTP 404")
    finally:
        await store.close()
    return State(config, path, pages)


async def read(path: Path, action):  # type: ignore[no-untyped-def]
    store = await open_store(path)
    try:
        return await action(store)
    finally:
        await store.close()


async def run(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(watcher, *args)


# ---------------------------------------------------------------------------------- listing


async def test_outbox_lists_depth_disabled_channels_and_dead_letters(state: State) -> None:
    done = await run("outbox", "--config", str(state.config), "--format", "json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    channels = {c["channel"]: c for c in view["channels"]}
    assert set(channels) == {WEBHOOK, CONSOLE}
    assert channels[WEBHOOK]["depth"] == 1 and channels[CONSOLE]["depth"] == 2
    assert channels[WEBHOOK]["head_id"] == state.pages["1.0.2"][0]
    assert channels[WEBHOOK]["last_error"] == "HTTP 410: endpoint gone"
    assert channels[WEBHOOK]["disabled"]["reason"] == "HTTP 410: endpoint gone"
    assert channels[CONSOLE]["disabled"] is None
    dead = view["dead_letters"]
    assert [d["id"] for d in dead] == sorted(
        [state.pages["1.0.1"][0], state.pages["1.0.2"][1], state.pages["1.0.3"][0]]
    )
    first = dead[0]
    assert first["channel"] == WEBHOOK and first["dedup_key"] == "watcher/npm/demo/1.0.1"
    assert first["event"] == "opened" and first["reason"] == "HTTP 400: bad request"
    assert first["dead_at"].endswith("Z")

    text = await run("outbox", "--config", str(state.config))
    assert text.returncode == 0
    assert f"{WEBHOOK}: 1 waiting" in text.stdout and "DISABLED since" in text.stdout
    assert f"#{state.pages['1.0.1'][0]} {WEBHOOK} watcher/npm/demo/1.0.1 opened" in text.stdout
    assert "dead letters: 3" in text.stdout


async def test_status_shows_a_disabled_channel(state: State) -> None:
    text = await run("status", "--config", str(state.config))
    assert text.returncode == 0, text.stderr
    assert f"channel {WEBHOOK} DISABLED" in text.stdout and "410" in text.stdout
    as_json = json.loads(
        (await run("status", "--config", str(state.config), "--format", "json")).stdout
    )
    assert [d["channel"] for d in as_json["disabled_channels"]] == [WEBHOOK]


async def test_releases_lists_unfinished_ones_and_filters_by_state(state: State) -> None:
    done = await run("releases", "--config", str(state.config), "--format", "json")
    assert done.returncode == 0, done.stderr
    listed = {r["version"]: r["state"] for r in json.loads(done.stdout)["releases"]}
    assert listed == {"2.0.0": "failed", "2.0.1": "pending", "2.0.2": "pending"}
    failed = await run("releases", "--config", str(state.config), "--state", "failed")
    assert failed.returncode == 0
    assert "npm:demo@2.0.0: failed (attempts 1" in failed.stdout
    assert "download: HTTP 404" in failed.stdout and "2.0.1" not in failed.stdout
    limited = await run("releases", "--config", str(state.config), "--limit", "1")
    assert "... and 2 more" in limited.stdout


# --------------------------------------------------------------------------------- requeue


async def test_requeue_by_id_puts_dead_letters_back_in_their_order(state: State) -> None:
    first, third = state.pages["1.0.1"][0], state.pages["1.0.3"][0]
    before = time.time()
    done = await run("outbox", "requeue", "--config", str(state.config), str(third), f"#{first}")
    assert done.returncode == 0, done.stderr
    assert f"requeued #{first}" in done.stdout and f"requeued #{third}" in done.stdout

    async def check(store: Store) -> None:
        head = await store.outbox_head(WEBHOOK)
        assert head is not None and head.id == first, "the oldest page goes first again"
        assert head.attempts == 0 and head.state == "pending"
        assert head.next_attempt_at <= time.time()
        assert head.created_at >= before, "a whole retry window again"
        assert [d.id for d in await store.dead_letters()] == [state.pages["1.0.2"][1]]
        assert (await store.counts()).outbox_depth[WEBHOOK] == 3
        # requeue by id does not enable a disabled channel
        assert await store.disabled_channel(WEBHOOK) is not None

    await read(state.path, check)
    again = await run("outbox", "requeue", "--config", str(state.config), str(first))
    assert again.returncode == 1, "a page that is not dead is nothing to requeue"
    assert f"#{first} is not a dead letter" in again.stderr


async def test_requeue_channel_enables_it_and_touches_no_other_channel(state: State) -> None:
    done = await run("outbox", "requeue", "--config", str(state.config), "--channel", WEBHOOK)
    assert done.returncode == 0, done.stderr
    assert f"enabled channel {WEBHOOK}" in done.stdout

    async def check(store: Store) -> None:
        assert await store.disabled_channel(WEBHOOK) is None
        assert [d.channel for d in await store.dead_letters()] == [CONSOLE]

    await read(state.path, check)
    none_left = await run("outbox", "requeue", "--config", str(state.config), "--channel", WEBHOOK)
    assert none_left.returncode == 1 and "nothing to requeue" in none_left.stdout


async def test_requeue_all(state: State) -> None:
    done = await run("outbox", "requeue", "--all", "--config", str(state.config))
    assert done.returncode == 0, done.stderr

    async def check(store: Store) -> None:
        assert await store.dead_letters() == []
        assert await store.disabled_channels() == []
        assert (await store.counts()).outbox_depth == {CONSOLE: 3, WEBHOOK: 3}

    await read(state.path, check)


async def test_requeueing_an_opened_page_of_a_resolved_incident_warns(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    async def prepare(store: Store) -> int:
        incident, _ = await store.open_incident_with_outbox(
            demo_incident("3.0.0"), [Delivery(WEBHOOK, page("3.0.0"))]
        )
        head = await store.outbox_head(WEBHOOK)
        assert head is not None
        await store.mark_dead(head.id, "HTTP 400")
        await store.resolve_incident(incident.dedup_key, "unpublished")
        return head.id

    item_id = await read(tmp_path / "state.db", prepare)
    done = await run("outbox", "requeue", "--config", str(config), str(item_id))
    assert done.returncode == 0
    assert "already resolved" in done.stderr


# ----------------------------------------------------------------------------------- retry


async def test_retry_failed_release_by_id_and_all(state: State) -> None:
    async def failed_id(store: Store) -> int:
        [failed] = await store.releases_in_state([ReleaseState.FAILED])
        return failed.id

    release_id = await read(state.path, failed_id)
    done = await run("releases", "retry", "--config", str(state.config), str(release_id))
    assert done.returncode == 0, done.stderr
    assert f"retrying #{release_id} npm:demo@2.0.0" in done.stdout

    async def check(store: Store) -> None:
        found = await store.get_release_by_id(release_id)
        assert found is not None and found.state is ReleaseState.PENDING
        assert found.attempts == 0 and found.next_attempt_at is None  # due now

    await read(state.path, check)
    again = await run("releases", "retry", "--config", str(state.config), str(release_id))
    assert again.returncode == 1
    assert "is pending, not failed" in again.stderr
    missing = await run("releases", "retry", "--config", str(state.config), "999")
    assert missing.returncode == 1 and "#999: no such release" in missing.stderr
    nothing = await run("releases", "retry", "--config", str(state.config), "--all-failed")
    assert nothing.returncode == 1 and "nothing to retry" in nothing.stdout

    async def fail_two(store: Store) -> None:
        for stored in await store.claim_pending(5):
            await store.mark_failed(stored.id, "scan: boom")

    await read(state.path, fail_two)
    both = await run("releases", "retry", "--all-failed", "--config", str(state.config))
    assert both.returncode == 0 and both.stdout.count("retrying #") == 1  # one per package


# ------------------------------------------------------------------------------ exit codes


@pytest.mark.parametrize(
    "args",
    [
        ("outbox", "requeue"),  # no selector
        ("outbox", "requeue", "--all", "--channel", WEBHOOK),
        ("outbox", "requeue", "1", "--all"),
        ("outbox", "requeue", "abc"),
        ("releases", "retry"),
        ("releases", "retry", "1", "--all-failed"),
        ("releases", "--state", "scanned"),
    ],
)
async def test_usage_errors_exit_two(state: State, args: tuple[str, ...]) -> None:
    done = await run(*args, "--config", str(state.config))
    assert done.returncode == 2, (args, done.stdout, done.stderr)


async def test_missing_or_broken_config_exits_two_and_no_state_exits_one(tmp_path: Path) -> None:
    assert (await run("outbox")).returncode == 2, "--config is required"
    assert (await run("releases", "retry", "--all-failed")).returncode == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("packages: []\nowners: {}\n")
    done = await run("outbox", "--config", str(broken))
    assert done.returncode == 2 and done.stderr.startswith("watcher:")
    fresh = write_config(tmp_path)
    empty = await run("outbox", "requeue", "--all", "--config", str(fresh))
    assert empty.returncode == 1 and "no state yet" in empty.stderr
    assert not (tmp_path / "state.db").exists(), "a listing never creates a state file"
