"""Containment decisions on registry documents in their documented shapes (npm packuments as npm
and Verdaccio serve them, full-unpublish tombstones; PyPI Simple pages in PEP 691 JSON and PEP 503
HTML with PEP 592 yanks), and the watcher against a real SQLite store and a loopback aiohttp
registry: updates posted once (also across a restart), resolve queued on every channel only when
the file is really gone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from watcher import metrics
from watcher.alerts.console import render
from watcher.alerts.slack import message as slack_message
from watcher.config import Config, parse_config
from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.ecosystems.npm.client import NpmClient, parse_packument
from watcher.ecosystems.npm.containment import UNPUBLISHED, assess_npm
from watcher.ecosystems.npm.unit import NpmRegistry
from watcher.ecosystems.pypi.client import PypiClient, parse_page
from watcher.ecosystems.pypi.containment import (
    FILES_DELETED,
    PROJECT_DELETED,
    RELEASE_DELETED,
    assess_pypi,
)
from watcher.ecosystems.pypi.unit import PypiRegistry
from watcher.incidents.lifecycle import event_id_for
from watcher.model import (
    AlertEvent,
    Category,
    Ecosystem,
    EventType,
    Finding,
    Incident,
    IncidentState,
    Severity,
)
from watcher.service.containment import ContainmentWatcher
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.types import Delivery

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")

# ---------------------------------------------------------------------------------- documents

T0 = "2026-03-31T00:59:04.644Z"


def npm_version(name: str, version: str, base: str, **extra: Any) -> dict[str, Any]:
    short = name.rsplit("/", 1)[-1]
    return {
        "name": name,
        "version": version,
        "main": "index.js",
        "dist": {
            "shasum": "0" * 40,
            "integrity": "sha512-" + "A" * 86 + "==",
            "tarball": f"{base}/{name}/-/{short}-{version}.tgz",
        },
        **extra,
    }


def packument(
    name: str,
    versions: dict[str, dict[str, Any]],
    tags: dict[str, str],
    times: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A full packument (`Accept: application/json`) as the registry serves it."""
    stamp = {v: T0 for v in versions}
    return {
        "_id": name,
        "_rev": "7-0123456789abcdef0123456789abcdef",
        "name": name,
        "dist-tags": tags,
        "versions": versions,
        "time": {"created": T0, "modified": T0, **stamp, **(times or {})},
        "maintainers": [{"name": "acme", "email": "ops@acme.example"}],
    }


BASE = "http://registry.invalid"
NAME = "@acme/cli"


def three_versions(**bad_extra: Any) -> dict[str, dict[str, Any]]:
    return {
        "1.0.0": npm_version(NAME, "1.0.0", BASE),
        "1.1.0": npm_version(NAME, "1.1.0", BASE, **bad_extra),
        "1.1.1": npm_version(NAME, "1.1.1", BASE),
    }


def test_listed_version_is_open_and_reports_its_tags() -> None:
    doc = parse_packument(packument(NAME, three_versions(), {"latest": "1.1.0", "next": "1.1.0"}))
    verdict = assess_npm(doc, NAME, "1.1.0")
    assert not verdict.contained
    assert verdict.mitigations == ()
    assert verdict.dist_tags == ("latest", "next")


def test_deprecated_version_is_a_mitigation_not_containment() -> None:
    doc = parse_packument(
        packument(NAME, three_versions(deprecated="leaked a map; use 1.1.1"), {"latest": "1.1.0"})
    )
    verdict = assess_npm(doc, NAME, "1.1.0", seen_tags=["latest"])
    assert not verdict.contained
    assert [m.kind for m in verdict.mitigations] == ["deprecated"]
    assert "leaked a map; use 1.1.1" in verdict.mitigations[0].message


def test_dist_tag_moved_off_the_version_is_a_mitigation() -> None:
    doc = parse_packument(packument(NAME, three_versions(), {"latest": "1.1.1"}))
    verdict = assess_npm(doc, NAME, "1.1.0", seen_tags=["latest", "next"])
    assert not verdict.contained
    (moved,) = verdict.mitigations
    assert moved.kind == "dist-tag-moved"
    assert "latest → 1.1.1" in moved.message and "next removed" in moved.message
    # no tag was ever seen on it: nothing moved
    assert assess_npm(doc, NAME, "1.1.0", seen_tags=[]).mitigations == ()


