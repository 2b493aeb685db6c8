"""Real npm-protocol servers on loopback for the integration tests.

* Verdaccio 6.8.0 (the last release that runs on Node 20) with no uplinks: packuments, tarballs,
  publish/unpublish through the real npm CLI;
* express-pouchdb 4.2.0 on an in-memory PouchDB: a CouchDB-protocol `_changes` feed, fed by the
  tests with one document per package (carrying the packument's own `_rev`, written with
  `new_edits=false`) as they publish;
* `FaultProxy`: an aiohttp reverse proxy in front of either, injecting 5xx bursts, 429 with
  Retry-After, slow and truncated responses, stale copies and a sequence reset.

Both servers are installed from the npm registry into `.cache/tools/` the first time a test needs
them (`ensure_npm_tools`), so a fresh machine needs nothing but `make test`. Packages are built at
test time in temporary directories.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from servers_common import free_port, http_json, install_once, pins_marker, serving

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".cache" / "tools"
VERDACCIO_PACKAGE = {
    "name": "verdaccio-standin",
    "private": True,
    "dependencies": {"verdaccio": "6.8.0"},
    # verdaccio-audit asks for the `node-fetch@cjs` dist-tag, which mirrors may lack: pin it.
    "overrides": {"verdaccio-audit": {"node-fetch": "2.7.0"}},
}
COUCH_PACKAGE = {
    "name": "couch-standin",
    "private": True,
    "dependencies": {
        "express": "4.22.3",
        "express-pouchdb": "4.2.0",
        "pouchdb-core": "9.0.0",
        "pouchdb-adapter-memory": "9.0.0",
        "pouchdb-mapreduce": "9.0.0",
        "pouchdb-replication": "9.0.0",
    },
}

VERDACCIO_CONFIG = """\
storage: ./storage
auth:
  htpasswd: {file: ./htpasswd, max_users: 1000}
uplinks: {}
packages:
  '@*/*': {access: $all, publish: $authenticated, unpublish: $authenticated}
  '**': {access: $all, publish: $authenticated, unpublish: $authenticated}
middlewares:
  audit: {enabled: false}
log: {type: stdout, format: json, level: warn}
web: {enable: false}
"""

COUCH_JS = """\
const express = require('express');
const PouchDB = require('pouchdb-core').plugin(require('pouchdb-adapter-memory'))
  .plugin(require('pouchdb-mapreduce')).plugin(require('pouchdb-replication')).defaults({adapter: 'memory'});
