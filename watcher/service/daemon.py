"""Wiring and lifecycle of `watcher run`: feeds → store → scan workers → policy → outbox → channels.

The daemon owns every task. Start: open the store (migrations), put releases a crash left
`scanning` back to pending, resolve the registries, start the HTTP server, the scan pool, one task
per feed, the scan loop and the outbox. Stop (SIGTERM/SIGINT): feeds stop first (nothing new comes
in), scans in flight get the grace period to finish and the rest go back to pending, the outbox
finishes the send in hand, then the store is closed. A `kill -9` at any point loses nothing: every
step is a store transaction and every repeat is idempotent.

The run loop knows nothing of registries: feeds are driven through their protocol (`run(stop)`,
`interval`, `last_success`), downloads through the workers' `Downloader` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.util
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import structlog

from watcher import ecosystems, metrics
from watcher.alerts import build_channels
from watcher.alerts.base import Channel
from watcher.alerts.outbox import Outbox
from watcher.config import Config, channel_id
from watcher.ecosystems.actions import ContainmentActions
from watcher.ecosystems.base import FeedContext, Registry
from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.errors import ServiceFailed, WatcherError
from watcher.feeds.base import BaselineSeen, Feed, FeedEvent, ReleaseSeen
from watcher.feeds.internal import InternalNameRule
from watcher.feeds.reconcile import PackageTracker
from watcher.feeds.sink import record_events
from watcher.incidents.internal_names import InternalNameReporter
from watcher.model import Ecosystem
from watcher.service.api import MAX_BODY, ApprovalsApi, api_app
from watcher.service.autocontain import AutoContainment
from watcher.service.containment import ContainmentWatcher
from watcher.service.github_revoke import GitHubRevoker, ReleaseTokens
from watcher.service.origin import OriginChecks, origin_judges
from watcher.service.roles import ROLE_STOP_WAIT, FeedEpochs, Held, Role, RoleRunner
from watcher.service.scratch import Scratch
from watcher.service.server import (
    FeedHealth,
    HttpServer,
    Readiness,
    ScrapeHook,
    build_app,
    readiness,
)
from watcher.service.workers import CLAIM_LEASE_S, ScanWorkers, claim_owner
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.types import ReleaseState, StoreError, Topic

log = structlog.get_logger(__name__)

RECONCILE_PERIOD = 3600.0  # the slow backstop beside a changes feed
FEED_STOP_WAIT = 2.0  # seconds a feed gets to finish its iteration before it is cancelled
OUTBOX_STOP_WAIT = 10.0  # seconds the send in hand gets at shutdown


@dataclass(slots=True)
class _Sink:
    """The feeds' EventSink: store the events (durably); the store's notifications wake the
    scan workers."""

    store: Store
    newest_published: dict[Ecosystem, float] = field(default_factory=dict)

    async def __call__(self, events: Sequence[FeedEvent]) -> None:
        await record_events(self.store, events)
        for event in events:
            if isinstance(event, ReleaseSeen | BaselineSeen) and event.release.published_at:
                eco = event.release.ecosystem
                at = event.release.published_at.timestamp()
                self.newest_published[eco] = max(self.newest_published.get(eco, 0.0), at)


@dataclass(slots=True)
class _Feeds:
    primary: list[Feed] = field(default_factory=list)  # what /readyz looks at
    backstop: list[Feed] = field(default_factory=list)  # slow reconcile loops
    trackers: list[PackageTracker] = field(default_factory=list)  # one per ecosystem

    @property
    def all(self) -> list[Feed]:
        return [*self.primary, *self.backstop]


class Service:
    """One running watcher. `await Service(config).run()` returns when stopped (signal or
    `stop()`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self._store_open = False
        self._feeds = _Feeds()
        self.http_port: int | None = None
        self.api_port: int | None = None  # the approvals API's port (None: no api_tokens)
        self._failure: str | None = None  # the first unexpected failure, for the exit
        # several replicas on one PostgreSQL: roles are elected (feed leaders, channel senders)
        self.shared = config.store.database_url is not None
        self.owner = claim_owner()  # this process, as a lease holder
        self._roles: RoleRunner | None = None
        self._feed_roles: dict[str, Role] = {}

    def stop(self) -> None:
        self._stop.set()

    # -- the run ---------------------------------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> None:
        """Serve until stopped. Raises ServiceFailed (its cause logged last, in
        `service_stopped`) when a task failed instead of a stop being asked for; StateDamaged
        when the state file fails its integrity check."""
        config = self.config
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._run()
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        if self._failure is not None:
            log.error("service_stopped", error=self._failure, store=config.store.location)
            raise ServiceFailed(self._failure)
        log.info("service_stopped")

    async def _run(self) -> None:
        config = self.config
        store = await open_store(config.store, check_integrity=True)
        self._store_open = True
        metrics.STORE_UP.set(1)
        self._roles = RoleRunner(store, self.owner, config.store.lease, shared=self.shared)
        http: RegistryHttp | None = None
        session: aiohttp.ClientSession | None = None
        channels: list[Channel] = []
        server: HttpServer | None = None
        api_server: HttpServer | None = None
        scratch: Scratch | None = None
        workers: ScanWorkers | None = None
        try:
            requeued = await store.requeue_scanning()
            if requeued:
                log.warning("scans_resumed", count=requeued, reason="left scanning by a crash")
            scratch = await asyncio.to_thread(Scratch.open, config.scratch_root())
            http, registries = self._registries()
            for registry in registries.values():  # runbooks ask e.g. whether npm's is the default
                await asyncio.to_thread(registry.warm)
            sink = _Sink(store)
            feed_store = FeedEpochs(store)  # the feeds' cursor writes name the leader's epoch
            self._feeds = self._build_feeds(http, store, feed_store, sink, registries)
            session = aiohttp.ClientSession()
            for owner_name, owner in config.owners.items():
                channels += build_channels(owner_name, owner, session, store)
            outbox = Outbox(
                store,
                {c.name: c for c in channels},
                config.retry.outbox,
                disabled_recheck=config.outbox.disabled_recheck,
            )
            workers = ScanWorkers(
                store,
                config,
                registries,
                registry_urls={eco: reg.url for eco, reg in registries.items()},
                registry_for=_registry_for(registries),
                on_page=outbox.wake,
                scratch=scratch.path,
                claim_lease_s=config.store.lease if self.shared else CLAIM_LEASE_S,
                shared=self.shared,
                http=http,
            )
            # wake-ups come from the store: whoever queued the work, in this process or not
            store.notifications.subscribe(Topic.RELEASES, workers.wake)
            store.notifications.subscribe(Topic.OUTBOX, outbox.wake)
            containment = (
                ContainmentWatcher(store, config, registries, on_page=outbox.wake)
                if config.containment.enabled
                else None
            )
            origin = OriginChecks(
                store,
                config,
                origin_judges(store, config, http),
                workers.lifecycle,
                shared=self.shared,
            )
            store.notifications.subscribe(Topic.ORIGIN_CHECKS, origin.wake)
            auto = _auto_containment(store, config, registries, outbox.wake, scratch.path)
            if auto is not None:  # a queued page may be a new incident: plan its jobs now
                store.notifications.subscribe(Topic.OUTBOX, auto.wake)

            for tracker in self._feeds.trackers:  # the names found missing before a restart
                await tracker.not_found.restore(self._watched_exactly(tracker))
            metrics.start_at_zero(
                registries,
                [(feed.ecosystem, feed.name) for feed in self._feeds.all],
                [channel.name for channel in channels],
            )
            # the approvals API answers only to server.api_tokens: on its own address, or here
            api = (
                ApprovalsApi(store, config, lifecycle=workers.lifecycle)
                if config.server.api_tokens
                else None
            )
            shared = api is not None and config.server.api_listen is None
            server = HttpServer(
                build_app(
                    self._readiness,
                    before_scrape=self._scrape_hook(store, outbox, sink),
                    extra=api.install if api is not None and shared else None,
                    client_max_size=MAX_BODY if shared else 1024**2,
                ),
                config.server.host,
                config.server.port,
            )
            await server.start()
            self.http_port = server.port
            if api is not None and not shared:
                api_server = HttpServer(
                    api_app(api), config.server.api_host, config.server.api_port
                )
                await api_server.start()
                self.api_port = api_server.port
            elif api is not None:
                self.api_port = server.port
            await workers.start()
            # the pool's socket directory (pymp-*) is outside the scratch root (socket paths
            # are short); recorded there so the next start removes it after a kill -9
            scratch.own(Path(multiprocessing.util.get_temp_dir()))
            await self._serve(
                store,
                workers,
                outbox,
                feed_store,
                containment=containment,
                auto=auto,
                origin=origin,
            )
        except Exception as exc:
            if self.http_port is None and isinstance(exc, WatcherError | OSError):
                raise  # a start-up error (configuration, address in use): the CLI says it
            if self._failure is None:  # the store or a bug, while starting, serving or draining
                self._failure = _cause(exc)
                log.error("service_failed", error=self._failure)
        finally:
            # every step runs even when one before it failed (a full disk fails several): the
            # process must end, never hang on a resource left open
            self._store_open = False
            metrics.STORE_UP.set(0)
            if workers is not None:
                await _quietly("scan_pool", workers.close_pool)
            if server is not None:
                await _quietly("http_server", server.stop)
            if api_server is not None:
                await _quietly("api_server", api_server.stop)
            for channel in channels:
                await _quietly(f"channel:{channel.name}", channel.close)
            if session is not None:
                await _quietly("http_session", session.close)
            if http is not None:
                await _quietly("registry_http", http.close)
            await _quietly("store", store.close)
            if scratch is not None:
                await _quietly("scratch", lambda: asyncio.to_thread(scratch.close))

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("service_stopping", signal=sig.name)
        self._stop.set()

    async def _serve(
        self,
        store: Store,
        workers: ScanWorkers,
        outbox: Outbox,
        feed_store: FeedEpochs,
        *,
        containment: ContainmentWatcher | None = None,
        auto: AutoContainment | None = None,
        origin: OriginChecks | None = None,
    ) -> None:
        roles = self._roles
        assert roles is not None
        feeds_stop, work_stop, outbox_stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        # each feed is followed by its leader only; containment and automatic containment run
        # on one replica at a time; each channel is drained by its one sender
        feed_tasks = []
        for feed in self._feeds.all:
            metrics.LEADER.labels(feed.ecosystem.value, feed.name).set(0)
            role = roles.role(f"feed:{feed.name}", feed.run, _leading(feed_store, feed))
            self._feed_roles[feed.name] = role
            feed_tasks.append(
                asyncio.create_task(roles.run(role, feeds_stop), name=f"feed:{feed.name}")
            )
        if containment is not None:  # re-reads the registry like a feed; stops with them
            role = roles.role("containment", containment.run)
            feed_tasks.append(asyncio.create_task(roles.run(role, feeds_stop), name="containment"))
        if auto is not None:
            role = roles.role("auto-containment", auto.run)
            feed_tasks.append(
                asyncio.create_task(roles.run(role, feeds_stop), name="auto-containment")
            )
        if origin is not None:  # deferred origin checks, claimed with leases: every replica
            feed_tasks.append(asyncio.create_task(origin.run(feeds_stop), name="origin-checks"))
        work_task = asyncio.create_task(workers.run(work_stop), name="scan-workers")
        if self.shared:
            await outbox.prepare()
            outbox_tasks = [
                asyncio.create_task(
                    roles.run(_sender(roles, outbox, name), outbox_stop), name=f"outbox:{name}"
                )
                for name in outbox.channel_names
            ]
            outbox_task = asyncio.create_task(_all(outbox_tasks), name="outbox")
        else:
            outbox_task = asyncio.create_task(outbox.run(outbox_stop), name="outbox")
        everything = [*feed_tasks, work_task, outbox_task]
        log.info(
            "service_started",
            feeds=[f.name for f in self._feeds.all],
            channels=outbox.channel_names,
            listen=f"{self.config.server.host}:{self.http_port}",
            store=self.config.store.location,
            owner=self.owner,
            shared=self.shared,
        )
        stop_wait = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop_wait, *everything], return_when="FIRST_COMPLETED")
        for task in done:
            if task is stop_wait or task.cancelled() or task.exception() is None:
                continue
            cause = _cause(task.exception())  # type: ignore[arg-type]
            log.error("task_crashed", task=task.get_name(), error=cause)
            if self._failure is None:
                self._failure = f"task {task.get_name()} crashed: {cause}"
        stop_wait.cancel()

        # 1. nothing new comes in
        feeds_stop.set()
        work_stop.set()
        await _finish(feed_tasks, FEED_STOP_WAIT + ROLE_STOP_WAIT)
        # 2. scans in flight finish within the grace period; the rest go back to pending
        await _finish([work_task], FEED_STOP_WAIT)
        requeued = await workers.drain(self.config.shutdown.grace_period)
        # 3. the page in hand is recorded; queued pages wait in the store for the next start
        outbox_stop.set()
        await _finish([outbox_task], OUTBOX_STOP_WAIT + ROLE_STOP_WAIT)
        log.info("service_drained", requeued=requeued)

    # -- wiring ----------------------------------------------------------------------------------

    def _registries(self) -> tuple[RegistryHttp, dict[Ecosystem, Registry]]:
        return connect_registries(self.config)

    def _build_feeds(
        self,
        http: RegistryHttp,
        store: Store,
        feed_store: FeedEpochs,
        sink: _Sink,
        registries: Mapping[Ecosystem, Registry],
    ) -> _Feeds:
        feeds = _Feeds()
        sightings = InternalNameReporter(store, self.config)
        for eco, registry in registries.items():
            built = registry.feeds(
                FeedContext(
                    http=http,
                    store=feed_store,
                    sink=sink,
                    section=self.config.registries.for_ecosystem(eco),
                    names=[p.name for p in self.config.packages_for(eco)],
                    reconcile_period=RECONCILE_PERIOD,
                    internal_names=[
                        InternalNameRule(e.pattern, e.owner)
                        for e in self.config.internal_names
                        if e.ecosystem == eco
                    ],
                    sightings=sightings,
                )
            )
            feeds.primary += built.primary
            feeds.backstop += built.backstop
            feeds.trackers += built.trackers
        return feeds

    def _watched_exactly(self, tracker: PackageTracker) -> Callable[[str], bool]:
        """Whether a name is still in `packages:` by its exact name (as the store keys it)."""
        source = tracker.source
        names = {
            source.canonical(p.name)
            for p in self.config.packages_for(tracker.ecosystem)
            if "*" not in p.name
        }
        return names.__contains__

    # -- health and metrics ----------------------------------------------------------------------

    def _readiness(self) -> Readiness:
        roles = self._roles
        if roles is None or not roles.shared:
            health = [FeedHealth(f.name, f.interval, f.last_success) for f in self._feeds.primary]
            return readiness(self._store_open, health)
        # a replica is ready when the store answers and every feed has a live leader: the
        # leader's feeds must also be fresh; a follower does not poll them itself
        mine, reasons = [], []
        if not roles.store_ok:
            reasons.append(f"store: unreachable ({roles.store_error})")
        for feed in self._feeds.primary:
            role = self._feed_roles.get(feed.name)
            if role is None:
                reasons.append(f"{feed.name}: not started")
            elif role.held is not None:
                mine.append(FeedHealth(feed.name, feed.interval, feed.last_success))
            elif not roles.live(role):
                reasons.append(f"{feed.name}: no live leader")
        state = readiness(self._store_open, mine)
        reasons += state.reasons
        return Readiness(not reasons, tuple(reasons))

    def _scrape_hook(self, store: Store, outbox: Outbox, sink: _Sink) -> ScrapeHook:
        feeds = self._feeds
        configured = [channel_id(owner, kind) for owner, kind in self.config.channels()]
        watched = {p.ecosystem for p in self.config.packages}

        async def refresh() -> None:
            now = time.time()
            roles = self._roles
            metrics.STORE_UP.set(1 if self._store_open and (roles is None or roles.store_ok) else 0)
            try:
                counts = await store.counts(now=now)
            except StoreError:
                metrics.STORE_ERRORS.labels("metrics").inc()
                raise
            oldest_due = await store.oldest_due_origin_check(now=now)
            metrics.ORIGIN_CHECK_OLDEST_DUE.set(0.0 if oldest_due is None else now - oldest_due)
            for state in ReleaseState:
                metrics.RELEASES_BY_STATE.labels(state.value).set(
                    counts.releases_by_state.get(state, 0)
                )
            for name in {*configured, *counts.outbox_depth}:
                metrics.OUTBOX_DEPTH.labels(name).set(counts.outbox_depth.get(name, 0))
            metrics.OUTBOX_OLDEST_AGE.set(counts.outbox_oldest_age_s or 0.0)
            metrics.OUTBOX_DEAD_LETTERS.set(counts.dead_letters)
            metrics.OPEN_INCIDENTS.set(counts.open_incidents)
            oldest = counts.oldest_open_incident_age_s
            for eco in {*watched, *oldest}:
                metrics.OPEN_INCIDENT_OLDEST.labels(eco.value).set(oldest.get(eco, 0.0))
            for name in outbox.channel_names:
                metrics.CHANNEL_DISABLED.labels(name).set(1 if name in outbox.disabled() else 0)
            cursors = {c.feed: c.updated_at for c in await store.cursors()}
            for feed in feeds.all:
                since = cursors.get(feed.name, feed.last_success)
                if since is not None:
                    metrics.FEED_CURSOR_AGE.labels(feed.ecosystem.value, feed.name).set(
                        max(0.0, now - since)
                    )
            for eco, newest in sink.newest_published.items():
                metrics.FEED_NEWEST_LAG.labels(eco.value).set(max(0.0, now - newest))

        return refresh


