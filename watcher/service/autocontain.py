"""Automatic containment (`containment.auto`): act for the owner on a bad release, as durable jobs.

For each open incident whose worst finding reaches `auto.at`, the planner reads the packument
once and adds the jobs to the store in one call: with `github_revoke`, the report of the release's
validated GitHub tokens (references only: `watcher.service.github_revoke`); every dist-tag on the
bad version (`latest` first) back to the greatest earlier version that is not itself in an open
incident; the deprecation; with `unpublish`, the unpublish inside npm's 72-hour window (after the
GitHub report, which reads the artifact). The runner does the due jobs through the ecosystem's
`ContainmentActions`; each outcome is recorded once (`finish_containment_job`), a transient
failure is put off with backoff (or until a rate limit's reset), a final one (no rights, 2FA, no
API) pages as such with the exact manual command. When every job of an incident has its outcome,
the opening page, held at most `OPENING_HOLD` seconds for it (`incidents/eligibility.py`), says
what was done and what still needs a human; when the hold ended first, the page said what was
under way and one update says the outcome.

A kill -9 between two jobs leaves the second pending: the next start does it. Each write checks
the registry first (a dist-tag already moved, a version already deprecated), so a job that ran but
was not recorded is recorded without changing anything again.

Changes the watcher made itself are noted on the incident before the write (`deprecated`,
`dist-tag-moved`), so the containment watcher never posts them as a second mitigation.
"""

# Names `Ecosystem.NPM` (one of the files the redesign allows outside watcher/ecosystems/): the
# planner (`plan_npm`, `previous_good`) reads npm's packument and plans npm's own actions
# (dist-tags, deprecation, unpublish); no other ecosystem has write actions yet. Its writes and
# undo already go through the unit (`containment_actions`); the planner moves into
# watcher/ecosystems/npm/ when a second ecosystem gets automatic containment.
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC

import structlog

from watcher import ecosystems, metrics
from watcher.config import Config
from watcher.config.schema import AutoContainmentConfig
from watcher.ecosystems.actions import ActionResult, ContainmentActions
from watcher.ecosystems.npm.client import NpmClient, Packument
from watcher.ecosystems.npm.unit import NpmRegistry
from watcher.ecosystems.npm.writes import NpmActions, actions_for
from watcher.ecosystems.versions import is_prerelease, version_key
from watcher.errors import RegistryError
from watcher.incidents.eligibility import not_eligible
from watcher.incidents.internal_names import is_internal_name
from watcher.incidents.lifecycle import IncidentLifecycle, event_id_for, stored_id
from watcher.model import Ecosystem, EventType, Incident
from watcher.service.github_revoke import (
    PUBLIC_API,
    Downloader,
    GitHubRevoker,
    ReleaseTokens,
    revocable,
    revoke_result,
)
from watcher.store.api import Store
from watcher.store.types import ContainmentJob, JobState, NewJob

log = structlog.get_logger(__name__)

PLANNED_NOTE = "auto-containment"  # the plan in words, once per incident (never posted alone)
REPORTED_KIND = "auto-contained"  # the one update that reports every outcome
UNDONE_KIND = "auto-containment-undone"  # the update `watcher contain --undo` posts
UNDO = "undo_"
MAX_ATTEMPTS = 6
NPM_UNPUBLISH_WINDOW = 72 * 3600.0  # npm's policy: a version may be unpublished within 72 h
BACKOFF_MAX = 60.0
# the containment watcher's mitigation kinds a job's own change would otherwise trigger
OWN_CHANGE = {"dist_tag": "dist-tag-moved", "deprecate": "deprecated"}


@dataclass(frozen=True, slots=True)
class Plan:
    jobs: tuple[NewJob, ...]
    note: str  # what was decided and why (also when nothing is done)


def deprecation_message(incident: Incident, good: str | None) -> str:
    use = f"; use {good}" if good else ""
    return (
        f"registry-watcher incident {incident.dedup_key}: this release leaked sensitive files{use}"
    )


def previous_good(packument: Packument, bad: str, open_versions: set[str]) -> str | None:
    """The greatest version published before `bad`'s version order that is not itself in an
    open incident, not deprecated, and not a pre-release (what `latest` may fall back to)."""
    bad_key = version_key(Ecosystem.NPM, bad)
    if bad_key is None:
        return None
    best: tuple[object, str] | None = None
    for version, info in packument.versions.items():
        key = version_key(Ecosystem.NPM, version)
        if key is None or not key < bad_key or version in open_versions or info.deprecated:
            continue
        if is_prerelease(Ecosystem.NPM, version):
            continue
        if best is None or key > best[0]:
            best = (key, version)
    return best[1] if best else None


