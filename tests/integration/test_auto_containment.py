"""Automatic containment end to end: `watcher run` as a real subprocess against a real Verdaccio,
paging real loopback receivers.

A leaky release that became `latest` is moved off `latest` and deprecated by the watcher within
10 s of publish, with one page saying so (the opening page waits for the outcome) and no second
"mitigation" for its own changes; dry run changes nothing and says what it would have done; a
token without rights gives one clear page with the manual commands and no retry storm; what
finishes after the page went out (a restart) is one update.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from npm_servers import Verdaccio
from servers_common import free_port
from service_harness import ServiceProcess, wait_release, webhook_secret
from test_containment_e2e import leak, of_type, run_cli, until, write_config

from tests import fakecreds
from tests.receivers import Receivers, all_receivers
from watcher.ecosystems.npm.writes import NpmActions
from watcher.model import Ecosystem, incident_key
from watcher.store import open_store
from watcher.store.types import ContainmentJob, JobState

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    async with all_receivers(webhook_secret()) as found:
        yield found


def with_auto(config: Path, auto: str) -> Path:
    text = config.read_text().replace(
        "containment: {check_interval: 500ms}\n",
        f"containment:\n  check_interval: 500ms\n  auto: {auto}\n",
    )
    config.write_text(text)
    return config


async def jobs_of(state: Path, key: str) -> list[tuple[str, str, JobState, str | None]]:
    store = await open_store(state)
    try:
        incident = await store.get_incident(key)
        if incident is None or incident.id is None:
            return []
        return [
            (j.action, j.target, j.state, j.detail)
            for j in await store.containment_jobs(incident.id)
        ]
    finally:
        await store.close()


async def _start(
    verdaccio: Verdaccio, rx: Receivers, tmp_path: Path, auto: str
) -> tuple[ServiceProcess, str, Path]:
    name = f"auto-{free_port()}"
    port = free_port()
    config = with_auto(write_config(tmp_path, port, verdaccio.url, name, rx), auto)
    await asyncio.to_thread(verdaccio.publish, name, "1.0.0")
    service = ServiceProcess(config, port, tmp_path)
    service.start()
    await service.wait_ready()
    await wait_release(tmp_path / "state.db", name, "1.0.0")
    return service, name, config


def opening_message(rx: Receivers) -> str:
    (page,) = of_type(rx.hook, "incident.opened")
    return str(page.json()["data"]["message"] or "")


async def test_leaky_latest_is_moved_back_and_deprecated_within_10s_with_one_page(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    rx = receivers
    auto = json.dumps({"npm": {"token": verdaccio.token}})
    service, name, config = await _start(verdaccio, rx, tmp_path, auto)
    try:
        published = time.monotonic()
        await asyncio.to_thread(
            verdaccio.publish, name, "1.1.0", leak(fakecreds.npm_token(random.Random(9)))
        )
        assert verdaccio.packument(name)["dist-tags"]["latest"] == "1.1.0"

        def contained() -> bool:
            doc = verdaccio.packument(name)
            return doc["dist-tags"]["latest"] == "1.0.0" and bool(
                doc["versions"]["1.1.0"].get("deprecated")
            )

        await until(contained, "latest back on 1.0.0 and 1.1.0 deprecated", 10)
        took = time.monotonic() - published
        assert took < 10, took
        doc = verdaccio.packument(name)
        key = incident_key("npm", name, "1.1.0")
        assert key in doc["versions"]["1.1.0"]["deprecated"]
        assert "use 1.0.0" in doc["versions"]["1.1.0"]["deprecated"]

        await until(lambda: len(of_type(rx.hook, "incident.opened")) == 1, "the page", 20)
        message = opening_message(rx)  # the opening page waited for the outcome and says it
        assert "auto-contained: latest 1.1.0 → 1.0.0, 1.1.0 deprecated" in message, message
        assert "s after publish" in message and "rotate every credential" in message
        assert f"npm unpublish {name}@1.1.0" in message
        jobs = await jobs_of(tmp_path / "state.db", key)
        assert [(a, t, s) for a, t, s, _ in jobs] == [
            ("dist_tag", "latest", JobState.DONE),
            ("deprecate", "1.1.0", JobState.DONE),
        ]
        # several containment checks later: the watcher's own changes are no second mitigation,
        # and the outcome the opening page carried is no update of its own
        await asyncio.sleep(2.0)
        assert len(of_type(rx.hook, "incident.opened")) == 1
        assert of_type(rx.hook, "incident.updated") == []
        metrics = service.get("/metrics")[1]
        assert (
            'watcher_auto_containment_total{action="dist_tag",ecosystem="npm",outcome="done"} 1.0'
            in metrics
        )
        assert 'watcher_publish_to_contained_seconds_count{ecosystem="npm"} 1.0' in metrics

        # undo: the dist-tag back where it was, the deprecation removed, one update saying so
        code, printed = await asyncio.to_thread(
            run_cli, "contain", "--undo", f"{name}@1.1.0", "--config", str(config)
        )
        assert code == 0, printed
        assert "undone: dist_tag latest: latest 1.0.0 → 1.1.0" in printed, printed
        assert "undone: deprecate 1.1.0: 1.1.0 deprecation removed" in printed
        doc = verdaccio.packument(name)
        assert doc["dist-tags"]["latest"] == "1.1.0"
        assert not doc["versions"]["1.1.0"].get("deprecated")
        await until(lambda: len(of_type(rx.hook, "incident.updated")) == 1, "the undo update", 20)
        undone = of_type(rx.hook, "incident.updated")[0].json()["data"]["message"]
        assert undone.startswith("automatic containment undone by an operator"), undone
        # a second undo finds nothing left to do and changes nothing
        code, printed = await asyncio.to_thread(
            run_cli, "contain", "--undo", key, "--config", str(config)
        )
        assert code == 0 and printed.count("undone:") == 2, printed
        await asyncio.sleep(1.5)  # the service neither re-contains nor posts the undo as news
        assert verdaccio.packument(name)["dist-tags"]["latest"] == "1.1.0"
        assert len(of_type(rx.hook, "incident.updated")) == 1
    finally:
        service.terminate()


async def test_dry_run_changes_nothing_and_says_what_it_would_do(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    rx = receivers
    auto = json.dumps({"dry_run": True, "npm": {"token": verdaccio.token}})
    service, name, _ = await _start(verdaccio, rx, tmp_path, auto)
    try:
        await asyncio.to_thread(
            verdaccio.publish, name, "1.1.0", leak(fakecreds.npm_token(random.Random(10)))
        )
        await until(lambda: len(of_type(rx.hook, "incident.opened")) == 1, "the page", 30)
        message = opening_message(rx)
        assert "dry run, nothing changed" in message, message
        assert "move latest 1.1.0 → 1.0.0" in message and "deprecate 1.1.0" in message
        doc = verdaccio.packument(name)
        assert doc["dist-tags"]["latest"] == "1.1.0"
        assert not doc["versions"]["1.1.0"].get("deprecated")
        metrics = service.get("/metrics")[1]
        for action in ("dist_tag", "deprecate"):
            for outcome, count in (("dry_run", 1.0), ("done", 0.0)):
                series = f'{{action="{action}",ecosystem="npm",outcome="{outcome}"}} {count}'
                assert f"watcher_auto_containment_total{series}" in metrics, series
    finally:
        service.terminate()


async def test_a_token_without_rights_pages_clearly_once_and_does_not_retry(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    rx = receivers
    bogus = fakecreds.npm_token(random.Random(11))  # format-valid, belongs to nobody
    auto = json.dumps({"npm": {"token": bogus}})
    service, name, _ = await _start(verdaccio, rx, tmp_path, auto)
    try:
        await asyncio.to_thread(
            verdaccio.publish, name, "1.1.0", leak(fakecreds.npm_token(random.Random(12)))
        )
        await until(lambda: len(of_type(rx.hook, "incident.opened")) == 1, "the page", 30)
        message = opening_message(rx)
        assert "auto-containment failed: dist_tag latest: HTTP 40" in message, message
        assert f"run: npm dist-tag add {name}@1.0.0 latest" in message
        assert f"run: npm deprecate {name}@1.1.0" in message
        assert bogus not in message
        key = incident_key("npm", name, "1.1.0")
        jobs = await jobs_of(tmp_path / "state.db", key)
        assert [s for _, _, s, _ in jobs] == [JobState.FAILED, JobState.FAILED]
        await asyncio.sleep(2.0)
        assert of_type(rx.hook, "incident.updated") == []  # no storm of pages
        retries = [e for e in service.logs() if e.get("event") == "auto_containment_retry"]
        assert retries == []
        assert verdaccio.packument(name)["dist-tags"]["latest"] == "1.1.0"
        assert bogus not in service.stdout()
        metrics = service.get("/metrics")[1]
        for action in ("dist_tag", "deprecate"):
            series = f'{{action="{action}",ecosystem="npm",outcome="failed"}} 1.0'
            assert f"watcher_auto_containment_total{series}" in metrics, series
        assert bogus not in metrics
    finally:
        service.terminate()


class WriteGate:
    """A loopback proxy in front of Verdaccio that forwards everything, except that while
    `blocked` the deprecation (a PUT of the packument) answers 503; counts the writes it saw."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.blocked = True
        self.writes: list[tuple[str, int]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.rel_url.path
        if request.method == "PUT" and "/-/" not in path and self.blocked:
            self.writes.append((f"PUT {path}", 503))
            return web.Response(status=503, text="injected failure")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() in KEEP}
        async with self._session.request(
            request.method, self.upstream + request.rel_url.path_qs, data=body, headers=headers
        ) as upstream:
            data = await upstream.read()
            status = upstream.status
            ctype = upstream.headers.get("content-type", "application/json")
        if request.method == "PUT":
            self.writes.append((f"PUT {path}", status))
        return web.Response(status=status, body=data, headers={"content-type": ctype})

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


