"""The fingerprint index file: versioned, hashes only (no source text, no file names).

Layout, format version 2 (all integers little-endian; docs/fingerprints.md is the reference):

    magic   b"WATCHFP\\n"                          8 bytes
    length  uint32                                  size of the header
    header  UTF-8 JSON                              format, version, name, key_id, params, counts,
                                                    sha256 of the body
    body    files   FILES x (file hash 8, distinctive lines uint32, winnow fingerprints uint32)
            lines   per file in file order, its distinctive lines' hashes (6 bytes each), sorted
            winnow  per file in file order, its winnowing fingerprints (6 bytes each), sorted

A private file is a number (its position in `files`): the index says how many distinctive lines
and fingerprints each has, never what or where it is. The file number of a line hash is implicit
(the counts in `files` say whose run it is in); the reader rebuilds hash -> files at load.
Version 1 (12-byte (8-byte hash, uint32 file) pairs, 64-bit line hashes) is refused: rebuild.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from watcher.errors import FingerprintError
from watcher.private.keys import DIGEST_SIZE

MAGIC = b"WATCHFP\n"
FORMAT = "watcher-fingerprints"
VERSION = 2
HASH = "blake2b-keyed-file64-line48"  # whole-file hashes 8 bytes, line and winnowing hashes 6
# versions whose header `watcher fingerprint info` still prints (to say: rebuild), with their hash
_READABLE_HEADERS = {1: "blake2b-64-keyed", VERSION: HASH}

_FILE = struct.Struct("<8sII")
_HASH = struct.Struct(f"<{DIGEST_SIZE}s")
_LENGTH = struct.Struct("<I")
_MAX_HEADER = 1 << 20


@dataclass(frozen=True, slots=True)
class IndexParams:
    line_floor: int
    common_files: int  # a line in more private files than this is common (imports, headers)
    winnow_k: int  # 0: no winnowing fingerprints in this index
    winnow_w: int


@dataclass(frozen=True, slots=True)
class IndexHeader:
    name: str
    key_id: str
    created: str
    params: IndexParams
    files: int
    lines: int
    winnow: int
    version: int = VERSION
    hash: str = HASH


@dataclass(slots=True)
class PrivateFile:
    file_hash: bytes
    lines: set[bytes]  # keyed hashes of its distinctive lines
    winnow: set[bytes]


@dataclass(slots=True)
class FingerprintIndex:
    """An index in memory, shaped for lookups."""

    header: IndexHeader
    by_file_hash: dict[bytes, int]
    line_counts: list[int]
    winnow_counts: list[int]
    lines: dict[bytes, tuple[int, ...]]
    winnow: dict[bytes, tuple[int, ...]]
    # the line hashes as a set, built once at load: a text's hits are one C-level intersection
    line_keys: frozenset[bytes] = frozenset()

    @property
    def name(self) -> str:
        return self.header.name


def write_index(path: Path, header: IndexHeader, files: list[PrivateFile]) -> int:
    """Write the index atomically; returns its size in bytes."""
    body = bytearray()
    for f in files:
        body += _FILE.pack(f.file_hash, len(f.lines), len(f.winnow))
    for f in files:
        body += b"".join(sorted(_checked(f.lines)))
    for f in files:
        body += b"".join(sorted(_checked(f.winnow)))
    meta = asdict(header)
    meta["format"] = FORMAT
    meta["files"] = len(files)
    meta["lines"] = sum(len(f.lines) for f in files)
    meta["winnow"] = sum(len(f.winnow) for f in files)
    meta["sha256"] = hashlib.sha256(body).hexdigest()
    encoded = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(MAGIC + _LENGTH.pack(len(encoded)) + encoded + bytes(body))
    tmp.replace(path)
    return path.stat().st_size


def read_header(path: Path, *, older: bool = False) -> IndexHeader:
    """The header alone (cheap): what `watcher fingerprint info` and config checks read. With
    `older`, a version-1 header is returned too (its body is never read: rebuild it)."""
    with _open(path) as handle:
        data = handle.read(len(MAGIC) + _LENGTH.size + _MAX_HEADER)
    return _parse_header(path, data, older=older)[0]


def read_index(path: Path) -> FingerprintIndex:
    with _open(path) as handle:
        data = handle.read()
    header, offset = _parse_header(path, data)
    body = memoryview(data)[offset:]
    expected = header.files * _FILE.size + (header.lines + header.winnow) * _HASH.size
    if len(body) != expected:
        raise FingerprintError(f"{path}: truncated or corrupt fingerprint index")
    meta_sha = _header_meta(path, data)["sha256"]
    if hashlib.sha256(body).hexdigest() != meta_sha:
        raise FingerprintError(f"{path}: fingerprint index checksum mismatch (corrupt file)")
    by_file_hash: dict[bytes, int] = {}
    line_counts: list[int] = []
    winnow_counts: list[int] = []
    end = header.files * _FILE.size
    for number, (file_hash, lines, grams) in enumerate(_FILE.iter_unpack(body[:end])):
        by_file_hash.setdefault(file_hash, number)
        line_counts.append(lines)
        winnow_counts.append(grams)
    if sum(line_counts) != header.lines or sum(winnow_counts) != header.winnow:
        raise FingerprintError(f"{path}: truncated or corrupt fingerprint index")
    lines_end = end + header.lines * _HASH.size
    lines = _by_file(body[end:lines_end], line_counts)
    return FingerprintIndex(
        header=header,
        by_file_hash=by_file_hash,
        line_counts=line_counts,
        winnow_counts=winnow_counts,
        lines=lines,
        winnow=_by_file(body[lines_end:], winnow_counts),
        line_keys=frozenset(lines),
    )


def _checked(hashes: set[bytes]) -> set[bytes]:
    if any(len(h) != DIGEST_SIZE for h in hashes):
        raise ValueError(f"fingerprint hashes must be {DIGEST_SIZE} bytes")
    return hashes


def _by_file(view: memoryview, counts: list[int]) -> dict[bytes, tuple[int, ...]]:
    """Hash -> the private files that have it, from runs of hashes grouped by file."""
    out: dict[bytes, tuple[int, ...]] = {}
    get = out.get
    start = 0
    for number, count in enumerate(counts):
        end = start + count * _HASH.size
        for (digest,) in _HASH.iter_unpack(view[start:end]):
            known = get(digest)
            out[digest] = (number,) if known is None else (*known, number)
        start = end
    return out


def _open(path: Path) -> Any:
    try:
        return path.open("rb")
    except OSError as exc:
        raise FingerprintError(f"{path}: cannot read fingerprint index: {exc.strerror}") from None


def _header_meta(path: Path, data: bytes) -> dict[str, Any]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LENGTH.size:
        raise FingerprintError(
            f"{path}: not a fingerprint index (build one with `watcher fingerprint build`)"
        )
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _LENGTH.size
    if length > _MAX_HEADER or len(data) < start + length:
        raise FingerprintError(f"{path}: truncated or corrupt fingerprint index")
    try:
        meta: Any = orjson.loads(data[start : start + length])
    except orjson.JSONDecodeError:
        raise FingerprintError(f"{path}: corrupt fingerprint index header") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FingerprintError(f"{path}: not a fingerprint index")
    return meta


def _parse_header(path: Path, data: bytes, *, older: bool = False) -> tuple[IndexHeader, int]:
    meta = _header_meta(path, data)
    raw_version = meta.get("version")
    version = raw_version if isinstance(raw_version, int) else -1
    known = older and version in _READABLE_HEADERS
    if version != VERSION and not known:
        was = " (a larger, older layout)" if 0 < version < VERSION else ""
        raise FingerprintError(
            f"{path}: fingerprint index version {raw_version!r}{was}; this watcher reads version "
            f"{VERSION}: rebuild the index with `watcher fingerprint build`"
        )
    if meta.get("hash") != _READABLE_HEADERS[version]:
        raise FingerprintError(f"{path}: unknown hash {meta.get('hash')!r}")
    try:
        header = IndexHeader(
            name=str(meta["name"]),
            key_id=str(meta["key_id"]),
            created=str(meta["created"]),
            params=IndexParams(**meta["params"]),
            files=int(meta["files"]),
            lines=int(meta["lines"]),
            winnow=int(meta["winnow"]),
            version=version,
            hash=str(meta["hash"]),
        )
    except (KeyError, TypeError, ValueError):
        raise FingerprintError(f"{path}: corrupt fingerprint index header") from None
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    return header, len(MAGIC) + _LENGTH.size + length