def unpublish_refusal(
    incident: Incident, packument: Packument, good: str | None, now: float
) -> str | None:
    """Why the bad version is not unpublished automatically (None: it is)."""
    ref = f"{incident.name}@{incident.version}"
    published = packument.times.get(incident.version) or incident.published_at
    if published is None:
        return (
            f"publish time of {ref} unknown: not unpublished automatically (npm's 72-hour window)"
        )
    age = now - published.timestamp()
    if age >= NPM_UNPUBLISH_WINDOW:
        return (
            f"{ref} was published {age / 3600:.0f} h ago, outside npm's 72-hour unpublish "
            "window: not unpublished automatically"
        )
    if len(packument.versions) < 2:
        return (
            f"{ref} is the only version: unpublishing it removes the package, "
            "not done automatically"
        )
    if good is None:
        return f"no earlier good version of {incident.name} for latest: {ref} not unpublished"
    return None


def plan_npm(
    incident: Incident,
    packument: Packument,
    auto: AutoContainmentConfig,
    open_versions: set[str],
    *,
    now: float | None = None,
) -> Plan:
    bad = incident.version
    name = incident.name
    if bad not in packument.versions:
        return Plan((), f"{name}@{bad} is no longer listed: nothing to contain")
    tags = sorted(
        (t for t, v in packument.dist_tags.items() if v == bad), key=lambda t: (t != "latest", t)
    )
    good = previous_good(packument, bad, open_versions)
    jobs: list[NewJob] = []
    notes: list[str] = []
    if auto.npm.dist_tag and tags:
        if good is None:
            notes.append(
                f"no earlier good version of {name} to move {', '.join(tags)} to: "
                "the dist-tags stay on the bad version"
            )
        else:
            for tag in tags:
                jobs.append(
                    NewJob(
                        "dist_tag",
                        tag,
                        {
                            "from": bad,
                            "to": good,
                            "manual": f"npm dist-tag add {name}@{good} {tag}",
                        },
                    )
                )
    if auto.npm.deprecate:
        message = deprecation_message(incident, good)
        jobs.append(
            NewJob(
                "deprecate",
                bad,
                {"message": message, "manual": f'npm deprecate {name}@{bad} "{message}"'},
            )
        )
    if auto.npm.unpublish:
        why = unpublish_refusal(incident, packument, good, time.time() if now is None else now)
        if why is not None:
            notes.append(why)
        else:
            jobs.append(
                NewJob(
                    "unpublish",
                    bad,
                    {
                        "tarball": packument.versions[bad].tarball or "",
                        "good": good or "",
                        "manual": f"npm unpublish {name}@{bad}",
                    },
                )
            )
    return Plan(tuple(jobs), "; ".join(notes))


def revoke_job(incident: Incident, auto: AutoContainmentConfig) -> NewJob | None:
    """With `github_revoke`: one job for the validated GitHub tokens among the findings, which
    keeps their references and redacted forms only (never a value)."""
    if not auto.github_revoke:
        return None
    found: dict[str, str] = {}
    for finding in incident.findings:
        ref = revocable(finding)
        if ref is not None:
            found.setdefault(*ref)
    if not found:
        return None
    api = (auto.github_api_url or PUBLIC_API).rstrip("/")
    auth = ' -H "Authorization: Bearer $GITHUB_TOKEN"' if auto.github_token else ""
    manual = (
        f"curl -X POST {api}/credentials/revoke{auth} "
        '-d \'{"credentials":["<each token>"]}\' '
        f"(the tokens: {', '.join(found.values())})"
    )
    return NewJob(
        "github_revoke",
        "github",
        {"refs": ",".join(found), "tokens": ", ".join(found.values()), "manual": manual},
    )


