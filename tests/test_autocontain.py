"""Automatic containment's decisions: which dist-tags move where, what is deprecated, what the
safeguards refuse, and what the update says (pure functions over parsed packuments; the writes
and the job model run against Verdaccio in tests/integration/test_auto_containment.py)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from aiohttp import web

from tests import fakecreds
from tests.github_standin import github_standin
from tests.store_contract.builders import incident
from watcher import metrics
from watcher.config import Config, load_config
from watcher.config.plan import describe_plan
from watcher.config.schema import AutoContainmentConfig, AutoNpmConfig
from watcher.ecosystems.http import RegistryHttp
from watcher.ecosystems.npm.client import NpmClient, parse_packument
from watcher.ecosystems.npm.writes import NpmActions
from watcher.errors import ConfigError
from watcher.model import Ecosystem, Finding, Incident
from watcher.service.autocontain import (
    describe,
    irreversible,
    plan_npm,
    previous_good,
    revoke_job,
    undo_jobs,
)
from watcher.service.daemon import _auto_containment
from watcher.service.github_revoke import GitHubRevoker, revocable
from watcher.store import open_store
from watcher.store.types import ContainmentJob, JobState

AUTO = AutoContainmentConfig()


def doc(versions: dict[str, dict[str, Any]], tags: dict[str, str]) -> Any:
    return parse_packument(
        {
            "name": "@acme/cli",
            "dist-tags": tags,
            "versions": {
                v: {
                    "name": "@acme/cli",
                    "version": v,
                    "dist": {"tarball": f"http://r/{v}.tgz"},
                    **extra,
                }
                for v, extra in versions.items()
            },
        }
    )


def test_every_tag_on_the_bad_version_moves_latest_first_to_the_previous_good_one() -> None:
    packument = doc(
        {"0.9.0": {}, "1.0.0": {}, "1.0.1-rc.1": {}, "1.0.1": {}, "2.0.0": {}},
        {"latest": "1.0.1", "beta": "1.0.1", "next": "2.0.0"},
    )
    plan = plan_npm(incident("1.0.1"), packument, AUTO, {"1.0.1"})
    assert [(j.action, j.target, j.params.get("to")) for j in plan.jobs] == [
        ("dist_tag", "latest", "1.0.0"),
        ("dist_tag", "beta", "1.0.0"),
        ("deprecate", "1.0.1", None),
    ]
    assert plan.jobs[0].params["manual"] == "npm dist-tag add @acme/cli@1.0.0 latest"
    assert "watcher/npm/@acme/cli/1.0.1" in plan.jobs[2].params["message"]


def test_an_earlier_version_in_an_open_incident_or_deprecated_is_not_good() -> None:
    packument = doc(
        {"0.8.0": {}, "0.9.0": {"deprecated": "old"}, "1.0.0": {}, "1.0.1": {}},
        {"latest": "1.0.1"},
    )
    assert previous_good(packument, "1.0.1", {"1.0.0", "1.0.1"}) == "0.8.0"
    assert previous_good(packument, "0.8.0", set()) is None


def test_no_earlier_good_version_moves_nothing_and_says_so() -> None:
    packument = doc({"1.0.0": {}}, {"latest": "1.0.0"})
    plan = plan_npm(incident("1.0.0"), packument, AUTO, {"1.0.0"})
    assert [j.action for j in plan.jobs] == ["deprecate"]
    assert "no earlier good version" in plan.note


def test_switches_turn_actions_off() -> None:
    packument = doc({"1.0.0": {}, "1.0.1": {}}, {"latest": "1.0.1"})
    auto = AutoContainmentConfig(npm=AutoNpmConfig(dist_tag=False, deprecate=False))
    plan = plan_npm(incident("1.0.1"), packument, auto, set())
    assert plan.jobs == ()


UNPUBLISH = AutoContainmentConfig(npm=AutoNpmConfig(unpublish=True))


def _published(version: str, at: datetime) -> Incident:
    return dataclasses.replace(incident(version), published_at=at)


def test_unpublish_is_planned_last_only_inside_npms_72_hour_window() -> None:
    packument = doc({"1.0.0": {}, "1.0.1": {}}, {"latest": "1.0.1"})
    at = datetime(2026, 1, 2, tzinfo=UTC)
    young = _published("1.0.1", at)
    plan = plan_npm(young, packument, UNPUBLISH, {"1.0.1"}, now=at.timestamp() + 71 * 3600)
    assert [j.action for j in plan.jobs] == ["dist_tag", "deprecate", "unpublish"]
    job = plan.jobs[-1]
    assert job.target == "1.0.1" and job.params["good"] == "1.0.0"
    assert job.params["tarball"] == "http://r/1.0.1.tgz"
    assert job.params["manual"] == "npm unpublish @acme/cli@1.0.1"
    late = plan_npm(young, packument, UNPUBLISH, {"1.0.1"}, now=at.timestamp() + 73 * 3600)
    assert [j.action for j in late.jobs] == ["dist_tag", "deprecate"]
    assert "outside npm's 72-hour unpublish window" in late.note


def test_unpublish_is_refused_for_the_only_version_or_an_unknown_publish_time() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    only = doc({"1.0.1": {}}, {"latest": "1.0.1"})
    plan = plan_npm(_published("1.0.1", at), only, UNPUBLISH, set(), now=at.timestamp() + 60)
    assert "unpublish" not in [j.action for j in plan.jobs]
    assert "the only version" in plan.note
    two = doc({"1.0.0": {}, "1.0.1": {}}, {"latest": "1.0.1"})
    unknown = plan_npm(incident("1.0.1"), two, UNPUBLISH, set(), now=at.timestamp())
    assert "unpublish" not in [j.action for j in unknown.jobs]
    assert "publish time of @acme/cli@1.0.1 unknown" in unknown.note


def test_an_unpublish_done_says_it_cannot_be_undone_and_undo_leaves_it() -> None:
    jobs = [
        _job("dist_tag", "latest", JobState.DONE, "latest 1.0.1 → 1.0.0", **{"from": "1.0.1"}),
        _job("unpublish", "1.0.1", JobState.DONE, "1.0.1 unpublished"),
    ]
    text = describe(jobs, incident("1.0.1"), "", 3.0)
    assert "auto-contained: latest 1.0.1 → 1.0.0, 1.0.1 unpublished, 3.0 s after publish" in text
    assert "this cannot be undone" in text and "unpublish if wanted" not in text
    assert [j.action for j in undo_jobs(incident("1.0.1"), jobs)] == []
    assert [j.target for j in irreversible(jobs)] == ["1.0.1"]
    revoked = _job("github_revoke", "github", JobState.DONE, "1 GitHub token(s) reported")
    assert undo_jobs(incident("1.0.1"), [revoked]) == [] and irreversible([revoked]) == [revoked]


def _job(action: str, target: str, state: JobState, detail: str, **params: str) -> ContainmentJob:
    return ContainmentJob(
        1, 1, Ecosystem.NPM, "@acme/cli", action, target, params, state, 1, 0.0, detail, 0.0, 1.0
    )


def test_the_update_says_what_was_done_what_failed_and_what_needs_a_human() -> None:
    jobs = [
        _job(
            "dist_tag",
            "latest",
            JobState.DONE,
            "latest 1.0.1 → 1.0.0",
            **{"from": "1.0.1", "to": "1.0.0"},
        ),
        _job(
            "deprecate",
            "1.0.1",
            JobState.FAILED,
            "HTTP 403: forbidden",
            manual='npm deprecate @acme/cli@1.0.1 "x"',
        ),
    ]
    text = describe(jobs, incident("1.0.1"), "", 4.24)
    assert "auto-contained: latest 1.0.1 → 1.0.0, 4.2 s after publish" in text
    assert (
        "auto-containment failed: deprecate 1.0.1: HTTP 403: forbidden; run: npm deprecate" in text
    )
    assert "rotate every credential" in text and "npm unpublish @acme/cli@1.0.1" in text


def test_undo_reverses_only_what_was_done_deprecation_first() -> None:
    jobs = [
        _job("dist_tag", "latest", JobState.DONE, "moved", **{"from": "1.0.1", "to": "1.0.0"}),
        _job("deprecate", "1.0.1", JobState.DONE, "deprecated"),
        _job("dist_tag", "beta", JobState.FAILED, "403", **{"from": "1.0.1", "to": "1.0.0"}),
    ]
    undo = undo_jobs(incident("1.0.1"), jobs)
    assert [(j.action, j.target, j.params.get("to")) for j in undo] == [
        ("undo_deprecate", "1.0.1", None),
        ("undo_dist_tag", "latest", "1.0.1"),
    ]


def _config(tmp_path: Path, containment: str) -> Config:
    path = tmp_path / "watcher.yaml"
    path.write_text(
        "registries: {npm: {url: 'http://127.0.0.1:9/'}}\n"
        "packages: [{ecosystem: npm, name: x, owner: team}]\n"
        "owners: {team: {console: true}}\n"
        f"containment: {containment}\n"
    )
    return load_config(path)


async def test_containment_enabled_false_turns_automatic_actions_off_too(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "state.db")
    try:
        async with RegistryHttp() as http:
            clients = {Ecosystem.NPM: NpmClient(http, "http://127.0.0.1:9/")}
            off = _config(tmp_path, "{enabled: false, auto: {dry_run: true}}")
            assert _auto_containment(store, off, clients, lambda: None) is None
            absent = _config(tmp_path, "{enabled: true}")
            assert _auto_containment(store, absent, clients, lambda: None) is None
            on = _config(tmp_path, "{auto: {dry_run: true}}")
            runner = _auto_containment(store, on, clients, lambda: None)
            assert runner is not None and runner.auto.dry_run
            for writer in runner.actions.values():
                await writer.close()
    finally:
        await store.close()


def test_scope_tokens_need_scope_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="@acme"):
        _config(tmp_path, "{auto: {npm: {scope_tokens: {acme: t}}}}")


def _gh_finding(message: str, rule: str = "github-token") -> Finding:
    return dataclasses.replace(incident().findings[0], rule=rule, message=message)


def test_only_validated_github_tokens_the_endpoint_takes_are_revocable() -> None:
    ok = "GitHub token (personal…): ghp_…(40 chars, sha256:0123456789ab)"
    assert revocable(_gh_finding(ok)) == ("0123456789ab", "ghp_…(40 chars, sha256:0123456789ab)")
    bad_sum = "shape of GitHub token, checksum invalid: probably a test value: ghp_…(40 chars, sha256:0123456789ab)"
    assert revocable(_gh_finding(bad_sum)) is None
    installation = "GitHub token: ghs_…(40 chars, sha256:0123456789ab)"  # not accepted by GitHub
    assert revocable(_gh_finding(installation)) is None
    fine = "GitHub fine-grained personal access token: gith…(93 chars, sha256:abcdefabcdef)"
    assert revocable(_gh_finding(fine, "github-fine-grained-pat")) is not None
    assert revocable(_gh_finding(ok, "npm-token")) is None


def test_the_revoke_job_keeps_references_and_redacted_forms_never_a_value() -> None:
    with_token = dataclasses.replace(
        incident("1.0.1"),
        findings=[_gh_finding("GitHub token: ghp_…(40 chars, sha256:0123456789ab)")],
    )
    job = revoke_job(with_token, AutoContainmentConfig(github_revoke=True))
    assert job is not None and (job.action, job.target) == ("github_revoke", "github")
    assert job.params["refs"] == "0123456789ab"
    assert "https://api.github.com/credentials/revoke" in job.params["manual"]
    assert revoke_job(with_token, AutoContainmentConfig()) is None
    assert revoke_job(incident("1.0.1"), AutoContainmentConfig(github_revoke=True)) is None


def test_the_plan_says_what_automatic_containment_will_do_without_tokens(tmp_path: Path) -> None:
    secret = "npm_" + "x" * 36
    config = _config(
        tmp_path,
        "{auto: {dry_run: true, github_revoke: true, "
        f"npm: {{token: {secret}, unpublish: true}}}}}}",
    )
    plan = describe_plan(config)
    assert "automatic: at critical and above, releases younger than 3d" in plan, plan
    assert "unpublish inside npm's 72-hour window" in plan
    assert "GitHub tokens reported for revocation to api.github.com" in plan
    assert "DRY RUN" in plan and secret not in plan


def test_githubs_answer_is_classified_and_never_carries_a_token() -> None:
    revoker = GitHubRevoker(None, None, clock=lambda: 1000.0)
    token = "ghp_" + "A" * 36
    spam = revoker._classify(422, {}, f'{{"message": "bad {token}"}}'.encode())
    assert spam.status == 422 and not spam.retry and token not in spam.detail
    assert "not retried" in spam.detail and "ghp_…(40 chars" in spam.detail
    limited = revoker._classify(
        403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "4600"}, b"{}"
    )
    assert limited.retry and limited.retry_at == 4600.0
    later = revoker._classify(429, {"retry-after": "30"}, b"{}")
    assert later.retry and later.retry_at == 1030.0
    authed = revoker._classify(403, {}, b'{"message": "no"}')
    assert not authed.retry and "unauthenticated" in authed.detail
    assert revoker._classify(202, {}, b"").status == 202


def test_the_plan_names_a_package_that_opted_out(tmp_path: Path) -> None:
    path = tmp_path / "watcher.yaml"
    path.write_text(
        "registries: {npm: {url: 'http://127.0.0.1:9/'}}\n"
        "packages:\n"
        "  - {ecosystem: npm, name: kept, owner: team}\n"
        "  - {ecosystem: npm, name: legacy, owner: team, auto_contain: false}\n"
        "owners: {team: {console: true}}\n"
        "containment: {auto: {dry_run: true}}\n"
    )
    plan = describe_plan(load_config(path)).splitlines()
    [legacy] = [line for line in plan if " legacy " in line]
    [kept] = [line for line in plan if " kept " in line]
    assert "auto_contain: false" in legacy and "auto_contain" not in kept


def test_every_automatic_containment_series_starts_at_zero_buckets_from_one_second() -> None:
    metrics.start_at_zero([Ecosystem.NPM], [], [])
    sample = prometheus_client.REGISTRY.get_sample_value
    for action in ("dist_tag", "deprecate", "unpublish", "github_revoke"):
        for outcome in ("done", "failed", "dry_run", "skipped"):
            labels = {"ecosystem": "npm", "action": action, "outcome": outcome}
            assert sample("watcher_auto_containment_total", labels) is not None, labels
    [histogram] = metrics.PUBLISH_TO_CONTAINED.collect()
    bounds = [
        s.labels["le"]
        for s in histogram.samples
        if s.name.endswith("_bucket") and s.labels["ecosystem"] == "npm"
    ]
    assert bounds[0] == "1.0" and bounds[-1] == "+Inf", bounds


async def test_a_write_refused_for_2fa_or_ownership_is_final_and_says_why(
    unused_tcp_port: int,
) -> None:
    """npm's refusals as the npm CLI reads them (npm-registry-fetch's check-response): 401 with
    `WWW-Authenticate: OTP` (or a body saying "one-time pass") wants 2FA; 403 is a package the
    token's user does not own. Neither is retried; the detail never carries the token."""
    token = "npm_" + "T" * 36
    refusals = {
        "needs-otp": (401, {"www-authenticate": "OTP"}, "You must provide a one-time pass."),
        "otp-body": (401, {}, "You must provide a one-time pass. Upgrade your client."),
        "not-owned": (403, {}, 'You do not have permission to publish "not-owned".'),
    }

    async def packument(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        doc = {"name": name, "dist-tags": {"latest": "1.1.0"}, "versions": {"1.1.0": {}}}
        return web.json_response(doc)

    async def dist_tag(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {token}"
        status, headers, error = refusals[request.match_info["name"]]
        return web.json_response({"error": error}, status=status, headers=headers)

    app = web.Application()
    app.router.add_get("/{name}", packument)
    app.router.add_put("/-/package/{name}/dist-tags/{tag}", dist_tag)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    writer = NpmActions(f"http://127.0.0.1:{unused_tcp_port}", {}, token, {})
    try:
        results = {}
        for name in refusals:
            manual = f"npm dist-tag add {name}@1.0.0 latest"
            job = ContainmentJob(
                1, 1, Ecosystem.NPM, name, "dist_tag", "latest",
                {"from": "1.1.0", "to": "1.0.0", "manual": manual},
                JobState.PENDING, 0, 0.0, None, 0.0, None,
            )  # fmt: skip
            results[name] = await writer.perform(job)
    finally:
        await writer.close()
        await runner.cleanup()
    for name, result in results.items():
        assert not result.done and not result.retry, (name, result)
        assert result.manual == f"npm dist-tag add {name}@1.0.0 latest"
        assert token not in result.detail
    assert "one-time password" in results["needs-otp"].detail
    assert "one-time password" in results["otp-body"].detail
    assert results["not-owned"].detail.startswith("HTTP 403: You do not have permission")
    assert "no write access to this package" in results["not-owned"].detail


async def test_more_than_1000_tokens_go_in_requests_of_at_most_1000() -> None:
    rng = random.Random(31)
    tokens = [fakecreds.github_token(rng) for _ in range(1001)]
    async with github_standin() as github:
        revoker = GitHubRevoker(github.url, None)
        try:
            submitted = await revoker.submit(tokens)
        finally:
            await revoker.close()
    assert submitted.status == 202 and "1001 GitHub token(s) reported" in submitted.detail
    assert len(github.requests) == 2 and github.accepted == tokens
    assert not any(t in submitted.detail for t in tokens)


def test_the_issues_configuration_names_load_as_written(tmp_path: Path) -> None:
    """The names an outside check uses (issue 13), exactly as the issue spells them."""
    env = {
        "NPM_AUTOMATION_TOKEN": "npm_" + "a" * 36,
        "ACME_REGISTRY_TOKEN": "acme-" + "b" * 30,
        "GHES_TOKEN": "ghes-" + "c" * 30,
        "SLACK_BOT_TOKEN": "xoxb-" + "d" * 30,
    }
    path = tmp_path / "watcher.yaml"
    path.write_text(
        "registries: {npm: {url: 'http://127.0.0.1:9/'}}\n"
        "packages:\n"
        "  - {ecosystem: npm, name: '@acme/web', owner: team}\n"
        "  - {ecosystem: npm, name: legacy, owner: team, auto_contain: false}\n"
        "owners:\n"
        "  team:\n"
        '    slack: {bot_token: "${SLACK_BOT_TOKEN}", channel: "C0123456789"}\n'
        "containment:\n"
        "  auto:\n"
        "    at: critical\n"
        "    within: 72h\n"
        "    max_per_hour: 4\n"
        "    dry_run: true\n"
        "    github_revoke: true\n"
        "    github_api_url: https://ghes.example.invalid/api/v3\n"
        '    github_token: "${GHES_TOKEN}"\n'
        "    npm:\n"
        '      token: "${NPM_AUTOMATION_TOKEN}"\n'
        '      scope_tokens: {"@acme": "${ACME_REGISTRY_TOKEN}"}\n'
        "      dist_tag: true\n"
        "      deprecate: true\n"
        "      unpublish: false\n"
    )
    auto = load_config(path, env=env).containment.auto
    assert auto is not None
    assert (auto.at.value, auto.within, auto.max_per_hour) == ("critical", 72 * 3600.0, 4)
    assert auto.dry_run and auto.github_revoke and auto.github_token is not None
    assert (
        auto.npm.token is not None
        and auto.npm.token.get_secret_value() == env["NPM_AUTOMATION_TOKEN"]
    )
    assert auto.npm.scope_tokens["@acme"].get_secret_value() == env["ACME_REGISTRY_TOKEN"]
    assert (auto.npm.dist_tag, auto.npm.deprecate, auto.npm.unpublish) == (True, True, False)
    defaults = AutoContainmentConfig()
    assert (defaults.at.value, defaults.within, defaults.max_per_hour) == (
        "critical",
        72 * 3600.0,
        10,
    )
    assert not defaults.dry_run and not defaults.github_revoke and not defaults.npm.unpublish
