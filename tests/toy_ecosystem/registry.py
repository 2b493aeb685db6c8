"""A small crates-like registry on aiohttp: `GET /index/<name>.json` lists every version with its
file's path and sha256, `GET /files/<file>` serves the tarball. Packages are built at test time."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_crate(name: str, version: str, files: dict[str, bytes]) -> bytes:
    """A `.crate`: a gzipped tar of `<name>-<version>/…` with its manifest first."""
    buffer = io.BytesIO()
    members = {"Cargo.toml": f'[package]\nname = "{name}"\nversion = "{version}"\n'.encode()}
    members.update(files)
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, data in members.items():
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class ToyRegistry:
    port: int = field(default_factory=free_port)
    crates: dict[str, dict[str, bytes]] = field(default_factory=dict)  # name → version → file
    published: dict[tuple[str, str], str] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def publish(self, name: str, version: str, files: dict[str, bytes] | None = None) -> None:
        self.crates.setdefault(name, {})[version] = build_crate(name, version, files or {})
        self.published[(name, version)] = datetime.now(UTC).isoformat()

    def remove(self, name: str, version: str) -> None:
        self.crates.get(name, {}).pop(version, None)

    async def start(self) -> ToyRegistry:
        app = web.Application()
        app.router.add_get("/index/{name}.json", self._index)
        app.router.add_get("/files/{file}", self._file)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _index(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.crates:
            return web.json_response({"errors": [{"detail": "not found"}]}, status=404)
        versions = [
            {
                "num": version,
                "dl_path": f"/files/{name}-{version}.crate",
                "checksum": hashlib.sha256(data).hexdigest(),
                "created_at": self.published[(name, version)],
            }
            for version, data in self.crates[name].items()
        ]
        return web.json_response({"name": name, "versions": versions})

    async def _file(self, request: web.Request) -> web.Response:
        stem = request.match_info["file"].removesuffix(".crate")
        for name, versions in self.crates.items():
            for version, data in versions.items():
                if f"{name}-{version}" == stem:
                    return web.Response(body=data, content_type="application/gzip")
        return web.Response(status=404)