def _leading(feed_store: FeedEpochs, feed: Feed) -> Callable[[Held | None], None]:
    """Told when this replica gains or loses a feed's lead: the metric, and the epoch its
    cursor writes name."""

    def change(held: Held | None) -> None:
        metrics.LEADER.labels(feed.ecosystem.value, feed.name).set(0 if held is None else 1)
        if held is not None:
            feed_store.lead(feed.name, held.epoch)
        else:  # a follower does not poll: no stale success time for the alerts to read
            with contextlib.suppress(KeyError):
                metrics.FEED_LAST_SUCCESS.remove(feed.ecosystem.value, feed.name)

    return change


def _sender(roles: RoleRunner, outbox: Outbox, channel: str) -> Role:
    """A channel's sender role: drains the channel while this replica holds `outbox:<name>`,
    and sends only while that lease is surely still its own."""

    def may_send() -> bool:
        return role.held is not None and role.held.valid()

    async def loop(stop: asyncio.Event) -> None:
        await outbox.run_channel(channel, stop, may_send=may_send)

    role = roles.role(f"outbox:{channel}", loop)
    return role


async def _all(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait for every task; the first failure fails this one (the others are cancelled)."""
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def _registry_for(
    registries: Mapping[Ecosystem, Registry],
) -> Callable[[Ecosystem, str], str | None]:
    """The registry serving one package, for runbooks: an npm scope's own, else the default."""

    def lookup(ecosystem: Ecosystem, name: str) -> str | None:
        registry = registries.get(ecosystem)
        return registry.registry_for(name) if registry is not None else None

    return lookup


def _cause(exc: BaseException) -> str:
    """`Type: message` of the error itself, out of any TaskGroup's exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def connect_registries(config: Config) -> tuple[RegistryHttp, dict[Ecosystem, Registry]]:
    """Resolve each watched ecosystem's registry (config, else the machine's settings) and
    connect it to one HTTP layer holding every registry's credential under its own URL.
    Raises ConfigError when neither names one. The service's wiring; `check-config --online`."""
    sections = config.registries.sections()
    internal = {entry.ecosystem for entry in config.internal_names}
    watched = [
        u for u in ecosystems.all_units() if config.packages_for(u.name) or u.name in internal
    ]
    resolved = {unit.name: unit.resolve(sections[unit.name]) for unit in watched}
    credentials: dict[str, str] = {}
    for resolution in resolved.values():
        resolution.log_resolved()
        credentials.update(resolution.credentials())
    timeout = max(section.timeout for section in sections.values())
    http = RegistryHttp(
        HttpSettings(
            credentials=credentials,
            read_timeout=timeout,
            total_timeout=max(timeout, config.scan.download_timeout),
        )
    )
    return http, {eco: resolution.connect(http) for eco, resolution in resolved.items()}


