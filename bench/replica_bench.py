"""Figures for several replicas on one PostgreSQL: scan throughput and failover time.

For 1, 2 and 3 replicas (real `watcher run` processes, each `scan: {workers: 1, concurrency: 2}`,
on one PostgreSQL started for the bench, a fresh database each time), watching 30 packages on a
local Verdaccio polled every second:

1. Throughput: once the 30 baselines are scanned, the replicas are stopped and a burst of 300
   small releases (10 new versions of each package) is published; the replicas start again and
   the leader's first poll queues all 300. The figure is the store's own span from the first of
   them stored (pending) to the last scanned, as releases per second (publishing, about 0.5 s a
   release here, is not what is measured). A package's releases are scanned in order
   (one claim per package at a time), so 30 packages allow up to 30 scans at once.
2. Failover (2 and 3 replicas, default `store.lease` 15 s): kill -9 the feed leader; the time
   until another replica holds the feed's lease under a new epoch. Then the same for the webhook
   channel's sender.

Run: `.venv/bin/python bench/replica_bench.py` (needs Debian's postgresql: `make pg-tools`).
On a 2-core machine the replicas share the same two cores: more replicas add availability, not
CPU.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "integration")]

from npm_servers import Verdaccio, run_verdaccio  # noqa: E402
from replica_harness import Replicas  # noqa: E402
from service_harness import webhook_secret  # noqa: E402

from tests.pgserver import PgServer, running_server  # noqa: E402
from tests.receivers import webhook_receiver  # noqa: E402
from watcher.store import open_store  # noqa: E402
from watcher.store.types import ReleaseState  # noqa: E402

PACKAGES = 30
VERSIONS = 10  # new versions per package in the burst: 300 releases
FEED = "npm-poll"
CHANNEL = "team/webhook"


async def scanned(url: str) -> int:
    async with await open_store(url) as store:
        counts = await store.counts()
        return counts.releases_by_state.get(ReleaseState.SCANNED, 0)


async def wait_scanned(url: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while await scanned(url) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{await scanned(url)} of {count} scanned in {within}s")
        await asyncio.sleep(0.2)


async def burst_span(url: str) -> float:
    """Seconds from the burst's first release stored (pending) to its last one scanned, by the
    store's own timestamps (the baselines excluded)."""
    async with await open_store(url) as store:
        done = await store.releases_in_state([ReleaseState.SCANNED])
    burst = [r for r in done if not r.baseline]
    assert len(burst) == PACKAGES * VERSIONS, len(burst)
    return max(r.scanned_at or 0.0 for r in burst) - min(r.created_at for r in burst)


def publish_burst(verdaccio: Verdaccio, names: list[str]) -> None:
    """10 new versions of each package, packages in parallel (a package's versions in order)."""

    def versions_of(name: str) -> None:
        for version in range(1, VERSIONS + 1):
            verdaccio.publish_raw(name, f"1.0.{version}")

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(versions_of, names))


async def one_run(
    verdaccio: Verdaccio, pg: PgServer, workdir: Path, replicas_n: int, run: int
) -> tuple[float, dict[str, float]]:
    names = [f"bench-rep{run}-{i:02d}" for i in range(PACKAGES)]
    for name in names:
        await asyncio.to_thread(verdaccio.publish_raw, name, "1.0.0")
    url = pg.fresh_database()
    secret = webhook_secret()
    failover: dict[str, float] = {}
    async with webhook_receiver(secret) as receiver:
        root = workdir / f"run{run}"
        root.mkdir()
        replicas = Replicas(
            url,
            root,
            {
                "npm_url": verdaccio.url,
                "packages": names,
                "webhook_url": receiver.url,
                "secret": secret,
            },
            lease_length="15s",
        )
        replicas.add(replicas_n)
        try:
            # the baselines, then every replica stopped while the burst is published: on the
            # next start the leader's first poll queues all 300 at once
            replicas.start_all()
            await replicas.wait_ready()
            await wait_scanned(url, PACKAGES, 120)
            for member in replicas.members:
                member.terminate(60)
            await asyncio.to_thread(publish_burst, verdaccio, names)
            replicas.start_all()
            await replicas.wait_ready()
            await wait_scanned(url, PACKAGES * (VERSIONS + 1), 900)
            span = await burst_span(url)
            print(
                f"  {replicas_n} replica(s): {PACKAGES * VERSIONS} releases scanned in "
                f"{span:.1f} s ({PACKAGES * VERSIONS / span:.1f} releases/s)",
                flush=True,
            )
            if replicas_n > 1:
                for role in (f"feed:{FEED}", f"outbox:{CHANNEL}"):
                    holder, lease = await replicas.live_holder(role)
                    killed = time.monotonic()
                    holder.kill()
                    await replicas.takeover(role, lease, within=120)
                    failover[role] = time.monotonic() - killed
                    holder.start()
                    await replicas.wait_ready([holder])
                print(
                    "    failover after kill -9 (lease 15 s): "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in failover.items()),
                    flush=True,
                )
        finally:
            replicas.stop_all()
    return PACKAGES * VERSIONS / span, failover


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="watcher-bench-") as tmp, running_server() as pg:
        if pg is None:
            sys.exit("PostgreSQL is not installed (make pg-tools)")
        workdir = Path(tmp)
        print(
            f"scan throughput, {PACKAGES} packages x {VERSIONS} new versions on Verdaccio, "
            "each replica scan.workers 1, concurrency 2, one PostgreSQL:"
        )
        with run_verdaccio(workdir / "verdaccio", user="bench") as verdaccio:
            for run, count in enumerate((1, 2, 3)):
                await one_run(verdaccio, pg, workdir, count, run)


if __name__ == "__main__":
    asyncio.run(main())
