"""The fingerprint index file: versioned, hashes only (no source text, no file names).

Layout (all integers little-endian; docs/fingerprints.md is the reference):

    magic   b"WATCHFP\\n"                          8 bytes
    length  uint32                                  size of the header
    header  UTF-8 JSON                              format, version, name, key_id, params, counts,
                                                    sha256 of the body
    body    files   FILES x (file hash 8, distinctive lines uint32, winnow fingerprints uint32)
            lines   LINES x (line hash 8, file number uint32), sorted
            winnow  WINNOW x (fingerprint 8, file number uint32), sorted

A private file is a number (its position in `files`): the index says how many distinctive lines
and fingerprints each has, never what or where it is.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from watcher.errors import FingerprintError

MAGIC = b"WATCHFP\n"
FORMAT = "watcher-fingerprints"
VERSION = 1
HASH = "blake2b-64-keyed"

_FILE = struct.Struct("<8sII")
_PAIR = struct.Struct("<8sI")
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
    line_pairs = sorted((h, n) for n, f in enumerate(files) for h in f.lines)
    winnow_pairs = sorted((h, n) for n, f in enumerate(files) for h in f.winnow)
    for pair in line_pairs:
        body += _PAIR.pack(*pair)
    for pair in winnow_pairs:
        body += _PAIR.pack(*pair)
    meta = asdict(header)
    meta["format"] = FORMAT
    meta["files"], meta["lines"], meta["winnow"] = len(files), len(line_pairs), len(winnow_pairs)
    meta["sha256"] = hashlib.sha256(body).hexdigest()
    encoded = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(MAGIC + _LENGTH.pack(len(encoded)) + encoded + bytes(body))
    tmp.replace(path)
    return path.stat().st_size


def read_header(path: Path) -> IndexHeader:
    """The header alone (cheap): what `watcher fingerprint info` and config checks read."""
    with _open(path) as handle:
        return _parse_header(path, handle.read(len(MAGIC) + _LENGTH.size + _MAX_HEADER))[0]


def read_index(path: Path) -> FingerprintIndex:
    with _open(path) as handle:
        data = handle.read()
    header, offset = _parse_header(path, data)
    body = memoryview(data)[offset:]
    expected = header.files * _FILE.size + (header.lines + header.winnow) * _PAIR.size
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
    lines_end = end + header.lines * _PAIR.size
    lines = _pairs(body[end:lines_end])
    return FingerprintIndex(
        header=header,
        by_file_hash=by_file_hash,
        line_counts=line_counts,
        winnow_counts=winnow_counts,
        lines=lines,
        winnow=_pairs(body[lines_end:]),
        line_keys=frozenset(lines),
    )


def _pairs(view: memoryview) -> dict[bytes, tuple[int, ...]]:
    out: dict[bytes, tuple[int, ...]] = {}
    for digest, number in _PAIR.iter_unpack(view):
        known = out.get(digest)
        out[digest] = (number,) if known is None else (*known, number)
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


def _parse_header(path: Path, data: bytes) -> tuple[IndexHeader, int]:
    meta = _header_meta(path, data)
    version = meta.get("version")
    if version != VERSION:
        raise FingerprintError(
            f"{path}: fingerprint index version {version!r}; this watcher reads version "
            f"{VERSION} (rebuild it with `watcher fingerprint build`)"
        )
    if meta.get("hash") != HASH:
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
        )
    except (KeyError, TypeError, ValueError):
        raise FingerprintError(f"{path}: corrupt fingerprint index header") from None
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    return header, len(MAGIC) + _LENGTH.size + length
