"""Safe streaming reader for npm tarballs, sdists (.tar.gz/.tar.bz2/.tar.xz/.zip) and wheels.

Nothing is ever written to disk. A tar is decompressed by our own bounded reader (`inflate`) so that
a gzip bomb is stopped by its ratio before it is inflated; a zip's central directory is checked
(sizes, ratios, overlapping entries) before any member is read (`ziplayer`). Every oddity becomes an
`archive-anomaly` finding (`layer`) and the reader goes on with what it can read, or stops cleanly.
This module opens the outer file, walks into nested archives and says which of them are packages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from watcher.errors import ArchiveError
from watcher.model import Finding, Member, MemberKind, Severity
from watcher.scanning.layer import Layer, anomaly
from watcher.scanning.limits import (
    MAX_DECLARED_SIZE,
    ArchiveLimits,
    ArchiveTree,
    NestedPackage,
    declared_size,
)
from watcher.scanning.tarlayer import tar_members
from watcher.scanning.ziplayer import zip_members

__all__ = [
    "MAX_DECLARED_SIZE",
    "ArchiveLimits",
    "ArchiveReader",
    "NestedPackage",
    "declared_size",
    "detect_format",
    "sniff_format",
]


def detect_format(path: Path) -> str:
    """`gzip`, `bz2`, `xz`, `tar` or `zip` from the magic bytes; ArchiveError otherwise."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ArchiveError(f"{path}: is a directory, not an archive") from None
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot read ({exc.strerror})") from None
    found = sniff_format(head)
    if found is None:
        raise ArchiveError(f"{path}: not a tar, tar.gz, tgz, zip or wheel archive")
    return found


def sniff_format(head: bytes | bytearray) -> str | None:
    """`gzip`, `bz2`, `xz`, `tar` or `zip` from the first bytes; None for anything else."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _nested_format(data: bytes | bytearray) -> str | None:
    """Stricter than `sniff_format`: a binary that happens to start with `BZh` is not opened."""
    found = sniff_format(data[:512])
    if found == "gzip" and data[2:3] != b"\x08":
        return None
    if found == "bz2" and not (data[3:4].isdigit() and data[4:10] == b"1AY&SY"):
        return None
    if found == "zip" and len(data) < 22:
        return None
    return found


class ArchiveReader:
    """Iterate an archive's members once, and the members of archives nested in it (their paths
    joined with `!`: `package/acme-1.2.2.tgz!package/.env`), up to `limits.max_nesting` levels.
    Anomalies collect in `anomalies`; byte counts in `bytes_read` (inflated, all layers) for the
    report. A nested archive is read from the bytes its outer layer already inflated: each byte is
    inflated once per layer it is in, never re-read."""

    def __init__(self, path: Path, limits: ArchiveLimits | None = None) -> None:
        self.path = path
        self.limits = limits or ArchiveLimits()
        self.format = detect_format(path)
        self._layer = Layer(
            path=path,
            limits=self.limits,
            format=self.format,
            tree=ArchiveTree(compressed=_file_size(path)),
        )

    @property
    def anomalies(self) -> list[Finding]:
        return self._layer.anomalies

    @property
    def bytes_read(self) -> int:
        return self._layer.bytes_read

    @property
    def sha256(self) -> str:
        """Of the archive file; known once `members()` is exhausted."""
        return self._layer.sha256

    @property
    def nested_packages(self) -> list[NestedPackage]:
        return self._layer.tree.nested_packages

    def members(self) -> Iterator[Member]:
        layer = self._layer
        yield from _walk(layer)
        layer.bytes_read = layer.tree.inflated


def _walk(layer: Layer) -> Iterator[Member]:
    read = zip_members if layer.format == "zip" else tar_members
    for member in read(layer):
        yield member
        if member.kind is MemberKind.FILE and member.data is not None:
            fmt = _nested_format(member.data)
            if fmt is not None:
                yield from _open_nested(layer, member, fmt)
        if layer.tree.stopped:
            break


def _open_nested(outer: Layer, member: Member, fmt: str) -> Iterator[Member]:
    limits = outer.limits
    if outer.depth >= limits.max_nesting:
        outer.anomalies.append(
            anomaly(
                "archive-nesting-limit",
                Severity.LOW,
                member.path,
                f"an archive nested more than {limits.max_nesting} levels deep; it was not opened",
            )
        )
        return
    layer = outer.nested(member, fmt)
    npm = pypi = False
    for inner in _walk(layer):
        name = inner.path[len(layer.prefix) :]
        if "!" not in name:
            npm = npm or name == "package/package.json"
            pypi = pypi or _is_python_metadata(name)
        yield inner
    if npm or pypi:
        outer.tree.nested_packages.append(NestedPackage(member.path, "npm" if npm else "pypi"))


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _is_python_metadata(name: str) -> bool:
    """An sdist's `<name>-<version>/PKG-INFO` or a wheel's `<name>.dist-info/METADATA`."""
    parts = name.split("/")
    return len(parts) == 2 and (
        parts[1] == "PKG-INFO" or (parts[1] == "METADATA" and parts[0].endswith(".dist-info"))
    )
