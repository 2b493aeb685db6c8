"""GitHub token revocation as automatic containment, end to end: `watcher run` against a real
Verdaccio, paging real loopback receivers, reporting to a stand-in of GitHub's
`POST /credentials/revoke` (202, 422, the hourly rate limit, GHES's authenticated form).

The token's value is never in the state file: the job keeps references and obtains the values
again from the release as served when it runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from pypi_servers import Devpi, build_wheel
from service_harness import ServiceProcess, start_config, unique, wait_release, webhook_secret
from test_auto_containment import _start, jobs_of, opening_message
from test_containment_e2e import of_type, until

from tests import fakecreds
from tests.github_standin import GitHubStandin, github_standin
from tests.receivers import Receiver, Receivers, all_receivers
from watcher.model import incident_key
from watcher.store.types import JobState

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    async with all_receivers(webhook_secret()) as found:
        yield found


def leaky(token: str) -> dict[str, bytes]:
    return {"index.js": b"module.exports = 2;\n", ".env": f"GITHUB_TOKEN={token}\n".encode()}


def state_text(state: Path) -> str:
    with sqlite3.connect(state) as db:
        return "\n".join(
            str(row)
            for t in ("containment_jobs", "incident_notes", "incident_events")
            for row in db.execute(f"SELECT * FROM {t}")
        )


def job_states(state: Path) -> list[tuple[str, str]]:
    """(action, state) of every containment job, read while the service runs."""
    with sqlite3.connect(state) as db:
        return list(db.execute("SELECT action, state FROM containment_jobs ORDER BY id"))


async def outcome_page(hook: Receiver, within: float = 60.0) -> str:
    """The page saying the actions' outcome: the opening page when they all finished within its
    hold (at most 5 s), else the one update after it (on a loaded machine the second download and
    scan of the release for the tokens can take longer than the hold)."""
    await until(lambda: len(of_type(hook, "incident.opened")) == 1, "the page", within)
    opening = str(of_type(hook, "incident.opened")[0].json()["data"]["message"] or "")
    if "the outcome follows as one update" not in opening:
        return opening
    await until(lambda: len(of_type(hook, "incident.updated")) == 1, "the outcome", within)
    return str(of_type(hook, "incident.updated")[0].json()["data"]["message"] or "")


async def _leak_with(
    verdaccio: Verdaccio,
    rx: Receivers,
    tmp_path: Path,
    github: GitHubStandin,
    seed: int,
    *,
    settles: bool = True,
) -> tuple[str, str, Path, str]:
    """Publish a release leaking a GitHub token; returns (name, token, state, the page saying
    the outcome). `settles=False`: the report stays pending (a rate limit): returns once GitHub
    was asked and every other job has its outcome, with the opening page."""
    auto: dict[str, object] = {
        "github_revoke": True,
        "github_api_url": github.url,
        "npm": {"token": verdaccio.token},
    }
    if github.enterprise_token:
        auto["github_token"] = github.enterprise_token
    service, name, _ = await _start(verdaccio, rx, tmp_path, json.dumps(auto))
    token = fakecreds.github_token(random.Random(seed))
    state = tmp_path / "state.db"
    try:
        await asyncio.to_thread(verdaccio.publish, name, "1.1.0", leaky(token))
        if settles:
            message = await outcome_page(rx.hook)
        else:
            await until(lambda: len(github.requests) >= 1, "the report", 60)
            await until(
                lambda: all(s != "pending" for a, s in job_states(state) if a != "github_revoke"),
                "the other jobs' outcomes",
                60,
            )
            await until(lambda: len(of_type(rx.hook, "incident.opened")) == 1, "the page", 60)
            message = opening_message(rx)
        await asyncio.sleep(1.0)  # long enough to see a retry storm, were there one
    finally:
        service.terminate()
    return name, token, state, message


async def test_a_leaked_github_token_is_reported_once_and_the_page_says_so(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    async with github_standin() as github:
        name, token, state, message = await _leak_with(verdaccio, receivers, tmp_path, github, 21)
        assert github.accepted == [token]
        assert github.requests == [{"path": "/credentials/revoke", "authorized": False}]
    assert "GitHub: 1 GitHub token(s) reported for revocation (202 Accepted)" in message, message
    assert "auto-contained: latest 1.1.0 → 1.0.0, 1.1.0 deprecated" in message
    assert token not in message
    jobs = await jobs_of(state, incident_key("npm", name, "1.1.0"))
    assert jobs[0][:3] == ("github_revoke", "github", JobState.DONE)
    assert token not in state_text(state)  # only references and redacted forms are stored


async def test_a_422_is_recorded_and_paged_with_the_manual_command_and_not_retried(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    async with github_standin(spammed=True) as github:
        name, token, state, message = await _leak_with(verdaccio, receivers, tmp_path, github, 22)
        assert len(github.requests) == 1  # no retry storm
    assert "auto-containment failed: github_revoke github: HTTP 422" in message, message
    assert "/credentials/revoke" in message and token not in message
    jobs = await jobs_of(state, incident_key("npm", name, "1.1.0"))
    assert jobs[0][:3] == ("github_revoke", "github", JobState.FAILED)


async def test_the_hourly_rate_limit_puts_the_report_off_until_the_reset(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    async with github_standin(per_hour=0) as github:
        name, _, state, message = await _leak_with(
            verdaccio, receivers, tmp_path, github, 23, settles=False
        )
        assert len(github.requests) == 1
    jobs = await jobs_of(state, incident_key("npm", name, "1.1.0"))
    action, _, job_state, detail = jobs[0]
    assert (action, job_state) == ("github_revoke", JobState.PENDING)
    assert "rate limited" in (detail or "")
    # the other actions did not wait for it; the page went out saying what is under way
    assert [s for _, _, s, _ in jobs[1:]] == [JobState.DONE, JobState.DONE]
    assert "report 1 GitHub token(s) to GitHub for revocation" in message


async def test_github_enterprise_server_is_asked_with_its_token(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    async with github_standin(enterprise_token="ghes-" + "t" * 20) as github:
        _, token, _, _ = await _leak_with(verdaccio, receivers, tmp_path, github, 24)
        assert github.accepted == [token]
        assert github.requests == [{"path": "/api/v3/credentials/revoke", "authorized": True}]


async def test_a_kill_9_with_the_report_pending_reports_once_after_the_restart(
    verdaccio: Verdaccio, receivers: Receivers, tmp_path: Path
) -> None:
    """The job holds references only: after the restart it reads the token from the release
    again and reports it, once."""
    rx = receivers
    async with github_standin(per_hour=0, reset_in=2.0) as github:
        auto = json.dumps(
            {"github_revoke": True, "github_api_url": github.url, "npm": {"token": verdaccio.token}}
        )
        service, name, config = await _start(verdaccio, rx, tmp_path, auto)
        token = fakecreds.github_token(random.Random(25))
        key = incident_key("npm", name, "1.1.0")
        try:
            await asyncio.to_thread(verdaccio.publish, name, "1.1.0", leaky(token))
            await until(lambda: len(github.requests) == 1, "the rate-limited report", 30)
            service.kill()  # SIGKILL: the report is pending, put off to the reset
            jobs = await jobs_of(tmp_path / "state.db", key)
            assert jobs[0][:3] == ("github_revoke", "github", JobState.PENDING), jobs
            github.per_hour = 100
            service = ServiceProcess(config, service.port, tmp_path)
            service.start()
            await service.wait_ready()
            await until(lambda: github.accepted == [token], "the report after the restart", 30)
            await until(
                lambda: any(
                    "GitHub: 1 GitHub token(s) reported" in str(p.json()["data"]["message"] or "")
                    for p in of_type(rx.hook, "incident.opened")
                    + of_type(rx.hook, "incident.updated")
                ),
                "the outcome said",
                30,
            )
            await asyncio.sleep(1.5)
            assert github.accepted == [token]  # once
            jobs = await jobs_of(tmp_path / "state.db", key)
            assert jobs[0][:3] == ("github_revoke", "github", JobState.DONE)
            assert token not in state_text(tmp_path / "state.db")
        finally:
            service.ensure_stopped()


async def test_a_token_in_a_pypi_wheel_is_reported_and_the_page_says_pypi_has_no_write_api(
    devpi: Devpi, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("revoke-pypi")
    mod = name.replace("-", "_")
    dists = tmp_path / "dists"
    token = fakecreds.github_token(random.Random(26))
    await asyncio.to_thread(devpi.upload, [build_wheel(dists, name, "1.0.0")])
    async with github_standin() as github:
        auto = json.dumps({"github_revoke": True, "github_api_url": github.url})
        proc = start_config(
            tmp_path,
            webhook_url=receiver.url,
            secret=secret,
            pypi_url=devpi.simple_url,
            pypi_packages=[name],
            extra=f"containment:\n  check_interval: 500ms\n  auto: {auto}\n",
        )
        proc.start()
        try:
            await proc.wait_ready()
            await wait_release(tmp_path / "state.db", name, "1.0.0", ecosystem="pypi")
            leaky = build_wheel(
                dists, name, "1.0.1", files={f"{mod}/.env": f"GITHUB_TOKEN={token}\n".encode()}
            )
            await asyncio.to_thread(devpi.upload, [leaky])
            message = await outcome_page(receiver)
            assert "GitHub: 1 GitHub token(s) reported for revocation" in message, message
            assert "pypi has no API for yank or delete" in message
            assert github.accepted == [token] and token not in message
        finally:
            proc.terminate()