def test_the_next_ordinary_release_taking_latest_is_superseded_not_a_mitigation() -> None:
    """Every moved tag now on a version above the bad one: the owner released, nobody mitigated
    (posted as one line). A tag put back on an older version, or removed, is a mitigation."""
    newer = parse_packument(packument(NAME, three_versions(), {"latest": "1.1.1"}))
    (moved,) = assess_npm(newer, NAME, "1.1.0", seen_tags=["latest"]).mitigations
    assert moved.kind == "superseded"
    assert "latest → 1.1.1" in moved.message and "exact pin" in moved.message
    older = parse_packument(packument(NAME, three_versions(), {"latest": "1.0.0"}))
    (back,) = assess_npm(older, NAME, "1.1.0", seen_tags=["latest"]).mitigations
    assert back.kind == "dist-tag-moved"
    # one tag on a newer release, another removed: someone acted
    (mixed,) = assess_npm(newer, NAME, "1.1.0", seen_tags=["latest", "next"]).mitigations
    assert mixed.kind == "dist-tag-moved"


def test_unpublished_version_with_its_tarball_gone_is_contained() -> None:
    # npmjs keeps the `time` entry of a version unpublished on its own
    versions = three_versions()
    del versions["1.1.0"]
    doc = parse_packument(packument(NAME, versions, {"latest": "1.1.1"}, {"1.1.0": T0}))
    assert "1.1.0" in doc.removed_versions
    verdict = assess_npm(doc, NAME, "1.1.0", tarball_status=404)
    assert verdict.contained and verdict.resolution == UNPUBLISHED
    assert verdict.detail is not None and "1.1.0 was unpublished" in verdict.detail
    assert "HTTP 404" in verdict.detail


def test_unpublished_version_whose_tarball_still_answers_stays_open() -> None:
    # Verdaccio drops the `time` entry as well; a CDN may still serve the file
    versions = three_versions()
    del versions["1.1.0"]
    doc = parse_packument(packument(NAME, versions, {"latest": "1.1.1"}))
    assert not assess_npm(doc, NAME, "1.1.0", tarball_status=200).contained
    assert not assess_npm(doc, NAME, "1.1.0", tarball_status=None).contained
    assert not assess_npm(doc, NAME, "1.1.0", tarball_status=403).contained
    assert assess_npm(doc, NAME, "1.1.0", tarball_status=410).contained


def test_full_unpublish_tombstone_and_missing_document_are_contained() -> None:
    tombstone = {
        "_id": NAME,
        "_rev": "9-aaaa",
        "name": NAME,
        "time": {
            "created": T0,
            "modified": T0,
            "1.1.0": T0,
            "unpublished": {"time": T0, "versions": ["1.0.0", "1.1.0"]},
        },
        "maintainers": [],
    }
    doc = parse_packument(tombstone)
    verdict = assess_npm(doc, NAME, "1.1.0", tarball_status=404)
    assert verdict.contained
    assert verdict.detail is not None and "the package was unpublished" in verdict.detail
    missing = assess_npm(None, NAME, "1.1.0", tarball_status=404)
    assert missing.contained and missing.resolution == UNPUBLISHED
    assert not assess_npm(None, NAME, "1.1.0", tarball_status=200).contained


# PyPI: Simple API pages (PEP 691 JSON, PEP 503 HTML)

INDEX = "http://index.invalid/simple/acme-sdk/"


def simple_json(files: list[dict[str, Any]], versions: list[str] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "meta": {"api-version": "1.1", "_last-serial": "25862117"},
        "name": "acme-sdk",
        "files": files,
    }
    if versions is not None:
        doc["versions"] = versions
    return json.dumps(doc).encode()


def pyfile(filename: str, yanked: bool | str = False) -> dict[str, Any]:
    return {
        "filename": filename,
        "url": f"../../packages/{filename}",
        "hashes": {"sha256": "ab" * 32},
        "requires-python": ">=3.9",
        "size": 1234,
        "upload-time": "2026-03-31T00:59:04.644000Z",
        "yanked": yanked,
    }


def page(body: bytes, content_type: str = "application/vnd.pypi.simple.v1+json") -> Any:
    return parse_page(body, INDEX, content_type=content_type, project="acme-sdk")


FILES_120 = ["acme_sdk-1.2.0-py3-none-any.whl", "acme_sdk-1.2.0.tar.gz"]
OTHERS = [pyfile("acme_sdk-1.1.0-py3-none-any.whl"), pyfile("acme_sdk-1.3.0.tar.gz")]


def test_pypi_release_served_is_open() -> None:
    doc = page(simple_json([*OTHERS, *(pyfile(f) for f in FILES_120)]))
    verdict = assess_pypi(doc, "acme-sdk", "1.2.0")
    assert not verdict.contained and verdict.mitigations == ()


