"""Scan workers: pending release → download (verified) → scan in the process pool → compare with the
stored baseline manifest → the incident lifecycle (policy, incident, pages), which records the
findings, the manifest, the incident and its pages in ONE transaction.

Releases are claimed from the store (at most one per package at a time, oldest first, so each finds
its predecessor's manifest). A failure is retried with jittered backoff and, once the retry policy
is exhausted, kept as `failed` with its reason and counted, never dropped. The first release seen of
a package is its baseline: scanned for its manifest, never paged. Downloads go to a temporary
directory that is removed whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from watcher import ecosystems, metrics
from watcher.config import Config
from watcher.ecosystems.http import RegistryHttp
from watcher.incidents.lifecycle import IncidentLifecycle
from watcher.intent import attestations
from watcher.intent.attestations import attestation_interval
from watcher.intent.gate import artifact_digests, declared_digests, schedule_approval_check
from watcher.intent.publishers import publisher_findings
from watcher.intent.tag import schedule_tag_check
from watcher.model import (
    Ecosystem,
    Manifest,
    Release,
    Report,
    log_keys,
)
from watcher.scanning.baseline import baseline_manifest
from watcher.scanning.checks.changes import raise_with_origin
from watcher.scanning.scan import ScanRequest, compare_with_baseline, merge_reports, scan_artifact
from watcher.service.idle import until_woken
from watcher.store.api import Store
from watcher.store.types import Claimant, ClaimLost, StoredRelease, StoreError
from watcher.verify.engine import CredentialVerifier

log = structlog.get_logger(__name__)


# ---------------------------------------------------------------------------------- downloads


class Downloader(Protocol):
    """Fetches every file of a release into `dest`, each verified against the registry's digest
    (an ecosystem unit's connected `Registry`)."""

    async def download(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]: ...


# ------------------------------------------------------------------------------- the claims

# How long a claim holds without renewal; the workers renew every third of it. A scan outliving
# it without renewal (the process froze or died) is another holder's to take over.
CLAIM_LEASE_S = 60.0


def claim_owner() -> str:
    """This process's name as a claim holder: host, pid and a per-run token (a restarted
    process with a reused pid is another owner)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


# -------------------------------------------------------------------------------- the pool


def _warm() -> int:
    """Run once per worker process at start so the first real scan pays no import cost."""
    return 0


def _exit_with(service_pid: int) -> None:
    """Pool worker initializer: a worker blocked on its queue never notices that the service was
    killed (`kill -9` runs no clean-up), so a watchdog thread ends it once the service is gone.
    Ctrl-C reaches the whole process group: workers ignore SIGINT and leave shutdown to the
    service (else each prints a KeyboardInterrupt traceback from its queue wait)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

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
        scratch: Path | None = None,  # where downloads go (the service's scratch directory)
        idle_poll: float = 1.0,
        rand: Callable[[], float] = random.random,
        # a shared store: claims last `store.lease`, and the store being away is waited out
        # (counted, retried) instead of ending the service
        claim_lease_s: float = CLAIM_LEASE_S,
        shared: bool = False,
        # reads the releases' attestation bundles (provenance identity); None: not read
        http: RegistryHttp | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.downloaders = downloaders
        self.http = http
        urls = dict(registry_urls or {})
        self._registry_for = registry_for or (lambda ecosystem, _name: urls.get(ecosystem))
        self.lifecycle = IncidentLifecycle(
            store, config, registry_for=self._registry_for, on_page=on_page
        )
        # opt-in liveness of found credentials (verify.enabled), before policy and paging
        self.verifier = (
            CredentialVerifier(config.verify.settings()) if config.verify.enabled else None
        )
        self.idle_poll = idle_poll
        self.scratch = scratch
        self._rand = rand
        self._wake = asyncio.Event()
        self._active: dict[int, asyncio.Task[None]] = {}
        self._pool: ProcessPoolExecutor | None = None
        # who holds this process's claims: results written after the lease went elsewhere are
        # refused by the store (ClaimLost), so a release is never recorded by two holders
        self.claimant = Claimant(claim_owner(), claim_lease_s)
        self.shared = shared
        self._renewed_at = 0.0

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
            try:
                await self._claim_step()
                await self._idle(stop)
            except StoreError as exc:
                if not self.shared:
                    raise
                metrics.STORE_ERRORS.labels("claim").inc()
                log.warning("store_error", operation="claim", error=str(exc)[:300])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.idle_poll)

    async def _claim_step(self) -> None:
        await self._renew_claims()
        free = self.config.scan.concurrency - len(self._active)
        if free > 0:
            for stored in await self.store.claim_pending(free, claimant=self.claimant):
                if stored.id in self._active:
                    continue  # our own lapsed claim, taken again: the scan in hand goes on
                task = asyncio.create_task(self._process(stored), name=f"scan:{stored.id}")
                self._active[stored.id] = task
                task.add_done_callback(self._done(stored.id))

    async def _renew_claims(self) -> None:
        """Keep the leases of the scans in hand, well before they expire."""
        now = time.time()
        if now - self._renewed_at < self.claimant.lease_s / 3:
            return
        self._renewed_at = now
        held = await self.store.renew_claims(list(self._active), self.claimant, now=now)
        lost = sorted(set(self._active) - set(held))
        if lost:
            log.warning("scan_claims_lost", release_ids=lost, owner=self.claimant.owner)

    def _done(self, release_id: int) -> Callable[[asyncio.Task[None]], None]:
        def forget(_: asyncio.Task[None]) -> None:
            self._active.pop(release_id, None)
            self._wake.set()  # a slot is free

        return forget

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        due = await self.store.next_due_at()
        await until_woken(stop, self._wake, poll=self.idle_poll, due_at=due, now=time.time())

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
                await self.store.unclaim(release_id, owner=self.claimant.owner)
                requeued += 1
        if self._pool is not None:
            self._pool.shutdown(wait=requeued == 0, cancel_futures=True)
            self._pool = None
        if requeued:
            log.warning("scans_requeued", count=requeued)
        return requeued

    async def close_pool(self) -> None:
        """End the pool if `drain` did not (the service failed before draining)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=False, cancel_futures=True)

    # -- one release ---------------------------------------------------------------------------

    async def _process(self, stored: StoredRelease) -> None:
        release = stored.release
        eco = release.ecosystem
        bound = log.bind(
            **log_keys(release),
            release_id=stored.id,
            attempt=stored.attempts,
        )
        started = time.monotonic()
        try:
            result = await self._scan_and_record(stored, bound)
        except asyncio.CancelledError:
            raise
        except ClaimLost:  # another holder took the release over: its result counts
            bound.warning("scan_claim_lost", stage="scan", owner=self.claimant.owner)
            return
        except Exception as exc:  # every failure is retried or recorded, never lost
            try:
                await self._failed(stored, exc, started, bound)
            except ClaimLost:
                bound.warning("scan_claim_lost", stage="scan", owner=self.claimant.owner)
            except StoreError as store_exc:
                if not self.shared:
                    raise
                # nothing recorded: the claim runs out and the release is scanned again
                metrics.STORE_ERRORS.labels("scan").inc()
                bound.warning("scan_not_recorded", stage="scan", error=str(store_exc)[:300])
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
        workdir = Path(tempfile.mkdtemp(prefix="watcher-scan-", dir=self.scratch))
        try:
            fetched, paths = await asyncio.wait_for(
                downloader.download(
                    release, workdir, max_bytes=self.config.scan.max_download_bytes
                ),
                timeout=self.config.scan.download_timeout,
            )
            bound.debug("release_downloaded", stage="download", files=len(paths))
            # what the registry served, byte for byte: the gate's approvals are matched on it
            digests = await asyncio.to_thread(artifact_digests, fetched, paths)
            report = await self._scan(fetched, paths)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

        found = await baseline_manifest(self.store, eco, release.name, release.version)
        baseline_version, baseline = found if found else (None, None)
        report = compare_with_baseline(
            report,
            baseline,
            None,
            self.config.scan_options(),
            releases=await self._with_baseline_release(release, baseline_version),
        )
        # provenance identity from the attestation bundles; a loss is re-read before it pages
        deferred = await self._attestations(stored, report, baseline, baseline_version)
        # expect.publishers, from the registry's document as the feed read it: an origin finding
        # (kept out of the manifest's fingerprints: the next release by that account pages too)
        unexpected = publisher_findings(
            self.config.expectations(eco, release.name).publishers, release
        )
        if unexpected:
            report.findings[:0] = unexpected
            raise_with_origin(report.findings)
        if self.verifier is not None:
            await self.verifier.verify_report(report, self._registry_for(eco, release.name))
        metrics.SCAN_BYTES.labels(eco.value).inc(report.bytes_read)
        for finding in report.findings:
            metrics.FINDINGS.labels(eco.value, finding.category.value, finding.severity.value).inc()

        # The approval check (expect.approval), scheduled before the scan is recorded so a crash
        # in between scans again and schedules again (idempotent) rather than skipping it.
        check = await schedule_approval_check(self.store, self.config, stored, digests)
        if check is not None:
            bound.info("approval_check_scheduled", stage="origin", due_at=round(check.due_at, 1))
        if deferred is not None:
            check = await self.store.schedule_origin_check(
                stored.id,
                attestations.CHECK_KIND,
                time.time() + attestation_interval(self.config.policy.attestation_grace),
                deferred,
            )
            bound.info("attestation_check_scheduled", stage="origin", due_at=round(check.due_at, 1))
        check = await schedule_tag_check(
            self.store,
            self.config.expectations(eco, release.name),
            stored,
            self.config.policy.tag_grace,
        )
        if check is not None:
            bound.info("tag_check_scheduled", stage="origin", due_at=round(check.due_at, 1))
        # Policy, incident, pages: the lifecycle's, in the same transaction as the findings.
        outcome = await self.lifecycle.record_scan(
            stored, report, baseline_version, baseline, bound
        )
        return Scanned(stored.id, outcome.paged, len(report.findings))

    async def _attestations(
        self,
        stored: StoredRelease,
        report: Report,
        baseline: Manifest | None,
        baseline_version: str | None,
    ) -> dict[str, Any] | None:
        """Read the release's attestation identities (into the manifest), add
        provenance-identity-changed, and take a provenance-lost out to re-read it later: the
        check's params, or None."""
        release = stored.release
        registry_url = self._registry_for(release.ecosystem, release.name)
        if self.http is None or registry_url is None:
            return None
        unit = ecosystems.get(release.ecosystem)
        outcome = await attestations.at_scan(
            self.http,
            unit,
            registry_url,
            release,
            findings=report.findings,
            manifest=report.manifest,
            baseline=baseline,
            expected=self.config.expectations(release.ecosystem, release.name).provenance,
            baseline_version=baseline_version,
            until=stored.created_at + self.config.policy.attestation_grace,
        )
        if outcome.findings:
            report.findings[:0] = outcome.findings
            raise_with_origin(report.findings)
        return None if stored.baseline else outcome.deferred

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
        # the package's owner's fingerprints and canaries apply beside the top-level ones
        owner = self.config.owner_of(release.ecosystem, release.name)
        options, limits = self.config.scan_options(owner), self.config.archive_limits()
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
        # Releases of several files (PyPI): paths name their file, as `watcher scan` shows them.
        prefix = ecosystems.get(release.ecosystem).several_artifacts
        if len(reports) == 1 and not prefix:
            return reports[0]
        return merge_reports(list(reports), prefix_paths=prefix)

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
            await self.store.mark_failed(stored.id, reason, owner=stored.claimed_by)
            metrics.SCAN_FAILURES.labels(eco).inc()
            metrics.SCAN_DURATION.labels(eco, "failed").observe(duration)
            bound.error("scan_failed", stage="scan", reason=reason, duration_s=round(duration, 3))
            # never downloaded: its approval is still judged, on the registry's declared digests
            declared = declared_digests(stored.release)
            if await schedule_approval_check(self.store, self.config, stored, declared):
                bound.info("approval_check_scheduled", stage="origin", digests="declared")
            return
        delay = policy.delay(stored.attempts, self._rand())
        await self.store.schedule_retry(
            stored.id, reason, time.time() + delay, owner=stored.claimed_by
        )
        metrics.SCAN_RETRIES.labels(eco).inc()
        metrics.SCAN_DURATION.labels(eco, "retry").observe(duration)
        bound.warning(
            "scan_retry",
            stage="scan",
            reason=reason,
            retry_in_s=round(delay, 1),
            duration_s=round(duration, 3),
        )
