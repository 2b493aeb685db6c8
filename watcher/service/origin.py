"""Origin checks deferred until their grace ran out: a release's approval from the gate (here),
its tag and late attestations (registered the same way). Each check is a store row
(`OriginCheckStore`), scheduled when the release is scanned and due when its grace ends; this loop
claims due checks with a lease, asks the judge of the check's kind for a verdict, and hands the
verdict to the incident lifecycle, which records its findings, the incident and its pages in the
transaction that finishes the check. A restart, or another replica, takes up what is due: nothing
is judged twice, nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from watcher import ecosystems, metrics
from watcher.config import Config
from watcher.config.schema import normalize_name
from watcher.ecosystems.http import RegistryHttp
from watcher.incidents.lifecycle import IncidentLifecycle
from watcher.intent import approvals, attestations, tag
from watcher.model import Finding
from watcher.scanning.baseline import baseline_manifest
from watcher.service.idle import until_woken
from watcher.service.workers import claim_owner
from watcher.store.api import Store
from watcher.store.types import Claimant, ClaimLost, OriginCheck, StoredRelease, StoreError

log = structlog.get_logger(__name__)

CHECK_LEASE_S = 60.0  # a judge's claim; a check taking longer is taken over (judges are short)
UNKNOWN_KIND_DELAY = 300.0  # a kind no judge here knows (a newer replica's): looked at again


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judge's answer: the findings (none: the release is as expected) and the verdict in
    words; with `again_at`, not judged yet: the check is due again then (a source that could not
    be read, a window that is still open)."""

    findings: tuple[Finding, ...] = ()
    detail: str = ""
    again_at: float | None = None


class OriginJudge(Protocol):
    """Judges the due checks of one kind."""

    @property
    def kind(self) -> str: ...

    async def judge(self, check: OriginCheck, stored: StoredRelease) -> Verdict: ...


# ----------------------------------------------------------------------------------- approval


class ApprovalJudge:
    """`expect.approval`: every artifact of the release matches an approval of its version."""

    kind = approvals.CHECK_KIND

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def judge(self, check: OriginCheck, stored: StoredRelease) -> Verdict:
        release = stored.release
        if not self.config.expectations(release.ecosystem, release.name).approval:
            return Verdict((), "expect.approval is no longer set for this package")
        digests = approvals.from_params(check.params)
        stored_approvals = await self.store.approvals(
            release.ecosystem, normalize_name(release.ecosystem, release.name), release.version
        )
        found = approvals.findings(
            digests, stored_approvals, grace_s=self.config.policy.approval_grace
        )
        return Verdict(
            tuple(found),
            f"{len(digests) - len(found)} of {len(digests)} artifact(s) match an approval",
        )


# ---------------------------------------------------------------------------------------- tag


class TagJudge:
    """`expect.tag`: the release's tag exists in the owner's git repository once
    `policy.tag_grace` ran out. A repository git cannot read is tried again (the loop's backoff):
    an unreadable repository says nothing about the tag."""

    kind = tag.CHECK_KIND

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock

    async def judge(self, check: OriginCheck, stored: StoredRelease) -> Verdict:
        release = stored.release
        expected = self.config.expectations(release.ecosystem, release.name).tag
        if expected is None:
            return Verdict((), "expect.tag is no longer set for this package")
        found = await tag.lookup_tag(expected, release.version)
        if found.found:
            return Verdict((), f"tag {found.tag} found ({(found.commit or '?')[:12]})")
        waited = max(0.0, self.clock() - stored.created_at)
        return Verdict(
            (tag.untagged_finding(expected, release.version, waited),),
            f"no tag {found.tag} in {tag.masked(expected.repository)}",
        )


# ------------------------------------------------------------------------------ attestations


