"""Safe streaming reader for npm tarballs, sdists (.tar.gz/.tar.bz2/.tar.xz/.zip) and wheels.

Nothing is ever written to disk. A tar is decompressed by our own bounded reader so that a gzip bomb
is stopped by its ratio before it is inflated; a zip's central directory is checked (sizes, ratios,
overlapping entries) before any member is read. Every oddity becomes an `archive-anomaly` finding and
the reader goes on with what it can read, or stops cleanly.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import re
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import IO, Protocol, cast

from watcher.errors import ArchiveError
from watcher.model import Category, Finding, Member, MemberKind, Severity
from watcher.scanning.tarstream import (
    ChunkReader,
    TarEntry,
    TarFormatError,
    entries,
    looks_like_tar,
)

_inflate: ModuleType
try:  # ISA-L's inflate is about twice zlib's speed, same bytes; zlib where no wheel exists
    from isal import isal_zlib

    _inflate = isal_zlib
except ImportError:  # pragma: no cover - exercised where the wheel is missing
    _inflate = zlib
_INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _inflate.error)
_TAR_ERRORS: tuple[type[BaseException], ...] = (
    TarFormatError,
    EOFError,
    OSError,
    lzma.LZMAError,
    *_INFLATE_ERRORS,
)

_MiB = 1024 * 1024
_CHUNK = _MiB  # compressed bytes read at a time
_INFLATED_CHUNK = 4 * _MiB  # at most this much is inflated before the limits are checked again


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_member_bytes: int = 256 * _MiB  # a larger member is listed but its content is not read
    max_total_bytes: int = 2048 * _MiB  # uncompressed bytes read from one archive
    max_members: int = 100_000
    max_ratio: float = 200.0  # uncompressed / compressed
    ratio_floor_bytes: int = 16 * _MiB  # the ratio is enforced once this much was inflated
    max_nesting: int = 3  # archives inside archives are opened this many levels deep


@dataclass(slots=True)
class _Tree:
    """What one archive and every archive nested in it share: the outer limits apply to the whole
    tree (members, inflated bytes, ratio to the outer file's size)."""

    compressed: int  # bytes of the outer archive file
    members: int = 0
    inflated: int = 0
    stopped: bool = False  # a tree-wide limit was hit: every layer stops
    nested_packages: list[NestedPackage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NestedPackage:
    """A nested archive that is itself a package (an earlier `npm pack`, a wheel, an sdist)."""

    path: str  # of the nested archive, through the layers
    ecosystem: str  # "npm" or "pypi"


# What zipfile raises on damaged input: a bad header can claim an unknown zip version or
# compression method (NotImplementedError), or a name that does not decode.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    struct.error,
    lzma.LZMAError,
)


class _LimitExceeded(Exception):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    @property
    def needs_input(self) -> bool: ...
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _ZlibAdapter:
    """zlib's (or ISA-L's) decompressobj with the interface of bz2/lzma's (max_length,
    needs_input)."""

    def __init__(self) -> None:
        self._inner = _inflate.decompressobj(wbits=31)

    @property
    def eof(self) -> bool:
        return cast(bool, self._inner.eof)

    @property
    def unused_data(self) -> bytes:
        return cast(bytes, self._inner.unused_data)

    @property
    def needs_input(self) -> bool:
        return not self._inner.unconsumed_tail

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if not data:
            data = self._inner.unconsumed_tail
        return cast(bytes, self._inner.decompress(data, max(max_length, 0)))


def _new_decompressor(kind: str) -> _Decompressor:
    if kind == "gzip":
        return _ZlibAdapter()
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor()
    raise ValueError(kind)


class _BoundedInflater:
    """Chunks of decompressed bytes that refuse to inflate past the limits."""

    def __init__(self, raw: IO[bytes], kind: str, limits: ArchiveLimits, tree: _Tree) -> None:
        self._raw = raw
        self._kind = kind
        self._limits = limits
        self._tree = tree
        self._decomp: _Decompressor | None = _new_decompressor(kind) if kind != "tar" else None
        self.compressed_in = 0
        self.inflated_out = 0
        self.truncated = False
        self._raw_eof = False
        self.raw_sha256 = hashlib.sha256()  # of the archive file itself, read once

    def next_chunk(self) -> bytes:
        """The next inflated bytes; b"" at the end of the stream."""
        return self._read_some(_INFLATED_CHUNK)

    def _read_some(self, size: int) -> bytes:
        if self._decomp is None:
            data = self._read_raw(size)
            self._account(len(data))
            return data
        while True:
            decomp = self._decomp
            if decomp.eof:
                rest = decomp.unused_data
                if not rest:
                    rest = self._read_raw(_CHUNK)
                if not rest:
                    return b""
                # Concatenated members (gzip allows them): start a new decompressor.
                self._decomp = decomp = _new_decompressor(self._kind)
                out = decomp.decompress(rest, size)
            elif decomp.needs_input:
                chunk = b"" if self._raw_eof else self._read_raw(_CHUNK)
                if not chunk:
                    self._raw_eof = True
                    self.truncated = True
                    return b""
                out = decomp.decompress(chunk, size)
            else:
                out = decomp.decompress(b"", size)
            if out:
                self._account(len(out))
                return out

    def _read_raw(self, size: int) -> bytes:
        data = self._raw.read(size)
        self.compressed_in += len(data)
        self.raw_sha256.update(data)
        return data

    def drain(self) -> None:
        """Hash what the archive reader left unread (end padding, or all of it after a stop)."""
        while self._read_raw(_CHUNK):
            pass

    def _account(self, produced: int) -> None:
        self.inflated_out += produced
        tree = self._tree
        tree.inflated += produced
        limits = self._limits
        if tree.inflated > limits.max_total_bytes:
            tree.stopped = True
            raise _LimitExceeded(
                "archive-size-limit",
                f"archive inflates past the limit of {limits.max_total_bytes:,} bytes; "
                "reading stopped",
            )
        if (
            self.inflated_out > limits.ratio_floor_bytes
            and self.inflated_out > limits.max_ratio * max(self.compressed_in, 1)
        ):
            raise _LimitExceeded(
                "archive-compression-bomb",
                f"compression ratio above {limits.max_ratio:g}:1 "
                f"({self.inflated_out:,} bytes from {self.compressed_in:,}); reading stopped",
            )
        if tree.inflated > limits.ratio_floor_bytes and tree.inflated > limits.max_ratio * max(
            tree.compressed, 1
        ):
            tree.stopped = True
            raise _LimitExceeded(
                "archive-compression-bomb",
                f"archives nested in this one inflate to {tree.inflated:,} bytes, above "
                f"{limits.max_ratio:g}:1 of the outer {tree.compressed:,}; reading stopped",
            )


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


_COMPRESSED_SUFFIXES = (".gz", ".tgz", ".bz2", ".xz", ".z")


def _inner_name(outer: str) -> str:
    """What a compressed single file holds: `cli.js.map.gz` → `cli.js.map`."""
    leaf = outer.rsplit("/", 1)[-1].rsplit("!", 1)[-1]
    lowered = leaf.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        if lowered.endswith(suffix) and len(leaf) > len(suffix):
            return leaf[: -len(suffix)] + (".tar" if suffix == ".tgz" else "")
    return leaf


MAX_DECLARED_SIZE = 2**63 - 1


def declared_size(value: int) -> int:
    """A size an archive header claims, as evidence: never negative, never past what a signed
    64-bit integer (JSON readers, SARIF, SQLite) holds."""
    return min(max(int(value), 0), MAX_DECLARED_SIZE)


def _anomaly(
    rule: str,
    severity: Severity,
    path: str,
    message: str,
    *,
    key: str = "",
    evidence: dict[str, object] | None = None,
) -> Finding:
    return Finding(
        rule=rule,
        category=Category.ARCHIVE_ANOMALY,
        severity=severity,
        path=path,
        message=message,
        key=key,
        evidence=dict(evidence or {}),
    )


def _unsafe_path_reason(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "parent-directory (..) component"
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MAX_NAME_DEPTH = 64
_MAX_NAME_BYTES = 1024


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:80] + "…")


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


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
        self.anomalies: list[Finding] = []
        self.bytes_read = 0
        self.sha256 = ""  # of the archive file; known once `members()` is exhausted
        self._seen: set[str] = set()
        self._prefix = ""  # `outer!` for a nested layer
        self._depth = 0
        self._data: bytes | bytearray | None = None  # a nested layer's bytes
        self._tree = _Tree(compressed=_file_size(path))

    @property
    def nested_packages(self) -> list[NestedPackage]:
        return self._tree.nested_packages

    def _nested(self, member: Member, fmt: str) -> ArchiveReader:
        layer = object.__new__(ArchiveReader)
        layer.path = self.path
        layer.limits = self.limits
        layer.format = fmt
        layer.anomalies = self.anomalies
        layer.bytes_read = 0
        layer.sha256 = ""
        layer._seen = set()
        layer._prefix = member.path + "!"
        layer._depth = self._depth + 1
        layer._data = member.data
        layer._tree = self._tree
        return layer

    def _open(self) -> IO[bytes]:
        if self._data is not None:
            return io.BytesIO(self._data)
        return self.path.open("rb")

    def members(self) -> Iterator[Member]:
        layer = self._zip_members() if self.format == "zip" else self._tar_members()
        for member in layer:
            yield member
            if member.kind is MemberKind.FILE and member.data is not None:
                fmt = _nested_format(member.data)
                if fmt is not None:
                    yield from self._open_nested(member, fmt)
            if self._tree.stopped:
                break
        if self._depth == 0:
            self.bytes_read = self._tree.inflated

    def _open_nested(self, member: Member, fmt: str) -> Iterator[Member]:
        if self._depth >= self.limits.max_nesting:
            self.anomalies.append(
                _anomaly(
                    "archive-nesting-limit",
                    Severity.LOW,
                    member.path,
                    f"an archive nested more than {self.limits.max_nesting} levels deep; "
                    "it was not opened",
                )
            )
            return
        layer = self._nested(member, fmt)
        npm = pypi = False
        for inner in layer.members():
            name = inner.path[len(layer._prefix) :]
            if "!" not in name:
                npm = npm or name == "package/package.json"
                pypi = pypi or _is_python_metadata(name)
            yield inner
        if npm or pypi:
            self._tree.nested_packages.append(NestedPackage(member.path, "npm" if npm else "pypi"))

    # -- shared checks ---------------------------------------------------------------------------

    def _admit(self, name: str) -> str | None:
        """Record per-name anomalies; the member's path through the layers, or None once the
        member-count limit stops the read."""
        tree = self._tree
        tree.members += 1
        path = self._prefix + name
        if tree.members > self.limits.max_members:
            tree.stopped = True
            self.anomalies.append(
                _anomaly(
                    "archive-too-many-members",
                    Severity.HIGH,
                    path,
                    f"more than {self.limits.max_members:,} members; reading stopped",
                )
            )
            return None
        reason = _unsafe_path_reason(name)
        if reason:
            self.anomalies.append(
                _anomaly(
                    "archive-path-traversal",
                    Severity.HIGH,
                    path,
                    f"member name has an {reason}: an extractor may write outside its target",
                )
            )
        else:
            self._hiding_name(name, path)
        if name in self._seen:
            self.anomalies.append(
                _anomaly(
                    "archive-duplicate-member",
                    Severity.MEDIUM,
                    path,
                    "the same name appears twice: installers may take either copy",
                )
            )
        self._seen.add(name)
        return path

    def _hiding_name(self, name: str, path: str) -> None:
        """Names that hide what they are: `archive-name-traversal-lookalike` (medium) when the name
        normalises (NFKC, backslashes as separators) to a traversal, `archive-name-control-chars`
        (medium) for control characters or line breaks, `archive-name-too-deep` (low) past
        `_MAX_NAME_DEPTH` directory levels, `archive-name-too-long` (low) past 1,024 bytes."""
        lookalike = unicodedata.normalize("NFKC", name).replace("\\", "/")
        if lookalike != name and _unsafe_path_reason(lookalike):
            self.anomalies.append(
                _anomaly(
                    "archive-name-traversal-lookalike",
                    Severity.MEDIUM,
                    path,
                    "member name normalises to a parent-directory or absolute path "
                    f"({_shown(lookalike)}): a tool that normalises names may write outside "
                    "its target",
                )
            )
        if _CONTROL.search(name):
            self.anomalies.append(
                _anomaly(
                    "archive-name-control-chars",
                    Severity.MEDIUM,
                    path,
                    "member name has control characters or line breaks: listings and logs show "
                    "something other than what is there",
                )
            )
        depth = name.count("/")
        if depth > _MAX_NAME_DEPTH:
            self.anomalies.append(
                _anomaly(
                    "archive-name-too-deep",
                    Severity.LOW,
                    path,
                    f"member name {depth:,} directory levels deep (limit {_MAX_NAME_DEPTH})",
                    evidence={"depth": depth},
                )
            )
        length = len(name.encode("utf-8", "surrogateescape"))
        if length > _MAX_NAME_BYTES:
            self.anomalies.append(
                _anomaly(
                    "archive-name-too-long",
                    Severity.LOW,
                    path,
                    f"member name of {length:,} bytes (limit {_MAX_NAME_BYTES:,})",
                    evidence={"name_bytes": length},
                )
            )

    def _too_large(self, name: str, size: int) -> bool:
        if size <= self.limits.max_member_bytes:
            return False
        self.anomalies.append(
            _anomaly(
                "archive-member-too-large",
                Severity.MEDIUM,
                name,
                f"member declared as {declared_size(size):,} bytes exceeds the "
                f"{self.limits.max_member_bytes:,}-byte limit; its content was not scanned",
                evidence={"declared_size": declared_size(size)},
            )
        )
        return True

    def _corrupt(self, exc: BaseException, where: str) -> None:
        self.anomalies.append(
            _anomaly(
                "archive-corrupt",
                Severity.HIGH,
                where,
                f"archive is truncated or corrupt ({type(exc).__name__}: {exc}); "
                "scanned what could be read",
            )
        )

    # -- tar -------------------------------------------------------------------------------------

    def _tar_members(self) -> Iterator[Member]:
        with self._open() as raw:
            inflater = _BoundedInflater(raw, self.format, self.limits, self._tree)
            last = self._prefix + (self.path.name if not self._prefix else "")
            reader = ChunkReader(inflater.next_chunk)
            try:
                if self._depth and self.format != "tar" and not looks_like_tar(reader.peek(512)):
                    # a compressed single file (`cli.js.map.gz`): one member, its content
                    yield from self._single_file(reader)
                    return
                for entry, content in entries(reader):
                    name = _normalise(entry.name)
                    path = self._admit(name)
                    if path is None:
                        break
                    last = path
                    yield self._tar_member(entry, content, path)
            except _LimitExceeded as exc:
                self.anomalies.append(_anomaly(exc.rule, Severity.HIGH, last, str(exc)))
            except _TAR_ERRORS as exc:
                self._corrupt(exc, last)
            else:
                if inflater.truncated:
                    self._corrupt(EOFError("compressed stream ends early"), last)
                elif inflater.inflated_out == 0:
                    self._corrupt(EOFError("empty archive"), last)
            finally:
                self.bytes_read = inflater.inflated_out
                if self._depth == 0:
                    inflater.drain()
                    self.sha256 = inflater.raw_sha256.hexdigest()

    def _single_file(self, reader: ChunkReader) -> Iterator[Member]:
        name = _inner_name(self._prefix[:-1])
        path = self._admit(name)
        if path is None:
            return
        limit = self.limits.max_member_bytes
        data = reader.read(limit + 1)
        if len(data) > limit:
            self._too_large(path, len(data))
            yield Member(path, MemberKind.FILE, 0)
            return
        yield Member(path, MemberKind.FILE, len(data), data, declared_size=len(data))

    def _tar_member(self, entry: TarEntry, content: ChunkReader, name: str) -> Member:
        if entry.isreg():
            declared = declared_size(entry.size)
            if self._too_large(name, entry.size):
                return Member(name, MemberKind.FILE, 0, declared_size=declared)
            # a bytearray of the member's own size, filled once: no further copy is made
            data = content.read(entry.size)
            if len(data) < entry.size:
                raise EOFError(f"{name}: member data ends early")
            return Member(name, MemberKind.FILE, len(data), data, declared_size=declared)
        if entry.isdir():
            return Member(name, MemberKind.DIRECTORY, 0)
        if entry.issym() or entry.islnk():
            kind = MemberKind.SYMLINK if entry.issym() else MemberKind.HARDLINK
            self._link_anomaly(name, kind, entry.linkname)
            return Member(name, kind, 0, link_target=entry.linkname)
        if entry.isdev():
            self.anomalies.append(
                _anomaly(
                    "archive-special-file",
                    Severity.HIGH,
                    name,
                    "device or FIFO entry: no package ships one",
                )
            )
            return Member(name, MemberKind.DEVICE, 0)
        return Member(name, MemberKind.OTHER, 0, declared_size=declared_size(entry.size))

    def _link_anomaly(self, name: str, kind: MemberKind, target: str) -> None:
        escapes = _unsafe_path_reason(target) is not None
        self.anomalies.append(
            _anomaly(
                "archive-link",
                Severity.HIGH if escapes else Severity.MEDIUM,
                name,
                f"{kind.value} to {target!r}"
                + (
                    ": points outside the package" if escapes else ": links are unusual in packages"
                ),
                key=target,
            )
        )

    # -- zip -------------------------------------------------------------------------------------

    def _zip_members(self) -> Iterator[Member]:
        # A zip is read by random access (central directory first); hash the file on its own.
        where = self._prefix[:-1] if self._prefix else self.path.name
        if self._depth == 0:
            with self.path.open("rb") as handle:
                self.sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        try:
            archive = zipfile.ZipFile(self._open())
        except _ZIP_ERRORS as exc:
            self._corrupt(exc, where)
            return
        tree = self._tree
        limits = self.limits
        with archive:
            infos = archive.infolist()
            overlapping = self._zip_overlaps(infos, where)
            for info in infos:
                path = self._admit(_normalise(info.filename))
                if path is None:
                    return
                member = self._zip_member(archive, info, path, overlapping)
                if member.data is not None:
                    self.bytes_read += len(member.data)
                    tree.inflated += len(member.data)
                    if tree.inflated > limits.max_total_bytes:
                        tree.stopped = True
                        self.anomalies.append(
                            _anomaly(
                                "archive-size-limit",
                                Severity.HIGH,
                                path,
                                f"archive inflates past the limit of "
                                f"{limits.max_total_bytes:,} bytes; reading stopped",
                            )
                        )
                        return
                    if (
                        self._depth
                        and tree.inflated > limits.ratio_floor_bytes
                        and (tree.inflated > limits.max_ratio * max(tree.compressed, 1))
                    ):
                        tree.stopped = True
                        self.anomalies.append(
                            _anomaly(
                                "archive-compression-bomb",
                                Severity.HIGH,
                                path,
                                f"archives nested in this one inflate to {tree.inflated:,} "
                                f"bytes, above {limits.max_ratio:g}:1 of the outer "
                                f"{tree.compressed:,}; reading stopped",
                            )
                        )
                        return
                yield member

    def _zip_overlaps(self, infos: list[zipfile.ZipInfo], where: str) -> set[int]:
        """Entries whose compressed data overlaps another's: the trick of non-recursive zip bombs."""
        spans = sorted((info.header_offset, id(info), info) for info in infos)
        bad: set[int] = set()
        previous_end = -1
        for offset, ident, info in spans:
            if offset < previous_end:
                bad.add(ident)
            # 30-byte local header + name; the extra field is not in the central directory's view.
            previous_end = max(
                previous_end, offset + 30 + len(info.orig_filename) + info.compress_size
            )
        if bad:
            self.anomalies.append(
                _anomaly(
                    "archive-compression-bomb",
                    Severity.HIGH,
                    where,
                    f"{len(bad)} zip entries overlap others' data (a zip-bomb construction); "
                    "they were not read",
                )
            )
        return bad

    def _zip_member(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, overlapping: set[int]
    ) -> Member:
        mode = info.external_attr >> 16
        if info.filename.endswith("/"):  # not is_dir(): a name cut at a NUL can be empty
            return Member(name, MemberKind.DIRECTORY, 0)
        if stat.S_ISLNK(mode):
            target = self._zip_read(archive, info, name, 4096) or b""
            text = target.decode("utf-8", "replace")
            self._link_anomaly(name, MemberKind.SYMLINK, text)
            return Member(name, MemberKind.SYMLINK, 0, link_target=text)
        declared = declared_size(info.file_size)
        unread = Member(name, MemberKind.FILE, 0, declared_size=declared)
        if id(info) in overlapping:
            return unread
        if self._too_large(name, info.file_size):
            return unread
        limits = self.limits
        ratio = declared / max(declared_size(info.compress_size), 1)
        if declared > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            self.anomalies.append(
                _anomaly(
                    "archive-compression-bomb",
                    Severity.HIGH,
                    name,
                    f"declared compression ratio {ratio:,.0f}:1 above {limits.max_ratio:g}:1; "
                    "not read",
                    evidence={"declared_size": declared},
                )
            )
            return unread
        if info.flag_bits & 0x1:
            self.anomalies.append(
                _anomaly(
                    "archive-encrypted-member",
                    Severity.MEDIUM,
                    name,
                    "encrypted zip entry: its content cannot be scanned",
                )
            )
            return unread
        data = self._zip_read(archive, info, name, limits.max_member_bytes)
        if data is None:
            return unread
        return Member(name, MemberKind.FILE, len(data), data, declared_size=declared)

    def _zip_read(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limit: int
    ) -> bytes | None:
        try:
            with archive.open(info) as handle:
                return handle.read(limit)
        except _ZIP_ERRORS as exc:
            self._corrupt(exc, name)
            return None


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
