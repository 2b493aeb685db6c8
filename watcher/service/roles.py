"""Roles one replica at a time holds, elected with the store's lease rows (`LeaseStore`).

A role is a loop the service must run exactly once across its replicas: a feed's leader (follows
its cursor: `feed:<name>`), a channel's sender (drains its outbox in order: `outbox:<channel>`),
the containment checker (`containment`) and automatic containment (`auto-containment`).

`RoleRunner.run(role, stop)` keeps trying to hold the role's lease: renewed every third of
`store.lease`, taken over after the holder's lease expired (the epoch rises), given up at a clean
stop. While it holds the lease it runs the role's loop; it stops that loop when the lease is lost
(another replica renewed first after a pause, or the store could not be reached for a whole lease
length). Cursor writes carry the epoch (`FeedEpochs`), so a paused old leader that wakes up is
refused by the store (`StaleEpoch`) before this replica even noticed it lost the role.

On the embedded store (one process per file) every role is this process's: the loops run
directly, no lease is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from watcher import metrics
from watcher.model import Ecosystem
from watcher.store.api import FeedStateStore, LeaseStore
from watcher.store.types import Cursor, PackageState, Removal, StaleEpoch, StoreError
from watcher.waits import sleep_or_stop

log = structlog.get_logger(__name__)

ROLE_STOP_WAIT = 5.0  # seconds a loop gets to return (the send in hand) after the lease went
RESTART_DELAY = 1.0  # a role's loop that failed on the store is started again after this


@dataclass(slots=True)
class Held:
    """This replica's hold on a role: the lease's epoch and until when it is surely ours (by the
    local monotonic clock, counted from before the renewal was asked for)."""

    epoch: int | None
    valid_until: float = float("inf")

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until


@dataclass(slots=True)
class Role:
    """`lease`: the lease row's name; `loop(stop)`: what the holder runs until `stop`;
    `on_change(held)`: told when this replica gains (a Held) or loses (None) the role."""

    lease: str
    loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
    on_change: Callable[[Held | None], None] = lambda _held: None
    # the holder's lease as last seen (wall clock): whether the role has a live holder anywhere
    holder_until: float = 0.0
    holder: str | None = None
    held: Held | None = None


@dataclass(slots=True)
class RoleRunner:
    """Elects this replica for roles. `shared`: the store is shared by several replicas (else
    every role is simply run). `store_ok` says whether the store answered the last lease step."""

    store: LeaseStore
    owner: str
    lease_s: float
    shared: bool = True
    store_ok: bool = True
    store_error: str | None = None
    roles: list[Role] = field(default_factory=list)

    @property
    def renew_every(self) -> float:
        return self.lease_s / 3

    def role(
        self,
        lease: str,
        loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
        on_change: Callable[[Held | None], None] = lambda _held: None,
    ) -> Role:
        made = Role(lease, loop, on_change)
        self.roles.append(made)
        return made

    def live(self, role: Role, *, now: float | None = None) -> bool:
        """Whether some replica (this one or another) holds the role's lease now."""
        if not self.shared:
            return True
        if role.held is not None and role.held.valid():
            return True
        return (time.time() if now is None else now) < role.holder_until

    async def run(self, role: Role, stop: asyncio.Event) -> None:
        """Hold the role while possible and run its loop meanwhile, until `stop`."""
        if not self.shared:
            role.held = Held(None)
            role.on_change(role.held)
            try:
                await role.loop(stop)
            finally:
                role.held = None
                role.on_change(None)
            return
        term: _Term | None = None
        try:
            while not stop.is_set():
                term = await self._step(role, term)
                if await sleep_or_stop(stop, self.renew_every):
                    break
        finally:
            if term is not None:
                await self._end(role, term, "stopping")
                with contextlib.suppress(StoreError):
                    await self.store.release_lease(role.lease, self.owner)

    async def _step(self, role: Role, term: _Term | None) -> _Term | None:
        asked_at = time.monotonic()
        try:
            lease = await self.store.acquire_lease(role.lease, self.owner, self.lease_s)
            if lease is None:
                holder = await self.store.get_lease(role.lease)
                role.holder = holder.owner if holder else None
                role.holder_until = holder.expires_at if holder else 0.0
        except StoreError as exc:
            self._store_failed(exc)
            if term is not None and not term.held.valid():
                await self._end(role, term, "store unreachable for a whole lease")
                return None
            return term  # still ours until the lease we renewed last runs out
        self.store_ok, self.store_error = True, None
        if lease is None:  # another replica holds it
            if term is not None:
                await self._end(role, term, f"lease held by {role.holder}")
            return None
        role.holder, role.holder_until = self.owner, lease.expires_at
        if term is not None and term.held.epoch != lease.epoch:  # lapsed and taken again
            await self._end(role, term, "lease lapsed")
            term = None
        if term is None:
            held = Held(lease.epoch, asked_at + self.lease_s)
            term = self._begin(role, held)
            log.info("role_acquired", role=role.lease, epoch=lease.epoch, owner=self.owner)
            return term
        term.held.valid_until = asked_at + self.lease_s
        if term.task.done():
            return await self._after_exit(role, term)
        return term

    def _begin(self, role: Role, held: Held) -> _Term:
        stop = asyncio.Event()
        role.held = held
        role.on_change(held)
        task = asyncio.create_task(role.loop(stop), name=f"role:{role.lease}")
        return _Term(held, stop, task)

    async def _after_exit(self, role: Role, term: _Term) -> _Term | None:
        """The loop returned or failed while the lease is still ours."""
        exc = None if term.task.cancelled() else term.task.exception()
        if isinstance(exc, StaleEpoch):  # another replica led meanwhile: give the role up
            log.warning("role_stale", role=role.lease, epoch=term.held.epoch, error=str(exc))
            await self._end(role, term, "stale epoch")
            with contextlib.suppress(StoreError):
                await self.store.release_lease(role.lease, self.owner)
            return None
        if isinstance(exc, StoreError):
            self._store_failed(exc, operation=_operation(role.lease))
        elif exc is not None:
            raise exc  # a bug: the service fails loudly, as when a loop crashes unsupervised
        await asyncio.sleep(RESTART_DELAY)
        role.held = None
        return self._begin(role, term.held)  # same epoch: the lease never left us

    async def _end(self, role: Role, term: _Term, why: str) -> None:
        term.stop.set()
        _, pending = await asyncio.wait([term.task], timeout=ROLE_STOP_WAIT)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await term.task
        role.held = None
        role.on_change(None)
        log.info("role_released", role=role.lease, epoch=term.held.epoch, reason=why)

    def _store_failed(self, exc: BaseException, *, operation: str = "lease") -> None:
        if operation == "lease":  # the lease steps are what tells whether the store answers
            self.store_ok, self.store_error = False, str(exc)[:300]
        metrics.STORE_ERRORS.labels(operation).inc()
        log.warning("store_error", operation=operation, error=str(exc)[:300])


