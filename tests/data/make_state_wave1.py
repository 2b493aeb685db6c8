"""How tests/data/state-wave1.sqlite was made: by the watcher as it was before the store
redesign (commit 6146fc4), running as a real service. Kept to make the file again, not run by the
suite:

    git worktree add /tmp/old 6146fc4
    PYTHONPATH=/tmp/old .venv/bin/python tests/data/make_state_wave1.py tests/data/state-wave1.sqlite

The old service watches two packages on tests/integration/legacy_registry.py. It baselines both,
pages a leak in each while the webhook answers 503 (both pages stay queued for the webhook; the
console got them), then sees one more release of each whose tarball answers 503 (both stay pending,
retry due 20 s later), and is stopped with SIGTERM.
"""

# ruff: noqa: ASYNC220, ASYNC240 - a one-off script driving one subprocess, not service code

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location(
    "legacy_registry", HERE.parent / "integration" / "legacy_registry.py"
)
assert spec is not None and spec.loader is not None
legacy = importlib.util.module_from_spec(spec)
sys.modules["legacy_registry"] = legacy
spec.loader.exec_module(legacy)

from watcher.model import Ecosystem  # noqa: E402 - the old watcher, from PYTHONPATH
from watcher.store import Store  # type: ignore[attr-defined]  # noqa: E402 - the old layout

# made afresh each run and never kept: the test signs with its own
WEBHOOK_SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def refusing_webhook(port: int) -> web.AppRunner:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    app = web.Application()
    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def wait_for(check, within: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit("the old service did not get there in time")
        await asyncio.sleep(0.2)


async def state(path: Path, name: str, version: str) -> str | None:
    store = await Store.open(path)
    try:
        found = await store.get_release(Ecosystem.NPM, name, version)
        return None if found is None else found.state.value
    finally:
        await store.close()


async def main(out: Path) -> None:
    registry = await legacy.LegacyRegistry().start()
    hook_port, port = free_port(), free_port()
    hook = await refusing_webhook(hook_port)
    work = Path(tempfile.mkdtemp(prefix="state-wave1-"))
    db = work / "state.db"
    config = work / "watcher.yaml"
    config.write_text(
        f"store: {{path: {json.dumps(str(db))}}}\n"
        f'server: {{listen: "127.0.0.1:{port}"}}\n'
        f"registries:\n  npm: {{url: {json.dumps(legacy.URL)}, poll_interval: 1s}}\n"
        "packages:\n"
        "  - {ecosystem: npm, name: legacy-app, owner: team}\n"
        "  - {ecosystem: npm, name: legacy-lib, owner: team}\n"
        "owners:\n  team:\n    console: true\n"
        f"    webhook: {{url: http://127.0.0.1:{hook_port}/hook, secret: {WEBHOOK_SECRET}}}\n"
        "scan: {workers: 1, concurrency: 2}\n"
        "retry:\n"
        "  scan: {initial: 20s, max: 20s, max_attempts: 50}\n"
        "  outbox: {initial: 20s, max: 20s, give_up_after: 24h}\n"
        "containment: {enabled: false}\n"
        "log: {format: json, level: info}\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "run", "--config", str(config)],
        cwd=work,
        env={**os.environ},
    )
    try:
        registry.published |= {("legacy-app", "1.0.0"), ("legacy-lib", "3.0.0")}
        for name, version in (("legacy-app", "1.0.0"), ("legacy-lib", "3.0.0")):
            await wait_for(lambda n=name, v=version: _is(db, n, v, "scanned"))
        registry.published |= {("legacy-app", "1.0.1")}
        await wait_for(lambda: _is(db, "legacy-app", "1.0.1", "scanned"))
        registry.published |= {("legacy-lib", "3.0.1")}
        await wait_for(lambda: _is(db, "legacy-lib", "3.0.1", "scanned"))
        registry.failing |= {("legacy-app", "1.0.2"), ("legacy-lib", "3.0.2")}
        registry.published |= {("legacy-app", "1.0.2"), ("legacy-lib", "3.0.2")}
        for name, version in (("legacy-app", "1.0.2"), ("legacy-lib", "3.0.2")):
            await wait_for(lambda n=name, v=version: _retrying(db, n, v))
        await wait_for(lambda: _queued(db, 2))
        service.send_signal(signal.SIGTERM)
        if service.wait(30) != 0:
            raise SystemExit(f"the old service exited with {service.returncode}")
    finally:
        if service.poll() is None:
            service.kill()
        await hook.cleanup()
        await registry.close()
    out.write_bytes(db.read_bytes())  # closed cleanly: the WAL is folded into the file
    print(f"wrote {out} ({out.stat().st_size} bytes)")


async def _is(db: Path, name: str, version: str, wanted: str) -> bool:
    return db.exists() and await state(db, name, version) == wanted


async def _retrying(db: Path, name: str, version: str) -> bool:
    if not db.exists():
        return False
    store = await Store.open(db)
    try:
        found = await store.get_release(Ecosystem.NPM, name, version)
        return found is not None and found.state.value == "pending" and found.attempts == 1
    finally:
        await store.close()


async def _queued(db: Path, count: int) -> bool:
    store = await Store.open(db)
    try:
        head = await store.outbox_head("team/webhook")
        counts = await store.counts()
        return (
            head is not None
            and head.attempts >= 1
            and counts.outbox_depth == {"team/webhook": count}
        )
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
