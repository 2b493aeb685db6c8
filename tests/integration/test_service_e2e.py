"""`watcher run` end to end, as a real subprocess polling a real Verdaccio every second and paging a
real Standard Webhooks receiver and the console: baseline without a page, one page for a leak,
none for a clean follow-up; a webhook outage; SIGKILL mid-scan and with a page in flight."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
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
from watcher.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="session")


def make_service(
    tmp_path: Path, registry: str, names: list[str], hook_url: str, secret: str
) -> ServiceProcess:
    return start_config(
        tmp_path, npm_url=registry, packages=names, webhook_url=hook_url, secret=secret
    )


async def test_baseline_then_one_page_for_a_leak_and_none_for_a_clean_release(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("svc-e2e")
    await publish(verdaccio, name, "1.0.0")
    service = make_service(tmp_path, verdaccio.url, [name], receiver.url, secret)
    service.start()
    try:
        await service.wait_ready()
        base = await wait_release(tmp_path / "state.db", name, "1.0.0")
        assert base.baseline, "first sight of the package is its baseline"

        await publish(verdaccio, name, "1.0.1", leaky_files("a"))
        await receiver.wait_for(1, within=20)
        page = receiver.requests[0].json()
        assert page["type"] == "incident.opened"
        assert page["data"]["dedup_key"] == f"watcher/npm/{name}/1.0.1"
        assert [f["rule"] for f in page["data"]["findings"]] == ["sourcemap-embedded-sources"]
        assert page["data"]["runbook"], "the page carries its runbook"
        receiver.assert_valid()  # signature verified by the reference library
        await until(lambda: console_pages(service, name, "1.0.1") == 1)

        await publish(verdaccio, name, "1.0.2")
        await wait_release(tmp_path / "state.db", name, "1.0.2")
        await asyncio.sleep(1.5)  # a page would be queued in the same transaction: give it time
        assert len(receiver.requests) == 1, "a clean release does not page"
        assert console_pages(service, name, "1.0.2") == 0
        assert console_pages(service, name, "1.0.0") == 0, "the baseline does not page"
        assert console_pages(service, name, "1.0.1") == 1

        status, text = await asyncio.to_thread(service.get, "/metrics")
        assert status == 200
        assert 'watcher_incidents_opened_total{ecosystem="npm"} 1.0' in text
        assert 'watcher_releases{state="scanned"} 3.0' in text
        assert 'watcher_deliveries_total{channel="team/webhook",outcome="delivered"} 1.0' in text
        assert (
            'watcher_publish_to_page_seconds_count{channel="team/webhook",ecosystem="npm"} 1.0'
            in text
        )
        assert (
            'watcher_findings_total{category="source-map",ecosystem="npm",severity="critical"}'
            in text
        )
        assert (await asyncio.to_thread(service.get, "/readyz"))[0] == 200

        assert service.terminate() == 0
        events = [e["event"] for e in service.logs()]
        assert "service_drained" in events and "service_stopped" in events
        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "watcher.cli", "status", "--config", str(service.config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert f"{name}@1.0.2: scanned" in status.stdout
        assert f"watcher/npm/{name}/1.0.1 owner team, critical" in status.stdout
        assert "outbox: 0 waiting" in status.stdout
    finally:
        service.ensure_stopped()


async def test_webhook_outage_delivers_every_page_once_in_order(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("svc-outage")
    await publish(verdaccio, name, "1.0.0")
    receiver.script(*[Scripted(503)] * 8)  # the endpoint is down for a while
    service = make_service(tmp_path, verdaccio.url, [name], receiver.url, secret)
    service.start()
    try:
        await service.wait_ready()
        await wait_release(tmp_path / "state.db", name, "1.0.0")
        await publish(verdaccio, name, "1.1.0", leaky_files("a"))
        await wait_release(tmp_path / "state.db", name, "1.1.0")
        await publish(verdaccio, name, "1.2.0", leaky_files("b"))
        await wait_release(tmp_path / "state.db", name, "1.2.0")
        await until(lambda: len(accepted(receiver)) >= 2, within=30)
        await asyncio.sleep(1.0)
    finally:
        service.ensure_stopped()
    failed = [r for r in receiver.requests if r.answered == 503]
    assert len(failed) == 8
    pages = accepted(receiver)
    assert [v for _, v in pages] == ["1.1.0", "1.2.0"], "in order, each once"
    assert len({i for i, _ in pages}) == 2
    # console pages were not held up by the webhook outage
    out = service.stdout()
    assert out.index(f"key watcher/npm/{name}/1.1.0") < out.index(f"key watcher/npm/{name}/1.2.0")


async def test_sigkill_mid_scan_and_mid_delivery_loses_nothing_and_pages_once(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("svc-crash")
    proxy = await RewritingProxy(verdaccio.url).start(free_port())
    state = tmp_path / "state.db"
    await publish(verdaccio, name, "1.0.0")
    service = make_service(tmp_path, proxy.url, [name], receiver.url, secret)
    service.start()
    try:
        await service.wait_ready()
        await wait_release(state, name, "1.0.0")

        # 1. killed while 1.0.1's download hangs: the release is `scanning` in the store
        proxy.hold(f"{name}-1.0.1.tgz")
        await publish(verdaccio, name, "1.0.1", leaky_files("a"))
        await wait_release(state, name, "1.0.1", states=("scanning",))
        await until(lambda: proxy.waiting > 0)
        service.kill()
        proxy.release_held()
        assert not receiver.requests

        # 2. restart: the release is scanned to completion and paged once
        service.start()
        await service.wait_ready()
        done = await wait_release(state, name, "1.0.1")
        await receiver.wait_for(1, within=20)

        # 3. killed while the webhook holds the next page's request open (sent, not accepted)
        receiver.script(Scripted(204, delay=5))
        await publish(verdaccio, name, "1.0.2", leaky_files("b"))
        await receiver.wait_for(2, within=20)
        # the console's page is recorded as delivered before the kill (under load its store
        # write can trail the print, and a kill in between would rightly print it again)
        await until_console_delivered(state)
        service.kill()
        store = await open_store(state)
        try:
            head = await store.outbox_head("team/webhook")
            assert head is not None and head.event is not None
            assert head.event.incident.version == "1.0.2"
        finally:
            await store.close()

        # 4. restart: the queued page is sent again under the same webhook-id; nothing is lost
        service.start()
        await service.wait_ready()
        await until(lambda: len(accepted(receiver)) >= 2, within=20)
        await asyncio.sleep(1.0)
        assert service.terminate() == 0
    finally:
        service.ensure_stopped()
        await proxy.close()

    assert done.attempts == 2, "the attempt cut by the crash stays counted"
    store = await open_store(state)
    try:
        for version in ("1.0.0", "1.0.1", "1.0.2"):
            stored = await store.get_release("npm", name, version)  # type: ignore[arg-type]
            assert stored is not None and stored.state.value == "scanned", version
        incidents = await store.open_incidents()
        assert [i.version for i in incidents] == ["1.0.1", "1.0.2"]
        counts = await store.counts()
        assert counts.outbox_depth == {} and counts.dead_letters == 0
    finally:
        await store.close()
    ids_by_version: dict[str, set[str]] = {}
    for request in receiver.requests:
        version = request.json()["data"]["version"]
        ids_by_version.setdefault(version, set()).add(request.headers["webhook-id"])
    assert {v: len(ids) for v, ids in ids_by_version.items()} == {"1.0.1": 1, "1.0.2": 1}, (
        "one idempotency key per incident, however often it was sent"
    )
    assert [v for _, v in accepted(receiver)] == ["1.0.1", "1.0.2"]
    # the console accepted each page before the kills: never printed twice
    assert console_pages(service, name, "1.0.1") == 1
    assert console_pages(service, name, "1.0.2") == 1


async def until_console_delivered(state: Path) -> None:
    async def drained() -> bool:
        store = await open_store(state)
        try:
            return await store.outbox_head("team/console") is None
        finally:
            await store.close()

    deadline = asyncio.get_running_loop().time() + 20
    while not await drained():
        assert asyncio.get_running_loop().time() < deadline, "console page never recorded"
        await asyncio.sleep(0.05)


def console_pages(service: ServiceProcess, name: str, version: str) -> int:
    """How many console pages the service printed for this release (one `key …` line each)."""
    return service.stdout().count(f"key watcher/npm/{name}/{version}\n")


async def test_readyz_flips_when_the_registry_is_unreachable_and_back(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("svc-ready")
    await publish(verdaccio, name, "1.0.0")
    port = free_port()
    proxy = await RewritingProxy(verdaccio.url).start(port)
    service = make_service(tmp_path, proxy.url, [name], receiver.url, secret)
    service.start()
    try:
        await service.wait_ready()
        await proxy.close()  # the registry is gone: polls fail
        await until(lambda: service.get("/readyz")[0] == 503, within=30)
        body = service.get("/readyz")[1]
        assert "npm-poll: last successful poll" in body
        assert service.get("/healthz")[0] == 200, "alive though not ready"
        proxy = await RewritingProxy(verdaccio.url).start(port)
        await until(lambda: service.get("/readyz")[0] == 200, within=60)
        _, text = service.get("/metrics")
        assert 'watcher_registry_errors_total{ecosystem="npm"' in text
    finally:
        service.ensure_stopped()
        await proxy.close()
