"""Real PyPI-protocol servers on loopback for the integration tests, and the dists they serve.

* devpi-server 6.20.3 (PEP 691 JSON, sha256, upload times) and pypiserver 2.4.2 (PEP 503 HTML only),
  installed by `ensure_tools()` into `.cache/tools/pypi-venv` the first time a test needs them, so a
  fresh machine needs nothing but `make test`;
* `Warehouse`: an aiohttp server speaking PyPI's documented wire formats (XML-RPC
  `changelog_since_serial`, PEP 691 pages with `_last-serial` / `X-PyPI-Last-Serial`, files), with
  fault injection (5xx, slow, truncated, stale cache copies). Neither devpi nor pypiserver has a
  journal, so this stands in for it; the wire format comes from xmlrpc.client itself.

Dists are built at test time by hand (wheel zip with METADATA/WHEEL/RECORD, sdist tar.gz): no
build backend, no network.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
import xmlrpc.client
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from servers_common import free_port, http_json, install_once, pins_marker, serving

REPO = Path(__file__).resolve().parents[2]
TOOLS_VENV = REPO / ".cache" / "tools" / "pypi-venv"
TOOL_PINS = (
    "devpi-server==6.20.3",
    "pypiserver==2.4.2",
    "passlib==1.7.4",
    "waitress==3.0.2",
    "twine==7.0.0",
)


# --------------------------------------------------------------------------- tools


def ensure_tools() -> Path:
    """The venv holding the servers and twine; installed once, under a lock (parallel sessions)."""

    def pip_install() -> None:
        if not (TOOLS_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
        done = subprocess.run(
            [str(TOOLS_VENV / "bin" / "pip"), "install", "--quiet", *TOOL_PINS],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"installing PyPI test servers failed:\n{done.stderr[-3000:]}")

    install_once(
        pins_marker(TOOLS_VENV, " ".join(TOOL_PINS)),
        TOOLS_VENV.parent / "pypi-venv.lock",
        pip_install,
    )
    return TOOLS_VENV / "bin"


def twine_upload(bin_dir: Path, url: str, user: str, password: str, files: list[Path]) -> None:
    done = subprocess.run(
        [
            str(bin_dir / "twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            url,
            "-u",
            user,
            "-p",
            password,
            *map(str, files),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TWINE_NON_INTERACTIVE": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"twine upload failed: {done.stdout}{done.stderr}")


# --------------------------------------------------------------------------- dists


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(
    out: Path,
    name: str,
    version: str,
    *,
    tag: str = "py3-none-any",
    files: dict[str, bytes] | None = None,
) -> Path:
    """A valid wheel: METADATA, WHEEL, RECORD with sha256 and sizes, plus `files`."""
    mod = name.replace("-", "_")
    out.mkdir(parents=True, exist_ok=True)
    dist_info = f"{mod}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test dist\n"
    wheel_meta = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
    members = {
        f"{mod}/__init__.py": f"__version__ = '{version}'\n".encode(),
        **(files or {}),
        f"{dist_info}/METADATA": meta.encode(),
        f"{dist_info}/WHEEL": wheel_meta.encode(),
    }
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in members.items())
    record += f"{dist_info}/RECORD,,\n"
    path = out / f"{mod}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in members.items():
            z.writestr(member, data)
        z.writestr(f"{dist_info}/RECORD", record)
    return path


def build_sdist(out: Path, name: str, version: str, files: dict[str, bytes] | None = None) -> Path:
    mod = name.replace("-", "_")
    out.mkdir(parents=True, exist_ok=True)
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test dist\n"
    members = {
        "PKG-INFO": meta.encode(),
        f"{mod}/__init__.py": f"__version__ = '{version}'\n".encode(),
        **(files or {}),
    }
    path = out / f"{mod}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for member, data in members.items():
            info = tarfile.TarInfo(f"{mod}-{version}/{member}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def build_dists(out: Path, name: str, version: str) -> list[Path]:
    return [build_sdist(out, name, version), build_wheel(out, name, version)]


# --------------------------------------------------------------------------- devpi / pypiserver


@dataclass
class Devpi:
    url: str
    bin_dir: Path
    user: str = "tester"
    password: str = "testpw"  # throw-away local test server

    @property
    def index(self) -> str:
        return f"{self.url}/{self.user}/dev"

    @property
    def simple_url(self) -> str:
        return f"{self.index}/+simple/"

    def upload(self, files: list[Path]) -> None:
        twine_upload(self.bin_dir, f"{self.index}/", self.user, self.password, files)

    def delete_release(self, name: str, version: str) -> None:
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            f"{self.index}/{name}/{version}",
            method="DELETE",
            headers={"authorization": f"Basic {auth}"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextmanager
def run_devpi(workdir: Path) -> Iterator[Devpi]:
    bin_dir = ensure_tools()
    server = workdir / "server"
    subprocess.run(
        [
            str(bin_dir / "devpi-init"),
            "--serverdir",
            str(server),
            "--no-root-pypi",
            "--root-passwd",
            "rootpw",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(bin_dir / "devpi-gen-secret"), "--secretfile", str(workdir / "secret")],
        check=True,
        capture_output=True,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Lowered argon2 costs: the defaults take 6-9 s and ~580 MB at every start (notes §2.2).
    with serving(
        [
            str(bin_dir / "devpi-server"),
            "--serverdir",
            str(server),
            "--secretfile",
            str(workdir / "secret"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--offline-mode",
            "--threads",
            "8",
            "--argon2-memory-cost",
            "8",
            "--argon2-time-cost",
            "1",
            "--argon2-parallelism",
            "1",
        ],
        url + "/+api",
        timeout=30.0,
    ):
        devpi = Devpi(url, bin_dir)
        http_json(
            "PUT", f"{url}/{devpi.user}", {"password": devpi.password, "email": "t@example.invalid"}
        )
        auth = base64.b64encode(f"{devpi.user}:{devpi.password}".encode()).decode()
        http_json(
            "PUT",
            devpi.index,
            {"type": "stage", "bases": [], "volatile": True},
            {"authorization": f"Basic {auth}"},
        )
        yield devpi


@dataclass
class PypiServer:
    url: str
    packages: Path
    bin_dir: Path

    @property
    def simple_url(self) -> str:
        return f"{self.url}/simple/"

    def upload(self, files: list[Path]) -> None:
        twine_upload(self.bin_dir, f"{self.url}/", "x", "x", files)


@contextmanager
def run_pypiserver(workdir: Path) -> Iterator[PypiServer]:
    bin_dir = ensure_tools()
    packages = workdir / "packages"
    packages.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(
        [
            str(bin_dir / "pypi-server"),
            "run",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-a",
            ".",
            "-P",
            ".",
            "--disable-fallback",
            "--server",
            "auto",
            str(packages),
        ],
        url + "/health",
        timeout=30.0,
    ):
        yield PypiServer(url, packages, bin_dir)


# --------------------------------------------------------------------------- warehouse stand-in


@dataclass
class WFile:
    name: str
    version: str
    filename: str
    data: bytes
    uploaded: datetime
    yanked: bool | str = False
    # Lets a test publish a digest that does not match the bytes (tamper tests).
    advertised_sha256: str | None = None
    # PEP 740: with `pep740` the page carries `provenance` (this URL, or null without one);
    # without it the key is left out, as indexes that do not implement PEP 740 do.
    pep740: bool = False
    provenance: str | None = None

    @property
    def sha256(self) -> str:
        return self.advertised_sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class Fault:
    """One injected misbehaviour, consumed by the next matching request."""

    route: str  # "xmlrpc" | "simple" | "files"
    kind: str  # "500" | "503" | "slow" | "truncate" | "stale" | "xmlrpc-fault"
    delay: float = 0.0


@dataclass
class _Project:
    display: str
    files: list[WFile] = field(default_factory=list)
    last_serial: int = 0
    versions: list[str] = field(default_factory=list)


class Warehouse:
    """PyPI's journal + Simple API + files, in memory, served from a thread so any event loop
    (or none) in the test can talk to it."""

    def __init__(self, batch_limit: int = 50_000) -> None:
        self.batch_limit = batch_limit
        self.journal: list[list[object]] = []
        self.projects: dict[str, _Project] = {}
        # normalized project → its users: served as the JSON API's `ownership.roles` (Owner)
        self.owners: dict[str, list[str]] = {}
        self.faults: list[Fault] = []
        self.calls: dict[str, int] = {"xmlrpc": 0, "simple": 0, "files": 0}
        self.page_hits: dict[str, int] = {}  # project → Simple API page reads
        # Snapshots of each project page per serial, so a "stale" fault can serve an old copy.
        self._history: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ publishing side
    def _entry(self, name: str, version: str | None, action: str) -> int:
        serial = len(self.journal) + 1
        self.journal.append([name, version, int(time.time()), action, serial])
        key = _norm(name)
        project = self.projects[key]
        project.last_serial = serial
        self._history.setdefault(key, []).append(self._page_json(key))
        return serial

    def _project(self, name: str) -> _Project:
        key = _norm(name)
        if key not in self.projects:
            self.projects[key] = _Project(display=name)
            self._entry(name, None, "create")
        return self.projects[key]

    def upload(
        self,
        path: Path,
        name: str,
        version: str,
        *,
        advertised_sha256: str | None = None,
        pep740: bool = False,
        provenance: str | None = None,
    ) -> WFile:
        with self._lock:
            project = self._project(name)
            wfile = WFile(
                name,
                version,
                path.name,
                path.read_bytes(),
                datetime.now(UTC),
                advertised_sha256=advertised_sha256,
                pep740=pep740,
                provenance=provenance,
            )
            if version not in project.versions:
                project.versions.append(version)
                self._entry(project.display, version, "new release")
            project.files.append(wfile)
            pyver = "py3" if path.name.endswith(".whl") else "source"
            self._entry(project.display, version, f"add {pyver} file {path.name}")
            return wfile

    def yank(self, name: str, version: str, reason: str = "") -> None:
        with self._lock:
            project = self.projects[_norm(name)]
            for wfile in project.files:
                if wfile.version == version:
                    wfile.yanked = reason or True
            self._entry(project.display, version, "yank release")

    def remove_file(self, name: str, filename: str) -> None:
        with self._lock:
            project = self.projects[_norm(name)]
            target = next(f for f in project.files if f.filename == filename)
            project.files.remove(target)
            self._entry(project.display, target.version, f"remove file {filename}")

    def replace_file(self, name: str, path: Path) -> None:
        """Same filename, new bytes (a private index with overwrites on)."""
        with self._lock:
            project = self.projects[_norm(name)]
            target = next(f for f in project.files if f.filename == path.name)
            target.data = path.read_bytes()
            self._entry(project.display, target.version, f"remove file {path.name}")
            self._entry(project.display, target.version, f"add source file {path.name}")

    def remove_release(self, name: str, version: str) -> None:
        with self._lock:
            project = self.projects[_norm(name)]
            project.files = [f for f in project.files if f.version != version]
            project.versions.remove(version)
            self._entry(project.display, version, "remove release")

    def noise(self, count: int) -> None:
        """Journal entries for projects nobody watches (the real journal is mostly those)."""
        with self._lock:
            for i in range(count):
                self._project(f"unrelated-{i % 7}")

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    @property
    def last_serial(self) -> int:
        return len(self.journal)

    # ------------------------------------------------------------------ serving side
    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.route == route:
                    return self.faults.pop(i)
        return None

    def _page_json(self, key: str) -> bytes:
        project = self.projects[key]
        doc = {
            "meta": {"api-version": "1.1", "_last-serial": project.last_serial},
            "name": key,
            "versions": list(project.versions),
            "files": [
                {
                    "filename": f.filename,
                    "url": f"../../packages/{f.filename}",
                    "hashes": {"sha256": f.sha256},
                    "size": len(f.data),
                    "upload-time": f.uploaded.isoformat().replace("+00:00", "Z"),
                    "yanked": f.yanked,
                    **({"provenance": f.provenance} if f.pep740 else {}),
                }
                for f in project.files
            ],
        }
        return json.dumps(doc).encode()

    async def _maybe_fault(
        self, request: web.Request, route: str, body: bytes
    ) -> web.StreamResponse | None:
        fault = self._take_fault(route)
        return None if fault is None else await self._apply(fault, request, body)

    async def _apply(
        self, fault: Fault, request: web.Request, body: bytes
    ) -> web.StreamResponse | None:
        if fault.kind in ("500", "503"):
            return web.Response(status=int(fault.kind), text="injected")
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind == "truncate":
            response = web.StreamResponse(headers={"Content-Length": str(len(body))})
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            # Drop the connection mid-body: the client sees a short read.
            if request.transport is not None:
                request.transport.close()
            return response
        if fault.kind == "xmlrpc-fault":
            payload = xmlrpc.client.dumps(
                xmlrpc.client.Fault(-32500, "HTTPTooManyRequests: injected"), methodresponse=True
            )
            return web.Response(body=payload.encode(), content_type="text/xml")
        return None

    async def _xmlrpc(self, request: web.Request) -> web.StreamResponse:
        self.calls["xmlrpc"] += 1
        params, method = xmlrpc.client.loads(await request.read())
        with self._lock:
            if method == "changelog_last_serial":
                result: object = self.last_serial
            elif method == "changelog_since_serial":
                since = int(params[0])
                result = [list(e) for e in self.journal if int(e[4]) > since][: self.batch_limit]  # type: ignore[call-overload]
            else:
                result = None
        if result is None:
            body = xmlrpc.client.dumps(
                xmlrpc.client.Fault(1, f"no method {method}"), methodresponse=True
            ).encode()
        else:
            body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True).encode()
        faulted = await self._maybe_fault(request, "xmlrpc", body)
        return faulted or web.Response(body=body, content_type="text/xml")

    async def _simple(self, request: web.Request) -> web.StreamResponse:
        self.calls["simple"] += 1
        key = _norm(request.match_info["name"])
        with self._lock:
            self.page_hits[key] = self.page_hits.get(key, 0) + 1
            if key not in self.projects:
                return web.Response(status=404, text="not found")
            body = self._page_json(key)
            history = self._history.get(key, [])
            serial = self.projects[key].last_serial
        fault = self._take_fault("simple")
        if fault is not None and fault.kind == "stale" and len(history) >= 2:
            # A CDN copy from before the latest change: older files, older serial.
            body = history[-2]
            serial = json.loads(body)["meta"]["_last-serial"]
        elif fault is not None:
            faulted = await self._apply(fault, request, body)
            if faulted is not None:
                return faulted
        headers = {"X-PyPI-Last-Serial": str(serial)}
        if "application/vnd.pypi.simple.v1+json" in request.headers.get("Accept", ""):
            return web.Response(
                body=body, headers=headers, content_type="application/vnd.pypi.simple.v1+json"
            )
        doc = json.loads(body)
        links = "".join(
            f'<a href="{f["url"]}#sha256={f["hashes"]["sha256"]}">{f["filename"]}</a><br/>\n'
            for f in doc["files"]
        )
        html = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n<!--SERIAL {serial}-->\n"
        return web.Response(text=html, headers=headers, content_type="text/html")

    async def _json_api(self, request: web.Request) -> web.StreamResponse:
        """A trimmed `/pypi/<name>/json` (info, last_serial, releases with digests, `ownership`)."""
        key = _norm(request.match_info["name"])
        with self._lock:
            if key not in self.projects:
                return web.Response(status=404)
            project = self.projects[key]
            releases = {
                v: [
                    {"filename": f.filename, "digests": {"sha256": f.sha256}, "size": len(f.data)}
                    for f in project.files
                    if f.version == v
                ]
                for v in project.versions
            }
            doc = {
                "info": {"name": project.display, "version": project.versions[-1]},
                "last_serial": project.last_serial,
                "releases": releases,
            }
            if key in self.owners:
                doc["ownership"] = {
                    "roles": [{"role": "Owner", "user": u} for u in self.owners[key]],
                    "organization": None,
                }
        return web.json_response(doc, headers={"X-PyPI-Last-Serial": str(project.last_serial)})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.calls["files"] += 1
        filename = request.match_info["filename"]
        with self._lock:
            found = next(
                (f for p in self.projects.values() for f in p.files if f.filename == filename), None
            )
        if found is None:
            return web.Response(status=404)
        faulted = await self._maybe_fault(request, "files", found.data)
        return faulted or web.Response(body=found.data, content_type="application/octet-stream")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        ready = threading.Event()
        port = free_port()

        async def _serve() -> None:
            app = web.Application()
            app.router.add_post("/pypi", self._xmlrpc)
            app.router.add_get("/simple/{name}/", self._simple)
            app.router.add_get("/packages/{filename}", self._file)
            app.router.add_get("/pypi/{name}/json", self._json_api)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", port).start()
            ready.set()

        def _run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(_serve())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=_run, name="warehouse", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("warehouse stand-in did not start")
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @property
    def simple_url(self) -> str:
        return f"{self.url}/simple/"

    @property
    def xmlrpc_url(self) -> str:
        return f"{self.url}/pypi"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@contextmanager
def run_warehouse(batch_limit: int = 50_000) -> Iterator[Warehouse]:
    warehouse = Warehouse(batch_limit)
    warehouse.start()
    try:
        yield warehouse
    finally:
        warehouse.stop()


# --------------------------------------------------------------------------- pytest fixtures
# Imported by tests/integration/conftest.py so every integration module shares one server each.


@pytest.fixture(scope="session")
def devpi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devpi]:
    with run_devpi(tmp_path_factory.mktemp("devpi")) as server:
        yield server


@pytest.fixture(scope="session")
def pypiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PypiServer]:
    with run_pypiserver(tmp_path_factory.mktemp("pypiserver")) as server:
        yield server


@pytest.fixture
def warehouse() -> Iterator[Warehouse]:
    with run_warehouse() as server:
        yield server
