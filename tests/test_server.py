"""/metrics, /healthz and /readyz on a real port: readiness flips with feed health, the scrape hook
refreshes store gauges, and every metric the service promises is exposed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from watcher import metrics
from watcher.service.server import FeedHealth, HttpServer, Readiness, build_app, readiness

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROMISED = [
    "watcher_feed_events_total",
    "watcher_feed_polls_total",
    "watcher_feed_lag_seconds",
    "watcher_feed_cursor_age_seconds",
    "watcher_releases",
    "watcher_scan_duration_seconds",
    "watcher_scan_bytes_total",
    "watcher_findings_total",
    "watcher_incidents_opened_total",
    "watcher_incidents_resolved_total",
    "watcher_outbox_depth",
    "watcher_outbox_oldest_age_seconds",
    "watcher_deliveries_total",
    "watcher_publish_to_page_seconds",
    "watcher_store_up",
]


async def test_ready_only_when_store_open_and_every_feed_recent() -> None:
    now = 1000.0
    fresh = FeedHealth("npm-poll", 1.0, now - 2.0)
    assert readiness(True, [fresh], now=now).ready
    assert not readiness(False, [fresh], now=now).ready
    never = readiness(True, [fresh, FeedHealth("pypi-poll", 60.0, None)], now=now)
    assert not never.ready and "pypi-poll: no successful poll yet" in never.reasons
    stale = readiness(True, [FeedHealth("npm-poll", 1.0, now - 3.5)], now=now)
    assert not stale.ready and "npm-poll" in stale.reasons[0]


@dataclass
class State:
    feeds: list[FeedHealth]
    scrapes: int = 0


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, State]]:
    state = State([FeedHealth("npm-poll", 1.0, None)])

    async def before_scrape() -> None:
        state.scrapes += 1
        metrics.OUTBOX_DEPTH.labels("team/webhook").set(state.scrapes)

    def check() -> Readiness:
        return readiness(True, state.feeds)

    server = HttpServer(build_app(check, before_scrape=before_scrape), "127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", state
    finally:
        await server.stop()


async def test_readyz_flips_with_feed_health(served: tuple[str, State]) -> None:
    url, state = served
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/healthz") as response:
            assert response.status == 200
        async with session.get(url + "/readyz") as response:
            assert response.status == 503
            assert "npm-poll: no successful poll yet" in (await response.json())["reasons"]
        state.feeds = [FeedHealth("npm-poll", 1.0, time.time())]
        async with session.get(url + "/readyz") as response:
            assert response.status == 200 and (await response.json())["ready"] is True
        state.feeds = [FeedHealth("npm-poll", 1.0, time.time() - 10)]
        async with session.get(url + "/readyz") as response:
            assert response.status == 503


async def test_metrics_exposes_every_promised_metric(served: tuple[str, State]) -> None:
    url, state = served
    # touch labelled metrics so each has a sample line
    metrics.FEED_NEWEST_LAG.labels("npm").set(1)
    metrics.FEED_CURSOR_AGE.labels("npm", "npm-poll").set(1)
    metrics.RELEASES_BY_STATE.labels("pending").set(0)
    metrics.SCAN_DURATION.labels("npm", "scanned")
    metrics.SCAN_BYTES.labels("npm")
    metrics.FINDINGS.labels("npm", "secret", "critical")
    metrics.INCIDENTS_OPENED.labels("npm")
    metrics.INCIDENTS_RESOLVED.labels("npm")
    metrics.DELIVERIES.labels("team/webhook", "delivered")
    metrics.PUBLISH_TO_PAGE.labels("npm", "team/webhook")
    metrics.FEED_EVENTS.labels("npm", "npm-poll", "release")
    metrics.FEED_POLLS.labels("npm", "npm-poll", "error")
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    for name in PROMISED:
        assert any(n == name or n.startswith(name + "_") for n in names), name
    assert state.scrapes == 1, "the store gauges are refreshed right before the scrape"
    assert 'watcher_outbox_depth{channel="team/webhook"} 1.0' in text
    ours = [line for line in text.splitlines() if line.startswith("watcher_")]
    assert not [line for line in ours if "version=" in line], "no version is ever a label"
