"""Bounded decompression of a tar's compressed stream (gzip, bz2, xz, or none).

The inflater hands out chunks of at most a few MiB and checks the limits after each, so that a gzip
bomb is stopped by its ratio before it is inflated. It also hashes the archive file's own bytes as
they are read, so the file is read once.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import zlib
from types import ModuleType
from typing import IO, Protocol, cast

from watcher.scanning.limits import ArchiveLimits, ArchiveTree, LimitExceeded

_inflate: ModuleType
try:  # ISA-L's inflate is about twice zlib's speed, same bytes; zlib where no wheel exists
    from isal import isal_zlib

    _inflate = isal_zlib
except ImportError:  # pragma: no cover - exercised where the wheel is missing
    _inflate = zlib
INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _inflate.error)

_MiB = 1024 * 1024
_CHUNK = _MiB  # compressed bytes read at a time
_INFLATED_CHUNK = 4 * _MiB  # at most this much is inflated before the limits are checked again


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


class BoundedInflater:
    """Chunks of decompressed bytes that refuse to inflate past the limits."""

    def __init__(self, raw: IO[bytes], kind: str, limits: ArchiveLimits, tree: ArchiveTree) -> None:
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
        limits = self._limits
        self._tree.add_inflated(produced, limits)
        if (
            self.inflated_out > limits.ratio_floor_bytes
            and self.inflated_out > limits.max_ratio * max(self.compressed_in, 1)
        ):
            raise LimitExceeded(
                "archive-compression-bomb",
                f"compression ratio above {limits.max_ratio:g}:1 "
                f"({self.inflated_out:,} bytes from {self.compressed_in:,}); reading stopped",
            )
        self._tree.check_ratio(limits)
