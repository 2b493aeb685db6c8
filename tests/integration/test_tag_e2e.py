"""expect.tag end to end: `watcher run` as a real subprocess following a real Verdaccio, the owner's
repository a real bare git repository behind git's smart HTTP (git http-backend) that wants an
`Authorization` header, a real Standard Webhooks receiver:

* a release whose tag exists is quiet;
* an untagged release pages `release-untagged` (high) once `policy.tag_grace` ran out, not before,
  and its medium what-changed finding (a new dependency) pages with it, raised to high;
* the header reaches the git server, never the service's logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from npm_servers import Verdaccio
from service_harness import publish, start_config, unique, wait_release

from tests.git_server import bare_repository, serving_git
from tests.receivers import Receiver
from watcher.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRACE = 4.0  # policy.tag_grace here: short, so the test waits seconds


def opened(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json()["data"] for r in receiver.requests if r.json()["type"] == "incident.opened"]


async def test_untagged_release_pages_after_the_grace_and_a_tagged_one_is_quiet(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("tagged")
    token = "gt-" + secrets.token_hex(16)
    bare = bare_repository(tmp_path / "git", tags=("v1.1.0",))
    state = tmp_path / "state.db"
    await publish(verdaccio, name, "1.0.0")
    async with serving_git(bare, authorization=f"Bearer {token}") as git:
        service = start_config(
            tmp_path,
            webhook_url=receiver.url,
            secret=secret,
            npm_url=verdaccio.url,
            packages=[name],
            extra=f"policy: {{tag_grace: {GRACE}s}}\n",
        )
        text = service.config.read_text()
        text = text.replace(
            "  team:\n",
            "  team:\n    expect:\n      tag: {repository: "
            + json.dumps(git.url)
            + ', pattern: "v{version}", auth_header: "Bearer ${TEST_GIT_TOKEN}"}\n',
            1,
        )
        service.config.write_text(text)
        os.environ["TEST_GIT_TOKEN"] = token
        service.start()
        try:
            await service.wait_ready()
            await wait_release(state, name, "1.0.0")

            # -- tagged: quiet, its check done
            await publish(verdaccio, name, "1.1.0")
            tagged = await wait_release(state, name, "1.1.0")

            # -- untagged, and with a new dependency: pages after the grace
            package_json = {
                "name": name,
                "version": "1.2.0",
                "license": "MIT",
                "main": "index.js",
                "dependencies": {"left-pad-ng": "^1.0.0"},
            }
            await publish(
                verdaccio,
                name,
                "1.2.0",
                {
                    "package.json": json.dumps(package_json).encode(),
                    "index.js": b"module.exports = require('left-pad-ng');\n",
                },
            )
            untagged = await wait_release(state, name, "1.2.0")
            await receiver.wait_for(1, within=GRACE + 40)
            [page] = opened(receiver)
            assert page["dedup_key"] == f"watcher/npm/{name}/1.2.0"
            rules = {f["rule"]: f for f in page["findings"]}
            assert rules["release-untagged"]["severity"] == "high"
            assert rules["release-untagged"]["category"] == "provenance"
            assert "no tag v1.2.0 in" in rules["release-untagged"]["message"]
            assert rules["dependency-added"]["severity"] == "high"  # raised by the origin finding
            assert "left-pad-ng" in rules["dependency-added"]["message"]
            async with await open_store(state) as store:
                incident = await store.get_incident(f"watcher/npm/{name}/1.2.0")
                assert incident is not None
                assert incident.opened_at.timestamp() >= untagged.created_at + GRACE
                [done] = await store.origin_checks(tagged.id)
                assert done.kind == "tag" and done.state.value == "done"
                assert (done.detail or "").startswith("tag v1.1.0 found")
                assert await store.get_incident(f"watcher/npm/{name}/1.1.0") is None

            await asyncio.sleep(1.5)  # nothing else is coming: 1.1.0 stays quiet
            assert [p["version"] for p in opened(receiver)] == ["1.2.0"]
            receiver.assert_valid()
            assert f"Bearer {token}" in git.seen_authorization
            assert token not in service.stderr_path.read_text()
        finally:
            service.ensure_stopped()
