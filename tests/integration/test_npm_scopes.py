"""npm scoped registries against two real Verdaccio instances: a public one, and a private one whose
`@priv/*` packages need a token to read. A loopback proxy serves both from one origin under two
paths (`/pub/`, `/priv/`, as an Artifactory does) and records every request's Authorization
header, so the tests see which token went where.

`watcher scan npm:@priv/…@… --baseline auto` resolves through the scope's registry (configured in
`registries.npm.scopes`, or the machine's `.npmrc` with `@priv:registry=` and a `${VAR}` token);
the service watching a public and a scoped package pages for both, in poll mode and beside a
`_changes` feed of the public registry, and containment re-reads the scoped one where it lives; the private token never reaches the public registry and
never appears in output or logs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from npm_servers import VERDACCIO_CONFIG, Couch, Verdaccio, run_verdaccio
from servers_common import free_port, http_json
from service_harness import ServiceProcess, leaky_files, service_yaml, unique, wait_release
from yarl import URL

from tests.receivers import Receiver
from watcher import ecosystems
from watcher.config import load_config
from watcher.model import Ecosystem
from watcher.store.types import ContainmentJob, JobState

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The private registry: its scope is readable with a token only, so a request that reached it
# without the right one fails instead of passing silently.
PRIVATE_CONFIG = VERDACCIO_CONFIG.replace(
    "packages:\n",
    "packages:\n"
    "  '@priv/*': {access: $authenticated, publish: $authenticated, unpublish: $authenticated}\n",
)


@pytest.fixture(scope="session")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdaccio]:
    with run_verdaccio(
        tmp_path_factory.mktemp("verdaccio-private"), user="corp", config=PRIVATE_CONFIG
    ) as server:
        yield server


@dataclass
class SplitProxy:
    """One loopback origin in front of several registries, one path prefix each; rewrites each
    registry's address in JSON bodies to its prefix (tarballs come through here too) and records
    (prefix, path, Authorization) of every request."""

    upstreams: dict[str, str]  # prefix -> registry URL
    url: str = ""
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    def auth(self, prefix: str) -> set[str | None]:
        return {auth for where, _, auth in self.seen if where == prefix}

    def paths(self, prefix: str) -> list[str]:
        return [path for where, path, _ in self.seen if where == prefix]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        prefix, _, rest = request.rel_url.raw_path.lstrip("/").partition("/")
        self.seen.append((prefix, "/" + rest, request.headers.get("Authorization")))
        upstream = self.upstreams.get(prefix)
        if upstream is None:
            return web.Response(status=404)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("accept", "if-none-match", "authorization")
        }
        target = URL(f"{upstream}/{rest}", encoded=True)
        assert self._session is not None
        async with self._session.request(request.method, target, headers=headers) as answer:
            body = await answer.read()
            status = answer.status
            out = {k: v for k, v in answer.headers.items() if k.lower() in ("etag", "content-type")}
        if "json" in out.get("Content-Type", out.get("content-type", "")):
            body = body.replace(upstream.encode(), f"{self.url}/{prefix}".encode())
        return web.Response(status=status, body=body, headers=out)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SplitProxy]:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await self._runner.cleanup()
            await self._session.close()


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any npm setting, HOME pointing at `home` and no global
    npmrc: only what the test writes decides."""
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
    empty = home / "empty-globalconfig"
    empty.write_text("")
    return {**env, "HOME": str(home), "npm_config_globalconfig": str(empty), **extra}


def scan(
    config: Path, target: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    argv = ["scan", target, "--baseline", "auto", "--format", "json", "--config", str(config)]
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", "--log-format", "json", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
        cwd=cwd,
    )