@dataclass(slots=True)
class _Term:
    held: Held
    stop: asyncio.Event
    task: asyncio.Task[None]


def _operation(lease: str) -> str:
    kind = lease.split(":", 1)[0]
    return {"feed": "feed", "outbox": "outbox"}.get(kind, "containment")


class FeedEpochs:
    """The feeds' store (their `FeedContext.store`): every cursor write names the epoch under
    which this replica leads the feed the cursor belongs to (`<feed>` or `<feed>/…`), so a
    stale leader's write is refused by the store. Everything else passes through."""

    def __init__(self, store: FeedStateStore) -> None:
        self._store = store
        self._epochs: dict[str, int] = {}

    def lead(self, feed: str, epoch: int | None) -> None:
        """This replica leads `feed` under `epoch` (kept after losing it: a late write is then
        refused as stale)."""
        if epoch is not None:
            self._epochs[feed] = epoch

    def epoch_of(self, cursor: str) -> int | None:
        return self._epochs.get(cursor.split("/", 1)[0])

    async def get_cursor(self, feed: str) -> str | None:
        return await self._store.get_cursor(feed)

    async def set_cursor(
        self, feed: str, cursor: str, *, epoch: int | None = None, now: float | None = None
    ) -> None:
        await self._store.set_cursor(
            feed, cursor, epoch=self.epoch_of(feed) if epoch is None else epoch, now=now
        )

    async def cursors(self) -> list[Cursor]:
        return await self._store.cursors()

    async def get_package_state(self, ecosystem: Ecosystem, name: str) -> PackageState | None:
        return await self._store.get_package_state(ecosystem, name)

    async def set_package_state(
        self, ecosystem: Ecosystem, name: str, state: PackageState, *, now: float | None = None
    ) -> None:
        await self._store.set_package_state(ecosystem, name, state, now=now)

    async def known_packages(self, ecosystem: Ecosystem) -> list[str]:
        return await self._store.known_packages(ecosystem)

    async def removals(self, ecosystem: Ecosystem, name: str, version: str) -> list[Removal]:
        return await self._store.removals(ecosystem, name, version)
