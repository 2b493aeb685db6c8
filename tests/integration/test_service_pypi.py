"""`watcher run` following PyPI, as a real subprocess against real loopback indexes, paging a real
Standard Webhooks receiver and the console:

* poll mode against devpi: a clean 1.0.0 is the baseline (no page); 1.0.1's wheel ships a `.env`
  holding a token → exactly one page naming the file; a clean wheel added to 1.0.1 later is scanned
  and pages nothing; a second late wheel with a new leak posts one `incident.updated` for the same
  incident, naming the new file;
* changelog mode against the journal stand-in (XML-RPC `changelog_since_serial` + PEP 691 pages):
  a leak in a watched project pages, and so does a project first named by the journal that matches
  a `name-*` pattern.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
from typing import Any

import pytest
from pypi_servers import Devpi, Warehouse, build_wheel
from service_harness import ServiceProcess, start_config, unique, wait_release

from tests import fakecreds
from tests.receivers import Receiver
from watcher.model import Ecosystem
from watcher.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="session")


def dotenv(token: str) -> bytes:
    return f"DEBUG=0\nAPI_TOKEN={token}\n".encode()


def private_key() -> bytes:
    pem, _ = fakecreds.pem_private_key(random.Random(11))
    return pem.encode()


def service(tmp_path: Path, receiver: Receiver, secret: str, **registries: Any) -> ServiceProcess:
    return start_config(tmp_path, webhook_url=receiver.url, secret=secret, **registries)


def pages(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.requests]


async def settle(receiver: Receiver, count: int, seconds: float = 1.5) -> None:
    """A page is queued in the scan's own transaction and sent within a fraction of a second:
    after `seconds` of quiet, nothing more is coming."""
    await asyncio.sleep(seconds)
    assert len(receiver.requests) == count, [p["type"] for p in pages(receiver)]


async def test_devpi_poll_baseline_leak_page_and_late_wheels(
    devpi: Devpi, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("svc-pypi")
    mod = name.replace("-", "_")
    state = tmp_path / "state.db"
    dists = tmp_path / "dists"
    token = fakecreds.github_token(random.Random(7))
    await asyncio.to_thread(devpi.upload, [build_wheel(dists, name, "1.0.0")])
    proc = service(tmp_path, receiver, secret, pypi_url=devpi.simple_url, pypi_packages=[name])
    proc.start()
    try:
        await proc.wait_ready()
        base = await wait_release(state, name, "1.0.0", ecosystem="pypi")
        assert base.baseline, "first sight of the project is its baseline"

        leaky = build_wheel(dists, name, "1.0.1", files={f"{mod}/.env": dotenv(token)})
        await asyncio.to_thread(devpi.upload, [leaky])
        await receiver.wait_for(1, within=20)
        opened = receiver.requests[0].json()
        assert opened["type"] == "incident.opened"
        assert opened["data"]["dedup_key"] == f"watcher/pypi/{name}/1.0.1"
        assert opened["data"]["ecosystem"] == "pypi" and opened["data"]["version"] == "1.0.1"
        found = {(f["rule"], f["path"]) for f in opened["data"]["findings"]}
        assert ("dotenv-file", f"{leaky.name}/{mod}/.env") in found, "names the file it came from"
        assert ("github-token", f"{leaky.name}/{mod}/.env") in found, "the token inside it"
        receiver.assert_valid()
        await settle(receiver, 1)

        # A clean wheel for 1.0.1 arrives later (CI built another platform): scanned, no page.
        clean = build_wheel(dists, name, "1.0.1", tag="py2-none-any")
        await asyncio.to_thread(devpi.upload, [clean])
        again = await wait_release(state, name, "1.0.1", ecosystem="pypi", files=2)
        assert {a.filename for a in again.release.artifacts} == {leaky.name, clean.name}
        await settle(receiver, 1)

        # Another late wheel brings a new leak: one update of the same incident, naming it.
        keyed = build_wheel(
            dists,
            name,
            "1.0.1",
            tag="cp312-abi3-linux_x86_64",
            files={"deploy/id_rsa": private_key()},
        )
        await asyncio.to_thread(devpi.upload, [keyed])
        await receiver.wait_for(2, within=20)
        update = receiver.requests[1].json()
        assert update["type"] == "incident.updated"
        assert update["data"]["dedup_key"] == opened["data"]["dedup_key"]
        assert keyed.name in update["data"]["message"]
        paths = {f["path"] for f in update["data"]["findings"]}
        assert f"{keyed.name}/deploy/id_rsa" in paths, "the new file's finding"
        assert f"{leaky.name}/{mod}/.env" in paths, "the incident keeps what it had"
        ids = [r.headers["webhook-id"] for r in receiver.requests]
        assert len(set(ids)) == 2, "the update is its own event for the receiver"
        receiver.assert_valid()
        await wait_release(state, name, "1.0.1", ecosystem="pypi", files=3)
        await settle(receiver, 2)
        out = proc.stdout()
        assert out.count(f"key watcher/pypi/{name}/1.0.1\n") == 2, "the page and its update"
        assert out.count(f"UPDATE on {name}@1.0.1: ") == 1

        status, text = await asyncio.to_thread(proc.get, "/metrics")
        assert status == 200
        assert 'watcher_incidents_opened_total{ecosystem="pypi"} 1.0' in text
        [age] = re.findall(
            r'^watcher_incident_open_oldest_seconds\{ecosystem="pypi"\} (\S+)$', text, re.M
        )
        assert 0 < float(age) < 120, "the open incident's age, from the store"
        assert proc.terminate() == 0
    finally:
        proc.ensure_stopped()

    for body in [*receiver.bodies(), proc.stdout().encode(), proc.stderr_path.read_bytes()]:
        assert token.encode() not in body, "the secret never leaves the scanner"
    async with await open_store(state) as store:
        [incident] = await store.open_incidents()
        assert incident.dedup_key == f"watcher/pypi/{name}/1.0.1"
        assert len(incident.findings) == len(update["data"]["findings"])


async def test_changelog_mode_pages_for_watched_and_pattern_matched_projects(
    warehouse: Warehouse, hook: tuple[Receiver, str], tmp_path: Path
) -> None:
    receiver, secret = hook
    name = unique("svc-chl")
    family = unique("svc-fam")
    state = tmp_path / "state.db"
    dists = tmp_path / "dists"
    token = fakecreds.github_token(random.Random(8))
    warehouse.upload(build_wheel(dists, name, "1.0.0"), name, "1.0.0")
    warehouse.noise(5)
    proc = service(
        tmp_path,
        receiver,
        secret,
        pypi_url=warehouse.simple_url,
        pypi_changes_url=warehouse.xmlrpc_url,
        pypi_packages=[name, f"{family}-*"],
    )
    proc.start()
    try:
        await proc.wait_ready()
        await wait_release(state, name, "1.0.0", ecosystem="pypi")

        mod = name.replace("-", "_")
        leaky = build_wheel(dists, name, "1.0.1", files={f"{mod}/.env": dotenv(token)})
        warehouse.upload(leaky, name, "1.0.1")
        await receiver.wait_for(1, within=20)
        page = receiver.requests[0].json()
        assert page["data"]["dedup_key"] == f"watcher/pypi/{name}/1.0.1"
        assert ("dotenv-file", f"{leaky.name}/{mod}/.env") in {
            (f["rule"], f["path"]) for f in page["data"]["findings"]
        }

        # A project nobody named, first seen in the journal, matching the pattern: its first
        # release is new (published after the watch began), so it pages.
        newcomer = f"{family}-plugin"
        newmod = newcomer.replace("-", "_")
        warehouse.upload(
            build_wheel(dists, newcomer, "0.1.0", files={f"{newmod}/.env": dotenv(token)}),
            newcomer,
            "0.1.0",
        )
        await receiver.wait_for(2, within=20)
        assert receiver.requests[1].json()["data"]["dedup_key"] == (
            f"watcher/pypi/{newcomer}/0.1.0"
        )
        stored = await wait_release(state, newcomer, "0.1.0", ecosystem="pypi")
        assert not stored.baseline and stored.feed == "pypi-changelog"
        await settle(receiver, 2)
        receiver.assert_valid()
        assert warehouse.calls["xmlrpc"] > 0, "the journal was followed"
        assert proc.terminate() == 0
    finally:
        proc.ensure_stopped()
    async with await open_store(state) as store:
        assert {p for p in await store.known_packages(Ecosystem.PYPI)} >= {name, newcomer}
        assert await store.get_cursor("pypi-changelog") == str(warehouse.last_serial)