async def _quietly(what: str, step: Callable[[], Awaitable[object]]) -> None:
    """One shutdown step; its failure is logged and the next step still runs."""
    try:
        await step()
    except Exception as exc:
        log.warning("shutdown_step_failed", step=what, error=_cause(exc))


async def _finish(tasks: Sequence[asyncio.Task[None]], wait: float) -> None:
    """Give tasks `wait` seconds to return on their own, then cancel them."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=wait)
    for task in pending:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _auto_containment(
    store: Store,
    config: Config,
    registries: Mapping[Ecosystem, Registry],
    on_page: Callable[[], None],
    scratch: Path | None = None,
) -> AutoContainment | None:
    """`containment.auto` when it is set and containment is enabled (false turns it off too):
    each watched ecosystem's writes as its unit makes them."""
    auto = config.containment.auto
    if auto is None or not config.containment.enabled:
        return None
    sections = config.registries.sections()
    actions: dict[Ecosystem, ContainmentActions] = {
        eco: ecosystems.get(eco).containment_actions(sections[eco], auto) for eco in registries
    }
    revoker = None
    if auto.github_revoke:
        revoker = GitHubRevoker(
            auto.github_api_url,
            auto.github_token.get_secret_value() if auto.github_token else None,
        )
    return AutoContainment(
        store,
        config,
        registries,
        actions,
        on_page=on_page,
        revoker=revoker,
        tokens=ReleaseTokens(limits=config.archive_limits(), scratch=scratch),
    )
