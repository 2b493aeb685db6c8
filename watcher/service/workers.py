"""Scan workers: pending release → download (verified) → scan in the process pool → compare with the
stored baseline manifest → policy → findings, manifest, incident and its pages in ONE transaction.

Releases are claimed from the store (at most one per package at a time, oldest first, so each finds
its predecessor's manifest). A failure is retried with jittered backoff and, once the retry policy
is exhausted, kept as `failed` with its reason and counted, never dropped. The first release seen of
a package is its baseline: scanned for its manifest, never paged. Downloads go to a temporary
directory that is removed whatever happens.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from watcher import metrics
from watcher.alerts.outbox import decode_event, encode_event, event_id_for
from watcher.alerts.payload import describe_finding
from watcher.config.schema import Config, channel_id
from watcher.ecosystems.npm.client import NpmClient
from watcher.ecosystems.pypi.client import PypiClient
from watcher.incidents.policy import decide
from watcher.incidents.runbook import RunbookInputs, build_runbook
from watcher.model import (
    AlertEvent,
    Ecosystem,
    EventType,
    Incident,
    Manifest,
    Release,
    Report,
    RunbookStep,
)
from watcher.scanning.scan import ScanRequest, compare_with_baseline, merge_reports, scan_artifact
from watcher.store.sqlite.store import (
    Delivery,
    IncidentState,
    IncidentUpdate,
    NewIncident,
    OutboxEvent,
    Store,
    StoredRelease,
)
from watcher.store.sqlite.store import Incident as StoredIncident

log = structlog.get_logger(__name__)


# ---------------------------------------------------------------------------------- downloads


class Downloader(Protocol):
    """Fetches every file of a release into `dest`, each verified against the registry's digest."""

    async def fetch(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]: ...


class NpmDownloader:
    def __init__(self, client: NpmClient) -> None:
        self.client = client

    async def fetch(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]:
        fetched = await self.client.download(release, dest, max_bytes=max_bytes)
        return fetched.release, [fetched.path]


class PypiDownloader:
    def __init__(self, client: PypiClient) -> None:
        self.client = client

    async def fetch(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]:
        paths = [
            await self.client.download(artifact, dest, max_bytes=max_bytes)
            for artifact in release.artifacts
        ]
        return release, paths


# -------------------------------------------------------------------------------- the pool


def _warm() -> int:
    """Run once per worker process at start so the first real scan pays no import cost."""
    return 0


def _exit_with(service_pid: int) -> None:
    """Pool worker initializer: a worker blocked on its queue never notices that the service was
    killed (`kill -9` runs no clean-up), so a watchdog thread ends it once the service is gone."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(service_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # the pid was reused by someone else's process
                os._exit(0)

    threading.Thread(target=watch, name="service-watchdog", daemon=True).start()


def make_pool(workers: int) -> ProcessPoolExecutor:
    """forkserver, not fork: the service has threads (SQLite, resolver) that fork would copy
    mid-flight. The scanner modules are preloaded once into the fork server."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["watcher.scanning.scan"])
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_exit_with,
        initargs=(os.getpid(),),
    )


# ------------------------------------------------------------------------------- the workers


@dataclass(frozen=True, slots=True)
class Scanned:
    """What one successful scan produced (for logs and tests)."""

    release_id: int
    paged: bool
    findings: int


