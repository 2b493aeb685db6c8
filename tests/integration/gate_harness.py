"""What the gate-approval tests share: `npm pack` of a fresh package, `npm publish` of that file,
`watcher approve` as a subprocess, and the opened incidents a webhook receiver got."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from npm_servers import Verdaccio

from tests.receivers import Receiver


async def approve(
    target: Path | str, server: str, token: str | None, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WATCHER_API_TOKEN"}
    if token is not None:
        env["WATCHER_API_TOKEN"] = token
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "watcher.cli", "approve", str(target), "--server", server, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def pack(verdaccio: Verdaccio, tmp_path: Path, name: str, version: str, body: str) -> Path:
    """`npm pack` of a fresh package directory: the file CI would publish."""
    pkg = tmp_path / "src" / f"{name}-{version}-{secrets.token_hex(3)}"
    pkg.mkdir(parents=True)
    manifest = {"name": name, "version": version, "license": "MIT", "main": "index.js"}
    (pkg / "package.json").write_text(json.dumps(manifest))
    (pkg / "index.js").write_text(body)
    out = pkg / "dist"
    out.mkdir()
    done = verdaccio.npm("pack", "--pack-destination", str(out), cwd=pkg)
    assert done.returncode == 0, done.stderr
    [tgz] = out.glob("*.tgz")
    return tgz


def npm_publish(verdaccio: Verdaccio, tgz: Path) -> None:
    done = verdaccio.npm("publish", str(tgz), "--access", "public", cwd=tgz.parent)
    assert done.returncode == 0, done.stderr


def opened(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json()["data"] for r in receiver.requests if r.json()["type"] == "incident.opened"]
