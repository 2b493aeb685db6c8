"""Provenance identity and late attestations end to end: `watcher run` as a real subprocess
following a loopback npm registry stand-in that serves packuments, tarballs and the attestations
endpoint in their documented shapes (tests/integration/attested_registry.py), a real Standard
Webhooks receiver:

* attestations attached after the release was first seen (within `policy.attestation_grace`)
  are read again and found: no provenance-lost, no page;
* attestations that never come: provenance-lost pages once the grace ran out, not before;
* a release attested by another repository's workflow pages provenance-identity-changed (high)
  at once, as the one provenance finding (publisher-changed superseded).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from attested_registry import attested_registry
from service_harness import start_config, unique, wait_release

from tests.receivers import Receiver
from watcher.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRACE = 6.0  # policy.attestation_grace here: re-read every second for six seconds
OURS = ("https://github.com/acme/sdk", ".github/workflows/release.yml")
THEIRS = ("https://github.com/mallory/fork", ".github/workflows/steal.yml")
CI = {
    "name": "GitHub Actions",
    "email": "ci@example.invalid",
    "trustedPublisher": {"id": "github", "oidcConfigId": "oidc:ours"},
}
OTHER_CI = {**CI, "trustedPublisher": {"id": "github", "oidcConfigId": "oidc:theirs"}}


async def until_done(store: Any, release_id: int) -> None:
    for _ in range(100):
        checks = await store.origin_checks(release_id)
        if checks and all(c.state.value == "done" for c in checks):
            return
        await asyncio.sleep(0.2)


def opened(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json()["data"] for r in receiver.requests if r.json()["type"] == "incident.opened"]


async def test_late_attestations_lost_ones_and_a_foreign_identity(
    hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name, other = unique("attested"), unique("attested")
    state = tmp_path / "state.db"
    async with attested_registry() as registry:
        registry.add(name, "1.0.0", publisher=CI, identity=OURS)
        registry.add(other, "1.0.0", publisher=CI, identity=OURS)
        service = start_config(
            tmp_path,
            webhook_url=receiver.url,
            secret=secret,
            npm_url=registry.url,
            packages=[name, other],
            extra=f"policy: {{attestation_grace: {GRACE}s}}\n",
        )
        service.start()
        try:
            await service.wait_ready()
            await wait_release(state, name, "1.0.0")
            await wait_release(state, other, "1.0.0")

            # -- attested, by another repository's workflow (and another CI configuration)
            registry.add(name, "2.0.0", publisher=OTHER_CI, identity=THEIRS)
            await receiver.wait_for(1, within=30)
            [foreign] = opened(receiver)
            assert foreign["version"] == "2.0.0"
            rules = [f["rule"] for f in foreign["findings"]]
            assert rules == ["provenance-identity-changed"], "one event, one finding"
            [finding] = foreign["findings"]
            assert finding["severity"] == "high"
            assert "mallory/fork" in finding["message"] and "not verified" in finding["message"]

            # -- late: published without attestations (compared with 1.0.0, which had them),
            # attached two seconds later
            registry.add(name, "1.0.1", publisher=CI)
            late = await wait_release(state, name, "1.0.1")
            await asyncio.sleep(2)
            registry.attach(name, "1.0.1", *OURS)

            # -- never attested
            registry.add(other, "1.1.0", publisher=CI)
            lost = await wait_release(state, other, "1.1.0")
            await receiver.wait_for(2, within=GRACE + 30)
            page = opened(receiver)[1]
            assert page["dedup_key"] == f"watcher/npm/{other}/1.1.0"
            assert [f["rule"] for f in page["findings"]] == ["provenance-lost"]
            async with await open_store(state) as store:
                incident = await store.get_incident(f"watcher/npm/{other}/1.1.0")
                assert incident is not None
                assert incident.opened_at.timestamp() >= lost.created_at + GRACE
                await until_done(store, late.id)
                [check] = await store.origin_checks(late.id)
                assert check.kind == "attestations" and check.state.value == "done"
                assert (check.detail or "").startswith("attestations arrived late")
                assert await store.get_incident(f"watcher/npm/{name}/1.0.1") is None

            await asyncio.sleep(1.5)
            assert [p["version"] for p in opened(receiver)] == ["2.0.0", "1.1.0"]
            receiver.assert_valid()
        finally:
            service.ensure_stopped()
