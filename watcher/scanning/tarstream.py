"""A tar reader over chunks of inflated bytes: headers parsed from memoryviews, each member's content
copied once into a buffer of its own size.

`tarfile` in stream mode copies every byte two or three times through its own buffers (and joins
them); on a 100 MB package that was a fifth of the scan. This reads ustar, GNU (long names, base-256
sizes) and pax (path, linkpath, size) headers; anything it cannot parse raises `TarFormatError` and
the archive reader reports what was read so far. It never seeks, never writes, and never holds
more than one member's content plus one inflated chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

BLOCK = 512
# pax / GNU long-name headers are read into memory; none legitimate is this large.
MAX_META_HEADER = 1024 * 1024

_REGULAR = frozenset(b"0\x007")
_KNOWN_NO_DATA = frozenset(b"123456")  # links, devices, directories, FIFOs: no data blocks
_PAX = frozenset(b"xX")  # X: Solaris' name for the same header
_PAX_GLOBAL = ord("g")
_GNU_LONGNAME = ord("L")
_GNU_LONGLINK = ord("K")
_POSIX_MAGIC = b"ustar\x00"


class TarFormatError(Exception):
    """The bytes are not (any longer) a tar archive."""


@dataclass(frozen=True, slots=True)
class TarEntry:
    name: str
    type: int  # the typeflag byte; `\0` and `7` are normalised to `0`
    size: int  # bytes of content that follow the header (0 for links and directories)
    linkname: str

    def isreg(self) -> bool:
        return self.type == ord("0")

    def isdir(self) -> bool:
        return self.type == ord("5")

    def issym(self) -> bool:
        return self.type == ord("2")

    def islnk(self) -> bool:
        return self.type == ord("1")

    def isdev(self) -> bool:
        return self.type in b"346"


class ChunkReader:
    """Exact-size reads over a source of chunks (`next_chunk() -> bytes`, b"" at the end)."""

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk
        self._chunk = memoryview(b"")
        self._pos = 0
        self.position = 0  # bytes consumed so far

    def _fill(self) -> bool:
        if self._pos < len(self._chunk):
            return True
        data = self._next_chunk()
        self._chunk = memoryview(data)
        self._pos = 0
        return bool(data)

    def peek(self, size: int) -> bytes:
        """Up to `size` bytes from the current chunk without consuming them (what a chunk holds:
        the first chunk of a stream is far larger than a header)."""
        self._fill()
        return bytes(self._chunk[self._pos : self._pos + size])

    def read(self, size: int) -> bytearray:
        """Up to `size` bytes (fewer only at the end of the stream), copied once."""
        out = bytearray(size)
        filled = 0
        while filled < size and self._fill():
            take = min(size - filled, len(self._chunk) - self._pos)
            out[filled : filled + take] = self._chunk[self._pos : self._pos + take]
            self._pos += take
            filled += take
        self.position += filled
        if filled < size:
            del out[filled:]
        return out

    def skip(self, size: int) -> int:
        """Discard up to `size` bytes; how many were there."""
        skipped = 0
        while skipped < size and self._fill():
            take = min(size - skipped, len(self._chunk) - self._pos)
            self._pos += take
            skipped += take
        self.position += skipped
        return skipped


def entries(reader: ChunkReader) -> Iterator[tuple[TarEntry, ChunkReader]]:
    """Yield each member's header; the caller reads (`reader.read`) or leaves its content — what
    it leaves is skipped before the next header."""
    long_name: str | None = None
    long_link: str | None = None
    pax: dict[str, str] = {}
    while True:
        block = reader.read(BLOCK)
        if not block:
            return  # the stream ends without end-of-archive blocks: tolerated, as tar does
        if len(block) < BLOCK:
            raise TarFormatError("truncated header")
        if not any(block):
            return  # end-of-archive marker
        header = _parse(block)
        kind = header.type
        if kind in _PAX or kind == _PAX_GLOBAL or kind in (_GNU_LONGNAME, _GNU_LONGLINK):
            if header.size > MAX_META_HEADER:
                raise TarFormatError(f"extended header of {header.size:,} bytes")
            data = bytes(reader.read(header.size))
            if len(data) < header.size:
                raise TarFormatError("extended header ends early")
            _skip_padding(reader, header.size)
            if kind == _GNU_LONGNAME:
                long_name = _text(data.split(b"\x00", 1)[0])
            elif kind == _GNU_LONGLINK:
                long_link = _text(data.split(b"\x00", 1)[0])
            elif kind in _PAX:
                pax = _pax_records(data)
            continue  # a global header's defaults are not needed to read names
        name = pax.get("path", long_name if long_name is not None else header.name)
        linkname = pax.get("linkpath", long_link if long_link is not None else header.linkname)
        size = header.size
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise TarFormatError("pax size is not a number") from None
            if size < 0:
                raise TarFormatError("pax size is negative")
        long_name = long_link = None
        pax = {}
        if kind == 0 or kind == ord("7"):
            kind = ord("0")
        if kind == ord("0") and name.endswith("/"):
            kind = ord("5")  # old tars mark directories by a trailing slash only
        has_data = kind in _REGULAR or kind not in _KNOWN_NO_DATA
        entry = TarEntry(name, kind, size if has_data else 0, linkname)
        before = reader.position
        yield entry, reader
        if has_data:
            consumed = reader.position - before
            remaining = size - consumed
            if remaining > 0 and reader.skip(remaining) < remaining:
                raise TarFormatError(f"{name}: member data ends early")
            _skip_padding(reader, size)


def looks_like_tar(head: bytes) -> bool:
    """The first block is a tar header (ustar magic, or a v7 header whose checksum holds)."""
    if len(head) < BLOCK:
        return False
    if head[257:262] == b"ustar":
        return True
    try:
        _parse(bytearray(head[:BLOCK]))
    except TarFormatError:
        return False
    return any(head[:100])


def _skip_padding(reader: ChunkReader, size: int) -> None:
    pad = -size % BLOCK
    if pad:
        reader.skip(pad)  # a missing final padding is harmless


@dataclass(frozen=True, slots=True)
class _Header:
    name: str
    type: int
    size: int
    linkname: str


def _parse(block: bytearray) -> _Header:
    view = memoryview(block)
    stored = _number(view[148:156])
    # The checksum is the byte sum with its own field read as spaces; some old tars summed
    # signed bytes.
    unsigned = sum(view[:148]) + sum(view[156:]) + 8 * 32
    if stored != unsigned:
        signed = unsigned - 256 * sum(1 for byte in block if byte > 127)
        if stored != signed:
            raise TarFormatError("bad header checksum")
    name = _cstring(view[0:100])
    if bytes(view[257:263]) == _POSIX_MAGIC:
        prefix = _cstring(view[345:500])
        if prefix:
            name = prefix + "/" + name
    return _Header(
        name=name,
        type=block[156],
        size=_number(view[124:136]),
        linkname=_cstring(view[157:257]),
    )


def _number(field: memoryview) -> int:
    raw = bytes(field)
    if raw[:1] in (b"\x80", b"\xff"):  # GNU base-256
        value = int.from_bytes(raw[1:], "big")
        if raw[0] == 0xFF:
            value -= 256 ** (len(raw) - 1)
        if value < 0:
            raise TarFormatError("negative number in header")
        return value
    digits = raw.split(b"\x00", 1)[0].strip()
    if not digits:
        return 0
    try:
        return int(digits, 8)
    except ValueError:
        raise TarFormatError("header number is not octal") from None


def _cstring(field: memoryview) -> str:
    return _text(bytes(field).split(b"\x00", 1)[0])


def _text(raw: bytes) -> str:
    # as tarfile reads names: UTF-8, undecodable bytes kept as surrogate escapes
    return raw.decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[str, str]:
    """`<length> <key>=<value>\\n` records."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        if space == -1:
            raise TarFormatError("malformed pax record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("malformed pax record length") from None
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1 : end] != b"\n":
            raise TarFormatError("malformed pax record")
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise TarFormatError("malformed pax record")
        records[_text(key)] = _text(value)
        pos = end
    return records