def test_pypi_yank_of_every_file_is_a_mitigation_and_a_partial_yank_is_nothing() -> None:
    yanked = page(simple_json([*OTHERS, *(pyfile(f, "contains .env") for f in FILES_120)]))
    verdict = assess_pypi(yanked, "acme-sdk", "1.2.0")
    assert not verdict.contained
    (mitigation,) = verdict.mitigations
    assert mitigation.kind == "yanked" and "contains .env" in mitigation.message
    assert "2 file(s) stay downloadable" in mitigation.message
    partial = page(simple_json([*OTHERS, pyfile(FILES_120[0], True), pyfile(FILES_120[1])]))
    assert assess_pypi(partial, "acme-sdk", "1.2.0").mitigations == ()


def test_pypi_deleted_release_files_or_project_are_contained() -> None:
    deleted = page(simple_json(OTHERS, versions=["1.1.0", "1.3.0"]))
    verdict = assess_pypi(deleted, "acme-sdk", "1.2.0")
    assert verdict.contained and verdict.resolution == RELEASE_DELETED
    emptied = page(simple_json(OTHERS, versions=["1.1.0", "1.2.0", "1.3.0"]))
    assert assess_pypi(emptied, "acme-sdk", "1.2.0").resolution == FILES_DELETED
    gone = assess_pypi(None, "acme-sdk", "1.2.0")
    assert gone.contained and gone.resolution == PROJECT_DELETED
    # one of two files deleted: the other still serves the release
    half = page(simple_json([*OTHERS, pyfile(FILES_120[0])]))
    assert not assess_pypi(half, "acme-sdk", "1.2.0").contained


def test_pypi_html_page_and_pep440_equal_versions() -> None:
    anchors = "".join(
        f'<a href="../../packages/{f}#sha256={"ab" * 32}" data-yanked="bad upload">{f}</a>\n'
        for f in FILES_120
    )
    html = f"<!DOCTYPE html><html><body>{anchors}</body></html>".encode()
    doc = page(html, "text/html")
    verdict = assess_pypi(doc, "acme-sdk", "1.2")  # 1.2 == 1.2.0 under PEP 440
    assert [m.kind for m in verdict.mitigations] == ["yanked"]


# ---------------------------------------------------------------------- the watcher, end to end


@dataclass
class FakeRegistry:
    """A loopback registry speaking the npm packument / tarball and PEP 691 page formats; the
    test sets what it serves."""

    docs: dict[str, bytes] = field(default_factory=dict)  # path -> body (JSON)
    statuses: dict[str, int] = field(default_factory=dict)  # path -> status (tarballs)
    requests: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # the escaped scope separator kept (yarl upper-cases it on the way out)
        path = request.raw_path.split("?", 1)[0].replace("%2F", "%2f")
        self.requests.append(f"{request.method} {path}")
        if path in self.docs:
            ctype = (
                "application/vnd.pypi.simple.v1+json"
                if path.startswith("/simple/")
                else "application/json"
            )
            return web.Response(body=self.docs[path], content_type=ctype)
        status = self.statuses.get(path, 404)
        return web.Response(status=status, body=b"tarball" if status == 200 else b"")


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


CONFIG = """
store: {path: unused.db}
registries:
  npm: {url: "%(url)s/"}
  pypi: {url: "%(url)s/simple/"}
packages:
  - {ecosystem: npm, name: "%(npm)s", owner: platform}
  - {ecosystem: pypi, name: acme-sdk, owner: platform}
owners:
  platform:
    slack: {webhook_url: "http://127.0.0.1:9/services/T0/B0/x"}
    webhook: {url: "http://127.0.0.1:9/hook", secret: "whsec_%(key)s"}
    console: true
containment: {check_interval: 1s}
"""


def make_config(url: str) -> Config:
    key = "Y29udGFpbm1lbnQtdGVzdC1rZXktMzItYnl0ZXMhIQ=="
    return parse_config(CONFIG % {"url": url, "npm": NAME, "key": key})


async def open_incident(
    store: Store, ecosystem: Ecosystem, name: str, version: str, published: datetime
) -> int:
    page_incident = Incident(
        dedup_key=Incident.key_for(ecosystem.value, name, version),
        ecosystem=ecosystem,
        name=name,
        version=version,
        owner="platform",
        opened_at=published + timedelta(seconds=30),
        published_at=published,
        findings=[
            Finding(
                rule="dotenv-file",
                category=Category.SENSITIVE_FILE,
                severity=Severity.HIGH,
                path="package/.env",
                message="environment file shipped",
            )
        ],
    )
    event = AlertEvent(
        EventType.OPENED, page_incident, event_id_for(page_incident.dedup_key, EventType.OPENED)
    )
    stored, created = await store.open_incident_with_outbox(
        page_incident, [Delivery("platform/console", event)]
    )
    assert created and stored.id is not None
    return stored.id