class ScanWorkers:
    """`run(stop)` claims and processes releases until `stop`; then `drain(grace)` lets in-flight
    scans finish within the grace period and puts the rest back to pending."""

    def __init__(
        self,
        store: Store,
        config: Config,
        downloaders: Mapping[Ecosystem, Downloader],
        *,
        registry_urls: Mapping[Ecosystem, str] | None = None,
        # the registry serving one package (npm scopes may live elsewhere); else registry_urls
        registry_for: Callable[[Ecosystem, str], str | None] | None = None,
        on_page: Callable[[], None] = lambda: None,
        idle_poll: float = 1.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.config = config
        self.downloaders = downloaders
        self.registry_urls = dict(registry_urls or {})
        self.registry_for = registry_for
        self.on_page = on_page
        self.idle_poll = idle_poll
        self._rand = rand
        self._wake = asyncio.Event()
        self._active: dict[int, asyncio.Task[None]] = {}
        self._pool: ProcessPoolExecutor | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._pool = make_pool(self.config.scan.workers)
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _warm) for _ in range(self.config.scan.workers))
        )

    def wake(self) -> None:
        """New releases were stored: claim now instead of at the next idle poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._active)

    async def run(self, stop: asyncio.Event) -> None:
        if self._pool is None:
            await self.start()
        while not stop.is_set():
            free = self.config.scan.concurrency - len(self._active)
            if free > 0:
                for stored in await self.store.claim_pending(free):
                    task = asyncio.create_task(self._process(stored), name=f"scan:{stored.id}")
                    self._active[stored.id] = task
                    task.add_done_callback(self._done(stored.id))
            await self._idle(stop)

    def _done(self, release_id: int) -> Callable[[asyncio.Task[None]], None]:
        def forget(_: asyncio.Task[None]) -> None:
            self._active.pop(release_id, None)
            self._wake.set()  # a slot is free

        return forget

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        timeout = self.idle_poll
        due = await self.store.next_due_at()
        if due is not None:
            timeout = max(0.0, min(timeout, due - time.time()))
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def drain(self, grace: float) -> int:
        """After `run` returned: wait up to `grace` seconds for in-flight scans, then cancel what
        is left and put those releases back to pending (their attempt not counted). Returns how
        many were put back."""
        tasks = dict(self._active)
        if tasks:
            log.info("scans_draining", in_flight=len(tasks), grace_s=grace)
            await asyncio.wait(tasks.values(), timeout=grace)
        requeued = 0
        for release_id, task in tasks.items():
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await self.store.unclaim(release_id)
                requeued += 1
        if self._pool is not None:
            self._pool.shutdown(wait=requeued == 0, cancel_futures=True)
            self._pool = None
        if requeued:
            log.warning("scans_requeued", count=requeued)
        return requeued

    # -- one release ---------------------------------------------------------------------------

    async def _process(self, stored: StoredRelease) -> None:
        release = stored.release
        eco = release.ecosystem
        bound = log.bind(
            ecosystem=eco.value,
            package=release.name,
            version=release.version,
            release_id=stored.id,
            attempt=stored.attempts,
        )
        started = time.monotonic()
        try:
            result = await self._scan_and_record(stored, bound)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is retried or recorded, never lost
            await self._failed(stored, exc, started, bound)
            return
        duration = time.monotonic() - started
        metrics.SCAN_DURATION.labels(eco.value, "scanned").observe(duration)
        bound.info(
            "scan_finished",
            stage="scan",
            duration_s=round(duration, 3),
            findings=result.findings,
            paged=result.paged,
            baseline=stored.baseline,
        )

    async def _scan_and_record(
        self, stored: StoredRelease, bound: structlog.BoundLogger
    ) -> Scanned:
        release = stored.release
        eco = release.ecosystem
        downloader = self.downloaders.get(eco)
        if downloader is None:
            raise RuntimeError(f"no registry configured for {eco.value}")
        workdir = Path(tempfile.mkdtemp(prefix="watcher-scan-"))
        try:
            fetched, paths = await asyncio.wait_for(
                downloader.fetch(release, workdir, max_bytes=self.config.scan.max_download_bytes),
                timeout=self.config.scan.download_timeout,
            )
            bound.debug("release_downloaded", stage="download", files=len(paths))
            report = await self._scan(fetched, paths)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

        found = await self.store.baseline_manifest(eco, release.name, release.version)
        baseline_version, baseline = found if found else (None, None)
        report = compare_with_baseline(
            report,
            baseline,
            None,
            self.config.scan_options(),
            releases=await self._with_baseline_release(release, baseline_version),
        )
        metrics.SCAN_BYTES.labels(eco.value).inc(report.bytes_read)
        for finding in report.findings:
            metrics.FINDINGS.labels(eco.value, finding.category.value, finding.severity.value).inc()

        page = self._decide(stored, report, baseline_version, baseline)
        opening: NewIncident | None = None
        update: IncidentUpdate | None = None
        deliveries: list[Delivery] = []
        if page is not None:
            existing = await self.store.get_incident(page.dedup_key)
            if existing is None:
                opening, deliveries = self._opening(stored, page)
            else:  # files added to the release after its page: only what is new pages again
                update, deliveries = self._updating(existing, page, baseline_version)
        # Shielded: once the result is computed, a shutdown must not cut its transaction short.
        stored_incident, queued = await asyncio.shield(
            self.store.mark_scanned(
                stored.id,
                report.findings,
                report.manifest,
                incident=opening,
                update=update,
                deliveries=deliveries,
            )
        )
        if queued and opening is not None:
            metrics.INCIDENTS_OPENED.labels(eco.value).inc()
            bound.warning(
                "incident_opened",
                stage="policy",
                dedup_key=opening.dedup_key,
                owner=opening.owner,
                severity=opening.worst_severity.value,
                channels=[d.channel for d in deliveries],
            )
            self.on_page()
        elif queued and update is not None and stored_incident is not None:
            bound.warning(
                "incident_updated",
                stage="policy",
                dedup_key=stored_incident.dedup_key,
                owner=stored_incident.owner,
                severity=update.worst_severity.value,
                reason="new findings in files added to the release",
                reopened=existing is not None and existing.state is IncidentState.RESOLVED,
                channels=[d.channel for d in deliveries],
            )
            self.on_page()
        return Scanned(stored.id, queued, len(report.findings))

    async def _with_baseline_release(
        self, release: Release, baseline_version: str | None
    ) -> tuple[Release, Release] | None:
        """(this release, the stored release whose manifest is the baseline): the registry's
        metadata of both as the feed saw them, for the provenance comparison."""
        if baseline_version is None:
            return None
        stored = await self.store.get_release(release.ecosystem, release.name, baseline_version)
        return None if stored is None else (release, stored.release)

    async def _scan(self, release: Release, paths: list[Path]) -> Report:
        options, limits = self.config.scan_options(), self.config.archive_limits()
        requests = [
            ScanRequest(
                path,
                release.ecosystem,
                release.name,
                release.version,
                options=options,
                limits=limits,
            )
            for path in paths
        ]
        loop = asyncio.get_running_loop()
        pool: Executor | None = self._pool
        if pool is None:
            raise RuntimeError("scan workers not started")
        try:
            reports = await asyncio.gather(
                *(loop.run_in_executor(pool, scan_artifact, request) for request in requests)
            )
        except BrokenProcessPool:
            # A worker died (out of memory, killed): start a fresh pool, retry the release later.
            self._pool = make_pool(self.config.scan.workers)
            raise
        # PyPI releases have several files: paths name their file, as `watcher scan` shows them.
        prefix = release.ecosystem is Ecosystem.PYPI
        if len(reports) == 1 and not prefix:
            return reports[0]
        return merge_reports(list(reports), prefix_paths=prefix)

    def _decide(
        self,
        stored: StoredRelease,
        report: Report,
        baseline_version: str | None,
        baseline: Manifest | None,
    ) -> Incident | None:
        """The page this scan warrants (findings, runbook), or None."""
        release = stored.release
        if stored.baseline:
            return None  # first sight of the package: its manifest is the yardstick only
        policy = self.config.policy
        previous = baseline.fingerprints if baseline is not None else None
        decision = decide(
            report.findings,
            package=release.name,
            page_at=policy.page_at,
            allow=policy.allow,
            today=date.today(),
            previous=previous,
        )
        for finding, reason in decision.allowed:
            log.info(
                "finding_allowed",
                ecosystem=release.ecosystem.value,
                package=release.name,
                version=release.version,
                rule=finding.rule,
                path=finding.path,
                reason=reason,
            )
        if not decision.pages:
            return None
        owner = self.config.owner_of(release.ecosystem, release.name)
        if owner is None:
            log.warning(
                "no_owner_to_page",
                ecosystem=release.ecosystem.value,
                package=release.name,
                version=release.version,
            )
            return None
        now = datetime.now(UTC)
        incident = Incident(
            dedup_key=Incident.key_for(release.ecosystem.value, release.name, release.version),
            ecosystem=release.ecosystem,
            name=release.name,
            version=release.version,
            owner=owner,
            opened_at=now,
            findings=decision.page,
            published_at=release.published_at,
        )
        incident.runbook = self._runbook(incident, baseline_version, now)
        return incident

    def _runbook(
        self, incident: Incident, baseline_version: str | None, now: datetime
    ) -> list[RunbookStep]:
        return build_runbook(
            RunbookInputs(
                ecosystem=incident.ecosystem,
                name=incident.name,
                version=incident.version,
                findings=incident.findings,
                now=now,
                published_at=incident.published_at,
                registry_url=(
                    self.registry_for(incident.ecosystem, incident.name)
                    if self.registry_for
                    else self.registry_urls.get(incident.ecosystem)
                ),
                previous_good=baseline_version,
            )
        )

    def _channels(self, owner: str, kind: OutboxEvent, payload: dict[str, Any]) -> list[Delivery]:
        return [
            Delivery(channel_id(owner, k), kind, payload)
            for k in self.config.owners[owner].channel_kinds()
        ]

    def _opening(
        self, stored: StoredRelease, incident: Incident
    ) -> tuple[NewIncident, list[Delivery]]:
        event = AlertEvent(
            EventType.OPENED, incident, event_id_for(incident.dedup_key, EventType.OPENED)
        )
        payload = encode_event(event)
        new = NewIncident(
            ecosystem=incident.ecosystem,
            name=incident.name,
            version=incident.version,
            owner=incident.owner,
            worst_severity=incident.worst(),
            payload=payload["incident"],
            release_id=stored.id,
        )
        return new, self._channels(incident.owner, OutboxEvent.OPENED, payload)

    def _updating(
        self, existing: StoredIncident, page: Incident, baseline_version: str | None
    ) -> tuple[IncidentUpdate | None, list[Delivery]]:
        """The release was paged before and is scanned again because files were added to it
        (PyPI: a wheel uploaded after the sdist). Findings the incident already carries page
        nothing; new ones are posted as an update of the same incident (same dedup key, so
        PagerDuty adds it to the open alert), reopening it if it had been resolved."""
        try:
            before = decode_event(
                {"type": EventType.OPENED.value, "event_id": "", "incident": existing.payload}
            ).incident
        except (KeyError, TypeError, ValueError):
            return None, []
        known = {f.fingerprint for f in before.findings}
        added = sorted(
            (f for f in page.findings if f.fingerprint not in known),
            key=lambda f: (-f.severity.rank, f.path, f.line or 0, f.rule),
        )
        if not added:
            return None, []
        merged = replace(
            before,
            findings=[*before.findings, *added],
            resolved_at=None,
            resolution=None,
        )
        merged.runbook = self._runbook(merged, baseline_version, datetime.now(UTC))
        digest = hashlib.sha256(
            "\0".join(sorted(f.fingerprint for f in added)).encode()
        ).hexdigest()[:16]
        kind = f"findings-{digest}"
        files = sorted({f.path.split("/", 1)[0] for f in added})
        message = (
            f"{len(added)} new finding(s) in file(s) added to the release after the first page"
            f" ({', '.join(files)}): {describe_finding(added[0])}"
        )
        if existing.state is IncidentState.RESOLVED:
            message += "; the incident is open again"
        event = AlertEvent(
            EventType.UPDATED,
            merged,
            f"{event_id_for(merged.dedup_key, EventType.UPDATED)}:{kind}",
            message=message,
        )
        payload = encode_event(event)
        update = IncidentUpdate(
            incident_id=existing.id,
            note_kind=kind,
            note=message,
            worst_severity=merged.worst(),
            payload=payload["incident"],
        )
        if merged.owner not in self.config.owners:
            log.warning("no_owner_to_page", dedup_key=merged.dedup_key, owner=merged.owner)
            return update, []
        return update, self._channels(merged.owner, OutboxEvent.UPDATE, payload)

    async def _failed(
        self,
        stored: StoredRelease,
        exc: BaseException,
        started: float,
        bound: structlog.BoundLogger,
    ) -> None:
        eco = stored.release.ecosystem.value
        reason = f"{type(exc).__name__}: {exc}"[:500]
        duration = time.monotonic() - started
        policy = self.config.retry.scan
        age = max(0.0, time.time() - stored.created_at)
        if policy.exhausted(stored.attempts, age):
            await self.store.mark_failed(stored.id, reason)
            metrics.SCAN_FAILURES.labels(eco).inc()
            metrics.SCAN_DURATION.labels(eco, "failed").observe(duration)
            bound.error("scan_failed", stage="scan", reason=reason, duration_s=round(duration, 3))
            return
        delay = policy.delay(stored.attempts, self._rand())
        await self.store.schedule_retry(stored.id, reason, time.time() + delay)
        metrics.SCAN_RETRIES.labels(eco).inc()
        metrics.SCAN_DURATION.labels(eco, "retry").observe(duration)
        bound.warning(
            "scan_retry",
            stage="scan",
            reason=reason,
            retry_in_s=round(delay, 1),
            duration_s=round(duration, 3),
        )
