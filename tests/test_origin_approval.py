"""The approval check end to end over a real store (no registry): scheduled at scan time only when
an artifact has no approval, judged after `policy.approval_grace` by the origin-check loop, which
opens the incident with `release-unapproved` — once, after a restart too — and says when the
published bytes differ from the approved ones."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from tests.storekit import record_releases
from watcher.config import parse_config
from watcher.incidents.lifecycle import IncidentLifecycle
from watcher.intent.approvals import DIFFERS, RULE
from watcher.intent.gate import artifact_digests, schedule_approval_check
from watcher.model import Artifact, Category, Ecosystem, Release, Severity
from watcher.service.origin import OriginChecks, origin_judges
from watcher.store import open_store
from watcher.store.api import Store
from watcher.store.types import NewApproval, OriginCheckState, StoredRelease

T0 = 1_800_000_000.0
CONFIG = """
server: {api_tokens: [{name: ci, token: "${CI_TOKEN}"}]}
owners:
  platform: {console: true, expect: {approval: true}}
  loose: {console: true}
packages:
  - {ecosystem: npm, name: "@acme/cli", owner: platform}
  - {ecosystem: npm, name: left-pad, owner: loose}
policy: {approval_grace: 2m}
"""
config = parse_config(CONFIG, source="t.yaml", env={"CI_TOKEN": secrets.token_hex(16)})


def tarball(tmp_path: Path, name: str, body: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


async def seen(store: Store, name: str, version: str, *, baseline: bool = False) -> StoredRelease:
    release = Release(
        Ecosystem.NPM,
        name,
        version,
        artifacts=(Artifact(f"cli-{version}.tgz", integrity="sha512-x"),),
    )
    if baseline:
        [stored] = await record_releases(store, [], "f", version, baselines=[release], now=T0)
    else:
        [stored] = await record_releases(store, [release], "f", version, now=T0)
    return stored


def approval(version: str, body: bytes) -> NewApproval:
    return NewApproval(Ecosystem.NPM, "@acme/cli", version, hashlib.sha256(body).hexdigest(), "ci")


def loop(store: Store, now: float) -> OriginChecks:
    lifecycle = IncidentLifecycle(store, config)
    return OriginChecks(store, config, origin_judges(store, config), lifecycle, clock=lambda: now)


async def test_an_approved_release_schedules_nothing(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        stored = await seen(store, "@acme/cli", "1.0.1")
        path = tarball(tmp_path, "cli-1.0.1.tgz", b"built by CI")
        await store.add_approval(approval("1.0.1", b"built by CI"), now=T0 - 5)
        digests = artifact_digests(stored.release, [path])
        assert digests[0].integrity == "sha512-x"
        assert await schedule_approval_check(store, config, stored, digests, now=T0) is None
        # a package that expects nothing, and a baseline, schedule nothing either
        other = await seen(store, "left-pad", "2.0.0")
        assert await schedule_approval_check(store, config, other, digests, now=T0) is None
        first = await seen(store, "@acme/cli", "0.9.0", baseline=True)
        assert await schedule_approval_check(store, config, first, digests, now=T0) is None


async def test_an_unapproved_release_pages_after_the_grace_once_across_a_restart(
    tmp_path: Path,
) -> None:
    path = tarball(tmp_path, "cli-1.0.1.tgz", b"built on a laptop")
    async with await open_store(tmp_path / "s.db") as store:
        stored = await seen(store, "@acme/cli", "1.0.1")
        digests = artifact_digests(stored.release, [path])
        check = await schedule_approval_check(store, config, stored, digests, now=T0 + 1)
        assert check is not None and check.due_at == T0 + 120  # first seen + the grace
        assert await loop(store, T0 + 119).run_due() == 0  # still in its grace: nothing judged
    async with await open_store(tmp_path / "s.db") as store:  # a restart: the check is kept
        assert await loop(store, T0 + 121).run_due() == 1
        assert await loop(store, T0 + 500).run_due() == 0  # judged once
        incident = await store.get_incident("watcher/npm/@acme/cli/1.0.1")
        assert incident is not None
        [finding] = incident.findings
        assert (finding.rule, finding.category, finding.severity) == (
            RULE,
            Category.PROVENANCE,
            Severity.CRITICAL,
        )
        assert "no approval from the gate for cli-1.0.1.tgz" in finding.message
        first, second = incident.runbook[0].text, incident.runbook[1].text
        assert "published without the gate's approval" in first and "Revoke" in first
        assert second.startswith("Check the sessions")  # then the sessions, then containment
        assert (await store.counts(now=T0)).outbox_depth == {"platform/console": 1}
        [done] = await store.origin_checks(stored.id)
        assert (
            done.state is OriginCheckState.DONE
            and done.detail == "0 of 1 artifact(s) match an approval"
        )
        assert [f.rule for f in await store.get_findings(stored.id)] == [RULE]


async def test_an_approval_landing_within_the_grace_keeps_it_quiet(tmp_path: Path) -> None:
    path = tarball(tmp_path, "cli-1.0.1.tgz", b"built by CI")
    async with await open_store(tmp_path / "s.db") as store:
        stored = await seen(store, "@acme/cli", "1.0.1")
        digests = artifact_digests(stored.release, [path])
        assert await schedule_approval_check(store, config, stored, digests, now=T0) is not None
        await store.add_approval(approval("1.0.1", b"built by CI"), now=T0 + 30)  # just after
        assert await loop(store, T0 + 121).run_due() == 1
        assert await store.get_incident("watcher/npm/@acme/cli/1.0.1") is None
        assert (await store.counts(now=T0)).outbox_depth == {}


async def test_the_same_version_from_other_bytes_says_the_tarball_differs(tmp_path: Path) -> None:
    path = tarball(tmp_path, "cli-1.0.1.tgz", b"rebuilt by someone else")
    async with await open_store(tmp_path / "s.db") as store:
        await store.add_approval(approval("1.0.1", b"built by CI"), now=T0 - 60)
        await store.add_approval(approval("1.0.0", b"rebuilt by someone else"), now=T0 - 60)
        stored = await seen(store, "@acme/cli", "1.0.1")
        digests = artifact_digests(stored.release, [path])
        assert await schedule_approval_check(store, config, stored, digests, now=T0) is not None
        await loop(store, T0 + 120).run_due()
        incident = await store.get_incident("watcher/npm/@acme/cli/1.0.1")
        assert incident is not None
        [finding] = incident.findings
        assert finding.message.startswith(DIFFERS) and "by ci at" in finding.message
        [kept] = await store.get_findings(stored.id)
        assert kept.evidence["approved"][0]["sha256"] == hashlib.sha256(b"built by CI").hexdigest()
        assert kept.evidence["sha256"] == hashlib.sha256(b"rebuilt by someone else").hexdigest()


async def test_what_changed_findings_are_raised_beside_an_unapproved_release(
    tmp_path: Path,
) -> None:
    """A medium `dependency-added` from the scan does not page alone; once the release is also
    unapproved it is raised to high and pages in the same incident."""
    from watcher.model import Finding, Manifest, fingerprint  # noqa: PLC0415

    path = tarball(tmp_path, "cli-1.0.1.tgz", b"built on a laptop")
    added = Finding(
        rule="dependency-added",
        category=Category.UNEXPECTED_CONTENT,
        severity=Severity.MEDIUM,
        path="package/package.json",
        message="dependency added: evil-pkg",
        key="evil-pkg",
        fingerprint=fingerprint("dependency-added", "package/package.json", "evil-pkg"),
    )
    async with await open_store(tmp_path / "s.db") as store:
        stored = await seen(store, "@acme/cli", "1.0.1")
        [claimed] = await store.claim_pending(1, now=T0)
        await store.mark_scanned(claimed.id, [added], Manifest(), now=T0)
        digests = artifact_digests(stored.release, [path])
        assert await schedule_approval_check(store, config, stored, digests, now=T0) is not None
        await loop(store, T0 + 120).run_due()
        incident = await store.get_incident("watcher/npm/@acme/cli/1.0.1")
        assert incident is not None
        assert [(f.rule, f.severity) for f in incident.findings] == [
            (RULE, Severity.CRITICAL),
            ("dependency-added", Severity.HIGH),
        ]


async def test_a_file_added_after_the_verdict_gets_its_own_grace(tmp_path: Path) -> None:
    """PyPI: a wheel uploaded an hour after the release was judged is judged a grace after it
    was scanned, not at once."""
    first = tarball(tmp_path, "cli-1.0.1.tgz", b"built on a laptop")
    late = tarball(tmp_path, "cli-1.0.1-late.tgz", b"a late file")
    async with await open_store(tmp_path / "s.db") as store:
        stored = await seen(store, "@acme/cli", "1.0.1")
        digests = artifact_digests(stored.release, [first])
        await schedule_approval_check(store, config, stored, digests, now=T0)
        await loop(store, T0 + 120).run_due()
        both = digests + artifact_digests(stored.release, [late])
        again = await schedule_approval_check(store, config, stored, both, now=T0 + 3600)
        assert again is not None and again.state is OriginCheckState.PENDING
        assert again.due_at == T0 + 3600 + 120


class _BrokenJudge:
    """A judge of another kind that fails every time (e.g. its source is unreachable)."""

    kind = "broken"

    async def judge(self, check: object, stored: object) -> object:
        raise OSError("source unreachable")


async def test_a_failing_judge_puts_its_check_off_and_the_others_are_still_judged(
    tmp_path: Path,
) -> None:
    path = tarball(tmp_path, "cli-1.0.1.tgz", b"built on a laptop")
    async with await open_store(tmp_path / "s.db") as store:
        stored = await seen(store, "@acme/cli", "1.0.1")
        broken = await store.schedule_origin_check(stored.id, "broken", T0, now=T0)
        digests = artifact_digests(stored.release, [path])
        await schedule_approval_check(store, config, stored, digests, now=T0)
        judges = [*origin_judges(store, config), _BrokenJudge()]
        checks = OriginChecks(
            store, config, judges, IncidentLifecycle(store, config), clock=lambda: T0 + 120
        )
        assert await checks.run_due() == 1  # the approval check
        [kept] = [c for c in await store.origin_checks(stored.id) if c.id == broken.id]
        assert kept.state is OriginCheckState.PENDING and kept.due_at > T0 + 120
        assert kept.detail == "OSError: source unreachable"
        assert await store.get_incident("watcher/npm/@acme/cli/1.0.1") is not None


async def test_a_release_that_could_not_be_downloaded_is_judged_on_declared_digests(
    tmp_path: Path,
) -> None:
    """A scan given up on (too big, say) still has its approval judged: npm's declared integrity
    matches an approval that carries it; one that matches nothing pages, saying so."""
    from watcher.intent.gate import declared_digests  # noqa: PLC0415

    async with await open_store(tmp_path / "s.db") as store:
        good = await seen(store, "@acme/cli", "2.0.0")  # declared integrity "sha512-x"
        declared = declared_digests(good.release)
        assert [(d.sha256, d.integrity) for d in declared] == [("", "sha512-x")]
        await store.add_approval(
            NewApproval(Ecosystem.NPM, "@acme/cli", "2.0.0", "e" * 64, "ci", integrity="sha512-x"),
            now=T0,
        )
        assert await schedule_approval_check(store, config, good, declared, now=T0) is None
        bad = await seen(store, "@acme/cli", "2.0.1")
        assert await schedule_approval_check(
            store, config, bad, declared_digests(bad.release), now=T0
        )
        await loop(store, T0 + 120).run_due()
        incident = await store.get_incident("watcher/npm/@acme/cli/2.0.1")
        assert incident is not None
        assert "integrity sha512-x" in incident.findings[0].message
        assert await store.get_incident("watcher/npm/@acme/cli/2.0.0") is None


async def test_an_approval_after_the_page_resolves_the_incident_when_it_covers_everything(
    tmp_path: Path,
) -> None:
    """Published by hand in an emergency, approved afterwards: the incident resolves
    ("approved", one resolved page naming who approved); an approval of other bytes only
    posts an update and the incident stays open."""
    from watcher.model import IncidentState  # noqa: PLC0415

    body = b"published by hand"
    path = tarball(tmp_path, "cli-1.0.1.tgz", body)
    async with await open_store(tmp_path / "s.db") as store:
        stored = await seen(store, "@acme/cli", "1.0.1")
        digests = artifact_digests(stored.release, [path])
        await schedule_approval_check(store, config, stored, digests, now=T0)
        await loop(store, T0 + 120).run_due()
        lifecycle = IncidentLifecycle(store, config)

        other, _ = await store.add_approval(approval("1.0.1", b"something else"), now=T0 + 200)
        assert await lifecycle.approval_arrived(other) is None  # covers no unapproved artifact
        late, _ = await store.add_approval(approval("1.0.1", body), now=T0 + 300)
        assert await lifecycle.approval_arrived(late) == "resolved"
        incident = await store.get_incident("watcher/npm/@acme/cli/1.0.1")
        assert incident is not None and incident.state is IncidentState.RESOLVED
        assert incident.resolution == "approved"
        assert await lifecycle.approval_arrived(late) is None  # once
        events = []
        while (item := await store.next_outbox_item("platform/console", now=T0 + 999)) is not None:
            events.append(item.event_type.value)
            await store.mark_delivered(item.id)
        assert events == ["incident.opened", "incident.resolved"]


async def test_an_approval_after_the_page_only_updates_when_something_else_still_pages(
    tmp_path: Path,
) -> None:
    first = tarball(tmp_path, "cli-1.0.1.tgz", b"one file")
    second = tarball(tmp_path, "cli-1.0.1-b.tgz", b"another file")
    async with await open_store(tmp_path / "s.db") as store:
        stored = await seen(store, "@acme/cli", "1.0.1")
        digests = artifact_digests(stored.release, [first, second])
        await schedule_approval_check(store, config, stored, digests, now=T0)
        await loop(store, T0 + 120).run_due()
        late, _ = await store.add_approval(approval("1.0.1", b"one file"), now=T0 + 300)
        assert await IncidentLifecycle(store, config).approval_arrived(late) == "updated"
        incident = await store.get_incident("watcher/npm/@acme/cli/1.0.1")
        assert incident is not None and incident.resolution is None
        notes = await store.incident_notes(incident.id or 0)
        [note] = notes.values()
        assert "stays open: 1 artifact(s) still unapproved" in note
