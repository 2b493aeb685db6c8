"""The `_changes` follower against a real CouchDB-protocol server (express-pouchdb) fed with one
document per package as the tests publish to a real Verdaccio, with faults injected by proxies in
front of both: no release is missed, across faults, a sequence reset and a restart."""

import asyncio
import contextlib

from npm_servers import Fault, FaultProxy, eventually
from prometheus_client import REGISTRY
from test_npm_feeds import Recorder

from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.ecosystems.npm.changes import NpmChangesFeed
from watcher.ecosystems.npm.client import NpmClient
from watcher.ecosystems.npm.poll import NpmPackageSource
from watcher.feeds.base import BaselineSeen, PackageUnpublished, Watchlist
from watcher.feeds.reconcile import PackageTracker, StaleRetry, watched_names
from watcher.store import open_store

FAST = HttpSettings(backoff_initial=0.05, backoff_max=0.3, attempts=6, read_timeout=1.0)


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def publish(verdaccio, couch, name, version, **kwargs):
    """Publish, then let the feed announce it with the packument's own revision."""
    verdaccio.publish(name, version, **kwargs)
    couch.mirror(name, verdaccio.packument(name)["_rev"])


def make_feed(http, registry_url, changes_url, store, sink, watchlist, **kwargs):
    tracker = PackageTracker(
        NpmPackageSource(NpmClient(http, registry_url)),
        store,
        sink,
        stale_retry=StaleRetry(initial=0.05, ceiling=0.2, give_up_after=10),
    )
    names = watched_names(watchlist, store, tracker.ecosystem)
    options = {"interval": 0.1, "limit": 3, "head_check_interval": 0.0, **kwargs}
    return NpmChangesFeed(http, changes_url, tracker, watchlist, names, **options)


@contextlib.asynccontextmanager
async def running(feed):
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_follower_starts_at_head_and_turns_rows_into_releases(verdaccio, couch, tmp_path):
    publish(verdaccio, couch, "chg-old", "1.0.0")  # before the follower's first start
    store = await open_store(tmp_path / "state.db")
    sink = Recorder(store)
    watch = Watchlist.of(["chg-old", "chg-new", "@wchg/*"])
    async with RegistryHttp(FAST) as http:
        feed = make_feed(http, verdaccio.url, couch.changes_url, store, sink, watch)
        assert await feed.poll_once() is False  # first start: head + reconcile, nothing read
        assert await store.get_cursor(feed.name) == str(couch.update_seq())
        assert sink.releases(BaselineSeen) == {("chg-old", "1.0.0")}

        publish(verdaccio, couch, "chg-new", "1.0.0")
        publish(verdaccio, couch, "@wchg/scoped", "0.1.0")  # found through the pattern
        publish(verdaccio, couch, "unwatched", "1.0.0")
        publish(verdaccio, couch, "chg-old", "1.1.0")
        publish(verdaccio, couch, "chg-old", "1.2.0")  # coalesces with 1.1.0 into one row
        async with running(feed):
            await eventually(
                lambda: (
                    sink.releases()
                    == {
                        ("chg-new", "1.0.0"),
                        ("@wchg/scoped", "0.1.0"),
                        ("chg-old", "1.1.0"),
                        ("chg-old", "1.2.0"),
                    }
                )
            )()
        assert "@wchg/scoped" in await store.known_packages("npm")
        assert ("@wchg/scoped", "0.1.0") not in sink.releases(BaselineSeen)
        assert await store.get_cursor(feed.name) == str(couch.update_seq())

        verdaccio.unpublish("chg-new")
        couch.mirror("chg-new", "99-deleted", deleted=True)
        async with running(feed):
            await eventually(lambda: any(isinstance(e, PackageUnpublished) for e in sink.events))()
    await store.close()


