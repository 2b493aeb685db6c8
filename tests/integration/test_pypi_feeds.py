"""PyPI feeds against real servers: the poll feed on devpi (PEP 691) and pypiserver (PEP 503), and
the changelog follower on the journal stand-in through 5xx, slow, truncated, rate-limited and
stale answers and a restart from the saved serial, with the SQLite store as the sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pypi_servers import (
    Devpi,
    Fault,
    PypiServer,
    Warehouse,
    build_sdist,
    build_wheel,
    run_warehouse,
)

from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.ecosystems.pypi.changelog import PypiChangelogFeed, XmlRpcJournal
from watcher.ecosystems.pypi.client import PypiClient
from watcher.ecosystems.pypi.poll import PypiPackageSource, pypi_poll_feed
from watcher.errors import RegistryError
from watcher.feeds.base import (
    BaselineSeen,
    FeedEvent,
    PackageUnpublished,
    ReleaseSeen,
    VersionRemoved,
    Watchlist,
)
from watcher.feeds.reconcile import PackageTracker, StaleRetry, watched_names
from watcher.feeds.sink import record_events
from watcher.model import Ecosystem
from watcher.store import open_store
from watcher.store.api import Store

FAST = HttpSettings(
    backoff_initial=0.01, backoff_max=0.05, attempts=5, read_timeout=0.5, total_timeout=5
)
QUICK_STALE = StaleRetry(initial=0.01, ceiling=0.05, give_up_after=3.0)


@dataclass
class Recorder:
    """The store is the sink (durable); this keeps what passed through for the assertions."""

    store: Store
    events: list[FeedEvent] = field(default_factory=list)

    async def __call__(self, events: Sequence[FeedEvent]) -> None:
        await record_events(self.store, events)
        self.events.extend(events)

    def take(self) -> list[FeedEvent]:
        taken, self.events = self.events, []
        return taken


@pytest.fixture
async def http() -> AsyncIterator[RegistryHttp]:
    async with RegistryHttp(FAST) as client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path / "state.db")
    yield opened
    await opened.close()


def _tracker(http: RegistryHttp, index: str, store: Store, sink: Recorder) -> PackageTracker:
    source = PypiPackageSource(PypiClient(http, index))
    return PackageTracker(source, store, sink, stale_retry=QUICK_STALE)


def _files(events: Sequence[FeedEvent]) -> list[tuple[str, str, str]]:
    return sorted(
        (e.release.version, a.filename, a.sha256 or "")
        for e in events
        if isinstance(e, ReleaseSeen | BaselineSeen)
        for a in e.release.artifacts
    )


async def test_poll_feed_on_devpi_sees_releases_late_files_and_removals(
    devpi: Devpi, http: RegistryHttp, store: Store, tmp_path: Path
) -> None:
    sink = Recorder(store)
    feed = pypi_poll_feed(
        _tracker(http, devpi.simple_url, store, sink), Watchlist.of(["Poll_Me"]), interval=0.2
    )
    devpi.upload([build_sdist(tmp_path / "1", "poll-me", "1.0.0")])
    await feed.sweep_once()
    (first,) = sink.take()
    assert isinstance(first, BaselineSeen) and first.release.version == "1.0.0"

    devpi.upload([build_sdist(tmp_path / "2", "poll-me", "1.1.0")])
    await feed.sweep_once()
    (new,) = sink.take()
    assert isinstance(new, ReleaseSeen) and new.release.name == "poll-me"
    assert [a.filename for a in new.release.artifacts] == ["poll_me-1.1.0.tar.gz"]
    assert new.release.artifacts[0].sha256 and new.release.artifacts[0].url

    wheel = build_wheel(tmp_path / "3", "poll-me", "1.1.0")
    devpi.upload([wheel])
    await feed.sweep_once()
    (late,) = sink.take()
    assert isinstance(late, ReleaseSeen) and late.release.version == "1.1.0"
    assert [a.filename for a in late.release.artifacts] == [wheel.name], "only the late file"

    await feed.sweep_once()
    assert sink.take() == [], "nothing new, nothing emitted"

    devpi.delete_release("poll-me", "1.0.0")
    await feed.sweep_once()
    (removed,) = sink.take()
    assert isinstance(removed, VersionRemoved) and removed.version == "1.0.0"


async def test_poll_feed_run_loop_on_pypiserver_html(
    pypiserver: PypiServer, http: RegistryHttp, store: Store, tmp_path: Path
) -> None:
    sink = Recorder(store)
    feed = pypi_poll_feed(
        _tracker(http, pypiserver.simple_url, store, sink),
        Watchlist.of(["html-feed"]),
        interval=0.1,
    )
    pypiserver.upload([build_sdist(tmp_path / "1", "html-feed", "0.1")])
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        for _ in range(100):
            if any(isinstance(e, BaselineSeen) for e in sink.events):
                break
            await asyncio.sleep(0.05)
        # Dropping a file into pypiserver's directory publishes it.
        build_wheel(pypiserver.packages, "html-feed", "0.2")
        for _ in range(100):
            if any(isinstance(e, ReleaseSeen) for e in sink.events):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    seen = {(type(e).__name__, e.release.version) for e in sink.events if hasattr(e, "release")}
    assert seen == {("BaselineSeen", "0.1"), ("ReleaseSeen", "0.2")}
    assert feed.last_success is not None


async def test_poll_feed_yank_once_and_replaced_file_is_new_content(
    warehouse: Warehouse, http: RegistryHttp, store: Store, tmp_path: Path
) -> None:
    sink = Recorder(store)
    feed = pypi_poll_feed(
        _tracker(http, warehouse.simple_url, store, sink), Watchlist.of(["yank-me"]), interval=1
    )
    for version in ("1.0", "1.1"):
        warehouse.upload(build_sdist(tmp_path / version, "yank-me", version), "yank-me", version)
    await feed.sweep_once()
    sink.take()

    warehouse.yank("yank-me", "1.1", "oops")
    await feed.sweep_once()
    (yank,) = sink.take()
    assert isinstance(yank, VersionRemoved) and (yank.version, yank.reason) == ("1.1", "yanked")
    await feed.sweep_once()
    assert sink.take() == [], "a yank is reported once"

    replacement = build_sdist(tmp_path / "r", "yank-me", "1.0", files={"extra.txt": b"new bytes"})
    warehouse.replace_file("yank-me", replacement)
    await feed.sweep_once()
    events = sink.take()
    assert [type(e) for e in events] == [ReleaseSeen], "same filename, new sha256: scan again"
    assert _files(events)[0][1] == replacement.name

    warehouse.remove_release("yank-me", "1.0")
    warehouse.remove_release("yank-me", "1.1")
    await feed.sweep_once()
    assert {(type(e), getattr(e, "version", None)) for e in sink.take()} == {
        (VersionRemoved, "1.0"),
        (VersionRemoved, "1.1"),
    }


def _stale_retries() -> float:
    value = REGISTRY.get_sample_value("watcher_feed_stale_retries_total", {"ecosystem": "pypi"})
    return value or 0.0


async def _drain(feed: PypiChangelogFeed, warehouse: Warehouse, store: Store) -> int:
    """Poll like `run` does (errors retried) until the cursor reaches the journal head."""
    errors = 0
    for _ in range(60):
        try:
            more = await feed.poll_once()
        except RegistryError:
            errors += 1
            continue
        cursor = await store.get_cursor(feed.name)
        if not more and cursor == str(warehouse.last_serial):
            return errors
    raise AssertionError("the changelog feed never caught up")


def _changelog_feed(
    http: RegistryHttp, warehouse: Warehouse, store: Store, sink: Recorder, watchlist: Watchlist
) -> PypiChangelogFeed:
    tracker = _tracker(http, warehouse.simple_url, store, sink)
    journal = XmlRpcJournal(http, warehouse.xmlrpc_url, min_interval=0.02, backoff=0.01)
    names = watched_names(watchlist, store, Ecosystem.PYPI)
    return PypiChangelogFeed(
        journal, tracker, watchlist, names, interval=0.1, batch_limit=warehouse.batch_limit
    )


async def test_changelog_misses_no_file_across_faults_and_a_restart(tmp_path: Path) -> None:
    watchlist = Watchlist.of(["Chg_A", "chg-b", "acme-*"])
    db = tmp_path / "state.db"
    uploaded: list[tuple[str, str, str]] = []

    def upload(path: Path, name: str, version: str) -> None:
        uploaded.append((version, path.name, warehouse.upload(path, name, version).sha256))

    with run_warehouse(batch_limit=4) as warehouse:
        upload(build_sdist(tmp_path / "a10", "chg-a", "1.0"), "chg-a", "1.0")
        warehouse.noise(3)

        store = await open_store(db)
        sink = Recorder(store)
        async with RegistryHttp(FAST) as http:
            feed = _changelog_feed(http, warehouse, store, sink, watchlist)
            await feed.poll_once()  # first start: head + reconcile (baseline)
            assert await store.get_cursor(feed.name) == str(warehouse.last_serial)

            upload(build_sdist(tmp_path / "a11", "chg-a", "1.1"), "chg-a", "1.1")
            warehouse.noise(9)
            upload(build_wheel(tmp_path / "a11", "chg-a", "1.1"), "chg-a", "1.1")
            upload(build_sdist(tmp_path / "b01", "chg-b", "0.1"), "chg-b", "0.1")
            warehouse.inject(
                Fault("xmlrpc", "500"),
                Fault("xmlrpc", "slow", delay=1.5),
                Fault("xmlrpc", "truncate"),
                Fault("xmlrpc", "xmlrpc-fault"),
                Fault("simple", "stale"),
                Fault("simple", "503"),
                Fault("simple", "truncate"),
            )
            errors = await _drain(feed, warehouse, store)
            assert not [f for f in warehouse.faults if f.route == "xmlrpc"], "faults were hit"
        await store.close()

        # Down for a while: files keep arriving, one on a release already seen.
        upload(build_wheel(tmp_path / "b01", "chg-b", "0.1"), "chg-b", "0.1")
        upload(build_sdist(tmp_path / "x", "acme-x", "3.0"), "acme-x", "3.0")
        warehouse.noise(5)
        upload(
            build_wheel(tmp_path / "a11", "chg-a", "1.1", tag="cp311-cp311-linux_x86_64"),
            "chg-a",
            "1.1",
        )
        warehouse.yank("chg-a", "1.0")
        warehouse.remove_file("chg-b", "chg_b-0.1.tar.gz")

        store = await open_store(db)  # restart: cursor and package states from the file
        sink2 = Recorder(store)
        async with RegistryHttp(FAST) as http:
            feed = _changelog_feed(http, warehouse, store, sink2, watchlist)
            warehouse.inject(Fault("simple", "stale"), Fault("xmlrpc", "503"))
            errors += await _drain(feed, warehouse, store)
        await store.close()

    events = sink.events + sink2.events
    emitted = _files(events)
    assert emitted == sorted(uploaded), "every file of every watched project, exactly once"
    assert not any(name.startswith("unrelated") for name in warehouse.page_hits), (
        "unwatched projects are never fetched"
    )
    removals = {
        (e.name, e.version, e.reason, e.filename) for e in events if isinstance(e, VersionRemoved)
    }
    assert removals == {
        ("chg-a", "1.0", "yanked", None),
        ("chg-b", "0.1", "removed", "chg_b-0.1.tar.gz"),
    }
    assert not any(isinstance(e, PackageUnpublished) for e in events)
    late = [e for e in sink2.events if isinstance(e, ReleaseSeen) and e.release.name == "chg-a"]
    assert [len(e.release.artifacts) for e in late] == [1], "the late wheel alone"
    assert warehouse.faults == [], "every injected fault was met"


async def test_changelog_rereads_a_page_older_than_the_journal(
    warehouse: Warehouse, http: RegistryHttp, store: Store, tmp_path: Path
) -> None:
    sink = Recorder(store)
    feed = _changelog_feed(http, warehouse, store, sink, Watchlist.of(["cdn-lag"]))
    warehouse.upload(build_sdist(tmp_path, "cdn-lag", "1.0"), "cdn-lag", "1.0")
    await feed.poll_once()
    sink.take()
    wheel = build_wheel(tmp_path, "cdn-lag", "1.0")
    warehouse.upload(wheel, "cdn-lag", "1.0")
    # The first read after the upload gets the cached copy from before it.
    warehouse.inject(Fault("simple", "stale"), Fault("simple", "stale"))
    before = _stale_retries()
    await feed.poll_once()
    assert _stale_retries() - before == 2, "both stale copies noticed by their serial"
    assert _files(sink.take()) == [
        ("1.0", wheel.name, warehouse.projects["cdn-lag"].files[1].sha256)
    ]
    assert await store.get_cursor(feed.name) == str(warehouse.last_serial)


async def test_changelog_keeps_its_cursor_while_the_index_stays_stale(
    warehouse: Warehouse, http: RegistryHttp, store: Store, tmp_path: Path
) -> None:
    sink = Recorder(store)
    watchlist = Watchlist.of(["lagging"])
    source = PypiPackageSource(PypiClient(http, warehouse.simple_url))
    impatient = StaleRetry(initial=0.01, ceiling=0.02, give_up_after=0.2)
    tracker = PackageTracker(source, store, sink, stale_retry=impatient)
    journal = XmlRpcJournal(http, warehouse.xmlrpc_url, min_interval=0)
    feed = PypiChangelogFeed(
        journal, tracker, watchlist, watched_names(watchlist, store, Ecosystem.PYPI)
    )
    warehouse.upload(build_sdist(tmp_path, "lagging", "1.0"), "lagging", "1.0")
    await feed.poll_once()
    cursor = await store.get_cursor(feed.name)
    wheel = build_wheel(tmp_path, "lagging", "1.0")
    warehouse.upload(wheel, "lagging", "1.0")
    warehouse.inject(*[Fault("simple", "stale")] * 500)
    with pytest.raises(RegistryError, match="older than the journal"):
        await feed.poll_once()
    assert await store.get_cursor(feed.name) == cursor, "not stepped past the unseen file"
    warehouse.faults.clear()  # the CDN catches up
    sink.take()
    await feed.poll_once()
    assert [f[1] for f in _files(sink.take())] == [wheel.name]
    assert await store.get_cursor(feed.name) == str(warehouse.last_serial)


async def test_changelog_restarts_from_head_when_journal_goes_backwards(
    warehouse: Warehouse, http: RegistryHttp, store: Store, tmp_path: Path
) -> None:
    sink = Recorder(store)
    watchlist = Watchlist.of(["back"])
    feed = _changelog_feed(http, warehouse, store, sink, watchlist)
    warehouse.upload(build_sdist(tmp_path, "back", "1.0"), "back", "1.0")
    await store.set_cursor(feed.name, "999999")  # a cursor from another (or a restored) index
    await feed.poll_once()
    assert await store.get_cursor(feed.name) == str(warehouse.last_serial)
    assert [type(e) for e in sink.take()] == [BaselineSeen], "reconciled after the reset"


async def test_non_rate_limit_fault_is_an_error(warehouse: Warehouse, http: RegistryHttp) -> None:
    journal = XmlRpcJournal(http, warehouse.xmlrpc_url, min_interval=0)
    with pytest.raises(RegistryError, match="no method"):
        await journal._call("list_packages")
    assert await journal.last_serial() == 0
