"""Every occurrence of many literal strings in a text, in one pass.

The secret rules' keyword prefilter runs over every text member and every embedded source of every
source map (100 MB and more for a large bundle), so it is the scanner's hottest loop. Hyperscan (a
compiled multi-literal automaton, SIMD, gigabytes per second) does it when its wheel is installed;
otherwise one stdlib regex per group of needles sharing a first character. Both report exactly the
same thing: for each needle, the start offset of every occurrence, overlapping ones included, in
text order — the tests hold the two engines to a plain `str.find` loop.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

_hs: Any
try:  # the wheel bundles the library; a platform without one falls back to `re`
    import hyperscan

    _hs = hyperscan
except ImportError:  # pragma: no cover - exercised where the wheel is missing
    _hs = None

Hits = dict[str, list[int]]


class NeedleIndex:
    """Compiled once per needle set; `find` may be called from several threads."""

    def __init__(self, needles: Iterable[str], *, engine: str | None = None) -> None:
        self.needles: tuple[str, ...] = tuple(sorted(set(needles)))
        if not self.needles or not all(self.needles):
            raise ValueError("needles must be non-empty strings")
        chosen = engine or ("hyperscan" if _hs is not None else "re")
        if chosen == "hyperscan":
            if _hs is None:
                raise ValueError("the hyperscan engine is not installed")
            engine_hs = _HyperscanEngine(self.needles)
            self._find: Callable[[str], Hits] = engine_hs.find
            self._find_bytes: Callable[[bytes | bytearray], Hits] | None = engine_hs.find_bytes
        elif chosen == "re":
            self._find = _RegexEngine(self.needles).find
            self._find_bytes = None
        else:
            raise ValueError(f"unknown engine {chosen!r}")
        self.engine = chosen

    def find(self, text: str) -> Hits:
        """{needle: [start offsets]} for the needles that occur; offsets index `text` (characters)."""
        return self._find(text)

    def find_bytes(self, data: bytes | bytearray) -> Hits:
        """The same over raw bytes (a binary's content), for ASCII needles; offsets index `data`."""
        if self._find_bytes is not None:
            return self._find_bytes(data)
        return self._find(bytes(data).decode("latin-1"))  # one character per byte


class _Database:
    """One compiled hyperscan database of the needles in one encoding."""

    def __init__(self, encoded: list[bytes]) -> None:
        assert _hs is not None
        self.lengths = [len(needle) for needle in encoded]
        self.db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        # every byte as a \xHH escape: the binding passes expressions as C strings, so a NUL
        # (UTF-16 needles are full of them) must not appear raw
        self.db.compile(
            expressions=["".join(f"\\x{byte:02x}" for byte in n).encode() for n in encoded],
            ids=list(range(len(encoded))),
            elements=len(encoded),
            flags=0,  # report every end offset; a literal's start is end - length
        )
        # A scratch space serves one scan at a time: one per thread.
        self._local = threading.local()

    def scan(self, data: bytes) -> list[list[int]]:
        found: list[list[int]] = [[] for _ in self.lengths]
        lengths = self.lengths

        def on_match(ident: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            found[ident].append(end - lengths[ident])

        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = _hs.Scratch(self.db)
        self.db.scan(data, match_event_handler=on_match, scratch=scratch)
        return found


class _HyperscanEngine:
    """Block-mode scans of the text's bytes. ASCII text is scanned as itself; other text as
    UTF-16 (near a copy for CPython's 1- and 2-byte strings, and offsets are simply halved) with
    the needles compiled in UTF-16 too; text with characters beyond the BMP as UTF-8, byte offsets
    mapped back to characters."""

    def __init__(self, needles: tuple[str, ...]) -> None:
        self._needles = needles
        self._utf8 = _Database([n.encode("utf-8", "surrogatepass") for n in needles])
        self._utf16 = _Database([n.encode("utf-16-le", "surrogatepass") for n in needles])

    def find(self, text: str) -> Hits:
        if text.isascii():
            return self.find_bytes(text.encode("ascii"))
        wide = text.encode("utf-16-le", "surrogatepass")
        if len(wide) == 2 * len(text):  # no surrogate pairs: two bytes per character
            found = self._utf16.scan(wide)
            # a match at an odd byte offset straddles two characters: not a match
            return {
                self._needles[i]: halved
                for i, starts in enumerate(found)
                if starts and (halved := [o // 2 for o in starts if not o % 2])
            }
        data = text.encode("utf-8", "surrogatepass")
        hits = self.find_bytes(data)
        return _to_char_offsets(data, hits) if hits else hits

    def find_bytes(self, data: bytes | bytearray) -> Hits:
        found = self._utf8.scan(bytes(data))
        return {self._needles[i]: starts for i, starts in enumerate(found) if starts}


def _to_char_offsets(data: bytes, hits: Hits) -> Hits:
    """Byte offsets of UTF-8 `data` → character offsets. Every hit starts a needle, so it lies on a
    character boundary; the characters between consecutive hits are counted by decoding them."""
    chars: dict[int, int] = {}
    previous_byte = previous_char = 0
    for offset in sorted({o for starts in hits.values() for o in starts}):
        previous_char += len(data[previous_byte:offset].decode("utf-8", "surrogatepass"))
        previous_byte = offset
        chars[offset] = previous_char
    return {needle: [chars[o] for o in starts] for needle, starts in hits.items()}


class _RegexEngine:
    """The stdlib fallback: needles sharing a first character go into one lookahead alternation,
    longest first, which `re` runs as a fast scan for that character; every needle that is a prefix
    of the one found at an offset also occurs there."""

    def __init__(self, needles: tuple[str, ...]) -> None:
        by_first: dict[str, list[str]] = {}
        for needle in sorted(needles, key=lambda n: (-len(n), n)):
            by_first.setdefault(needle[0], []).append(needle)
        self._groups = tuple(
            (
                re.compile("(?=(" + "|".join(re.escape(n) for n in group) + "))"),
                {n: tuple(p for p in group if p != n and n.startswith(p)) for n in group},
            )
            for group in by_first.values()
        )

    def find(self, text: str) -> Hits:
        hits: Hits = {}
        for pattern, prefixes in self._groups:
            for found in pattern.finditer(text):
                start = found.start()
                needle = found.group(1)
                for each in (needle, *prefixes[needle]):
                    known = hits.get(each)
                    if known is None:
                        hits[each] = [start]
                    else:
                        known.append(start)
        return hits
