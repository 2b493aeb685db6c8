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


class _HyperscanEngine:
    """Block-mode scan of the text's UTF-8 bytes; byte offsets are mapped back to characters only
    for text that is not ASCII (where the two differ)."""

    def __init__(self, needles: tuple[str, ...]) -> None:
        assert _hs is not None
        self._needles = needles
        self._encoded = [needle.encode("utf-8", "surrogatepass") for needle in needles]
        self._lengths = [len(needle) for needle in self._encoded]
        self._db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        self._db.compile(
            expressions=self._encoded,
            ids=list(range(len(needles))),
            elements=len(needles),
            flags=0,  # report every end offset; a literal's start is end - length
            literal=True,
        )
        # A scratch space serves one scan at a time: one per thread.
        self._local = threading.local()

    def _scratch(self) -> Any:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = _hs.Scratch(self._db)
        return scratch

    def find(self, text: str) -> Hits:
        data = text.encode("utf-8", "surrogatepass")
        hits = self.find_bytes(data)
        if len(data) != len(text) and hits:
            hits = _to_char_offsets(data, hits)
        return hits

    def find_bytes(self, data: bytes | bytearray) -> Hits:
        found: list[list[int]] = [[] for _ in self._needles]
        lengths = self._lengths

        def on_match(ident: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            found[ident].append(end - lengths[ident])

        self._db.scan(bytes(data), match_event_handler=on_match, scratch=self._scratch())
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
