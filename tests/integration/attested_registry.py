"""A loopback npm registry stand-in that serves what provenance needs in its documented shapes:
the packument (`versions[v].dist.{tarball, integrity, shasum, attestations}`, `_npmUser`, `time`,
`dist-tags`), the tarballs, and the attestations endpoint the npm CLI reads
(`/-/npm/v1/attestations/<name>@<version>` → `{"attestations": [{"predicateType", "bundle":
{"mediaType", "verificationMaterial", "dsseEnvelope": {"payload", "payloadType", "signatures"}}}]}`,
the payload a base64 in-toto statement with SLSA v1 `buildDefinition.externalParameters.workflow`).
A test adds versions and attaches attestations whenever it likes (late attestations)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

SLSA_V1 = "https://slsa.dev/provenance/v1"


def slsa_bundle(
    name: str, version: str, tgz: bytes, repository: str, workflow: str
) -> dict[str, Any]:
    """One attestation as the registry serves it (signature and certificate are placeholders:
    the watcher reads bundles, it does not verify them)."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {
                "name": f"pkg:npm/{name}@{version}",
                "digest": {"sha512": hashlib.sha512(tgz).hexdigest()},
            }
        ],
        "predicateType": SLSA_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                "externalParameters": {
                    "workflow": {
                        "ref": f"refs/tags/v{version}",
                        "repository": repository,
                        "path": workflow,
                    }
                },
                "internalParameters": {"github": {"event_name": "push"}},
                "resolvedDependencies": [{"uri": f"git+{repository}@refs/tags/v{version}"}],
            },
            "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}},
        },
    }
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    return {
        "predicateType": SLSA_V1,
        "bundle": {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"certificate": {"rawBytes": "MIIB"}, "tlogEntries": []},
            "dsseEnvelope": {
                "payload": payload,
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"sig": "MEUC"}],
            },
        },
    }


@dataclass
class AttestedRegistry:
    url: str = ""
    versions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    times: dict[str, dict[str, str]] = field(default_factory=dict)
    tarballs: dict[str, bytes] = field(default_factory=dict)
    attestations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "name@v" → list

    def add(
        self,
        name: str,
        version: str,
        *,
        publisher: dict[str, Any] | None = None,
        identity: tuple[str, str] | None = None,
        code: bytes = b"module.exports = 1;\n",
    ) -> bytes:
        """Publish `name@version`; with `identity` (repository, workflow) it is attested now."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as archive:
            for member, data in (
                ("package/package.json", json.dumps({"name": name, "version": version}).encode()),
                ("package/index.js", code),
            ):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        tgz = buf.getvalue()
        filename = f"{name}-{version}.tgz"
        self.tarballs[filename] = tgz
        doc: dict[str, Any] = {
            "name": name,
            "version": version,
            "dist": {
                "tarball": f"{self.url}/{name}/-/{filename}",
                "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
                "shasum": hashlib.sha1(tgz).hexdigest(),
            },
            "_npmUser": publisher or {"name": "GitHub Actions", "email": "ci@example.invalid"},
        }
        self.versions.setdefault(name, {})[version] = doc
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.times.setdefault(name, {})[version] = stamp
        if identity is not None:
            self.attach(name, version, *identity)
        return tgz

    def attach(self, name: str, version: str, repository: str, workflow: str) -> None:
        """The version's attestations appear: in its document and at the endpoint."""
        doc = self.versions[name][version]
        tgz = self.tarballs[f"{name}-{version}.tgz"]
        doc["dist"]["attestations"] = {
            "url": f"{self.url}/-/npm/v1/attestations/{name}@{version}",
            "provenance": {"predicateType": SLSA_V1},
        }
        self.attestations[f"{name}@{version}"] = [
            slsa_bundle(name, version, tgz, repository, workflow)
        ]

    def packument(self, name: str) -> dict[str, Any]:
        versions = self.versions[name]
        latest = list(versions)[-1]
        times = dict(self.times[name])
        times.update(created=min(times.values()), modified=max(times.values()))
        return {"name": name, "dist-tags": {"latest": latest}, "versions": versions, "time": times}


@asynccontextmanager
async def attested_registry() -> AsyncIterator[AttestedRegistry]:
    registry = AttestedRegistry()

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/-/npm/v1/attestations/"):
            key = (
                path.removeprefix("/-/npm/v1/attestations/").replace("%2f", "/").replace("%2F", "/")
            )
            found = registry.attestations.get(key)
            if found is None:
                return web.json_response({"error": "Not found"}, status=404)
            return web.json_response({"attestations": found})
        if "/-/" in path:
            blob = registry.tarballs.get(path.rsplit("/", 1)[-1])
            if blob is None:
                return web.Response(status=404)
            return web.Response(body=blob, content_type="application/octet-stream")
        name = path.lstrip("/").replace("%2f", "/").replace("%2F", "/")
        if name not in registry.versions:
            return web.json_response({"error": "not_found"}, status=404)
        return web.json_response(registry.packument(name))

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    registry.url = f"http://127.0.0.1:{port}"
    try:
        yield registry
    finally:
        await runner.cleanup()
