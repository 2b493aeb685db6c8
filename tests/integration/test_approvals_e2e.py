"""Gate approvals end to end: `watcher run` as a real subprocess following a real Verdaccio (and
pypiserver), its approvals API on its own port, `watcher approve` as the CI gate, the real npm CLI
packing and publishing, a real Standard Webhooks receiver:

* approved: `npm pack` → `watcher approve` → `npm publish` of that file pages nothing;
* the same version published from another tarball pages `release-unapproved`, saying the
  published tarball differs from the approved one;
* a release nobody approved pages after `policy.approval_grace` (short here), not before, and
  a check still pending when the service is killed (-9) pages once after the restart;
* approving after the page what the registry serves (`watcher approve npm:NAME@VERSION`) resolves
  the incident of a legitimate publish by hand;
* a token without rights gets 401 / 403 from the server (`watcher approve` exits 2 with its
  message) and records nothing;
* PyPI: an approved wheel is quiet, the unapproved sdist of the same release pages (one approval
  per file); a wheel rebuilt off the pipeline pages as differing; a limited token gets 403.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gate_harness import approve, npm_publish, opened, pack
from npm_servers import Verdaccio
from pypi_servers import PypiServer, build_sdist, build_wheel
from service_harness import ServiceProcess, publish, start_config, unique, wait_release

from tests.receivers import Receiver
from watcher.model import Ecosystem
from watcher.store import open_store
from watcher.store.types import Approval

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRACE = 5.0  # policy.approval_grace here: short, so a test waits seconds, not minutes


def api_service(
    tmp_path: Path, receiver: Receiver, secret: str, tokens: dict[str, str], **registries: Any
) -> tuple[ServiceProcess, str]:
    """A service whose packages expect approvals, with API tokens `ci` (any package) and
    `other-team` (limited to @other/*), the API on its own port."""
    from servers_common import free_port  # noqa: PLC0415

    api_port = free_port()
    proc = start_config(
        tmp_path,
        webhook_url=receiver.url,
        secret=secret,
        extra=f"policy: {{approval_grace: {GRACE}s}}\n",
        **registries,
    )
    text = proc.config.read_text()
    listen = f'server: {{listen: "127.0.0.1:{proc.port}"}}\n'
    assert listen in text
    text = text.replace(
        listen,
        f'server:\n  listen: "127.0.0.1:{proc.port}"\n  api_listen: "127.0.0.1:{api_port}"\n'
        "  api_tokens:\n"
        '    - {name: ci, token: "${TEST_CI_TOKEN}"}\n'
        '    - {name: other-team, token: "${TEST_OTHER_TOKEN}", packages: ["@other/*"]}\n',
    )
    text = text.replace("  team:\n", "  team:\n    expect: {approval: true}\n", 1)
    proc.config.write_text(text)
    os.environ.update(TEST_CI_TOKEN=tokens["ci"], TEST_OTHER_TOKEN=tokens["other"])
    return proc, f"http://127.0.0.1:{api_port}"


def make_tokens() -> dict[str, str]:
    return {"ci": secrets.token_hex(24), "other": secrets.token_hex(24)}


async def stored_approvals(state: Path, eco: Ecosystem, name: str) -> list[Approval]:
    async with await open_store(state) as store:
        return await store.approvals(eco, name)


async def test_npm_approved_quiet_other_tarball_and_unapproved_page_bad_tokens_record_nothing(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("gate")
    state = tmp_path / "state.db"
    tokens = make_tokens()
    await publish(verdaccio, name, "1.0.0")
    service, api = api_service(
        tmp_path, receiver, secret, tokens, npm_url=verdaccio.url, packages=[name]
    )
    service.start()
    try:
        await service.wait_ready()
        await wait_release(state, name, "1.0.0")

        # -- a token without rights: 401 / 403, exit 2 with the server's message, nothing kept
        tgz = await asyncio.to_thread(pack, verdaccio, tmp_path, name, "1.1.0", "exports.a=1;\n")
        wrong = await approve(tgz, api, "not-" + tokens["ci"])
        assert wrong.returncode == 2 and "401" in wrong.stderr and "API token" in wrong.stderr
        limited = await approve(tgz, api, tokens["other"])
        assert limited.returncode == 2 and "403" in limited.stderr
        assert "limited to packages @other/*" in limited.stderr
        none = await approve(tgz, api, None)
        assert none.returncode == 2 and "WATCHER_API_TOKEN is not set" in none.stderr
        assert await stored_approvals(state, Ecosystem.NPM, name) == []
        for result in (wrong, limited):
            assert tokens["ci"] not in result.stdout + result.stderr
            assert tokens["other"] not in result.stdout + result.stderr

        # -- approved: npm pack → watcher approve → npm publish of that file: quiet
        ok = await approve(tgz, api, tokens["ci"])
        assert ok.returncode == 0, ok.stderr
        assert f"approved: npm:{name}@1.1.0 sha256 " in ok.stdout and "token ci" in ok.stdout
        again = await approve(tgz, api, tokens["ci"])  # a CI retry: the same approval
        assert again.returncode == 0
        [kept] = await stored_approvals(state, Ecosystem.NPM, name)
        assert (kept.version, kept.token_name) == ("1.1.0", "ci")
        assert kept.integrity is not None and kept.integrity.startswith("sha512-")
        await asyncio.to_thread(npm_publish, verdaccio, tgz)
        approved = await wait_release(state, name, "1.1.0")
        async with await open_store(state) as store:
            assert await store.origin_checks(approved.id) == []  # approved: nothing to wait for

        # -- the same version from another tarball: approved 1.2.0 as built, published rebuilt
        built = await asyncio.to_thread(pack, verdaccio, tmp_path, name, "1.2.0", "exports.b=1;\n")
        assert (await approve(built, api, tokens["ci"])).returncode == 0
        rebuilt = await asyncio.to_thread(
            pack, verdaccio, tmp_path, name, "1.2.0", "exports.b=1;require('child_process');\n"
        )
        await asyncio.to_thread(npm_publish, verdaccio, rebuilt)
        await receiver.wait_for(1, within=GRACE + 30)
        [differs] = opened(receiver)
        assert differs["dedup_key"] == f"watcher/npm/{name}/1.2.0"
        [finding] = differs["findings"]
        assert (finding["rule"], finding["category"], finding["severity"]) == (
            "release-unapproved",
            "provenance",
            "critical",
        )
        assert finding["message"].startswith("the published tarball differs from the approved one")
        assert "Revoke every npm token" in differs["runbook"][0]["text"]
        assert differs["runbook"][1]["text"].startswith("Check the sessions")

        # -- nobody approved 1.3.0: it pages, and only once the grace ran out
        await publish(verdaccio, name, "1.3.0")
        await receiver.wait_for(2, within=GRACE + 30)
        unapproved = opened(receiver)[1]
        assert unapproved["dedup_key"] == f"watcher/npm/{name}/1.3.0"
        assert unapproved["findings"][0]["message"].startswith("no approval from the gate for")
        seen = await wait_release(state, name, "1.3.0")
        async with await open_store(state) as store:
            incident = await store.get_incident(f"watcher/npm/{name}/1.3.0")
            assert incident is not None
            assert incident.opened_at.timestamp() >= seen.created_at + GRACE
            [check] = await store.origin_checks(seen.id)
            assert check.kind == "approval" and check.state.value == "done"

        await asyncio.sleep(1.5)  # nothing else is coming: 1.1.0 stays quiet
        assert [p["version"] for p in opened(receiver)] == ["1.2.0", "1.3.0"]
        assert len(receiver.requests) == 2

        status, text = await asyncio.to_thread(service.get, "/metrics")
        assert status == 200
        for outcome, count in (
            ("recorded", 2),
            ("repeated", 1),
            ("unauthorized", 1),
            ("refused", 1),
        ):
            assert f'watcher_approvals_total{{outcome="{outcome}"}} {count}.0' in text
        assert 'watcher_origin_checks_total{kind="approval",verdict="findings"} 2.0' in text
        assert "watcher_origin_check_oldest_due_seconds 0.0" in text

        # -- a pending check survives a kill -9: the restarted service judges it when due
        await publish(verdaccio, name, "1.4.0")
        pending = await wait_release(state, name, "1.4.0")
        service.kill()
        async with await open_store(state) as store:
            [check] = await store.origin_checks(pending.id)
        assert check.state.value == "pending", "the check was judged before the kill"
        service.start()
        await service.wait_ready()
        await receiver.wait_for(3, within=GRACE + 30)
        assert [p["version"] for p in opened(receiver)] == ["1.2.0", "1.3.0", "1.4.0"]

        # -- the listing and `watcher status`
        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "watcher.cli", "status", "--config", str(service.config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "last approvals (from the gate):" in status.stdout
        assert f"{name}@1.2.0 sha256" in status.stdout and "by ci" in status.stdout
        await asyncio.sleep(1.5)
        assert len(receiver.requests) == 3, "each page once, across the restart too"
        receiver.assert_valid()
        logs = service.stderr_path.read_text()
        assert tokens["ci"] not in logs and tokens["other"] not in logs
        assert "api_unauthorized" in logs and "approval_refused" in logs

        # -- 1.3.0 was a legitimate publish by hand: approving what the registry serves after
        # the page resolves its incident (one resolved page)
        late = await approve(
            f"npm:{name}@1.3.0", api, tokens["ci"], "--config", str(service.config)
        )
        assert late.returncode == 0, late.stderr
        await receiver.wait_for(4, within=30)
        resolved = receiver.requests[3].json()
        assert resolved["type"] == "incident.resolved"
        assert resolved["data"]["dedup_key"] == f"watcher/npm/{name}/1.3.0"
        async with await open_store(state) as store:
            incident = await store.get_incident(f"watcher/npm/{name}/1.3.0")
            assert incident is not None and incident.resolution == "approved"
    finally:
        service.ensure_stopped()


async def test_pypi_approved_wheel_is_quiet_and_the_unapproved_sdist_pages(
    pypiserver: PypiServer, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("gate-py")
    state = tmp_path / "state.db"
    dists = tmp_path / "dists"
    tokens = make_tokens()
    await asyncio.to_thread(pypiserver.upload, [build_wheel(dists, name, "1.0.0")])
    service, api = api_service(
        tmp_path, receiver, secret, tokens, pypi_url=pypiserver.simple_url, pypi_packages=[name]
    )
    service.start()
    try:
        await service.wait_ready()
        await wait_release(state, name, "1.0.0", ecosystem="pypi")
        wheel = build_wheel(dists, name, "1.1.0")
        sdist = build_sdist(dists, name, "1.1.0")
        ok = await approve(wheel, api, tokens["ci"])
        assert ok.returncode == 0, ok.stderr
        [kept] = await stored_approvals(state, Ecosystem.PYPI, name)
        assert kept.integrity is None and kept.name == name
        await asyncio.to_thread(pypiserver.upload, [wheel, sdist])
        await receiver.wait_for(1, within=GRACE + 40)
        [page] = opened(receiver)
        assert page["dedup_key"] == f"watcher/pypi/{name}/1.1.0"
        assert [(f["rule"], f["path"]) for f in page["findings"]] == [
            ("release-unapproved", sdist.name)
        ]  # the approved wheel is not named

        # a token limited to other packages: 403, nothing recorded
        limited = await approve(build_wheel(dists, name, "1.2.0"), api, tokens["other"])
        assert limited.returncode == 2 and "403" in limited.stderr
        assert len(await stored_approvals(state, Ecosystem.PYPI, name)) == 1

        # the same version from another wheel: approved as built, uploaded rebuilt
        built = build_wheel(tmp_path / "ci", name, "1.2.0", files={"x/a.py": b"A = 1\n"})
        assert (await approve(built, api, tokens["ci"])).returncode == 0
        rebuilt = build_wheel(tmp_path / "laptop", name, "1.2.0", files={"x/a.py": b"A = 2\n"})
        assert rebuilt.name == built.name and rebuilt.read_bytes() != built.read_bytes()
        await asyncio.to_thread(pypiserver.upload, [rebuilt])
        await receiver.wait_for(2, within=GRACE + 40)
        differs = opened(receiver)[1]
        assert differs["dedup_key"] == f"watcher/pypi/{name}/1.2.0"
        [finding] = differs["findings"]
        assert finding["message"].startswith("the published tarball differs from the approved one")
    finally:
        service.ensure_stopped()
