"""The operator commands against a running `watcher run` subprocess (real Verdaccio, real Standard
Webhooks receiver, one state file shared through SQLite WAL): a page dead-lettered by a 400 is
requeued and arrives once; a release that failed (its tarball refused) is retried and scanned; a
channel its endpoint disabled (410) comes back after `outbox.disabled_recheck`, or at once with
`watcher outbox requeue --channel`. No restart anywhere."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from npm_servers import Verdaccio
from servers_common import free_port
from service_harness import (
    RewritingProxy,
    ServiceProcess,
    accepted,
    leaky_files,
    publish,
    start_config,
    unique,
    until,
    wait_release,
)

from tests.receivers import Receiver, Scripted

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHANNEL = "team/webhook"


def make_service(
    tmp_path: Path, registry: str, name: str, hook: tuple[Receiver, str], extra: str = ""
) -> ServiceProcess:
    receiver, secret = hook
    return start_config(
        tmp_path,
        npm_url=registry,
        packages=[name],
        webhook_url=receiver.url,
        secret=secret,
        extra=extra,
    )


async def cli(service: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`watcher ARGS --config FILE` in its own process, while the service runs."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "watcher.cli", *args, "--config", str(service.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def cli_json(service: ServiceProcess, *args: str) -> Any:
    done = await cli(service, *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def metric(service: ServiceProcess, line_start: str) -> str | None:
    status, text = await asyncio.to_thread(service.get, "/metrics")
    assert status == 200
    return next((line for line in text.splitlines() if line.startswith(line_start)), None)


async def test_dead_lettered_page_is_requeued_and_arrives_once(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, _ = hook
    name = unique("svc-requeue")
    await publish(verdaccio, name, "1.0.0")
    receiver.script(Scripted(400, body="bad request"))  # permanent for this page: dead letter
    service = make_service(tmp_path, verdaccio.url, name, hook)
    service.start()
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", name, "1.0.0")
        await publish(verdaccio, name, "1.0.1", leaky_files("a"))
        await receiver.wait_for(1, within=20)

        async def dead_letters() -> list[dict[str, Any]]:
            return list((await cli_json(service, "outbox"))["dead_letters"])

        await until(lambda: _nonempty(dead_letters))
        [dead] = await dead_letters()
        assert dead["channel"] == CHANNEL and dead["event"] == "opened"
        assert dead["dedup_key"] == f"watcher/npm/{name}/1.0.1"
        assert dead["reason"].startswith("HTTP 400")
        assert accepted(receiver) == []

        done = await cli(service, "outbox", "requeue", str(dead["id"]))
        assert done.returncode == 0, done.stderr
        await until(lambda: _count(accepted(receiver), 1), within=10)
        await asyncio.sleep(1.5)  # a second delivery would have had time to happen
        assert [v for _, v in accepted(receiver)] == ["1.0.1"], "delivered once"
        assert len(receiver.requests) == 2  # the 400, then the accepted one
        receiver.assert_valid()
        assert await dead_letters() == []
        again = await cli(service, "outbox", "requeue", str(dead["id"]))
        assert again.returncode == 1, "nothing left to requeue"
        assert service.proc is not None and service.proc.poll() is None
    finally:
        service.ensure_stopped()


class RefusingProxy(RewritingProxy):
    """A RewritingProxy that answers 404 for the paths containing a refused substring."""

    refused: tuple[str, ...] = ()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if any(part in request.rel_url.path for part in self.refused):
            return web.Response(status=404, text="not found (refused by the test)")
        return await super()._handle(request)


async def test_failed_release_is_retried_and_scanned(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, _ = hook
    name = unique("svc-retry")
    await publish(verdaccio, name, "1.0.0")
    proxy = RefusingProxy(verdaccio.url)
    await proxy.start(free_port())
    service = make_service(tmp_path, proxy.url, name, hook)
    service.start()
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", name, "1.0.0")
        proxy.refused = (f"{name}-1.0.1.tgz",)
        await publish(verdaccio, name, "1.0.1", leaky_files("a"))
        failed = await wait_release(tmp_path / "state.db", name, "1.0.1", ("failed",), within=40)
        listed = await cli_json(service, "releases", "--state", "failed")
        assert [(r["id"], r["version"]) for r in listed["releases"]] == [(failed.id, "1.0.1")]
        assert listed["releases"][0]["last_error"]
        assert receiver.requests == [], "a failed release pages nobody"

        proxy.refused = ()  # the cause is fixed
        done = await cli(service, "releases", "retry", str(failed.id))
        assert done.returncode == 0, done.stderr
        scanned = await wait_release(tmp_path / "state.db", name, "1.0.1", within=20)
        assert scanned.attempts == 1, "attempts were reset before the retry"
        await receiver.wait_for(1, within=20)
        assert [v for _, v in accepted(receiver)] == ["1.0.1"], "the retried scan paged"
        assert (await cli_json(service, "releases", "--state", "failed"))["releases"] == []
    finally:
        service.ensure_stopped()
        await proxy.close()


async def test_disabled_channel_comes_back_after_the_cool_down(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, _ = hook
    name = unique("svc-recheck")
    await publish(verdaccio, name, "1.0.0")
    receiver.script(Scripted(410))  # the endpoint says it is gone, once
    service = make_service(
        tmp_path, verdaccio.url, name, hook, extra="outbox: {disabled_recheck: 10s}\n"
    )
    service.start()
    gauge = f'watcher_channel_disabled{{channel="{CHANNEL}"}}'
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", name, "1.0.0")
        await publish(verdaccio, name, "1.0.1", leaky_files("a"))
        await receiver.wait_for(1, within=20)
        status = await cli(service, "status")
        assert f"channel {CHANNEL} DISABLED" in status.stdout, status.stdout
        assert await metric(service, gauge) == f"{gauge} 1.0"
        assert accepted(receiver) == []

        await until(lambda: _count(accepted(receiver), 1), within=25)
        assert [v for _, v in accepted(receiver)] == ["1.0.1"]
        assert "DISABLED" not in (await cli(service, "status")).stdout
        assert await metric(service, gauge) == f"{gauge} 0.0"
        events = [e["event"] for e in service.logs()]
        assert "channel_disabled" in events and "channel_enabled" in events
    finally:
        service.ensure_stopped()


async def test_requeue_channel_enables_it_at_once(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, _ = hook
    name = unique("svc-enable")
    await publish(verdaccio, name, "1.0.0")
    receiver.script(Scripted(410))
    service = make_service(tmp_path, verdaccio.url, name, hook)  # default recheck: 1h
    service.start()
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", name, "1.0.0")
        await publish(verdaccio, name, "1.0.1", leaky_files("a"))
        await receiver.wait_for(1, within=20)
        view = await cli_json(service, "outbox")
        [channel] = [c for c in view["channels"] if c["channel"] == CHANNEL]
        assert channel["disabled"] is not None and channel["depth"] == 1

        done = await cli(service, "outbox", "requeue", "--channel", CHANNEL)
        assert done.returncode == 0, done.stderr
        assert f"enabled channel {CHANNEL}" in done.stdout
        await until(lambda: _count(accepted(receiver), 1), within=5)
        assert [v for _, v in accepted(receiver)] == ["1.0.1"]
    finally:
        service.ensure_stopped()


async def _nonempty(read: Callable[[], Awaitable[list[Any]]]) -> bool:
    return bool(await read())


async def _count(items: list[Any], at_least: int) -> bool:
    return len(items) >= at_least