def describe(
    jobs: Sequence[ContainmentJob], incident: Incident, note: str, took: float | None
) -> str:
    """The update page: what was done, what failed (with the command), what needs a human."""
    revoked = [j for j in jobs if j.action == "github_revoke" and j.state is JobState.DONE]
    done = [j for j in jobs if j.state is JobState.DONE and j.action != "github_revoke"]
    dry = [j for j in jobs if j.state is JobState.DRY_RUN]
    failed = [j for j in jobs if j.state in (JobState.FAILED, JobState.SKIPPED)]
    parts: list[str] = []
    if done:
        what = ", ".join(j.detail or j.action for j in done)
        when = f", {took:.1f} s after publish" if took is not None else ""
        parts.append(f"auto-contained: {what}{when}")
    for job in revoked:
        parts.append(
            f"GitHub: {job.detail}; GitHub revokes them and tells their owners "
            f"({job.params.get('tokens', '')})"
        )
    if dry:
        parts.append(
            "dry run, nothing changed; would have: " + ", ".join(j.detail or "" for j in dry)
        )
    for job in failed:
        manual = job.params.get("manual")
        verb = "failed" if job.state is JobState.FAILED else "skipped"
        parts.append(
            f"auto-containment {verb}: {job.action} {job.target}: {job.detail}"
            + (f"; run: {manual}" if manual else "")
        )
    if note:
        parts.append(note)
    unpublished = any(j.action == "unpublish" and j.state is JobState.DONE for j in jobs)
    if unpublished:
        parts.append(
            f"{incident.name}@{incident.version} unpublished: this cannot be undone "
            "(npm never allows that name@version again; publish a fixed version)"
        )
    takedown = ecosystems.get(incident.ecosystem).takedown_command(incident.name, incident.version)
    parts.append(
        "still needs a human: rotate every credential the release carried"
        + (f"; unpublish if wanted: {takedown}" if takedown and not unpublished else "")
    )
    return "\n".join(parts)


