"""Text out of members that are not UTF-8: UTF-16 and Latin-1 text, the string constants of `.pyc`
files, and printable runs of other binaries.

A `.pyc` is walked as a marshal stream by this module's own reader — `marshal.loads` on untrusted
input is unsafe and bound to the running Python's version. Only string and bytes objects are kept
(bytecode, line tables and numbers are skipped); the walk is bounded in depth and objects, and a
stream it cannot follow yields what was collected so far.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass

_SNIFF = 4096


def decode_text(data: bytes | bytearray) -> tuple[str, str] | None:
    """(text, encoding) for a member that is text: UTF-16 by its BOM or by the NUL pattern of
    ASCII in UTF-16, else UTF-8, else Latin-1 (every byte is a character). None for binary."""
    head = bytes(data[:_SNIFF])
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return bytes(data).decode("utf-16", "replace"), "utf-16"
    if b"\x00" in head:
        order = _utf16_order(head)
        if order is None:
            return None
        return bytes(data).decode(order, "replace"), order
    try:
        return bytes(data).decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return bytes(data).decode("latin-1"), "latin-1"


def _utf16_order(head: bytes) -> str | None:
    """ASCII text in UTF-16 has a NUL in every other byte and almost none in the others."""
    even, odd = head[0::2], head[1::2]
    if len(odd) < 16:
        return None
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.05 * len(odd):
        return "utf-16-be"
    return None


# -- printable strings of binaries -----------------------------------------------------------------

MIN_RUN = 8  # as `strings -n 8`: shorter runs are noise in machine code
_RUN_REACH = 512
_PRINTABLE = frozenset(range(0x20, 0x7F))


def runs_at(data: bytes | bytearray, offsets: list[int]) -> list[str]:
    """The printable ASCII run around each offset (at most `_RUN_REACH` bytes either side), each run
    once, in order; runs shorter than `MIN_RUN` are dropped."""
    found: list[str] = []
    covered = -1
    for offset in sorted(offsets):
        if offset < covered:
            continue
        start = offset
        floor = max(0, offset - _RUN_REACH)
        while start > floor and data[start - 1] in _PRINTABLE:
            start -= 1
        end = offset
        ceiling = min(len(data), offset + _RUN_REACH)
        while end < ceiling and data[end] in _PRINTABLE:
            end += 1
        covered = end
        if end - start >= MIN_RUN:
            found.append(bytes(data[start:end]).decode("ascii"))
    return found


# -- .pyc string constants -----------------------------------------------------------------------

MAX_OBJECTS = 200_000
MAX_DEPTH = 64


class _Stop(Exception):
    pass


@dataclass(frozen=True, slots=True)
class PycStrings:
    strings: list[str]
    complete: bool  # the whole stream was walked


def pyc_strings(data: bytes | bytearray) -> PycStrings | None:
    """String and bytes constants of a `.pyc` (CPython 3.8 and later); None if it is not one."""
    raw = bytes(data)
    if len(raw) < 17 or raw[2:4] != b"\r\n":
        return None
    magic = int.from_bytes(raw[0:2], "little")
    if magic < 3400:  # before 3.8: another header and code layout
        return None
    walker = _Walker(raw, 16, new_code=magic >= 3450)  # 3.11 changed the code object
    try:
        walker.read(0, keep=True)
        complete = True
    except (_Stop, IndexError, struct.error, ValueError, RecursionError):
        complete = False
    return PycStrings(walker.strings, complete)


class _Walker:
    def __init__(self, data: bytes, pos: int, *, new_code: bool) -> None:
        self.data = data
        self.pos = pos
        self.new_code = new_code
        self.strings: list[str] = []
        self.objects = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Stop
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _i32(self) -> int:
        value: int = struct.unpack("<i", self._take(4))[0]
        return value

    def _byte(self) -> int:
        return self._take(1)[0]

    def read(self, depth: int, *, keep: bool) -> None:
        self.objects += 1
        if depth > MAX_DEPTH or self.objects > MAX_OBJECTS:
            raise _Stop
        code = chr(self._byte() & 0x7F)  # 0x80 marks an object others refer back to
        if code in "0NFTS.":
            return
        if code == "i":
            self._take(4)
        elif code == "I":
            self._take(8)
        elif code == "l":
            self._take(2 * abs(self._i32()))
        elif code == "f":
            self._take(self._byte())
        elif code == "g":
            self._take(8)
        elif code == "x":
            self._take(self._byte())
            self._take(self._byte())
        elif code == "y":
            self._take(16)
        elif code in "stuaA":
            self._keep(self._take(self._i32()), code, keep)
        elif code in "zZ":
            self._keep(self._take(self._byte()), code, keep)
        elif code in "([<>":
            for _ in range(self._i32()):
                self.read(depth + 1, keep=keep)
        elif code == ")":
            for _ in range(self._byte()):
                self.read(depth + 1, keep=keep)
        elif code == "{":
            while self.data[self.pos] != ord("0"):
                self.read(depth + 1, keep=keep)
                self.read(depth + 1, keep=keep)
            self.pos += 1
        elif code == "r":
            self._take(4)
        elif code == "c":
            self._code(depth + 1)
        else:
            raise _Stop

    def _keep(self, raw: bytes, code: str, keep: bool) -> None:
        if not keep or not raw:
            return
        if code == "s":  # bytes: searched as Latin-1, one character per byte
            self.strings.append(raw.decode("latin-1"))
        else:
            self.strings.append(raw.decode("utf-8", "surrogatepass"))

    def _code(self, depth: int) -> None:
        # 3.8-3.10: argcount, posonly, kwonly, nlocals, stacksize, flags; 3.11+: no nlocals
        self._take(4 * (5 if self.new_code else 6))
        self.read(depth, keep=False)  # bytecode
        self.read(depth, keep=True)  # consts: the strings that matter
        self.read(depth, keep=True)  # names
        if self.new_code:
            self.read(depth, keep=True)  # localsplusnames
            self.read(depth, keep=False)  # localspluskinds
        else:
            for _ in range(3):  # varnames, freevars, cellvars
                self.read(depth, keep=True)
        self.read(depth, keep=True)  # filename
        self.read(depth, keep=True)  # name
        if self.new_code:
            self.read(depth, keep=True)  # qualname
        self._take(4)  # firstlineno
        self.read(depth, keep=False)  # line table
        if self.new_code:
            self.read(depth, keep=False)  # exception table