def scan_config(tmp_path: Path, npm: dict[str, object]) -> Path:
    path = tmp_path / "watcher.yaml"
    doc = {
        "store": {"path": str(tmp_path / "state.db")},
        "registries": {"npm": npm},
        "packages": [{"ecosystem": "npm", "name": "placeholder-pkg", "owner": "team"}],
        "owners": {"team": {"console": True}},
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def sourcemap_leak() -> dict[str, bytes]:
    smap = {
        "version": 3,
        "sources": ["../src/billing.ts"],
        "sourcesContent": ["export const rate = 0.2;\n"],
        "mappings": "AAAA",
    }
    return {"index.js": b"module.exports = 1;\n", "index.js.map": json.dumps(smap).encode()}


@dataclass(frozen=True)
class Published:
    name: str
    leak_sha256: str  # the private 1.0.1's tarball


async def publish_private_and_decoy(private: Verdaccio, public: Verdaccio, stem: str) -> Published:
    """`@priv/<stem>` 1.0.0 and a leaking 1.0.1 on the private registry, and a clean 1.0.1 under
    the same name on the public one: reading the wrong registry gives another file and no
    baseline."""
    name = f"@priv/{unique(stem)}"

    def run() -> Published:
        private.publish_raw(name, "1.0.0")
        leak = private.publish_raw(name, "1.0.1", files=sourcemap_leak())
        public.publish_raw(name, "1.0.1", files={"decoy.js": b"1;\n"})
        return Published(name, hashlib.sha256(leak).hexdigest())

    return await asyncio.to_thread(run)


def assert_routed(report: dict[str, object], published: Published) -> None:
    target = report["target"]
    baseline = report["baseline"]
    assert isinstance(target, dict) and isinstance(baseline, dict)
    assert (target["name"], target["version"]) == (published.name, "1.0.1")
    assert target["sha256"] == published.leak_sha256, "the private registry's tarball was scanned"
    assert baseline["version"] == "1.0.0", "--baseline auto found the private previous version"
    rules = {f["rule"] for f in report["findings"]}  # type: ignore[union-attr]
    assert "sourcemap-embedded-sources" in rules


async def test_scan_resolves_a_scoped_package_through_its_configured_registry(
    verdaccio: Verdaccio, private_registry: Verdaccio, tmp_path: Path
) -> None:
    published = await publish_private_and_decoy(private_registry, verdaccio, "scan-cfg")
    async with SplitProxy({"pub": verdaccio.url, "priv": private_registry.url}).running() as proxy:
        config = scan_config(
            tmp_path,
            {
                "url": f"{proxy.url}/pub/",
                "scopes": {"@priv": {"url": f"{proxy.url}/priv/", "token": "${PRIV_NPM_TOKEN}"}},
            },
        )
        env = isolated_env(tmp_path, PRIV_NPM_TOKEN=private_registry.token)
        result = await asyncio.to_thread(scan, config, f"npm:{published.name}@1.0.1", env, tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert_routed(json.loads(result.stdout), published)
    private_bearer = f"Bearer {private_registry.token}"
    assert proxy.auth("priv") == {private_bearer}, "every private request carried its token"
    assert any("/-/" in path for path in proxy.paths("priv")), "tarballs came from there too"
    assert proxy.paths("pub") == [], "nothing about the scoped package was asked of the public one"
    assert private_registry.token not in result.stdout + result.stderr


async def test_scan_follows_the_machines_npmrc_scope_and_token(
    verdaccio: Verdaccio, private_registry: Verdaccio, tmp_path: Path
) -> None:
    published = await publish_private_and_decoy(private_registry, verdaccio, "scan-npmrc")
    public_name = unique("scan-npmrc-public")
    await asyncio.to_thread(verdaccio.publish_raw, public_name, "1.0.0")
    await asyncio.to_thread(verdaccio.publish_raw, public_name, "1.0.1", files=sourcemap_leak())
    home = tmp_path / "home"
    home.mkdir()
    async with SplitProxy({"pub": verdaccio.url, "priv": private_registry.url}).running() as proxy:
        origin = proxy.url.removeprefix("http://")
        # The machine's settings: default registry, the scope's registry, a token per registry
        # (the private one from the environment, as CI injects it).
        (home / ".npmrc").write_text(
            f"registry={proxy.url}/pub/\n"
            f"@priv:registry={proxy.url}/priv/\n"
            f"//{origin}/priv/:_authToken=${{PRIV_NPM_TOKEN}}\n"
            f"//{origin}/pub/:_authToken={verdaccio.token}\n"
        )
        config = scan_config(tmp_path, {"url": None})
        env = isolated_env(home, PRIV_NPM_TOKEN=private_registry.token)
        private_scan = await asyncio.to_thread(
            scan, config, f"npm:{published.name}@1.0.1", env, tmp_path
        )
        public_scan = await asyncio.to_thread(
            scan, config, f"npm:{public_name}@1.0.1", env, tmp_path
        )
    assert private_scan.returncode == 1, private_scan.stderr[-3000:]
    assert_routed(json.loads(private_scan.stdout), published)
    assert public_scan.returncode == 1, public_scan.stderr[-3000:]
    assert json.loads(public_scan.stdout)["baseline"]["version"] == "1.0.0"
    # each registry saw its own token only, in both directions
    assert proxy.auth("priv") == {f"Bearer {private_registry.token}"}
    assert proxy.auth("pub") == {f"Bearer {verdaccio.token}"}
    assert proxy.paths("pub") and proxy.paths("priv")
    for output in (private_scan, public_scan):
        assert private_registry.token not in output.stdout + output.stderr
        assert verdaccio.token not in output.stdout + output.stderr


def service_config(
    tmp_path: Path,
    proxy: SplitProxy,
    private: Verdaccio,
    names: list[str],
    receiver: Receiver,
    secret: str,
    changes_url: str | None = None,
    extra: str = "",
) -> ServiceProcess:
    port = free_port()
    text = service_yaml(
        state=tmp_path / "state.db",
        port=port,
        npm_url=f"{proxy.url}/pub/",
        npm_changes_url=changes_url,
        packages=names,
        webhook_url=receiver.url,
        secret=secret,
        extra=extra,
    )
    scopes = json.dumps({"@priv": {"url": f"{proxy.url}/priv/", "token": private.token}})
    # the first `poll_interval: 1s}` is the npm registry's flow mapping
    text = text.replace("poll_interval: 1s", f"poll_interval: 1s, scopes: {scopes}", 1)
    config = tmp_path / "watcher.yaml"
    config.write_text(text)
    return ServiceProcess(config, port, tmp_path)


async def _pages_for(
    receiver: Receiver, keys: set[str], within: float = 40.0, kind: str = "incident.opened"
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        opened = {
            r.json()["data"]["dedup_key"] for r in receiver.requests if r.json().get("type") == kind
        }
        if keys <= opened:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"pages for {sorted(keys - opened)} never came")
        await asyncio.sleep(0.1)


def assert_no_leak_of(token: str, service: ServiceProcess) -> None:
    logs = service.stderr_path.read_text(errors="replace") + service.stdout()
    assert token not in logs, "the private token appeared in the service's output"


async def test_service_polls_a_public_and_a_scoped_package_pages_for_both_and_contains(
    verdaccio: Verdaccio,
    private_registry: Verdaccio,
    hook: tuple[Receiver, str],
    tmp_path: Path,
) -> None:
    receiver, secret = hook
    public_name, scoped_name = unique("svc-pub"), f"@priv/{unique('svc')}"
    await asyncio.to_thread(verdaccio.publish_raw, public_name, "1.0.0")
    await asyncio.to_thread(private_registry.publish_raw, scoped_name, "1.0.0")
    # a decoy under the scoped name on the public registry: a re-read there would keep the
    # incident open after the unpublish on the private one
    await asyncio.to_thread(verdaccio.publish_raw, scoped_name, "1.0.1", files={"d.js": b"1;\n"})
    state = tmp_path / "state.db"
    async with SplitProxy({"pub": verdaccio.url, "priv": private_registry.url}).running() as proxy:
        service = service_config(
            tmp_path,
            proxy,
            private_registry,
            [public_name, scoped_name],
            receiver,
            secret,
            extra="containment: {check_interval: 500ms}\n",
        )
        service.start()
        try:
            await service.wait_ready()
            assert (await wait_release(state, public_name, "1.0.0")).baseline
            assert (await wait_release(state, scoped_name, "1.0.0")).baseline
            await asyncio.to_thread(
                verdaccio.publish_raw, public_name, "1.0.1", files=leaky_files("pub")
            )
            await asyncio.to_thread(
                private_registry.publish_raw, scoped_name, "1.0.1", files=leaky_files("priv")
            )
            await _pages_for(
                receiver,
                {f"watcher/npm/{public_name}/1.0.1", f"watcher/npm/{scoped_name}/1.0.1"},
            )
            # containment re-reads the private registry: the unpublish there resolves the page
            await asyncio.to_thread(private_registry.unpublish, scoped_name, "1.0.1")
            await _pages_for(
                receiver, {f"watcher/npm/{scoped_name}/1.0.1"}, kind="incident.resolved"
            )
            assert service.terminate() == 0
        finally:
            service.ensure_stopped()
    private_bearer = f"Bearer {private_registry.token}"
    assert proxy.auth("priv") == {private_bearer}
    assert private_bearer not in proxy.auth("pub"), "the private token reached the public registry"
    escaped = scoped_name.replace("/", "%2f").lower()
    assert any(escaped in p.lower() for p in proxy.paths("priv"))
    assert not any(escaped in p.lower() for p in proxy.paths("pub"))
    resolved = [e for e in service.logs() if e.get("event") == "registry_resolved"]
    assert any(e.get("scope") == "@priv" and e.get("auth") for e in resolved), resolved
    assert_no_leak_of(private_registry.token, service)


async def test_beside_a_changes_feed_a_scope_on_another_registry_is_polled(
    verdaccio: Verdaccio,
    private_registry: Verdaccio,
    couch: Couch,
    hook: tuple[Receiver, str],
    tmp_path: Path,
) -> None:
    """The `_changes` feed belongs to the public registry and never names the private package;
    it is found by the `npm-poll-scopes` feed."""
    receiver, secret = hook
    public_name, scoped_name = unique("chg-pub"), f"@priv/{unique('chg')}"

    def publish_public(version: str, files: dict[str, bytes] | None = None) -> None:
        verdaccio.publish_raw(public_name, version, files=files)
        couch.mirror(public_name, verdaccio.packument(public_name)["_rev"])

    await asyncio.to_thread(publish_public, "1.0.0")
    await asyncio.to_thread(private_registry.publish_raw, scoped_name, "1.0.0")
    state = tmp_path / "state.db"
    async with SplitProxy({"pub": verdaccio.url, "priv": private_registry.url}).running() as proxy:
        service = service_config(
            tmp_path,
            proxy,
            private_registry,
            [public_name, scoped_name],
            receiver,
            secret,
            changes_url=couch.changes_url,
        )
        service.start()
        try:
            await service.wait_ready()
            assert (await wait_release(state, public_name, "1.0.0")).baseline
            assert (await wait_release(state, scoped_name, "1.0.0")).baseline
            await asyncio.to_thread(publish_public, "1.0.1", leaky_files("chg-pub"))
            await asyncio.to_thread(
                private_registry.publish_raw, scoped_name, "1.0.1", files=leaky_files("chg-priv")
            )
            await _pages_for(
                receiver,
                {f"watcher/npm/{public_name}/1.0.1", f"watcher/npm/{scoped_name}/1.0.1"},
            )
            assert service.terminate() == 0
        finally:
            service.ensure_stopped()
    started = next(e for e in service.logs() if e.get("event") == "service_started")
    assert "npm-poll-scopes" in started["feeds"] and "npm-changes" in " ".join(started["feeds"])
    assert f"Bearer {private_registry.token}" not in proxy.auth("pub")
    assert_no_leak_of(private_registry.token, service)


async def test_automatic_containment_writes_a_scoped_package_on_its_registry_with_its_token(
    verdaccio: Verdaccio, private_registry: Verdaccio, tmp_path: Path
) -> None:
    """`containment.auto.npm.scope_tokens`: the dist-tag move and the deprecation of a `@priv`
    package go to the scope's registry with the scope's token (the default registry's token is
    refused there, and the default registry does not have the package)."""
    name = f"@priv/{unique('auto-scope')}"

    def publish() -> None:
        private_registry.publish_raw(name, "1.0.0")
        private_registry.publish_raw(name, "1.1.0")

    await asyncio.to_thread(publish)
    path = tmp_path / "watcher.yaml"
    path.write_text(
        f"registries: {{npm: {{url: {json.dumps(verdaccio.url + '/')}, scopes: "
        f"{{'@priv': {{url: {json.dumps(private_registry.url + '/')}}}}}}}}}\n"
        f"packages: [{{ecosystem: npm, name: {json.dumps(name)}, owner: team}}]\n"
        "owners: {team: {console: true}}\n"
        "containment: {auto: {npm: {token: '${PUB_TOKEN}', "
        "scope_tokens: {'@priv': '${PRIV_TOKEN}'}}}}\n"
    )
    config = load_config(
        path, env={"PUB_TOKEN": verdaccio.token, "PRIV_TOKEN": private_registry.token}
    )
    section = config.registries.for_ecosystem(Ecosystem.NPM)
    writer = ecosystems.get(Ecosystem.NPM).containment_actions(section, config.containment.auto)

    def job(action: str, target: str, params: dict[str, str]) -> ContainmentJob:
        return ContainmentJob(
            1, 1, Ecosystem.NPM, name, action, target, params, JobState.PENDING, 0, 0.0, None,
            0.0, None,
        )  # fmt: skip

    try:
        moved = await writer.perform(job("dist_tag", "latest", {"from": "1.1.0", "to": "1.0.0"}))
        assert moved.done, moved
        deprecated = await writer.perform(job("deprecate", "1.1.0", {"message": "leaked"}))
        assert deprecated.done, deprecated
    finally:
        await writer.close()
    doc = await asyncio.to_thread(
        http_json,
        "GET",
        f"{private_registry.url}/{name.replace('/', '%2f')}",
        None,
        {"accept": "application/json", "authorization": f"Bearer {private_registry.token}"},
    )
    assert doc["dist-tags"]["latest"] == "1.0.0"
    assert doc["versions"]["1.1.0"]["deprecated"] == "leaked"
