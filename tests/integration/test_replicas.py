"""Several `watcher run` replicas on one real PostgreSQL (its own server per test, so it can be
stopped), Verdaccio behind a rewriting proxy (to hold a download mid-scan), the express-pouchdb
`_changes` stand-in and a Standard Webhooks receiver.

- three replicas, a stream of releases (some leaky): kill -9 the feed leader, then the webhook
  channel's sender, then a replica mid-scan, restarting each; every leaky release is paged exactly
  once (one webhook id per incident), none is missed, clean ones never page, the feed's cursor
  never went backwards; the failover times are printed (figures: bench/replica_bench.py);
- two replicas with PostgreSQL stopped for about 20 s: both report not-ready meanwhile, stay up,
  and afterwards every release published during the outage is paged once;
- the feed leader paused (SIGSTOP) past its lease: another leads under a newer epoch, the woken
  one steps down, the cursor never goes back, nothing pages twice.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from npm_servers import Couch, Verdaccio
from replica_harness import CursorSampler, Replicas, describe, opened_ids
from servers_common import free_port
from service_harness import RewritingProxy, leaky_files, unique, until

from tests.pgserver import PgServer, running_server
from tests.receivers import Receiver
from watcher.model import Ecosystem
from watcher.store import open_store
from watcher.store.types import ReleaseState

pytestmark = pytest.mark.asyncio(loop_scope="session")

FEED = "npm-changes"
CHANNEL = "team/webhook"


@pytest.fixture
def pg() -> Iterator[PgServer]:
    """A PostgreSQL server of this test's own (the partition test stops it)."""
    with running_server() as server:
        if server is None:
            pytest.skip("PostgreSQL is not installed: `make test` installs Debian's postgresql")
        yield server


async def publish(
    verdaccio: Verdaccio, couch: Couch, name: str, version: str, files: dict[str, bytes] | None
) -> None:
    def both() -> None:
        verdaccio.publish(name, version, files)
        couch.mirror(name, verdaccio.packument(name)["_rev"])

    await asyncio.to_thread(both)


async def wait_scanned(url: str, names: list[str], version: str, within: float = 90) -> None:
    async with await open_store(url) as store:

        async def done() -> bool:
            for name in names:
                stored = await store.get_release(Ecosystem.NPM, name, version)
                if stored is None or stored.state is not ReleaseState.SCANNED:
                    return False
            return True

        await until(done, within=within, pause=0.2)


