"""What every local test server needs, whatever registry it speaks: tools installed once under a
lock, a free loopback port, a server process started, awaited and stopped, and small JSON calls.
Used by npm_servers.py, pypi_servers.py and the bench scripts."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def pins_marker(directory: Path, pins: str) -> Path:
    """The file that says `directory` holds exactly `pins` (changed pins install again)."""
    return directory / (".pins-" + hashlib.sha256(pins.encode()).hexdigest()[:12])


def install_once(marker: Path, lock: Path, install: Callable[[], None]) -> None:
    """Run `install` unless `marker` exists, under an exclusive file lock so parallel sessions
    install once; `marker` is written only after `install` returned."""
    if marker.exists():
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not marker.exists():
            install()
            marker.touch()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until `url` answers 2xx; fails at once when the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if 200 <= response.status < 300:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serving(
    argv: list[str],
    ready_url: str,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process that answers `ready_url`, stopped on exit. Its output goes to `log`, or
    nowhere."""
    with open(log or os.devnull, "wb") as sink:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_http(ready_url, proc, timeout)
            yield proc
        finally:
            stop(proc)


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    """One JSON request; the decoded answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"content-type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)
