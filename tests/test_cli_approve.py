"""`watcher approve` as a subprocess against the approvals API on a real port: the JSON output
holds the report and the approval; findings at --fail-on post nothing (exit 1); an artifact that
does not say which package it is posts nothing (exit 2); a refusal is exit 2 with the server's
message."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.builders import npm_tarball
from watcher.config import parse_config
from watcher.model import Ecosystem
from watcher.service.api import ApprovalsApi, api_app
from watcher.service.server import HttpServer
from watcher.store import open_store
from watcher.store.api import Store

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONFIG = """
server:
  api_tokens:
    - {name: ci, token: "${CI_TOKEN}", packages: ["@acme/*"]}
owners: {platform: {console: true}}
packages:
  - {ecosystem: npm, name: "@acme/sdk", owner: platform}
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, str, Store]]:
    token = secrets.token_hex(24)
    config = parse_config(CONFIG, source="t.yaml", env={"CI_TOKEN": token})
    store = await open_store(tmp_path / "state.db")
    http = HttpServer(api_app(ApprovalsApi(store, config)), "127.0.0.1", 0)
    await http.start()
    try:
        yield f"http://127.0.0.1:{http.port}", token, store
    finally:
        await http.stop()
        await store.close()


async def approve(
    target: Path, url: str, token: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WATCHER_API_TOKEN": token}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "watcher.cli", "approve", str(target), "--server", url, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


async def test_json_output_holds_the_report_and_the_approval(
    server: tuple[str, str, Store], tmp_path: Path
) -> None:
    url, token, store = server
    tgz = npm_tarball(tmp_path / "sdk.tgz", {"index.js": "exports.x = 1;\n"}, name="@acme/sdk")
    done = await approve(tgz, url, token, "--format", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["report"]["target"]["name"] == "@acme/sdk" and out["report"]["findings"] == []
    approval = out["approval"]
    assert (approval["name"], approval["version"], approval["token_name"]) == (
        "@acme/sdk",
        "1.0.0",
        "ci",
    )
    assert approval["sha256"] == out["report"]["target"]["sha256"]
    assert approval["integrity"].startswith("sha512-")
    [stored] = await store.approvals(Ecosystem.NPM, "@acme/sdk")
    assert stored.report is not None and stored.report["target"]["name"] == "@acme/sdk"


async def test_findings_at_fail_on_post_nothing(
    server: tuple[str, str, Store], tmp_path: Path
) -> None:
    url, token, store = server
    leak = {"version": 3, "sources": ["../src/a.ts"], "sourcesContent": ["export const a = 1;\n"]}
    tgz = npm_tarball(
        tmp_path / "sdk.tgz",
        {"index.js": "x\n//# sourceMappingURL=index.js.map\n", "index.js.map": json.dumps(leak)},
        name="@acme/sdk",
    )
    done = await approve(tgz, url, token)
    assert done.returncode == 1 and "nothing posted" in done.stderr
    assert "sourcemap" in done.stdout  # the report is printed
    assert await store.approvals(Ecosystem.NPM, "@acme/sdk") == []


async def test_an_artifact_without_package_metadata_or_outside_the_token_posts_nothing(
    server: tuple[str, str, Store], tmp_path: Path
) -> None:
    url, token, store = server
    bare = tmp_path / "bare.tgz"
    (tmp_path / "file.txt").write_text("hello\n")
    with tarfile.open(bare, "w:gz") as archive:
        archive.add(tmp_path / "file.txt", arcname="file.txt")
    done = await approve(bare, url, token)
    assert done.returncode == 2 and "cannot tell which package" in done.stderr
    other = npm_tarball(tmp_path / "other.tgz", {"index.js": "1;\n"}, name="left-pad")
    refused = await approve(other, url, token)
    assert refused.returncode == 2
    assert (
        "the server refused the approval: 403 token 'ci' is limited to packages" in refused.stderr
    )
    assert token not in refused.stdout + refused.stderr
    assert await store.recent_approvals() == []


async def test_status_lists_the_last_approvals(tmp_path: Path) -> None:
    from watcher.store.types import NewApproval  # noqa: PLC0415

    state = tmp_path / "state.db"
    config = tmp_path / "watcher.yaml"
    config.write_text(f"store: {{path: {json.dumps(str(state))}}}\n" + CONFIG)
    async with await open_store(state) as store:
        for version in ("1.0.0", "1.1.0"):
            await store.add_approval(
                NewApproval(Ecosystem.NPM, "@acme/sdk", version, version[2] * 64, "ci")
            )
    env = {**os.environ, "CI_TOKEN": secrets.token_hex(24)}

    def status(fmt: str) -> str:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "watcher.cli",
                "status",
                "--config",
                str(config),
                "--format",
                fmt,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        ).stdout

    text = await asyncio.to_thread(status, "text")
    assert "last approvals (from the gate):" in text
    assert text.index("@acme/sdk@1.1.0") < text.index("@acme/sdk@1.0.0")  # newest first
    listed = json.loads(await asyncio.to_thread(status, "json"))["last_approvals"]
    assert [(a["version"], a["token_name"]) for a in listed] == [("1.1.0", "ci"), ("1.0.0", "ci")]


async def test_a_huge_report_is_posted_as_its_target_and_summary() -> None:
    from watcher.cli.approve import MAX_REPORT_BYTES, approval_body  # noqa: PLC0415
    from watcher.cli.scan import ScannedFile  # noqa: PLC0415
    from watcher.model import ArtifactSummary, Category, Finding, Manifest, Report, Severity  # noqa: PLC0415

    target = ArtifactSummary("npm", "@acme/sdk", "1.0.0", "sdk.tgz", "a" * 64, 1, 1)
    findings = [
        Finding("x", Category.UNEXPECTED_CONTENT, Severity.LOW, f"package/f{i}.js", "m" * 200)
        for i in range(8000)
    ]
    body = approval_body(
        Report(target, findings, Manifest()), ScannedFile("sdk.tgz", "a" * 64, "sha512-x")
    )
    assert body["report"]["truncated"] is True and body["report"]["target"]["name"] == "@acme/sdk"
    assert len(json.dumps(body)) < MAX_REPORT_BYTES
