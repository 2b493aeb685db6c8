"""Several `watcher run` replicas on one PostgreSQL (tests/pgserver.py), each a real subprocess
in its own directory on its own port, sharing one config apart from the port.

Shared by tests/integration/test_replicas.py and bench/replica_bench.py: who holds a lease (the
owner names host/pid/token, so the pid tells the replica), a cursor sampler that records every
value the feed's cursor took, and the pages a webhook receiver accepted per dedup key.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers_common import free_port
from service_harness import ServiceProcess, service_yaml

from tests.receivers import Receiver
from watcher.ecosystems.npm.changes import seq_number
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.types import Lease


def replica_yaml(url: str, port: int, *, lease: str = "6s", **yaml: Any) -> str:
    """service_yaml with the shared store instead of a state file."""
    text = service_yaml(state=Path("unused.db"), port=port, **yaml)
    first, rest = text.split("\n", 1)
    assert first.startswith("store:")
    return f"store: {{url: {json.dumps(url)}, lease: {lease}}}\n{rest}"


@dataclass
class Replicas:
    url: str
    root: Path
    yaml: dict[str, Any]
    lease_length: str = "6s"
    members: list[ServiceProcess] = field(default_factory=list)

    def add(self, count: int) -> list[ServiceProcess]:
        made = []
        for _ in range(count):
            index = len(self.members)
            workdir = self.root / f"replica{index}"
            workdir.mkdir()
            port = free_port()
            config = workdir / "watcher.yaml"
            config.write_text(replica_yaml(self.url, port, lease=self.lease_length, **self.yaml))
            member = ServiceProcess(config, port, workdir)
            self.members.append(member)
            made.append(member)
        return made

    def start_all(self) -> None:
        for member in self.members:
            member.start()

    async def wait_ready(self, members: Sequence[ServiceProcess] | None = None) -> None:
        await asyncio.gather(*(m.wait_ready(90) for m in members or self.members))

    def stop_all(self) -> None:
        for member in self.members:
            member.ensure_stopped()

    def by_owner(self, owner: str | None) -> ServiceProcess | None:
        """The replica whose process holds a lease (the owner names its pid)."""
        if owner is None:
            return None
        pid = int(owner.split("/")[1])
        for member in self.members:
            if member.proc is not None and member.proc.pid == pid and member.proc.poll() is None:
                return member
        return None

    async def lease(self, name: str) -> Lease | None:
        async with await open_store(self.url) as store:
            return await store.get_lease(name)

    async def live_holder(self, name: str, *, within: float = 60.0) -> tuple[ServiceProcess, Lease]:
        """The running replica holding lease `name` (waits until one does)."""
        deadline = time.monotonic() + within
        while True:
            lease = await self.lease(name)
            if lease is not None and lease.expires_at > time.time():
                member = self.by_owner(lease.owner)
                if member is not None:
                    return member, lease
            assert time.monotonic() < deadline, f"no live replica holds {name}"
            await asyncio.sleep(0.1)

    async def takeover(self, name: str, after: Lease, *, within: float = 60.0) -> Lease:
        """Wait until another live replica holds `name` under a newer epoch than `after`."""
        deadline = time.monotonic() + within
        while True:
            lease = await self.lease(name)
            if (
                lease is not None
                and lease.epoch > after.epoch
                and lease.expires_at > time.time()
                and self.by_owner(lease.owner) is not None
            ):
                return lease
            assert time.monotonic() < deadline, f"{name} not taken over in {within}s"
            await asyncio.sleep(0.1)


@dataclass
class CursorSampler:
    """Reads a feed's cursor every `every` seconds into `seen` (to check it never went back)."""

    url: str
    feed: str
    every: float = 0.2
    seen: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        store: Store = await open_store(self.url)
        try:
            while True:
                cursor = await store.get_cursor(self.feed)
                if cursor is not None and (not self.seen or self.seen[-1] != cursor):
                    self.seen.append(cursor)
                await asyncio.sleep(self.every)
        finally:
            await store.close()

    def start(self) -> CursorSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def went_back(self) -> list[tuple[str, str]]:
        numbers = [(c, seq_number(c)) for c in self.seen]
        return [
            (a, b)
            for (a, x), (b, y) in itertools.pairwise(numbers)
            if x is not None and y is not None and y < x
        ]


def opened_ids(receiver: Receiver) -> dict[str, set[str]]:
    """{dedup key: webhook ids of its accepted `incident.opened` pages}."""
    found: dict[str, set[str]] = defaultdict(set)
    for request in receiver.requests:
        if request.answered is None or not 200 <= request.answered < 300:
            continue
        body = request.json()
        if body.get("type") == "incident.opened":
            found[body["data"]["dedup_key"]].add(request.headers["webhook-id"])
    return dict(found)


async def describe(url: str, replicas: Replicas) -> str:
    """What the shared store and each replica say (printed when a replica test fails)."""
    lines = []
    async with await open_store(url) as store:
        from watcher.store.postgres.store import PostgresStore  # noqa: PLC0415

        assert isinstance(store, PostgresStore)
        for row in await store._pg.read("SELECT * FROM leases ORDER BY name"):
            lines.append(f"lease {dict(zip(row.keys(), row, strict=True))}")
        for row in await store._pg.read(
            "SELECT id, name, version, state, attempts, claimed_by, lease_expires_at FROM "
            "releases ORDER BY id"
        ):
            lines.append(f"release {tuple(row)}")
        for cursor in await store.cursors():
            lines.append(f"cursor {cursor}")
        counts = await store.counts()
        lines.append(f"outbox {counts.outbox_depth} dead {counts.dead_letters}")
    lines.append(f"now {time.time()}")
    for member in replicas.members:
        alive = member.proc is not None and member.proc.poll() is None
        pid = member.proc.pid if member.proc else None
        ready = member.get("/readyz") if alive else None
        lines.append(f"replica {member.workdir.name} pid {pid} alive {alive} readyz {ready}")
    return "\n".join(lines)