class AutoContainment:
    """Plans jobs for new incidents and runs due jobs; `wake()` after pages were queued."""

    def __init__(
        self,
        store: Store,
        config: Config,
        clients: Mapping[Ecosystem, object],
        actions: Mapping[Ecosystem, ContainmentActions],
        *,
        on_page: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        poll: float = 1.0,
        revoker: GitHubRevoker | None = None,
        tokens: ReleaseTokens | None = None,
    ) -> None:
        assert config.containment.auto is not None
        self.revoker = revoker
        self.tokens = tokens if tokens is not None else ReleaseTokens()
        self.store = store
        self.config = config
        self.auto: AutoContainmentConfig = config.containment.auto
        self.clients = clients
        self.actions = actions
        self.clock = clock
        self.on_page = on_page
        self.poll = poll
        self.name = "auto-containment"
        self.last_success: float | None = None
        self.lifecycle = IncidentLifecycle(store, config, on_page=on_page, clock=clock)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.step()
            except Exception as exc:  # the store or a bug: keep going, say it loudly
                log.error("auto_containment_failed", error=f"{type(exc).__name__}: {exc}")
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED),
                    timeout=self._delay(),
                )
            waiter.cancel()
            stopper.cancel()
        for actions in self.actions.values():
            await actions.close()
        if self.revoker is not None:
            await self.revoker.close()

    def _delay(self) -> float:
        return self.poll

    async def step(self) -> None:
        incidents = await self.store.open_incidents()
        for incident in incidents:
            await self._plan(incident, incidents)
        for job in await self.store.due_containment_jobs(now=self.clock()):
            if job.action.startswith(UNDO):
                continue  # `watcher contain --undo` does these itself, and says how they went
            if job.action == "unpublish" and await self._revoke_pending(job.incident_id):
                continue  # the revocation reads the tokens from the artifact: it goes first
            await self._perform(job)
        for incident in incidents:
            await self._report(incident)
        self.last_success = self.clock()

    # -- planning ------------------------------------------------------------------------------

    async def _plan(self, incident: Incident, incidents: Sequence[Incident]) -> None:
        if incident.test or incident.id is None or is_internal_name(incident):
            return  # (an internal name on the public registry is not the owner's to unpublish)
        notes = await self.store.incident_notes(stored_id(incident))
        if PLANNED_NOTE in notes:
            return
        why_not = self._not_eligible(incident)
        if why_not is not None:
            await self.store.add_incident_note(stored_id(incident), PLANNED_NOTE, why_not)
            log.info("auto_containment_not_eligible", dedup_key=incident.dedup_key, reason=why_not)
            await self._amend_opening(incident, None)  # nothing to wait for
            return
        registry = self.clients.get(incident.ecosystem)
        client = registry.client if isinstance(registry, NpmRegistry) else registry
        if incident.ecosystem is Ecosystem.NPM and isinstance(client, NpmClient):
            fetched = await client.fetch_packument(incident.name)
            if fetched.missing or fetched.packument is None:
                plan = Plan((), f"{incident.name} is not on the registry: nothing to contain")
            else:
                open_versions = {
                    i.version
                    for i in incidents
                    if i.ecosystem is incident.ecosystem and i.name == incident.name
                }
                plan = plan_npm(
                    incident, fetched.packument, self.auto, open_versions, now=self.clock()
                )
        else:
            plan = Plan(
                (),
                f"{incident.ecosystem.value} has no API for yank or delete: "
                "nothing is done automatically, follow the runbook",
            )
        revoke = revoke_job(incident, self.auto)
        if revoke is not None:  # rotation first, and before an unpublish takes the artifact away
            plan = Plan((revoke, *plan.jobs), plan.note)
        await self.store.add_containment_jobs(
            stored_id(incident), incident.ecosystem, incident.name, plan.jobs, now=self.clock()
        )
        await self.store.add_incident_note(
            stored_id(incident), PLANNED_NOTE, plan.note or "planned"
        )
        if not plan.jobs and not worth_reporting(plan.note):
            await self._amend_opening(incident, None)  # nothing to wait for
        elif plan.jobs:  # should the hold end first, the page says what is under way
            await self.store.amend_held_event(
                stored_id(incident),
                event_id_for(incident.dedup_key, EventType.OPENED),
                under_way(plan, self.auto.dry_run),
                release=False,
                now=self.clock(),
            )
        log.info(
            "auto_containment_planned",
            dedup_key=incident.dedup_key,
            jobs=[f"{j.action}:{j.target}" for j in plan.jobs],
            note=plan.note,
            dry_run=self.auto.dry_run,
        )

    def _not_eligible(self, incident: Incident) -> str | None:
        return not_eligible(self.config, incident, self.clock())

    # -- running -------------------------------------------------------------------------------

    async def _perform(self, job: ContainmentJob) -> None:
        eco = job.ecosystem.value
        incident = await self._incident_of(job)
        now = self.clock()
        if self.auto.dry_run:
            what = _would(job.action, job.target, job.params)
            await self._finish(job, JobState.DRY_RUN, what, eco)
            return
        recent = await self.store.containment_actions_since(job.ecosystem, job.name, now - 3600)
        if recent >= self.auto.max_per_hour:
            await self._finish(
                job,
                JobState.SKIPPED,
                f"containment.auto.max_per_hour ({self.auto.max_per_hour}) reached for {job.name}",
                eco,
            )
            return
        actions = self.actions.get(job.ecosystem)
        if actions is None and job.action != "github_revoke":
            await self._finish(job, JobState.SKIPPED, f"no {eco} registry writer configured", eco)
            return
        if incident is not None and job.action in OWN_CHANGE:
            # before the write: the containment watcher must see it as ours, not a mitigation
            await self.store.add_incident_note(
                stored_id(incident), OWN_CHANGE[job.action], f"by registry-watcher ({job.action})"
            )
        if job.action == "github_revoke":
            result = await self._revoke(job, incident)
        else:
            assert actions is not None
            result = await actions.perform(job)
        if result.done:
            await self._finish(job, JobState.DONE, result.detail, eco)
            if job.action == "dist_tag" and job.target == "latest" and incident is not None:
                took = _since_publish(incident, self.clock())
                if took is not None:
                    metrics.PUBLISH_TO_CONTAINED.labels(eco).observe(took)
            return
        if result.retry and job.attempts + 1 < MAX_ATTEMPTS:
            delay = min(BACKOFF_MAX, 2.0**job.attempts)
            if result.retry_at is not None:  # the other side said when (a rate limit)
                delay = max(delay, result.retry_at - self.clock())
            await self.store.retry_containment_job(job.id, self.clock() + delay, result.detail)
            log.warning(
                "auto_containment_retry",
                action=job.action,
                package=job.name,
                target=job.target,
                attempt=job.attempts + 1,
                reason=result.detail,
                retry_in_s=delay,
            )
            return
        await self._finish(job, JobState.FAILED, result.detail, eco)

    async def _finish(self, job: ContainmentJob, state: JobState, detail: str, eco: str) -> None:
        if await self.store.finish_containment_job(job.id, state, detail, now=self.clock()):
            metrics.AUTO_CONTAINMENT.labels(eco, job.action, state.value).inc()
            log.info(
                "auto_containment_action",
                ecosystem=eco,
                package=job.name,
                action=job.action,
                target=job.target,
                outcome=state.value,
                detail=detail,
            )

    async def _revoke_pending(self, incident_id: int) -> bool:
        return any(
            j.action == "github_revoke" and j.state is JobState.PENDING
            for j in await self.store.containment_jobs(incident_id)
        )

    async def _revoke(self, job: ContainmentJob, incident: Incident | None) -> ActionResult:
        """The tokens' values again from the release as served, then GitHub's endpoint."""
        manual = job.params.get("manual")
        if self.revoker is None:
            return ActionResult(False, "containment.auto.github_revoke is off", manual=manual)
        if incident is None or incident.release_id is None:
            return ActionResult(False, "the incident's release is not in the state", manual=manual)
        stored = await self.store.get_release_by_id(incident.release_id)
        registry = self.clients.get(job.ecosystem)
        if stored is None or not isinstance(registry, Downloader):
            return ActionResult(False, "the release cannot be read again", manual=manual)
        refs = [r for r in job.params.get("refs", "").split(",") if r]
        try:
            values = await self.tokens.extract(registry, stored.release, refs)
        except (RegistryError, OSError, TimeoutError) as exc:
            why = f"could not read the release again for its tokens: {type(exc).__name__}: {exc}"
            return ActionResult(False, why[:300], retry=True, manual=manual)
        if not values:
            return ActionResult(
                False,
                "the tokens are no longer in the release as served: report them by hand",
                manual=manual,
            )
        try:
            return revoke_result(await self.revoker.submit(values), manual)
        finally:
            values.clear()

    async def _incident_of(self, job: ContainmentJob) -> Incident | None:
        for incident in await self.store.open_incidents():
            if incident.id == job.incident_id:
                return incident
        return None

    async def _report(self, incident: Incident) -> None:
        if incident.id is None:
            return
        notes = await self.store.incident_notes(incident.id)
        if REPORTED_KIND in notes or PLANNED_NOTE not in notes:
            return
        jobs = await self.store.containment_jobs(incident.id)
        if any(j.state is JobState.PENDING for j in jobs):
            return
        note = notes[PLANNED_NOTE]
        if not jobs and not worth_reporting(note):
            return  # not eligible: nothing to say beyond the page
        took = _since_publish(incident, self.clock())
        message = describe(jobs, incident, "" if note == "planned" else note, took)
        if await self._amend_opening(incident, message):
            # the opening page, still held, now says it: recorded, and no update of its own
            await self.store.add_incident_note(incident.id, REPORTED_KIND, message)
            log.info("auto_containment_reported", dedup_key=incident.dedup_key, page="opening")
            return
        if await self.lifecycle.mitigated(incident, REPORTED_KIND, message):
            log.info("auto_containment_reported", dedup_key=incident.dedup_key, page="update")

    async def _amend_opening(self, incident: Incident, message: str | None) -> bool:
        """Put `message` in the incident's held opening page and send it now; False when the page
        is no longer held (its hold ended, or it was never held)."""
        done = await self.store.amend_held_event(
            stored_id(incident),
            event_id_for(incident.dedup_key, EventType.OPENED),
            message,
            release=True,
            now=self.clock(),
        )
        if done:
            self.on_page()
        return done


