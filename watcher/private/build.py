"""A private source tree → a fingerprint index (`watcher fingerprint build`)."""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from watcher.errors import FingerprintError
from watcher.private import normalise
from watcher.private.index import IndexHeader, IndexParams, PrivateFile, write_index
from watcher.private.keys import FingerprintKey

# Never private code of the owner's: dependencies, build output caches, VCS data.
DEFAULT_EXCLUDES = (
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "bower_components",
    ".venv",
    "venv",
    "__pycache__",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
)
MAX_FILE_BYTES = 4 * 1024 * 1024  # bigger files are generated or data, not source


@dataclass(frozen=True, slots=True)
class BuildResult:
    header: IndexHeader
    size: int  # bytes of the index file
    skipped: int  # binary, unreadable or oversized files left out
    common_lines: int  # distinct lines left out as common across files


def build_index(
    roots: Sequence[Path],
    out: Path,
    key: FingerprintKey,
    *,
    name: str | None = None,
    excludes: Sequence[str] = (),
    winnowing: bool = True,
) -> BuildResult:
    for root in roots:
        if not root.is_dir():
            raise FingerprintError(f"{root}: not a directory")
    line_hash = key.line_hasher()
    winnow_hash = key.winnow_hasher()
    files: list[PrivateFile] = []
    skipped = 0
    for path in _walk(roots, (*DEFAULT_EXCLUDES, *excludes)):
        data = _read_text(path)
        if data is None:
            skipped += 1
            continue
        squeezed = normalise.squeezed(data)
        files.append(
            PrivateFile(
                file_hash=key.file_hash(normalise.whole(squeezed)),
                lines={line_hash(line) for line in normalise.distinct_lines(squeezed)},
                winnow=normalise.winnow(data, winnow_hash) if winnowing else set(),
            )
        )
    if not files:
        raise FingerprintError("no text files found under " + ", ".join(map(str, roots)))
    common_files = max(4, len(files) // 100)
    common = _drop_common((f.lines for f in files), common_files)
    _drop_common((f.winnow for f in files), common_files)
    header = IndexHeader(
        name=name or roots[0].resolve().name,
        key_id=key.id,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        params=IndexParams(
            line_floor=normalise.LINE_FLOOR,
            common_files=common_files,
            winnow_k=normalise.WINNOW_K if winnowing else 0,
            winnow_w=normalise.WINNOW_W if winnowing else 0,
        ),
        files=len(files),
        lines=sum(len(f.lines) for f in files),
        winnow=sum(len(f.winnow) for f in files),
    )
    size = write_index(out, header, files)
    return BuildResult(header, size, skipped, common)


def _drop_common(sets: Iterable[set[bytes]], limit: int) -> int:
    """Remove hashes found in more than `limit` files (imports, braces, licence headers)."""
    sets = list(sets)
    counts = Counter(h for s in sets for h in s)
    common = {h for h, n in counts.items() if n > limit}
    for each in sets:
        each.difference_update(common)
    return len(common)


def _walk(roots: Sequence[Path], excludes: Sequence[str]) -> Iterator[Path]:
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            dirnames[:] = sorted(
                d for d in dirnames if not _excluded(_rel(rel_dir, d), d, excludes)
            )
            for filename in sorted(filenames):
                if not _excluded(_rel(rel_dir, filename), filename, excludes):
                    path = Path(dirpath, filename)
                    if path.is_file() and not path.is_symlink():
                        yield path


def _rel(directory: str, name: str) -> str:
    return name if directory == "." else f"{directory}/{name}"


def _excluded(relative: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p) for p in patterns)


def _read_text(path: Path) -> bytes | None:
    """A file's bytes when it is text (UTF-8, no NUL), else None."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\x00" in data[:8192]:
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return data
