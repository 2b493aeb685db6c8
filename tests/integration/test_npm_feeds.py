"""The npm poll feed and the reconcile backstop against a real Verdaccio and the real SQLite store:
publishes appear as releases, unpublishes as removal events."""

import asyncio
import contextlib

from npm_servers import eventually

from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.ecosystems.npm.client import NpmClient
from watcher.ecosystems.npm.poll import NpmPackageSource, npm_poll_feed, npm_reconcile_feed
from watcher.feeds.base import (
    BaselineSeen,
    PackageUnpublished,
    ReleaseSeen,
    VersionRemoved,
    Watchlist,
)
from watcher.feeds.reconcile import PackageTracker, StaleRetry
from watcher.feeds.sink import record_events
from watcher.store import open_store

FAST = HttpSettings(backoff_initial=0.05, backoff_max=0.2, attempts=4, read_timeout=2.0)


class Recorder:
    """The sink the daemon would give: the store, observed."""

    def __init__(self, store):
        self.store = store
        self.events = []

    async def __call__(self, events):
        await record_events(self.store, events)
        self.events.extend(events)

    def releases(self, kind=ReleaseSeen):
        return {(e.release.name, e.release.version) for e in self.events if isinstance(e, kind)}


@contextlib.asynccontextmanager
async def running(feed):
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_poll_feed_sees_publishes_and_unpublishes(verdaccio, tmp_path):
    verdaccio.publish("poll-a", "1.0.0")
    store = await open_store(tmp_path / "state.db")
    sink = Recorder(store)
    async with RegistryHttp(FAST) as http:
        tracker = PackageTracker(NpmPackageSource(NpmClient(http, verdaccio.url)), store, sink)
        feed = npm_poll_feed(tracker, Watchlist.of(["poll-a", "@wpoll/b"]), interval=0.2)
        async with running(feed):
            await eventually(lambda: ("poll-a", "1.0.0") in sink.releases(BaselineSeen))()
            assert sink.releases(ReleaseSeen) == set()  # first sight never pages

            verdaccio.publish("poll-a", "1.1.0")
            verdaccio.publish("@wpoll/b", "0.1.0")  # watched before it existed: pages
            await eventually(
                lambda: {("poll-a", "1.1.0"), ("@wpoll/b", "0.1.0")} <= sink.releases()
            )()

            # Two publishes between polls, one a backport: both are seen (set difference).
            verdaccio.publish("poll-a", "2.0.0")
            verdaccio.publish("poll-a", "1.1.1", tag="maint")
            await eventually(
                lambda: {("poll-a", "2.0.0"), ("poll-a", "1.1.1")} <= sink.releases()
            )()

            verdaccio.unpublish("poll-a", "1.1.0")
            await eventually(
                lambda: any(
                    isinstance(e, VersionRemoved) and e.version == "1.1.0" for e in sink.events
                )
            )()
            verdaccio.unpublish("@wpoll/b")
            await eventually(lambda: any(isinstance(e, PackageUnpublished) for e in sink.events))()
        assert feed.last_success is not None
        gone = next(e for e in sink.events if isinstance(e, PackageUnpublished))
        assert (gone.name, gone.versions) == ("@wpoll/b", ("0.1.0",))
        assert [r.reason for r in await store.removals("npm", "poll-a", "1.1.0")] == ["unpublished"]
        state = await store.get_package_state("npm", "poll-a")
        assert state.versions == {"1.0.0", "1.1.1", "2.0.0"} and state.etag
        # Each release was reported exactly once however many polls saw it.
        seen = [e.release.version for e in sink.events if isinstance(e, ReleaseSeen)]
        assert sorted(seen) == sorted(set(seen))
    await store.close()


async def test_reconcile_sweep_catches_what_no_feed_delivered_within_budget(verdaccio, tmp_path):
    names = [f"recon-{i}" for i in range(4)]
    for name in names:
        verdaccio.publish(name, "1.0.0")
    store = await open_store(tmp_path / "state.db")
    sink = Recorder(store)
    async with RegistryHttp(FAST) as http:
        tracker = PackageTracker(
            NpmPackageSource(NpmClient(http, verdaccio.url)), store, sink, stale_retry=StaleRetry()
        )
        sweep = npm_reconcile_feed(tracker, Watchlist.of(names), period=0.1, max_rate=20.0)
        await sweep.sweep_once()
        assert len(sink.releases(BaselineSeen)) == 4
        for name in names:
            verdaccio.publish(name, "1.0.1")
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await sweep.sweep_once(spread=True)
        # Paced by the budget (20/s), not by the 0.1 s period: 4 starts need >= 0.15 s.
        assert loop.time() - started >= 0.14
        assert {r.result for r in results} == {"changed"}
        assert sink.releases() == {(n, "1.0.1") for n in names}
        again = await sweep.sweep_once()
        assert {r.result for r in again} == {"not_modified"}  # ETags kept: a 304 each
    await store.close()