def worth_reporting(note: str) -> bool:
    """A plan without jobs still says something the owner must know (no good version to fall
    back to, no write API) — or nothing beyond the page (not eligible, nothing to contain)."""
    return note.startswith(("no earlier", "unpublish")) or "no API" in note


def under_way(plan: Plan, dry_run: bool) -> str:
    """What the opening page says when it goes out before the actions' outcome is known."""
    what = ", ".join(_would(j.action, j.target, j.params) for j in plan.jobs)
    lead = "auto-containment (dry run) under way" if dry_run else "auto-containment under way"
    return f"{lead}: {what}; the outcome follows as one update"


def _would(action: str, target: str, params: Mapping[str, str]) -> str:
    if action == "dist_tag":
        return f"move {target} {params.get('from')} → {params.get('to')}"
    if action == "deprecate":
        return f"deprecate {target}"
    if action == "unpublish":
        return f"unpublish {target}"
    if action == "github_revoke":
        count = len([r for r in params.get("refs", "").split(",") if r])
        return f"report {count} GitHub token(s) to GitHub for revocation"
    return f"{action} {target}"


def _since_publish(incident: Incident, now: float) -> float | None:
    start = incident.published_at or incident.opened_at
    if start is None:
        return None
    return max(0.0, now - start.astimezone(UTC).timestamp())


