"""A tiny npm registry on loopback at a fixed address, serving byte-identical tarballs every run.

For the migration test: tests/data/state-wave1.sqlite was written by an older watcher that
downloaded from this registry, so the releases in it name these URLs and these digests. The port
is outside the ephemeral range (no `free_port()` lands on it); a second run on the machine using it
at the same moment is waited for, not failed on.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field

from aiohttp import web

PORT = 28931
URL = f"http://127.0.0.1:{PORT}"
PUBLISHED_AT = "2026-06-01T12:00:00.000Z"


def _leaky(tag: str) -> dict[str, bytes]:
    """A build shipping a source map that embeds its original sources (critical)."""
    smap = {
        "version": 3,
        "file": "index.js",
        "sources": [f"../src/{tag}/index.ts", f"../src/{tag}/internal.ts"],
        "sourcesContent": ["export const a = 1;\n", "export function b() { return 2; }\n"],
        "mappings": "AAAA",
    }
    return {
        f"dist-{tag}/index.js": b"module.exports=1;\n//# sourceMappingURL=index.js.map\n",
        f"dist-{tag}/index.js.map": json.dumps(smap, sort_keys=True).encode(),
    }


def _clean(version: str) -> dict[str, bytes]:
    return {"index.js": f"module.exports = '{version}';\n".encode()}


# (name, version) -> files, in publish order
PACKAGES: dict[tuple[str, str], dict[str, bytes]] = {
    ("legacy-app", "1.0.0"): _clean("1.0.0"),
    ("legacy-lib", "3.0.0"): _clean("3.0.0"),
    ("legacy-app", "1.0.1"): _leaky("a"),
    ("legacy-lib", "3.0.1"): _leaky("b"),
    ("legacy-app", "1.0.2"): _leaky("c"),
    ("legacy-lib", "3.0.2"): _clean("3.0.2"),
}


def tarball(name: str, version: str) -> bytes:
    """Deterministic: fixed member order, times and owners; gzip without a timestamp, stored
    blocks (level 0), so the bytes do not depend on the zlib build."""
    members = {
        "package/package.json": json.dumps(
            {"name": name, "version": version, "license": "MIT", "main": "index.js"},
            sort_keys=True,
        ).encode(),
        **{f"package/{path}": data for path, data in PACKAGES[(name, version)].items()},
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 499162500, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=0, mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def tarball_url(name: str, version: str) -> str:
    return f"{URL}/{name}/-/{name}-{version}.tgz"


def packument(name: str, versions: list[str]) -> dict[str, object]:
    docs = {}
    for version in versions:
        data = tarball(name, version)
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        docs[version] = {
            "name": name,
            "version": version,
            "dist": {
                "tarball": tarball_url(name, version),
                "integrity": integrity,
                "shasum": hashlib.sha1(data).hexdigest(),
            },
        }
    return {
        "name": name,
        "versions": docs,
        "time": {v: PUBLISHED_AT for v in versions},
        "dist-tags": {"latest": versions[-1]} if versions else {},
    }


@dataclass
class LegacyRegistry:
    """Serves the packuments of the versions in `published` and every tarball in PACKAGES, but
    answers 503 for the tarballs in `failing`."""

    published: set[tuple[str, str]] = field(default_factory=set)
    failing: set[tuple[str, str]] = field(default_factory=set)
    downloads: list[tuple[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def _packument(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        versions = [v for (n, v) in PACKAGES if n == name and (n, v) in self.published]
        if not versions:
            return web.json_response({"error": "not_found"}, status=404)
        return web.json_response(packument(name, versions))

    async def _tarball(self, request: web.Request) -> web.Response:
        name, file = request.match_info["name"], request.match_info["file"]
        version = file.removeprefix(f"{name}-").removesuffix(".tgz")
        if (name, version) not in PACKAGES:
            return web.Response(status=404)
        self.downloads.append((name, version))
        if (name, version) in self.failing:
            return web.Response(status=503, text="try again later")
        return web.Response(body=tarball(name, version), content_type="application/octet-stream")

    async def start(self, within: float = 120.0) -> LegacyRegistry:
        app = web.Application()
        app.router.add_get("/{name}/-/{file}", self._tarball)
        app.router.add_get("/{name}", self._packument)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                await web.TCPSite(self._runner, "127.0.0.1", PORT).start()
                return self
            except OSError:  # another run holds the port for a few seconds: wait for it
                if loop.time() > deadline:
                    await self._runner.cleanup()
                    raise
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