async def test_no_release_missed_across_faults_reset_and_restart(verdaccio, couch, tmp_path):
    names = ["flt-a", "flt-b", "@wflt/c"]
    for name in names:
        publish(verdaccio, couch, name, "1.0.0")
    registry = await FaultProxy(verdaccio.url).start()
    changes = await FaultProxy(couch.db_url.rsplit("/", 1)[0]).start()
    db = couch.db_url.rsplit("/", 1)[1]
    changes_url = f"{changes.url}/{db}/_changes"
    store = await open_store(tmp_path / "state.db")
    sink = Recorder(store)
    expected = set()
    watch = Watchlist.of(["flt-a", "flt-b", "@wflt/*"])
    resets_before = metric("watcher_feed_cursor_resets_total", ecosystem="npm", feed="npm-changes")
    stale_before = metric("watcher_feed_stale_retries_total", ecosystem="npm")
    try:
        async with RegistryHttp(FAST) as http:
            feed = make_feed(
                http, registry.url, changes_url, store, sink, watch, jump_threshold=500
            )
            await feed.poll_once()  # first start
            # Pattern-matched packages are unknown until a row names them.
            assert len(sink.releases(BaselineSeen)) == 2

            async with running(feed):
                # 5xx bursts, 429 with Retry-After, slow and truncated answers on both sides.
                changes.inject(
                    Fault("status", "_changes", times=2, status=503),
                    Fault("truncate", "_changes"),
                    Fault("retry_after", "_changes", seconds=1),
                )
                registry.inject(
                    Fault("status", "/flt-a", times=3, status=502),
                    Fault("delay", "/flt-b", seconds=2.0),
                    Fault("truncate", "/@wflt%2fc"),
                )
                for name in names:
                    publish(verdaccio, couch, name, "1.1.0")
                    expected.add((name, "1.1.0"))
                await eventually(lambda: expected <= sink.releases(), timeout=30)()

                # A stale cache copy of the packument (older _rev than the row): retried until fresh.
                registry.inject(Fault("stale", "/flt-a", times=3))
                publish(verdaccio, couch, "flt-a", "1.2.0")
                expected.add(("flt-a", "1.2.0"))
                await eventually(lambda: expected <= sink.releases(), timeout=30)()
                assert metric("watcher_feed_stale_retries_total", ecosystem="npm") > stale_before

            # Restart from the saved cursor: what was published while down is found.
            cursor = await store.get_cursor(feed.name)
            publish(verdaccio, couch, "flt-b", "1.3.0")
            publish(verdaccio, couch, "@wflt/c", "2.0.0")
            expected |= {("flt-b", "1.3.0"), ("@wflt/c", "2.0.0")}
            feed = make_feed(
                http, registry.url, changes_url, store, sink, watch, jump_threshold=500
            )
            async with running(feed):
                await eventually(lambda: expected <= sink.releases(), timeout=30)()
            assert await store.get_cursor(feed.name) != cursor

            # Sequence reset: the feed's numbers jump far ahead, then fall back below the cursor.
            for resets, offset in enumerate((10_000, 0)):
                changes.seq_offset = offset
                version = f"3.{resets}.0"
                # Published to the registry only: no row will ever announce it; the reconcile
                # after the reset must still find it.
                verdaccio.publish("flt-a", version)
                expected.add(("flt-a", version))
                couch.touch("unwatched-noise")
                async with running(feed):
                    await eventually(lambda: expected <= sink.releases(), timeout=30)()
            assert str(couch.update_seq()) == await store.get_cursor(feed.name)
            after = metric("watcher_feed_cursor_resets_total", ecosystem="npm", feed="npm-changes")
            assert after >= resets_before + 2  # the jump and the fall back both reset
    finally:
        registry.faults.clear()
        changes.faults.clear()
        await registry.close()
        await changes.close()
        await store.close()

    releases = [
        (e.release.name, e.release.version)
        for e in sink.events
        if type(e).__name__ == "ReleaseSeen"
    ]
    assert set(releases) == expected