async def test_three_replicas_survive_kill_9_of_the_leader_the_sender_and_a_scanner(
    verdaccio: Verdaccio,
    couch: Couch,
    hook: tuple[Receiver, str],
    pg: PgServer,
    tmp_path: Path,
) -> None:
    receiver, secret = hook
    # trust authentication ignores the password; it must still never show anywhere
    password = "pw" + secrets.token_hex(8)
    url = pg.fresh_database().replace("watcher@", f"watcher:{password}@")
    proxy = await RewritingProxy(verdaccio.url).start(free_port())
    names = [unique(f"rep-{i}") for i in range(3)]
    for name in names:
        await publish(verdaccio, couch, name, "1.0.0", None)
    replicas = Replicas(
        url,
        tmp_path,
        {
            "npm_url": proxy.url,
            "npm_changes_url": couch.changes_url,
            "packages": names,
            "webhook_url": receiver.url,
            "secret": secret,
        },
    )
    replicas.add(3)
    replicas.start_all()
    sampler: CursorSampler | None = None
    leaky: set[str] = set()
    clean: set[str] = set()
    failover: dict[str, float] = {}

    async def release(name: str, version: str, *, leaks: bool) -> None:
        # each leak under its own path (a finding the previous release had does not page again)
        tag = "leak" + "abcdefghijklmnop"[len(leaky)]
        await publish(verdaccio, couch, name, version, leaky_files(tag) if leaks else None)
        (leaky if leaks else clean).add(f"watcher/npm/{name}/{version}")

    try:
        await replicas.wait_ready()
        await wait_scanned(url, names, "1.0.0")  # the baselines
        sampler = CursorSampler(url, FEED).start()

        # 1. the feed leader dies: another replica takes the feed over (a newer epoch) and the
        # releases published meanwhile are seen and paged
        await release(names[0], "1.0.1", leaks=True)
        await release(names[1], "1.0.1", leaks=False)
        leader, lease = await replicas.live_holder(f"feed:{FEED}")
        killed_at = time.monotonic()
        leader.kill()
        await release(names[2], "1.0.1", leaks=True)
        new = await replicas.takeover(f"feed:{FEED}", lease)
        failover["feed leader"] = time.monotonic() - killed_at
        assert new.owner != lease.owner
        leader.start()

        # 2. the webhook channel's sender dies: another replica drains the channel
        sender, lease = await replicas.live_holder(f"outbox:{CHANNEL}")
        await release(names[0], "1.0.2", leaks=True)
        await release(names[1], "1.0.2", leaks=True)
        killed_at = time.monotonic()
        sender.kill()
        await replicas.takeover(f"outbox:{CHANNEL}", lease)
        failover["channel sender"] = time.monotonic() - killed_at
        sender.start()

        # 3. a replica dies mid-scan (its download held open): after its claim's lease ran out
        # another replica scans the release
        proxy.hold(f"{names[2]}-1.0.2.tgz")
        await release(names[2], "1.0.2", leaks=True)
        async with await open_store(url) as store:

            async def claimed() -> bool:
                stored = await store.get_release(Ecosystem.NPM, names[2], "1.0.2")
                return stored is not None and stored.state is ReleaseState.SCANNING

            await until(claimed, within=60, pause=0.1)
            await until(lambda: proxy.waiting > 0, within=30)
            stored = await store.get_release(Ecosystem.NPM, names[2], "1.0.2")
            assert stored is not None
            scanner = replicas.by_owner(stored.claimed_by)
            assert scanner is not None, f"no live replica holds the claim {stored.claimed_by}"
            killed_at = time.monotonic()
            scanner.kill()
            proxy.release_held()
            await wait_scanned(url, [names[2]], "1.0.2")
            failover["scan claim"] = time.monotonic() - killed_at
            rescanned = await store.get_release(Ecosystem.NPM, names[2], "1.0.2")
            assert rescanned is not None and rescanned.claimed_by != stored.claimed_by
        scanner.start()
        await release(names[0], "1.0.3", leaks=False)
        await replicas.wait_ready()

        # every leaky release paged, clean ones never
        await until(lambda: set(opened_ids(receiver)) >= leaky, within=90, pause=0.2)
        await wait_scanned(url, [names[0]], "1.0.3")
        await asyncio.sleep(2.0)  # a doubled page would arrive now
        for member in replicas.members:
            for path in ("/readyz", "/metrics"):
                assert password not in member.get(path)[1], path
            assert member.terminate(30) == 0, member.stderr_path.read_text()[-2000:]
            assert password not in member.stderr_path.read_text() + member.stdout()
    except BaseException:
        print(await describe(url, replicas))
        raise
    finally:
        if sampler is not None:
            await sampler.stop()
        replicas.stop_all()
        await proxy.close()

    rounded = {k: round(v, 1) for k, v in failover.items()}
    print(f"\nfailover seconds: {rounded}")
    pages = opened_ids(receiver)
    assert set(pages) == leaky, "every leaky release paged, no clean one"
    doubled = {key: ids for key, ids in pages.items() if len(ids) != 1}
    assert not doubled, f"paged more than once (distinct webhook ids): {doubled}"
    assert sampler is not None and sampler.seen, "the cursor was sampled"
    assert not sampler.went_back(), f"the cursor went backwards: {sampler.went_back()}"
    async with await open_store(url) as store:
        incidents = {i.dedup_key for i in await store.open_incidents()}
        assert incidents == leaky
        counts = await store.counts()
        assert counts.outbox_depth == {} and counts.dead_letters == 0
        lease = await store.get_lease(f"feed:{FEED}")
        assert lease is not None and lease.epoch >= 2, "the feed changed leader"


