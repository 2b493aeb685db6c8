"""Gate approvals on the shared store: two `watcher run` replicas on one real PostgreSQL, the
approvals API on each (sharing `server.listen`), a real Verdaccio and webhook receiver. An
approval posted to one replica counts on both (an approved release is quiet); an unapproved
release is judged by whichever replica claims its check and pages exactly once."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from gate_harness import approve, npm_publish, opened, pack
from npm_servers import Verdaccio
from replica_harness import Replicas
from service_harness import publish, unique, until

from tests.pgserver import PgServer, running_server
from tests.receivers import Receiver
from watcher.model import Ecosystem
from watcher.store import open_store
from watcher.store.types import ReleaseState

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRACE = 4.0


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with running_server() as server:
        if server is None:
            pytest.skip("PostgreSQL is not installed: `make test` installs Debian's postgresql")
        yield server


async def scanned(url: str, name: str, version: str) -> None:
    async with await open_store(url) as store:

        async def done() -> bool:
            stored = await store.get_release(Ecosystem.NPM, name, version)
            return stored is not None and stored.state is ReleaseState.SCANNED

        await until(done, within=90, pause=0.2)


async def test_two_replicas_share_approvals_and_page_an_unapproved_release_once(
    verdaccio: Verdaccio, hook: tuple[Receiver, str], pg: PgServer, tmp_path: Path
) -> None:
    receiver, secret = hook
    url = pg.fresh_database()
    name = unique("gate-rep")
    token = secrets.token_hex(24)
    os.environ["TEST_REPLICA_CI_TOKEN"] = token
    await publish(verdaccio, name, "1.0.0")
    replicas = Replicas(
        url,
        tmp_path,
        {
            "npm_url": verdaccio.url,
            "packages": [name],
            "webhook_url": receiver.url,
            "secret": secret,
            "extra": f"policy: {{approval_grace: {GRACE}s}}\n",
        },
    )
    for member in replicas.add(2):
        text = member.config.read_text()
        listen = f'server: {{listen: "127.0.0.1:{member.port}"}}\n'
        assert listen in text
        text = text.replace(
            listen,
            f'server:\n  listen: "127.0.0.1:{member.port}"\n'
            '  api_tokens: [{name: ci, token: "${TEST_REPLICA_CI_TOKEN}"}]\n',
        )
        member.config.write_text(
            text.replace("  team:\n", "  team:\n    expect: {approval: true}\n", 1)
        )
    first, second = replicas.members
    replicas.start_all()
    try:
        await replicas.wait_ready()
        await scanned(url, name, "1.0.0")

        # approved through the first replica's API, published: quiet on both
        tgz = await asyncio.to_thread(pack, verdaccio, tmp_path, name, "1.1.0", "exports.a=1;\n")
        done = await approve(tgz, first.url, token)
        assert done.returncode == 0, done.stderr
        listed = await approve(tgz, second.url, token)  # the other replica sees it: a repeat
        assert listed.returncode == 0 and "approved:" in listed.stdout
        await asyncio.to_thread(npm_publish, verdaccio, tgz)
        await scanned(url, name, "1.1.0")

        # nobody approved 1.2.0: one page, whichever replica judged it
        await publish(verdaccio, name, "1.2.0")
        await receiver.wait_for(1, within=GRACE + 60)
        await asyncio.sleep(GRACE)  # a second judge would page within this
        assert [p["version"] for p in opened(receiver)] == ["1.2.0"]
        assert len(receiver.requests) == 1
        async with await open_store(url) as store:
            [approval] = await store.approvals(Ecosystem.NPM, name)
            assert approval.version == "1.1.0"
            release = await store.get_release(Ecosystem.NPM, name, "1.2.0")
            assert release is not None
            [check] = await store.origin_checks(release.id)
            assert check.state.value == "done" and check.attempts == 1
    finally:
        replicas.stop_all()
