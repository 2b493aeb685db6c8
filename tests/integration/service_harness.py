"""Run `watcher run` as a real subprocess against loopback servers, and look at what it did.

Shared by tests/integration/test_service_*.py and bench/service_bench.py: writes the YAML, starts
`python -m watcher.cli run --config FILE`, waits for /readyz, reads its state file through the
store's own API, stops it with SIGTERM or SIGKILL. Also `RewritingProxy`, a loopback npm proxy
that rewrites tarball URLs to itself so a test can hold a download mid-flight.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from servers_common import free_port

from watcher.model import Ecosystem
from watcher.store import open_store
from watcher.store.types import StoredRelease

if TYPE_CHECKING:
    from npm_servers import Verdaccio

    from tests.receivers import Receiver

REPO = Path(__file__).resolve().parents[2]


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def service_yaml(
    *,
    state: Path,
    port: int,
    npm_url: str | None = None,
    packages: Sequence[str] = (),
    webhook_url: str | None = None,
    secret: str | None = None,
    poll: str = "1s",
    extra: str = "",
    npm_changes_url: str | None = None,
    pypi_url: str | None = None,
    pypi_packages: Sequence[str] = (),
    pypi_changes_url: str | None = None,
    pypi_warehouse: bool | None = None,
) -> str:
    """`packages` are npm names, `pypi_packages` PyPI names (patterns such as `@scope/*` need the
    ecosystem's changes URL)."""
    owner = "    console: true\n"
    if webhook_url is not None:
        owner += f"    webhook: {{url: {json.dumps(webhook_url)}, secret: {json.dumps(secret)}}}\n"
    names = "".join(
        f"  - {{ecosystem: {eco}, name: {json.dumps(n)}, owner: team}}\n"
        for eco, listed in (("npm", packages), ("pypi", pypi_packages))
        for n in listed
    )
    registries = ""
    for eco, url, changes in (
        ("npm", npm_url, npm_changes_url),
        ("pypi", pypi_url, pypi_changes_url),
    ):
        if url is not None:
            feed = f", changes_url: {json.dumps(changes)}" if changes else ""
            if eco == "pypi" and pypi_warehouse is not None:
                feed += f", warehouse: {json.dumps(pypi_warehouse)}"
            registries += f"  {eco}: {{url: {json.dumps(url)}, poll_interval: {poll}{feed}}}\n"
    return (
        f"store: {{path: {json.dumps(str(state))}}}\n"
        f'server: {{listen: "127.0.0.1:{port}"}}\n'
        f"registries:\n{registries}"
        f"packages:\n{names}"
        f"owners:\n  team:\n{owner}"
        "scan: {workers: 1, concurrency: 2}\n"
        "retry:\n"
        "  scan: {initial: 0.5s, max: 2s, max_attempts: 4}\n"
        "  outbox: {initial: 0.2s, max: 1s, give_up_after: 1h}\n"
        "shutdown: {grace_period: 5s}\n"
        "log: {format: json, level: info}\n" + extra
    )


@dataclass
class ServiceProcess:
    config: Path
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "service.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "service.err"

    def start(self, *, own_group: bool = False) -> None:
        """`own_group`: in a new session, so a test can signal its whole process group the way
        a terminal's Ctrl-C does."""
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher.cli", "run", "--config", str(self.config)],
                cwd=self.workdir,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=own_group,
            )

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        events = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    async def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"service exited with {self.proc.returncode}:\n{self.stderr_path.read_text()[-3000:]}"
                )
            try:
                status, _ = await asyncio.to_thread(self.get, "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("service never became ready")
            await asyncio.sleep(0.1)

    def terminate(self, within: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(within)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


async def release(
    state: Path, name: str, version: str, ecosystem: str = "npm"
) -> StoredRelease | None:
    store = await open_store(state)
    try:
        return await store.get_release(Ecosystem(ecosystem), name, version)
    finally:
        await store.close()


async def wait_release(
    state: Path,
    name: str,
    version: str,
    states: tuple[str, ...] = ("scanned",),
    within: float = 30,
    *,
    ecosystem: str = "npm",
    files: int = 1,
) -> StoredRelease:
    """Wait until the release is in one of `states` with at least `files` artifacts (PyPI files
    added to a release later put it back in the scan queue)."""
    deadline = time.monotonic() + within
    while True:
        if await asyncio.to_thread(state.exists):
            found = await release(state, name, version, ecosystem)
            if (
                found is not None
                and found.state.value in states
                and len(found.release.artifacts) >= files
            ):
                return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}@{version} not {states} in time")
        await asyncio.sleep(0.1)


def leaky_files(tag: str) -> dict[str, bytes]:
    """A build that ships a source map embedding its original sources (critical), under a path
    that differs per `tag`, so each leaking release has a new finding."""
    smap = {
        "version": 3,
        "file": "index.js",
        "sources": [f"../src/{tag}/index.ts", f"../src/{tag}/internal.ts"],
        "sourcesContent": ["export const a = 1;\n", "export function b() { return 2; }\n"],
        "mappings": "AAAA",
    }
    return {
        f"dist-{tag}/index.js": b"module.exports=1;\n//# sourceMappingURL=index.js.map\n",
        f"dist-{tag}/index.js.map": json.dumps(smap).encode(),
    }


# --------------------------------------------------------------------------- rewriting proxy


@dataclass
class RewritingProxy:
    """Forwards GETs to an npm registry and rewrites the registry's address in bodies to its own,
    so tarballs are fetched through it too. `hold(substring)` makes matching requests hang until
    `release_held()` (a download stuck mid-flight)."""

    upstream: str
    url: str = ""
    held: list[str] = field(default_factory=list)
    _gate: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    waiting: int = 0

    def hold(self, substring: str) -> None:
        self._gate.clear()
        self.held.append(substring)

    def release_held(self) -> None:
        self.held.clear()
        self._gate.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.path_qs
        if any(h in path for h in self.held):
            self.waiting += 1
            try:
                await self._gate.wait()
            finally:
                self.waiting -= 1
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("accept", "if-none-match", "authorization")
        }
        assert self._session is not None
        async with self._session.get(self.upstream + path, headers=headers) as upstream:
            body = await upstream.read()
            status = upstream.status
            out = {
                k: v for k, v in upstream.headers.items() if k.lower() in ("etag", "content-type")
            }
        if "json" in out.get("Content-Type", out.get("content-type", "")):
            body = body.replace(self.upstream.encode(), self.url.encode())
        return web.Response(status=status, body=body, headers=out)

    async def start(self, port: int) -> RewritingProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self._gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