# ------------------------------------------------------------------------------------ undo


# done actions no undo can reverse, and why
UNDO_IMPOSSIBLE = {
    "unpublish": "was unpublished: npm never allows that name@version again (publish a fixed "
    "version)",
    "github_revoke": "tokens were reported to GitHub, which revokes them (issue new ones)",
}


def irreversible(jobs: Sequence[ContainmentJob]) -> list[ContainmentJob]:
    return [j for j in jobs if j.action in UNDO_IMPOSSIBLE and j.state is JobState.DONE]


def undo_jobs(incident: Incident, jobs: Sequence[ContainmentJob]) -> list[NewJob]:
    """What reverses each action that was done: a dist-tag back where it was, the deprecation
    removed. Actions that were not done (failed, dry run, skipped) have nothing to undo."""
    out: list[NewJob] = []
    for job in jobs:
        if job.state is not JobState.DONE:
            continue
        if job.action == "dist_tag" and "from" in job.params and "to" in job.params:
            was, now = job.params["from"], job.params["to"]
            out.append(
                NewJob(
                    "undo_dist_tag",
                    job.target,
                    {
                        "from": now,
                        "to": was,
                        "manual": f"npm dist-tag add {incident.name}@{was} {job.target}",
                    },
                )
            )
        elif job.action == "deprecate":
            out.append(
                NewJob(
                    "undo_deprecate",
                    job.target,
                    {"message": "", "manual": f'npm deprecate {incident.name}@{job.target} ""'},
                )
            )
    # the deprecation first: a dist-tag put back on a still-deprecated version would warn anyway
    return sorted(out, key=lambda j: j.action != "undo_deprecate")


async def undo(
    store: Store,
    config: Config,
    incident: Incident,
    actions: Mapping[Ecosystem, ContainmentActions],
    *,
    clock: Callable[[], float] = time.time,
    on_page: Callable[[], None] = lambda: None,
) -> list[ContainmentJob]:
    """Reverse what automatic containment did to `incident` (each undo a job too, done once),
    post one update saying so, and return the undo jobs with their outcomes."""
    iid = stored_id(incident)
    planned = undo_jobs(incident, await store.containment_jobs(iid))
    await store.add_containment_jobs(iid, incident.ecosystem, incident.name, planned, now=clock())
    writer = actions.get(incident.ecosystem)
    for job in await store.containment_jobs(iid):
        if not job.action.startswith(UNDO) or job.state is not JobState.PENDING:
            continue
        if writer is None:
            await store.finish_containment_job(
                job.id,
                JobState.FAILED,
                f"no {incident.ecosystem.value} registry writer",
                now=clock(),
            )
            continue
        result = await writer.perform(job)
        await store.finish_containment_job(
            job.id, JobState.DONE if result.done else JobState.FAILED, result.detail, now=clock()
        )
        log.info(
            "auto_containment_undo",
            package=incident.name,
            action=job.action,
            target=job.target,
            outcome="done" if result.done else "failed",
            detail=result.detail,
        )
    undone = [j for j in await store.containment_jobs(iid) if j.action.startswith(UNDO)]
    if undone and all(j.state is not JobState.PENDING for j in undone):
        ok = [j.detail or j.action for j in undone if j.state is JobState.DONE]
        bad = [
            f"{j.action} {j.target}: {j.detail}; run: {j.params.get('manual')}"
            for j in undone
            if j.state is not JobState.DONE
        ]
        message = "automatic containment undone by an operator: " + (", ".join(ok) or "nothing")
        if bad:
            message += "\nnot undone: " + "; ".join(bad)
        for job in irreversible(await store.containment_jobs(iid)):
            message += f"\ncannot be undone: {job.target} {UNDO_IMPOSSIBLE[job.action]}"
        lifecycle = IncidentLifecycle(store, config, on_page=on_page, clock=clock)
        await lifecycle.mitigated(incident, UNDONE_KIND, message)
    return undone


def npm_actions(
    config: Config, default_registry: str, scope_registries: Mapping[str, str]
) -> NpmActions:
    return actions_for(config.containment.auto, default_registry, scope_registries)
