"""The service's own scratch space: downloads in progress and what the scan pool leaves behind.

A killed run (`kill -9`, OOM) runs no clean-up, so the next start removes what earlier runs left,
and only that: each run works in `ROOT/run-XXXX` and holds an exclusive `flock` on
`ROOT/run-XXXX.lock` while it lives, so another service sharing the root keeps its own. Paths a
run owns outside the root (multiprocessing's `pymp-*` directory, whose socket path must stay short)
are recorded in `run-XXXX/owned` and removed with it. Nothing else in a shared temporary directory
is ever touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_OWNED = "owned"  # inside a run directory: one path per line, removed with the run


@dataclass(slots=True)
class Scratch:
    """One run's scratch directory. `Scratch.open(root)` cleans up after dead runs first;
    `close()` removes this run's directory and what it recorded."""

    root: Path
    path: Path
    _lock_fd: int

    @classmethod
    def open(cls, root: Path) -> Scratch:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        removed = remove_stale(root)
        if removed:
            log.info("scratch_cleaned", root=str(root), runs=removed)
        while True:
            name = f"run-{secrets.token_hex(4)}"
            lock_path = root / f"{name}.lock"
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # a cleaner may have unlinked the file between create and lock: start again
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        path = root / name
        path.mkdir(mode=0o700)
        return cls(root, path, fd)

    def own(self, outside: Path) -> None:
        """Record a path this run created outside the root, so a later start removes it when
        this run dies without cleaning up."""
        with (self.path / _OWNED).open("a") as fh:
            fh.write(f"{outside}\n")

    def close(self) -> None:
        """Remove this run's directory; what it recorded outside is its creator's to remove on
        a clean exit (multiprocessing does it for its pymp-* directory)."""
        shutil.rmtree(self.path, ignore_errors=True)
        lock_path = self.root / f"{self.path.name}.lock"
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        os.close(self._lock_fd)


def remove_stale(root: Path) -> int:
    """Remove the run directories under `root` whose lock no live process holds; return how many."""
    removed = 0
    for lock_path in sorted(root.glob("run-*.lock")):
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run
            _remove_run(root / lock_path.name.removesuffix(".lock"))
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            removed += 1
        finally:
            os.close(fd)
    # a run directory without its lock file: its run died between the two removals above
    for path in root.glob("run-*"):
        if path.is_dir() and not (root / f"{path.name}.lock").exists():
            _remove_run(path)
            removed += 1
    return removed


def _remove_run(path: Path) -> None:
    owned = path / _OWNED
    with contextlib.suppress(FileNotFoundError):
        for line in owned.read_text().splitlines():
            if line:
                shutil.rmtree(line, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)