_names = itertools.count()


def unique(prefix: str) -> str:
    """A package name no other test (or earlier run against the same registry) has used."""
    return f"{prefix}-{next(_names)}-{free_port()}"


def start_config(tmp_path: Path, **yaml: Any) -> ServiceProcess:
    """A service on a free port with its state and config in `tmp_path`; `yaml` as service_yaml
    takes it (registry URLs, packages, webhook_url/secret, extra)."""
    port = free_port()
    config = tmp_path / "watcher.yaml"
    config.write_text(service_yaml(state=tmp_path / "state.db", port=port, **yaml))
    return ServiceProcess(config, port, tmp_path)


def accepted(receiver: Receiver) -> list[tuple[str, str]]:
    """(webhook-id, version) of every page the receiver accepted, in arrival order."""
    return [
        (r.headers["webhook-id"], r.json()["data"]["version"])
        for r in receiver.requests
        if r.answered is not None and 200 <= r.answered < 300
    ]


async def publish(
    verdaccio: Verdaccio, name: str, version: str, files: dict[str, bytes] | None = None
) -> None:
    """`npm publish`, off the event loop the service tests share."""
    await asyncio.to_thread(verdaccio.publish, name, version, files)


async def until(
    check: Callable[[], bool | Awaitable[bool]], within: float = 20.0, pause: float = 0.05
) -> None:
    """Wait for a condition (plain or awaitable) or fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if await outcome if inspect.isawaitable(outcome) else outcome:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(pause)