const app = express();
app.use('/', require('express-pouchdb')(PouchDB, {mode: 'minimumForPouchDB', inMemoryConfig: true, logPath: '/dev/null'}));
const server = app.listen(Number(process.argv[2]), '127.0.0.1');
process.on('SIGTERM', () => { server.close(); process.exit(0); });
"""


# ------------------------------------------------------------------------------------ tools


def _install(directory: Path, package: dict[str, Any]) -> Path:
    spec = json.dumps(package, sort_keys=True)

    def npm_install() -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "package.json").write_text(spec)
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed; the npm integration tests need Node and npm")
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm install in {directory} failed:\n{done.stderr[-3000:]}")

    install_once(
        pins_marker(directory, spec), directory.parent / f"{directory.name}.lock", npm_install
    )
    return directory


def ensure_npm_tools() -> tuple[Path, Path]:
    """(verdaccio dir, couch dir), installed once under a lock."""
    return _install(TOOLS / "verdaccio", VERDACCIO_PACKAGE), _install(
        TOOLS / "couch", COUCH_PACKAGE
    )


def sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


# -------------------------------------------------------------------------------- Verdaccio


@dataclass
class Verdaccio:
    url: str
    token: str
    npmrc: Path
    workdir: Path

    def npm(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The real npm CLI against this registry, with a throw-away userconfig."""
        return subprocess.run(
            ["npm", *args, "--registry", self.url + "/", "--userconfig", str(self.npmrc)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def publish(
        self, name: str, version: str, files: dict[str, bytes] | None = None, tag: str | None = None
    ) -> None:
        """Build a package directory now and `npm publish` it."""
        pkg = self.workdir / "build" / f"{name.replace('/', '__')}-{version}"
        pkg.mkdir(parents=True, exist_ok=True)
        manifest = {"name": name, "version": version, "license": "MIT", "main": "index.js"}
        (pkg / "package.json").write_text(json.dumps(manifest))
        for relative, data in (
            files or {"index.js": f"module.exports = '{version}';\n".encode()}
        ).items():
            target = pkg / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        args = ["publish", "--access", "public"]
        if tag is None and re.search(r"-", version):
            tag = "next"  # npm refuses a pre-release on `latest` without an explicit tag
        if tag:
            args += ["--tag", tag]
        done = self.npm(*args, cwd=pkg)
        if done.returncode != 0:
            raise RuntimeError(f"npm publish {name}@{version} failed: {done.stderr[-2000:]}")

    def publish_raw(
        self,
        name: str,
        version: str,
        *,
        integrity: str | None = None,
        files: dict[str, bytes] | None = None,
        extra: dict[str, Any] | None = None,
        dist_extra: dict[str, Any] | None = None,
    ) -> bytes:
        """The PUT `npm publish` sends, with `dist.integrity` overridable (Verdaccio checks only
        `dist.shasum`), for tamper tests. `extra` lands verbatim in the version document (e.g.
        `_npmUser`), `dist_extra` in its `dist` (e.g. `attestations`). Returns the tarball bytes."""
        manifest: dict[str, Any] = {"name": name, "version": version}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            members = {
                "package.json": json.dumps(manifest).encode(),
                **(files or {"index.js": b"1;\n"}),
            }
            for fn, data in members.items():
                info = tarfile.TarInfo("package/" + fn)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        tgz = buf.getvalue()
        fname = f"{name.rsplit('/', maxsplit=1)[-1]}-{version}.tgz"
        manifest.update(
            _id=f"{name}@{version}",
            dist={
                "integrity": integrity or sri_sha512(tgz),
                "shasum": hashlib.sha1(tgz).hexdigest(),
                "tarball": f"{self.url}/{name}/-/{fname}",
                **(dist_extra or {}),
            },
            **(extra or {}),
        )
        body = {
            "_id": name,
            "name": name,
            "dist-tags": {"latest": version},
            "versions": {version: manifest},
            "_attachments": {
                fname: {
                    "content_type": "application/octet-stream",
                    "data": base64.b64encode(tgz).decode(),
                    "length": len(tgz),
                }
            },
        }
        http_json(
            "PUT",
            f"{self.url}/{urllib.parse.quote(name, safe='@')}",
            body,
            {"authorization": f"Bearer {self.token}"},
        )
        return tgz

    def unpublish(self, name: str, version: str | None = None) -> None:
        spec = f"{name}@{version}" if version else name
        done = self.npm("unpublish", spec, "--force")
        if done.returncode != 0:
            raise RuntimeError(f"npm unpublish {spec} failed: {done.stderr[-2000:]}")

    def packument(self, name: str) -> dict[str, Any]:
        escaped = name.replace("/", "%2f")
        result: dict[str, Any] = http_json(
            "GET", f"{self.url}/{escaped}", headers={"accept": "application/json"}
        )
        return result


@contextmanager
def run_verdaccio(
    directory: Path, *, user: str = "tester", log: bool = True, config: str = VERDACCIO_CONFIG
) -> Iterator[Verdaccio]:
    """Verdaccio on a free loopback port with `user` signed up and an npmrc holding its token;
    its output goes to `directory/log` (or nowhere). `config` replaces the default config.yaml
    (e.g. a private registry whose scope needs a token to read)."""
    tools, _ = ensure_npm_tools()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(tools / "node_modules" / ".bin" / "verdaccio"),
        "--config",
        str(directory / "config.yaml"),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    with serving(argv, f"{url}/-/ping", cwd=directory, log=directory / "log" if log else None):
        # Same call `npm adduser` makes; the password is built here, never a real credential.
        password = "-".join((user, "pass", str(port)))
        answer = http_json(
            "PUT",
            f"{url}/-/user/org.couchdb.user:{user}",
            {"name": user, "password": password, "email": "t@example.invalid", "type": "user"},
        )
        npmrc = directory / "npmrc"
        npmrc.write_text(
            f"//127.0.0.1:{port}/:_authToken={answer['token']}\nregistry={url}/\n"
            "audit=false\nfund=false\nupdate-notifier=false\n"
        )
        yield Verdaccio(url, answer["token"], npmrc, directory)


@pytest.fixture(scope="session")
def verdaccio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdaccio]:
    with run_verdaccio(tmp_path_factory.mktemp("verdaccio")) as server:
        yield server


# ------------------------------------------------------------------------ CouchDB _changes


@dataclass
class Couch:
    db_url: str  # …/registry ; the changes feed is db_url + "/_changes"

    @property
    def changes_url(self) -> str:
        return self.db_url + "/_changes"

    def mirror(self, name: str, rev: str, *, deleted: bool = False) -> None:
        """One document per package carrying the packument's own `_rev` (new_edits=false keeps
        the revision as given), so the feed's rows announce exactly what the registry serves."""
        doc: dict[str, Any] = {"_id": name, "_rev": rev, "name": name}
        if deleted:
            doc["_deleted"] = True
        http_json("POST", self.db_url + "/_bulk_docs", {"docs": [doc], "new_edits": False})

    def touch(self, name: str) -> None:
        """A row for `name` with a revision one above its current one (a change without a doc)."""
        try:
            current = http_json("GET", f"{self.db_url}/{urllib.parse.quote(name, safe='')}")
            number = int(str(current["_rev"]).split("-")[0]) + 1
        except urllib.error.HTTPError:
            number = 1
        self.mirror(name, f"{number}-{hashlib.md5(f'{name}{number}'.encode()).hexdigest()}")

    def update_seq(self) -> Any:
        return http_json("GET", self.db_url)["update_seq"]


@pytest.fixture(scope="session")
def couch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The express-pouchdb server's base URL; each test creates its own database."""
    _, tools = ensure_npm_tools()
    directory = tmp_path_factory.mktemp("couch")
    (directory / "server.js").write_text(COUCH_JS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(
        ["node", str(directory / "server.js"), str(port)],
        url + "/",
        cwd=directory,
        env={**os.environ, "NODE_PATH": str(tools / "node_modules")},
    ):
        yield url


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture
def couch(couch_server: str) -> Couch:
    db_url = f"{couch_server}/registry{next(_db_counter)}"
    http_json("PUT", db_url)
    return Couch(db_url)


# ------------------------------------------------------------------------------ fault proxy


@dataclass
class Fault:
    """Applied to the next `times` requests whose path contains `path`."""

    kind: str  # status | retry_after | delay | truncate | stale
    path: str = ""
    times: int = 1
    status: int = 503
    seconds: float = 0.0


@dataclass
class FaultProxy:
    """Reverse proxy on loopback. Faults are queued and consumed in order; `seq_offset` is added
    to every `seq`, `last_seq` and `update_seq` it relays (changing it mid-test is a sequence
    reset: the feed's numbers go backwards or jump)."""

    upstream: str
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    seq_offset: int = 0
    seen: list[str] = field(default_factory=list)
    _history: dict[str, list[bytes]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    def inject(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def _take(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path in path:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _shift(self, body: bytes) -> bytes:
        if not self.seq_offset:
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if not isinstance(data, dict):
            return body
        for key in ("last_seq", "update_seq"):
            if isinstance(data.get(key), int):
                data[key] += self.seq_offset
        for row in data.get("results") or []:
            if isinstance(row, dict) and isinstance(row.get("seq"), int):
                row["seq"] += self.seq_offset
        return json.dumps(data).encode()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path_qs = request.rel_url.path_qs
        self.seen.append(path_qs)
        fault = self._take(path_qs)
        if fault is not None and fault.kind == "status":
            return web.Response(status=fault.status, text="injected failure")
        if fault is not None and fault.kind == "retry_after":
            return web.Response(status=429, headers={"Retry-After": str(int(fault.seconds))})
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        query = dict(request.rel_url.query)
        if self.seq_offset and "since" in query and query["since"].lstrip("-").isdigit():
            query["since"] = str(int(query["since"]) - self.seq_offset)
        assert self._session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("accept", "if-none-match", "authorization")
        }
        async with self._session.get(
            self.upstream + request.rel_url.path, params=query, headers=headers
        ) as upstream:
            body = await upstream.read()
            out_headers = {
                k: v for k, v in upstream.headers.items() if k.lower() in ("etag", "content-type")
            }
            status = upstream.status
        body = self._shift(body)
        history = self._history.setdefault(request.rel_url.path, [])
        if status == 200 and (not history or history[-1] != body):
            history.append(body)
        if fault is not None and fault.kind == "stale" and len(history) >= 2:
            # A cache copy from before the last change, without a validator.
            body = history[-2]
            out_headers = {k: v for k, v in out_headers.items() if k.lower() != "etag"}
        if fault is not None and fault.kind == "truncate":
            body = body[: max(1, len(body) // 2)]
        return web.Response(status=status, body=body, headers=out_headers)

    async def start(self) -> FaultProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> Callable[[], Any]:
    """For polling loops in async tests: `await until(check)` style helper factory."""

    async def wait() -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.05)

    return wait