async def outbox_events(store: Store, channel: str) -> list[tuple[EventType | None, AlertEvent]]:
    out = []
    while (item := await store.outbox_head(channel)) is not None:
        assert item.event is not None, item.unreadable
        out.append((item.event_type, item.event))
        await store.mark_delivered(item.id)
    return out


@SESSION_LOOP
async def test_npm_watcher_posts_each_update_once_and_resolves_only_when_the_file_is_gone(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    config = make_config(registry.url)
    doc_path = "/@acme%2fcli"
    tarball = "/@acme/cli/-/cli-1.1.0.tgz"
    versions = {v: npm_version(NAME, v, registry.url) for v in ("1.0.0", "1.1.0")}
    registry.docs[doc_path] = json.dumps(packument(NAME, versions, {"latest": "1.1.0"})).encode()
    registry.statuses[tarball] = 200
    published = datetime.now(UTC) - timedelta(hours=2)

    store = await open_store(tmp_path / "state.db")
    http = RegistryHttp(HttpSettings(attempts=2, backoff_initial=0.01))
    try:
        incident_id = await open_incident(store, Ecosystem.NPM, NAME, "1.1.0", published)
        await outbox_events(store, "platform/console")  # the opening page went out
        pages: list[int] = []
        clients = {
            Ecosystem.NPM: NpmRegistry(
                NpmClient(http, config.registries.npm.url or ""), frozenset()
            )
        }
        watcher = ContainmentWatcher(store, config, clients, on_page=lambda: pages.append(1))
        assert watcher.interval == 1.0

        (first,) = await watcher.check_once()
        assert not first.contained and first.posted == ()
        assert (await store.incident_notes(incident_id)) == {"dist-tags": '["latest"]'}

        # npm deprecate + dist-tag add 1.0.0 latest
        versions["1.1.0"]["deprecated"] = "do not use"
        registry.docs[doc_path] = json.dumps(
            packument(NAME, versions, {"latest": "1.0.0"})
        ).encode()
        (second,) = await watcher.check_once()
        assert sorted(second.posted) == ["deprecated", "dist-tag-moved"]
        assert pages == [1, 1]
        for channel in ("platform/slack", "platform/webhook", "platform/console"):
            queued = await outbox_events(store, channel)
            assert [e for e, _ in queued] == [EventType.UPDATED, EventType.UPDATED]
            ids = {p.event_id for _, p in queued}
            assert len(ids) == 2, "each update has its own event id (receivers dedup on it)"
            assert all(p.type is EventType.UPDATED for _, p in queued)

        # again, and after a restart: nothing is posted twice
        (third,) = await watcher.check_once()
        restarted = ContainmentWatcher(store, config, clients)
        (fourth,) = await restarted.check_once()
        assert third.posted == () and fourth.posted == ()
        assert await store.outbox_head("platform/slack") is None

        # unpublished from the document, but the tarball is still served: not contained
        del versions["1.1.0"]
        registry.docs[doc_path] = json.dumps(
            packument(NAME, versions, {"latest": "1.0.0"})
        ).encode()
        (fifth,) = await watcher.check_once()
        assert not fifth.contained
        assert f"HEAD {tarball}" in registry.requests
        stored = await store.get_incident(Incident.key_for("npm", NAME, "1.1.0"))
        assert stored is not None and stored.state is IncidentState.OPEN

        # the tarball answers 404: contained, resolved on every channel
        before = metrics.TIME_TO_CONTAIN.labels("npm")._sum.get()
        registry.statuses[tarball] = 404
        (sixth,) = await watcher.check_once()
        assert sixth.contained and sixth.resolved and sixth.resolution == UNPUBLISHED
        stored = await store.get_incident(Incident.key_for("npm", NAME, "1.1.0"))
        assert stored is not None and stored.state is IncidentState.RESOLVED
        assert stored.resolution == UNPUBLISHED
        took = metrics.TIME_TO_CONTAIN.labels("npm")._sum.get() - before
        assert 2 * 3600 - 60 < took < 2 * 3600 + 60, "time to contain runs from publish"
        for channel in ("platform/slack", "platform/webhook", "platform/console"):
            ((event, resolved),) = await outbox_events(store, channel)
            assert event is EventType.RESOLVED
            assert resolved.type is EventType.RESOLVED
            assert resolved.event_id == event_id_for(stored.dedup_key, EventType.RESOLVED)
            assert resolved.incident.resolution == UNPUBLISHED
            assert resolved.incident.findings, "the resolve carries the page's incident"
            assert resolved.message is not None and "HTTP 404" in resolved.message
        # resolved incidents are no longer checked
        assert await watcher.check_once() == []
    finally:
        await http.close()
        await store.close()


@SESSION_LOOP
async def test_the_next_release_taking_latest_posts_one_line_once(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    """The owner publishes 1.2.0 and `latest` leaves the bad 1.1.0: one update, `brief`, that the
    console prints as one line and Slack as one section; not posted again after a restart."""
    config = make_config(registry.url)
    doc_path = "/@acme%2fcli"
    versions = {v: npm_version(NAME, v, registry.url) for v in ("1.0.0", "1.1.0")}
    registry.docs[doc_path] = json.dumps(packument(NAME, versions, {"latest": "1.1.0"})).encode()
    store = await open_store(tmp_path / "state.db")
    http = RegistryHttp(HttpSettings(attempts=2, backoff_initial=0.01))
    try:
        await open_incident(store, Ecosystem.NPM, NAME, "1.1.0", datetime.now(UTC))
        await outbox_events(store, "platform/console")
        clients = {
            Ecosystem.NPM: NpmRegistry(
                NpmClient(http, config.registries.npm.url or ""), frozenset()
            )
        }
        watcher = ContainmentWatcher(store, config, clients)
        assert (await watcher.check_once())[0].posted == ()  # the tags on 1.1.0 recorded

        versions["1.2.0"] = npm_version(NAME, "1.2.0", registry.url)
        registry.docs[doc_path] = json.dumps(
            packument(NAME, versions, {"latest": "1.2.0"})
        ).encode()
        assert (await watcher.check_once())[0].posted == ("superseded",)
        ((kind, event),) = await outbox_events(store, "platform/console")
        assert kind is EventType.UPDATED and event.kind == "superseded" and event.brief
        text = render(event)
        assert text.count("\n") == 1, f"one line: {text!r}"
        assert "latest → 1.2.0" in text and "1.1.0 is still installable" in text
        assert "stays open" in text and "Findings" not in text and "Still open" not in text
        slack_body = slack_message(event)
        assert len(slack_body["blocks"]) == 1 and "\n" not in slack_body["text"]
        assert (await ContainmentWatcher(store, config, clients).check_once())[0].posted == ()
    finally:
        await http.close()
        await store.close()


@SESSION_LOOP
async def test_pypi_watcher_yank_then_delete(registry: FakeRegistry, tmp_path: Path) -> None:
    config = make_config(registry.url)
    page_path = "/simple/acme-sdk/"
    files = [pyfile(f) for f in FILES_120]
    registry.docs[page_path] = simple_json([*OTHERS, *files])
    store = await open_store(tmp_path / "state.db")
    http = RegistryHttp(HttpSettings(attempts=2, backoff_initial=0.01))
    try:
        await open_incident(
            store, Ecosystem.PYPI, "acme-sdk", "1.2.0", datetime.now(UTC) - timedelta(minutes=5)
        )
        clients = {Ecosystem.PYPI: PypiRegistry(PypiClient(http, f"{registry.url}/simple/"))}
        watcher = ContainmentWatcher(store, config, clients)
        assert [r.contained for r in await watcher.check_once()] == [False]

        registry.docs[page_path] = simple_json([*OTHERS, *(pyfile(f, True) for f in FILES_120)])
        (yanked,) = await watcher.check_once()
        assert yanked.posted == ("yanked",) and not yanked.contained
        (again,) = await watcher.check_once()
        assert again.posted == ()

        registry.docs[page_path] = simple_json(OTHERS, versions=["1.1.0", "1.3.0"])
        (deleted,) = await watcher.check_once()
        assert deleted.resolved and deleted.resolution == RELEASE_DELETED
        queued = await outbox_events(store, "platform/webhook")
        assert [e for e, _ in queued] == [EventType.UPDATED, EventType.RESOLVED]

        # a registry error is reported per incident and changes nothing
        await open_incident(store, Ecosystem.PYPI, "acme-sdk", "1.3.0", datetime.now(UTC))
        registry.docs.pop(page_path)
        registry.statuses[page_path] = 500
        (failed,) = await watcher.check_once()
        assert failed.error is not None and not failed.contained
    finally:
        await http.close()
        await store.close()