KEEP = ("accept", "authorization", "content-type", "if-none-match")


async def test_kill_9_between_the_dist_tag_move_and_the_deprecation_completes_once(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    rx = receivers
    gate = WriteGate(verdaccio.url)
    await gate.start()
    name = f"auto-kill-{free_port()}"
    port = free_port()
    auto = json.dumps({"npm": {"token": verdaccio.token}})
    config = with_auto(write_config(tmp_path, port, gate.url, name, rx), auto)
    state = tmp_path / "state.db"
    key = incident_key("npm", name, "1.1.0")
    await asyncio.to_thread(verdaccio.publish, name, "1.0.0")
    service = ServiceProcess(config, port, tmp_path)
    service.start()
    try:
        await service.wait_ready()
        await wait_release(state, name, "1.0.0")
        await asyncio.to_thread(
            verdaccio.publish, name, "1.1.0", leak(fakecreds.npm_token(random.Random(13)))
        )
        await until(
            lambda: verdaccio.packument(name)["dist-tags"]["latest"] == "1.0.0", "latest moved", 20
        )
        await until(lambda: any(s == 503 for _, s in gate.writes), "a refused deprecation", 20)
        service.kill()  # SIGKILL: the deprecation job is left pending, mid-backoff
        jobs = await jobs_of(state, key)
        assert [(a, s) for a, _, s, _ in jobs] == [
            ("dist_tag", JobState.DONE),
            ("deprecate", JobState.PENDING),
        ]
        assert of_type(rx.hook, "incident.updated") == []  # no outcome posted half-way

        gate.blocked = False
        service = ServiceProcess(config, port, tmp_path)
        service.start()
        await service.wait_ready()
        await until(
            lambda: bool(verdaccio.packument(name)["versions"]["1.1.0"].get("deprecated")),
            "the deprecation after restart",
            30,
        )
        # the outcome is said once: in the opening page when its hold had not ended by the
        # restart, else in one update after it
        outcome = "auto-contained: latest 1.1.0 → 1.0.0, 1.1.0 deprecated"

        def said() -> list[str]:
            pages = of_type(rx.hook, "incident.opened") + of_type(rx.hook, "incident.updated")
            return [str(p.json()["data"]["message"] or "") for p in pages]

        await until(lambda: any(outcome in m for m in said()), "the outcome", 20)
        await asyncio.sleep(1.5)
        tag_moves = [w for w in gate.writes if "/dist-tags/" in w[0]]
        deprecations = [w for w in gate.writes if "/-/" not in w[0] and w[1] < 300]
        assert len(tag_moves) == 1 and len(deprecations) == 1, gate.writes
        jobs = await jobs_of(state, key)
        assert [s for _, _, s, _ in jobs] == [JobState.DONE, JobState.DONE]
        assert len(of_type(rx.hook, "incident.opened")) == 1
        assert [m for m in said() if outcome in m] == [m for m in said() if "auto-contain" in m][
            -1:
        ]
        updates = of_type(rx.hook, "incident.updated")
        assert len(updates) <= 1
        if updates:  # the page had gone out saying what was under way
            assert "auto-containment under way: move latest 1.1.0 → 1.0.0" in opening_message(rx)
    finally:
        service.ensure_stopped()
        await gate.close()


def tarball_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_unpublish_inside_the_window_removes_the_release_and_cannot_be_undone(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    rx = receivers
    auto = json.dumps({"npm": {"token": verdaccio.token, "unpublish": True}})
    service, name, config = await _start(verdaccio, rx, tmp_path, auto)
    try:
        await asyncio.to_thread(
            verdaccio.publish, name, "1.1.0", leak(fakecreds.npm_token(random.Random(14)))
        )
        tarball = verdaccio.packument(name)["versions"]["1.1.0"]["dist"]["tarball"]
        await until(lambda: "1.1.0" not in verdaccio.packument(name)["versions"], "unpublished", 20)
        assert verdaccio.packument(name)["dist-tags"]["latest"] == "1.0.0"
        await until(lambda: len(of_type(rx.hook, "incident.opened")) == 1, "the page", 20)
        # the page waited for every job, the tarball's deletion included
        assert await asyncio.to_thread(tarball_status, tarball) == 404
        message = opening_message(rx)
        assert "1.1.0 unpublished" in message and "this cannot be undone" in message, message
        assert "unpublish if wanted" not in message
        # the registry no longer serves it: the incident resolves (real containment)
        await until(lambda: len(of_type(rx.hook, "incident.resolved")) == 1, "resolved", 20)
        key = incident_key("npm", name, "1.1.0")
        jobs = await jobs_of(tmp_path / "state.db", key)
        assert [(a, s) for a, _, s, _ in jobs] == [
            ("dist_tag", JobState.DONE),
            ("deprecate", JobState.DONE),
            ("unpublish", JobState.DONE),
        ]
        code, printed = await asyncio.to_thread(
            run_cli, "contain", "--undo", key, "--config", str(config)
        )
        assert code == 1, printed
        assert "cannot be undone: unpublish 1.1.0" in printed, printed
        assert "1.1.0" not in verdaccio.packument(name)["versions"]
    finally:
        service.terminate()


async def test_an_unpublish_resumed_after_its_packument_write_deletes_the_tarball_once(
    verdaccio: Verdaccio, tmp_path: Path
) -> None:
    """A crash between the two writes: the version is gone from the packument, the file is not."""
    name = f"auto-half-{free_port()}"
    await asyncio.to_thread(verdaccio.publish, name, "1.0.0")
    await asyncio.to_thread(verdaccio.publish, name, "1.1.0")
    doc = verdaccio.packument(name)
    tarball = doc["versions"]["1.1.0"]["dist"]["tarball"]
    writer = NpmActions(verdaccio.url, {}, verdaccio.token, {})
    job = ContainmentJob(
        1,
        1,
        Ecosystem.NPM,
        name,
        "unpublish",
        "1.1.0",
        {"tarball": tarball, "good": "1.0.0", "manual": f"npm unpublish {name}@1.1.0"},
        JobState.PENDING,
        0,
        0.0,
        None,
        0.0,
        None,
    )
    try:
        # the first write alone, as the job made it before the crash
        async with aiohttp.ClientSession() as http:
            url = f"{verdaccio.url}/{name}"
            headers = {"authorization": f"Bearer {verdaccio.token}"}
            async with http.get(url + "?write=true", headers=headers) as response:
                full = await response.json()
            del full["versions"]["1.1.0"]
            full["dist-tags"] = {"latest": "1.0.0"}
            full.pop("_attachments", None)
            async with http.put(f"{url}/-rev/{full['_rev']}", json=full, headers=headers) as put:
                assert put.status < 300, await put.text()
        assert await asyncio.to_thread(tarball_status, tarball) == 200
        result = await writer.perform(job)
        assert result.done and result.detail == "1.1.0 unpublished", result
        assert await asyncio.to_thread(tarball_status, tarball) == 404
        again = await writer.perform(job)  # once more: nothing left, still done
        assert again.done, again
        assert verdaccio.packument(name)["dist-tags"]["latest"] == "1.0.0"
    finally:
        await writer.close()
