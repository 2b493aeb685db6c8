"""An owner's private statements in the service: `watcher run` against a real Verdaccio scans each
release with its package owner's `owners.<name>.fingerprints` and `owners.<name>.canaries`
(keyed with `scan.fingerprint_key`), so a release carrying a private file and a canary pages
critical with `private-source` and `canary-found`, naming the index label and the canary id, and
neither the code nor the canary value reaches the page, the state file or the logs. Another
owner's package carrying the same is not judged by this owner's statements."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import pytest
from npm_servers import Verdaccio
from servers_common import free_port
from service_harness import ServiceProcess, publish, service_yaml, unique, wait_release

from tests.privatetree import build_private_tree
from tests.receivers import Receiver
from watcher.model import incident_key
from watcher.private.build import build_index
from watcher.private.keys import FingerprintKey
from watcher.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="session")


def state_dump(state: Path) -> str:
    with sqlite3.connect(state) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(str(row) for t in tables for row in db.execute(f"SELECT * FROM {t}"))


async def test_an_owners_fingerprints_and_canaries_page_for_its_packages_only(
    verdaccio: Verdaccio,
    hook: tuple[Receiver, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver, secret = hook
    key = "svc-fingerprint-key-" + secrets.token_hex(8)
    canary = "acmewiki_" + secrets.token_hex(12)  # planted at test time
    tree = build_private_tree(tmp_path / "billing", files=4)
    index = tmp_path / "billing.wfp"
    build_index([tmp_path / "billing"], index, FingerprintKey(key), name="billing")
    private_text = next(iter(tree.values()))
    own, other = unique("priv-own"), unique("priv-other")
    port = free_port()
    text = service_yaml(
        state=tmp_path / "state.db",
        port=port,
        npm_url=verdaccio.url,
        packages=[own],
        webhook_url=receiver.url,
        secret=secret,
    )
    statements = (
        f"    fingerprints: [{json.dumps(str(index))}]\n"
        '    canaries: [{id: wiki-canary, value: "${WIKI_CANARY}"}]\n'
    )
    text = text.replace("owners:\n  team:\n", "owners:\n  team:\n" + statements, 1)
    text = text.replace("scan: {", 'scan: {fingerprint_key: "${FP_KEY}", ', 1)
    # a second owner whose package carries the same: team's statements do not apply to it
    text = text.replace("owners:\n", "owners:\n  ops:\n    console: true\n", 1)
    text = text.replace(
        "packages:\n", f"packages:\n  - {{ecosystem: npm, name: {json.dumps(other)}, owner: ops}}\n"
    )
    config = tmp_path / "watcher.yaml"
    config.write_text(text)
    leaky = {
        "index.js": b"module.exports = require('./dist/chunk-3f.js');\n",
        "dist/chunk-3f.js": private_text.encode(),  # a private file under another name
        "dist/app.min.js": f'!function(){{var k="{canary}";}}();'.encode(),
    }
    for name in (own, other):
        await publish(verdaccio, name, "1.0.0")
    monkeypatch.setenv("FP_KEY", key)
    monkeypatch.setenv("WIKI_CANARY", canary)
    service = ServiceProcess(config, port, tmp_path)
    service.start()
    try:
        await service.wait_ready()
        for name in (own, other):
            await wait_release(tmp_path / "state.db", name, "1.0.0")
        await publish(verdaccio, own, "1.1.0", leaky)
        await publish(verdaccio, other, "1.1.0", leaky)
        await wait_release(tmp_path / "state.db", other, "1.1.0", within=60)
        await receiver.wait_for(1, within=60)
        [page] = [r.json() for r in receiver.requests]  # the webhook is team's only
        assert page["type"] == "incident.opened" and page["data"]["package"] == own
        findings = {f["rule"]: f for f in page["data"]["findings"]}
        assert findings["private-source"]["severity"] == "critical"
        assert "billing" in findings["private-source"]["message"]
        assert findings["canary-found"]["severity"] == "critical"
        assert "wiki-canary" in findings["canary-found"]["message"]
        said = json.dumps(page) + state_dump(tmp_path / "state.db") + service.stdout()
        assert canary not in said and key not in said
        lines = [ln.strip() for ln in private_text.splitlines() if "computeShare" in ln]
        assert lines and not any(ln in said for ln in lines)
    finally:
        service.terminate()
    async with await open_store(tmp_path / "state.db") as store:
        theirs = await store.get_incident(incident_key("npm", other, "1.1.0"))
        rules = {f.rule for f in theirs.findings} if theirs else set()
        assert not rules & {"private-source", "canary-found"}, rules