async def test_replicas_cut_off_from_postgresql_report_not_ready_and_recover_without_loss(
    verdaccio: Verdaccio,
    couch: Couch,
    hook: tuple[Receiver, str],
    pg: PgServer,
    tmp_path: Path,
) -> None:
    receiver, secret = hook
    url = pg.fresh_database()
    name = unique("rep-cut")
    await publish(verdaccio, couch, name, "1.0.0", None)
    replicas = Replicas(
        url,
        tmp_path,
        {
            "npm_url": verdaccio.url,
            "npm_changes_url": couch.changes_url,
            "packages": [name],
            "webhook_url": receiver.url,
            "secret": secret,
        },
    )
    replicas.add(2)
    replicas.start_all()
    try:
        await replicas.wait_ready()
        await wait_scanned(url, [name], "1.0.0")
        await publish(verdaccio, couch, name, "1.0.1", leaky_files("before"))
        await until(lambda: len(opened_ids(receiver)) == 1, within=60, pause=0.2)

        stopped_at = time.monotonic()
        await asyncio.to_thread(pg.stop, "fast")
        await publish(verdaccio, couch, name, "1.0.2", leaky_files("during"))

        def not_ready() -> bool:
            return all(m.get("/readyz")[0] == 503 for m in replicas.members)

        await until(lambda: asyncio.to_thread(not_ready), within=30, pause=0.5)
        for member in replicas.members:
            status, body = member.get("/readyz")
            assert status == 503 and "store" in body, body
        await asyncio.sleep(max(0.0, 20.0 - (time.monotonic() - stopped_at)))
        for member in replicas.members:
            assert member.proc is not None and member.proc.poll() is None, "stayed up"
        await asyncio.to_thread(pg.start)

        await replicas.wait_ready()
        await publish(verdaccio, couch, name, "1.0.3", leaky_files("after"))
        await wait_scanned(url, [name], "1.0.3")
        keys = {f"watcher/npm/{name}/{v}" for v in ("1.0.1", "1.0.2", "1.0.3")}
        await until(lambda: set(opened_ids(receiver)) == keys, within=60, pause=0.2)
        await asyncio.sleep(2.0)
        for member in replicas.members:
            assert member.terminate(30) == 0, member.stderr_path.read_text()[-2000:]
    finally:
        replicas.stop_all()

    pages = opened_ids(receiver)
    assert set(pages) == keys
    assert all(len(ids) == 1 for ids in pages.values()), pages
    errors = [e for m in replicas.members for e in m.logs() if e.get("event") == "store_error"]
    assert errors, "the outage was logged"
    assert all("password" not in str(e) for e in errors)


async def test_a_paused_leader_that_wakes_up_does_not_move_the_cursor_or_page_again(
    verdaccio: Verdaccio,
    couch: Couch,
    hook: tuple[Receiver, str],
    pg: PgServer,
    tmp_path: Path,
) -> None:
    """SIGSTOP the feed leader past its lease: another replica leads under a newer epoch; after
    SIGCONT the old one gives the feed up (its late cursor write, if any, is refused)."""
    receiver, secret = hook
    url = pg.fresh_database()
    name = unique("rep-pause")
    await publish(verdaccio, couch, name, "1.0.0", None)
    replicas = Replicas(
        url,
        tmp_path,
        {
            "npm_url": verdaccio.url,
            "npm_changes_url": couch.changes_url,
            "packages": [name],
            "webhook_url": receiver.url,
            "secret": secret,
        },
        lease_length="3s",
    )
    replicas.add(2)
    replicas.start_all()
    sampler: CursorSampler | None = None
    try:
        await replicas.wait_ready()
        await wait_scanned(url, [name], "1.0.0")
        sampler = CursorSampler(url, FEED).start()
        leader, lease = await replicas.live_holder(f"feed:{FEED}")
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGSTOP)
        try:
            await replicas.takeover(f"feed:{FEED}", lease)
            await publish(verdaccio, couch, name, "1.0.1", leaky_files("paused"))
            await until(lambda: len(opened_ids(receiver)) == 1, within=60, pause=0.2)
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        await publish(verdaccio, couch, name, "1.0.2", leaky_files("woken"))
        await until(lambda: len(opened_ids(receiver)) == 2, within=60, pause=0.2)
        await asyncio.sleep(3.0)  # the woken leader's next steps
        now = await replicas.lease(f"feed:{FEED}")
        assert now is not None and now.epoch > lease.epoch
        events = [e.get("event") for e in leader.logs()]
        assert "role_released" in events or "role_stale" in events, "the old leader stepped down"
        # `watcher status` from any replica's config names who holds each role
        argv = [sys.executable, "-m", "watcher.cli", "status", "--config", str(leader.config)]
        shown = await asyncio.to_thread(
            subprocess.run, [*argv, "--format", "json"], capture_output=True, text=True, check=True
        )
        roles = {r["role"]: r for r in json.loads(shown.stdout)["roles"]}
        assert roles[f"feed:{FEED}"]["holder"] == now.owner and roles[f"feed:{FEED}"]["live"]
        assert roles[f"feed:{FEED}"]["epoch"] == now.epoch
        for member in replicas.members:
            assert member.terminate(30) == 0, member.stderr_path.read_text()[-2000:]
    finally:
        if sampler is not None:
            await sampler.stop()
        replicas.stop_all()
    assert sampler is not None and not sampler.went_back(), sampler.seen
    pages = opened_ids(receiver)
    assert set(pages) == {f"watcher/npm/{name}/1.0.1", f"watcher/npm/{name}/1.0.2"}
    assert all(len(ids) == 1 for ids in pages.values()), pages
