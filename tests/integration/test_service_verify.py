"""`watcher run` with `verify.enabled`: a leaked GitHub token the provider stand-in knows is paged
critical as "verified live", an npm token it does not know is recorded revoked (low), one call each,
and the metric counts both. Real Verdaccio, the service as a subprocess, the provider stand-in on
loopback (the test-only `insecure_loopback`)."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from service_harness import publish, start_config, unique, wait_release

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fakecreds
from provider_standins import provider_standin

from tests.receivers import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_service_verifies_found_credentials_before_paging(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    rng = random.Random(70)
    live, dead = fakecreds.github_token(rng), fakecreds.npm_token(rng)
    name = unique("svc-verify")
    async with provider_standin() as standin:
        standin.live["github"].add(live)
        urls = standin.urls()
        extra = (
            "verify:\n  enabled: true\n  timeout: 3s\n  insecure_loopback: true\n  providers:\n"
            f"    github: {{url: {urls['github']}}}\n    npm: {{url: {urls['npm']}}}\n"
        )
        await publish(verdaccio, name, "1.0.0")
        service = start_config(
            tmp_path,
            npm_url=verdaccio.url,
            packages=[name],
            webhook_url=receiver.url,
            secret=secret,
            extra=extra,
        )
        service.start()
        try:
            await service.wait_ready()
            await wait_release(tmp_path / "state.db", name, "1.0.0")
            leak = f'exports.gh = "{live}";\nexports.npm = "{dead}";\n'
            await publish(verdaccio, name, "1.0.1", {"lib/config.js": leak.encode()})
            await receiver.wait_for(1, within=30)
            page = receiver.requests[0].json()["data"]
            by_rule = {f["rule"]: f for f in page["findings"]}
            assert by_rule["github-token"]["severity"] == "critical"
            assert "verified live at " in by_rule["github-token"]["message"]
            # revoked → low: below the page threshold, so not on the page
            assert "npm-access-token" not in by_rule
            assert (standin.calls["github"], standin.calls["npm"]) == (1, 1)
            status, text = await asyncio.to_thread(service.get, "/metrics")
            assert status == 200
            assert 'watcher_verifications_total{provider="github",verdict="live"} 1.0' in text
            assert 'watcher_verifications_total{provider="npm",verdict="revoked"} 1.0' in text
            assert service.terminate() == 0
            logs = "\n".join(str(e) for e in service.logs())
            assert live not in logs and dead not in logs
            assert live not in receiver.requests[0].text
            assert "credential_verified" in logs
        finally:
            service.ensure_stopped()