class AttestationJudge:
    """Late attestations: the files whose attestations were missing at scan time (a
    provenance-lost, or a bundle not readable yet) are re-read until `until`; what arrived is
    compared like at scan time (provenance-identity-changed), what never did is provenance-lost."""

    kind = attestations.CHECK_KIND

    def __init__(
        self,
        store: Store,
        config: Config,
        http: RegistryHttp,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.http = http
        self.clock = clock

    async def judge(self, check: OriginCheck, stored: StoredRelease) -> Verdict:
        release = stored.release
        unit = ecosystems.get(release.ecosystem)
        params = check.params
        files = params.get("files")
        urls = {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}
        found = {}
        for filename, url in sorted(urls.items()):
            identity = await attestations.read_identity(self.http, unit, url)
            if identity is not None:
                found[filename] = identity
        missing = sorted(set(urls) - set(found))
        until = params.get("until")
        now = self.clock()
        if missing and isinstance(until, int | float) and now < until:
            interval = attestations.attestation_interval(self.config.policy.attestation_grace)
            return Verdict(
                (),
                f"attestations of {', '.join(missing)} not there yet; read again",
                again_at=min(float(until), now + interval),
            )
        baseline = await baseline_manifest(
            self.store, release.ecosystem, release.name, release.version
        )
        version = params.get("baseline_version")
        findings = attestations.identity_findings(
            found,
            expected=self.config.expectations(release.ecosystem, release.name).provenance,
            before=attestations.identities_of(baseline[1] if baseline else None),
            version=release.version,
            baseline_version=version if isinstance(version, str) else None,
        )
        findings += attestations.lost_findings(params, missing)
        detail = (f"attestations arrived late for {', '.join(sorted(found))}" if found else "") + (
            f"; none for {', '.join(missing)}" if missing else ""
        )
        return Verdict(tuple(findings), detail.strip("; ") or "nothing to re-read")


def origin_judges(
    store: Store, config: Config, http: RegistryHttp | None = None
) -> list[OriginJudge]:
    """Every kind of origin check this service judges (late attestations need the registry)."""
    judges: list[OriginJudge] = [ApprovalJudge(store, config), TagJudge(config)]
    if http is not None:
        judges.append(AttestationJudge(store, config, http))
    return judges


# ------------------------------------------------------------------------------------- the loop


class OriginChecks:
    """`run(stop)` judges due origin checks until `stop`; `wake()` after one was scheduled."""

    def __init__(
        self,
        store: Store,
        config: Config,
        judges: Sequence[OriginJudge],
        lifecycle: IncidentLifecycle,
        *,
        idle_poll: float = 30.0,
        clock: Callable[[], float] = time.time,
        shared: bool = False,  # a shared store: its being away is waited out, not fatal
    ) -> None:
        self.store = store
        self.config = config
        self.judges = {judge.kind: judge for judge in judges}
        self.lifecycle = lifecycle
        self.idle_poll = idle_poll
        self.clock = clock
        self.claimant = Claimant(claim_owner(), CHECK_LEASE_S)
        self.shared = shared
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_due()
                await self._idle(stop)
            except StoreError as exc:  # the checks wait in the store
                if not self.shared:
                    raise  # the embedded store failing: the service says so and exits
                metrics.STORE_ERRORS.labels("origin").inc()
                log.warning("origin_checks_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.idle_poll)

    async def run_due(self) -> int:
        """Judge every check due now; returns how many were finished."""
        finished = 0
        # one claim at a time: a judge may take a while (git), and a claim is not renewed, so a
        # check claimed long before its turn would expire and be judged twice
        while checks := await self.store.claim_due_origin_checks(
            self.claimant, now=self.clock(), limit=1
        ):
            for check in checks:
                finished += await self._one(check)
        return finished

    async def _one(self, check: OriginCheck) -> int:
        bound = log.bind(check=check.kind, check_id=check.id, release_id=check.release_id)
        owner = self.claimant.owner
        stored = await self.store.get_release_by_id(check.release_id)
        judge = self.judges.get(check.kind)
        try:
            if stored is None:  # cannot happen (cascading delete); never loops
                await self.store.finish_origin_check(check.id, "release gone", owner=owner)
                return 1
            release = stored.release
            bound = bound.bind(
                ecosystem=release.ecosystem.value, package=release.name, version=release.version
            )
            if judge is None:
                await self.store.reschedule_origin_check(
                    check.id,
                    self.clock() + UNKNOWN_KIND_DELAY,
                    f"no judge for kind {check.kind!r} in this process",
                    owner=owner,
                )
                bound.warning("origin_check_unknown_kind")
                return 0
            try:
                verdict = await judge.judge(check, stored)
            except Exception as exc:
                reason, delay = await self._back_off(check, exc, owner)
                bound.warning("origin_check_retry", reason=reason, retry_in_s=delay)
                return 0
            if verdict.again_at is not None:
                await self.store.reschedule_origin_check(
                    check.id, verdict.again_at, verdict.detail, owner=owner
                )
                metrics.ORIGIN_CHECKS.labels(check.kind, "retry").inc()
                return 0
            found = await baseline_manifest(
                self.store, release.ecosystem, release.name, release.version
            )
            try:
                outcome = await self.lifecycle.origin_findings(
                    stored,
                    check,
                    verdict.findings,
                    verdict.detail,
                    owner=owner,
                    baseline_version=found[0] if found else None,
                    bound=bound,
                )
            except (ClaimLost, StoreError):
                raise
            except Exception as exc:  # one bad check never stops the others being judged
                reason, delay = await self._back_off(check, exc, owner)
                bound.error("origin_check_failed", reason=reason, retry_in_s=delay)
                return 0
        except ClaimLost:  # another holder took it over: its verdict counts
            bound.warning("origin_check_claim_lost", owner=owner)
            return 0
        metrics.ORIGIN_CHECKS.labels(check.kind, "findings" if verdict.findings else "quiet").inc()
        bound.info(
            "origin_check_finished",
            findings=len(verdict.findings),
            paged=outcome.paged,
            detail=verdict.detail,
        )
        return 1

    async def _back_off(self, check: OriginCheck, exc: Exception, owner: str) -> tuple[str, float]:
        """A judgement that raised: the check due again after a backoff that grows with its
        attempts (10 s doubling, at most 10 min), the error as its detail; (reason, delay)."""
        delay = min(600.0, 10.0 * 2 ** min(check.attempts, 6))
        reason = f"{type(exc).__name__}: {exc}"[:300]
        await self.store.reschedule_origin_check(
            check.id, self.clock() + delay, reason, owner=owner
        )
        metrics.ORIGIN_CHECKS.labels(check.kind, "retry").inc()
        return reason, delay

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        due = await self.store.next_origin_check_at()
        await until_woken(stop, self._wake, poll=self.idle_poll, due_at=due, now=self.clock())
