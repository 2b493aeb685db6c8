"""Feed figures for the notes (printed, never asserted):

1. changes-feed parse + filter rate on one core: 1M synthetic rows in pages of 10,000 (the feed's
   maximum `limit`), each page JSON-decoded, parsed and filtered against a watchlist of exact names
   and scope patterns; peak RSS before and after shows whether memory stays flat;
2. time from a Verdaccio publish to the `Release` event in poll mode at a 1 s interval (needs the
   Verdaccio the integration tests install into .cache/tools; skipped with --no-verdaccio).

Run: .venv/bin/python bench/feed_bench.py [--rows N] [--no-verdaccio] [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import structlog

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from npm_servers import Verdaccio, run_verdaccio  # noqa: E402

from watcher.ecosystems.http import RegistryHttp  # noqa: E402
from watcher.ecosystems.npm.changes import parse_changes_page, watched_rows  # noqa: E402
from watcher.ecosystems.npm.client import NpmClient  # noqa: E402
from watcher.ecosystems.npm.poll import NpmPackageSource, npm_poll_feed  # noqa: E402
from watcher.feeds.base import FeedEvent, ReleaseSeen, Watchlist  # noqa: E402
from watcher.feeds.reconcile import PackageTracker  # noqa: E402
from watcher.feeds.sink import record_events  # noqa: E402
from watcher.store import open_store  # noqa: E402

PAGE = 10_000


def synthetic_page(start: int, size: int) -> bytes:
    rows = []
    for seq in range(start, start + size):
        name = f"@scope{seq % 997}/pkg-{seq}" if seq % 4 else f"package-{seq}"
        row = {"seq": seq, "id": name, "changes": [{"rev": f"{seq % 50 + 1}-{seq:032x}"}]}
        if seq % 500 == 0:
            row["deleted"] = True
        rows.append(row)
    return orjson.dumps({"results": rows, "last_seq": start + size - 1})


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_parse(total: int) -> None:
    watch = Watchlist.of(["package-12345", "package-999996", "@scope7/*", "@acme/*"])
    pages = [synthetic_page(i * PAGE, PAGE) for i in range(4)]  # reused: generation not timed
    rss_start = rss_mb()
    matched = 0
    started = time.perf_counter()
    rss_after_first = None
    for index in range(total // PAGE):
        page = parse_changes_page(orjson.loads(pages[index % len(pages)]))
        matched += len(watched_rows(page.rows, watch))
        if index == 0:
            rss_after_first = rss_mb()
    elapsed = time.perf_counter() - started
    rows = (total // PAGE) * PAGE
    print(
        f"changes parse+filter: {rows:,} rows in {elapsed:.2f} s = {rows / elapsed:,.0f} rows/s "
        f"(goal >= 5,000/s); {matched:,} watched hits"
    )
    print(
        f"  peak RSS: {rss_start:.0f} MB before, {rss_after_first:.0f} MB after one page, "
        f"{rss_mb():.0f} MB after all pages (flat = memory does not grow with rows)"
    )


async def bench_publish_to_release(registry: Verdaccio, samples: int, workdir: Path) -> list[float]:
    registry.publish_raw("bench-pkg", "1.0.0")
    store = await open_store(workdir / "state.db")
    seen: dict[str, asyncio.Event] = {}
    at: dict[str, float] = {}

    async def sink(events: Sequence[FeedEvent]) -> None:
        await record_events(store, events)
        for event in events:
            if isinstance(event, ReleaseSeen):
                at[event.release.version] = time.monotonic()
                seen.setdefault(event.release.version, asyncio.Event()).set()

    lags = []
    async with RegistryHttp() as http:
        tracker = PackageTracker(NpmPackageSource(NpmClient(http, registry.url)), store, sink)
        feed = npm_poll_feed(tracker, Watchlist.of(["bench-pkg"]), interval=1.0)
        stop_feed = asyncio.Event()
        task = asyncio.create_task(feed.run(stop_feed))
        await asyncio.sleep(1.5)
        for i in range(samples):
            version = f"1.0.{i + 1}"
            event = seen.setdefault(version, asyncio.Event())
            await asyncio.to_thread(registry.publish_raw, "bench-pkg", version)
            published = time.monotonic()
            await asyncio.wait_for(event.wait(), 30)
            lags.append(at[version] - published)
            await asyncio.sleep(0.37)  # de-phase publishes from the poll clock
        stop_feed.set()
        await task
    await store.close()
    return sorted(lags)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--no-verdaccio", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    bench_parse(args.rows)
    if not args.no_verdaccio:
        with (
            tempfile.TemporaryDirectory() as tmp,
            run_verdaccio(Path(tmp), user="bench", log=False) as registry,
        ):
            lags = asyncio.run(bench_publish_to_release(registry, args.samples, registry.workdir))
        print(
            f"publish -> ReleaseSeen, poll mode at 1 s, {len(lags)} publishes: "
            f"median {statistics.median(lags):.2f} s, p90 {lags[int(len(lags) * 0.9) - 1]:.2f} s, "
            f"max {lags[-1]:.2f} s"
        )


if __name__ == "__main__":
    main()
