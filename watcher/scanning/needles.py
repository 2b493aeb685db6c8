"""Every occurrence of many literal strings in a text, in one pass.

The secret rules' keyword prefilter runs over every text member and every embedded source of every
source map (100 MB and more for a large bundle), so it is the scanner's hottest loop. Hyperscan (a
compiled multi-literal automaton, SIMD, gigabytes per second) does it when its wheel is installed;
otherwise one stdlib regex per group of needles sharing a first character. Both report exactly the
same thing: for each needle, the start offset of every occurrence, overlapping ones included, in
text order — the tests hold the two engines to a plain `str.find` loop.

A `Gate` moves a rule's first check into the same pass: keywords that are common words in code
(`token`, `Auth`, `AC`) occur tens of thousands of times in a large bundle, and each occurrence cost
a callback and a Python regex attempt. Hyperscan also runs each gate's pattern (the rule's regex made
looser, so it matches wherever the rule can) over ASCII text and reports only the keyword occurrences
close enough before the end of one of its matches. Text that is not ASCII is scanned the same way
as one byte per character, `?` for each character that is not ASCII (the gates' patterns accept a
`?` wherever the rule's regex could take such a character), when every needle is ASCII without a
`?`. Otherwise, and with the stdlib engine, a gate reports every occurrence of its keywords, as a
literal pass does.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_hs: Any
try:  # the wheel bundles the library; a platform without one falls back to `re`
    import hyperscan

    _hs = hyperscan
except ImportError:  # pragma: no cover - exercised where the wheel is missing
    _hs = None

Hits = dict[str, list[int]]


def find_all(text: str, needle: str) -> Iterator[int]:
    """The offset of every occurrence of `needle` in `text`, overlapping ones included, in text
    order: the plain `str.find` loop (the engines are held to it), for texts the pass did not
    cover."""
    at = text.find(needle)
    while at != -1:
        yield at
        at = text.find(needle, at + 1)


def occurrences(text: str, needle: str, hits: Hits | None) -> Iterator[int]:
    """Offsets of `needle` in `text`: from the scanner's one pass when given (`hits`), else
    `find_all`."""
    return iter(hits.get(needle, ())) if hits is not None else find_all(text, needle)


@dataclass(frozen=True, slots=True)
class Gate:
    """Where a rule can match, as a condition the engine checks itself (see the module's doc).

    Contract: wherever the rule matches at an occurrence of one of its `keywords` starting at `K`,
    `pattern` (hyperscan syntax, over ASCII bytes) has a match ending at some `E` with
    `E - width <= K` and `K + len(keyword) <= E + tail`. The hits under `name` are then the
    occurrences of the keywords inside such windows: fewer than all, never one the rule could
    use."""

    name: str
    pattern: str
    keywords: tuple[str, ...]
    width: int
    tail: int = 0


class NeedleIndex:
    """Compiled once per needle set; `find` may be called from several threads."""

    def __init__(
        self, needles: Iterable[str], *, gates: Iterable[Gate] = (), engine: str | None = None
    ) -> None:
        self.needles: tuple[str, ...] = tuple(sorted(set(needles)))
        self.gates: tuple[Gate, ...] = tuple(sorted(set(gates), key=lambda g: g.name))
        if not self.needles and not self.gates:
            raise ValueError("needles must be non-empty strings")
        if not all(self.needles) or not all(all(g.keywords) and g.keywords for g in self.gates):
            raise ValueError("needles must be non-empty strings")
        if {g.name for g in self.gates} & set(self.needles) or len(
            {g.name for g in self.gates}
        ) != len(self.gates):
            raise ValueError("gate names must be unique and differ from the needles")
        chosen = engine or ("hyperscan" if _hs is not None else "re")
        # text the gates cannot read gets every occurrence of their keywords
        literals = tuple(sorted({*self.needles, *(k for g in self.gates for k in g.keywords)}))
        if chosen == "hyperscan":
            if _hs is None:
                raise ValueError("the hyperscan engine is not installed")
            engine_hs = _HyperscanEngine(literals)
            self._ascii = _gated_ascii(self.needles, self.gates)
            self._literal_find: Callable[[str], Hits] = engine_hs.find
            self._find_bytes: Callable[[bytes | bytearray], Hits] | None = engine_hs.find_bytes
        elif chosen == "re":
            self._ascii = None
            self._literal_find = _RegexEngine(literals).find
            self._find_bytes = None
        else:
            raise ValueError(f"unknown engine {chosen!r}")
        self._gate_only = frozenset(literals) - frozenset(self.needles)
        self._placeholder_safe = all(n.isascii() and "?" not in n for n in self.needles)
        self.engine = chosen

    def find(self, text: str) -> Hits:
        """{needle: [start offsets]} for the needles that occur, and {gate name: [start offsets of
        its keywords that may match]} for the gates; offsets index `text` (characters)."""
        if self._ascii is not None:
            if text.isascii():
                return self._ascii.find(text.encode("ascii"))
            if self._placeholder_safe:
                # one byte per character, `?` for each that is not ASCII: offsets stay character
                # offsets, an ASCII needle without `?` occurs exactly where it did, and the gates'
                # patterns take `?` wherever Python's regex could take a character not ASCII
                return self._ascii.find(text.encode("ascii", "replace"))
        hits = self._literal_find(text)
        if not self.gates:
            return hits
        for gate in self.gates:
            lists = [hits[k] for k in gate.keywords if k in hits]
            if lists:
                hits[gate.name] = (
                    lists[0] if len(lists) == 1 else sorted({o for each in lists for o in each})
                )
        for keyword in self._gate_only:
            hits.pop(keyword, None)
        return hits

    def find_bytes(self, data: bytes | bytearray) -> Hits:
        """The needles' occurrences in raw bytes (a binary's content), for ASCII needles; offsets
        index `data`. Gates do not apply: their keywords are not reported."""
        if self._find_bytes is not None:
            hits = self._find_bytes(data)
        else:
            hits = self._literal_find(bytes(data).decode("latin-1"))  # one character per byte
        for keyword in self._gate_only:
            hits.pop(keyword, None)
        return hits


def _literal(needle: bytes) -> bytes:
    # every byte as a \xHH escape: the binding passes expressions as C strings, so a NUL
    # (UTF-16 needles are full of them) must not appear raw
    return "".join(f"\\x{byte:02x}" for byte in needle).encode()


class _Database:
    """One compiled hyperscan database of the needles in one encoding (and, for ASCII text, the
    gates' patterns after them: their ids report end offsets, length 0)."""

    def __init__(self, encoded: list[bytes], patterns: Iterable[str] = ()) -> None:
        assert _hs is not None
        expressions = [_literal(n) for n in encoded]
        flags = [0] * len(expressions)  # report every end offset; a literal's start is end - length
        self.lengths = [len(needle) for needle in encoded]
        for pattern in patterns:
            expressions.append(pattern.encode("ascii"))
            flags.append(_hs.HS_FLAG_DOTALL)
            self.lengths.append(0)
        self.db = _compiled_database(expressions, flags)
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


def _compiled_database(expressions: list[bytes], flags: list[int]) -> Any:
    """A block-mode database, from the compile cache when an earlier process left it there: the
    gates' patterns take hyperscan a fraction of a second to compile, on every start otherwise.
    The cache (`WATCHER_CACHE_DIR`, else `$XDG_CACHE_HOME/registry-watcher`, else
    `~/.cache/registry-watcher`) is only ever an optimisation: unreadable, unwritable or stale
    (another hyperscan, another CPU), the database is compiled as if it were not there."""
    assert _hs is not None
    digest = hashlib.sha256(
        repr((_HS_VERSION, platform.machine(), expressions, flags)).encode()
    ).hexdigest()
    directory = _cache_dir()
    path = directory / f"hyperscan-{digest[:32]}.db" if directory is not None else None
    try:
        cached: bytes | None = path.read_bytes() if path is not None else None
    except OSError:
        cached = None
    if cached is not None:
        try:
            return _hs.loadb(cached, _hs.HS_MODE_BLOCK)
        except _hs.error:
            pass  # written by another hyperscan or for another CPU: compile
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(
        expressions=expressions,
        ids=list(range(len(expressions))),
        elements=len(expressions),
        flags=flags,
    )
    if path is None:
        return db
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(_hs.dumpb(db))
        os.replace(handle.name, path)
    except OSError:
        pass  # a read-only file system: compile again next time
    return db


def _cache_dir() -> Path | None:
    configured = os.environ.get("WATCHER_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "registry-watcher"
    try:
        return Path.home() / ".cache" / "registry-watcher"
    except RuntimeError:  # no home directory to speak of: no cache
        return None


_HS_VERSION = getattr(_hs, "__version__", "") if _hs is not None else ""


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


def _gated_ascii(needles: tuple[str, ...], gates: tuple[Gate, ...]) -> _GatedAscii | None:
    """None without gates, or when a gate's pattern does not compile (a rules file of one's own):
    the gates then report every occurrence of their keywords, as with the stdlib engine."""
    if not gates or not all(n.isascii() for n in needles):
        return None
    assert _hs is not None
    try:
        return _GatedAscii(needles, gates)
    except _hs.error:
        return None


class _GatedAscii:
    """ASCII bytes: the needles as literals and the gates as patterns, in one scan."""

    def __init__(self, needles: tuple[str, ...], gates: tuple[Gate, ...]) -> None:
        self._needles = needles
        self._gates = gates
        self._keywords = tuple(tuple(k.encode("ascii") for k in g.keywords) for g in gates)
        self._db = _Database([n.encode("ascii") for n in needles], (g.pattern for g in gates))

    def find(self, data: bytes) -> Hits:
        found = self._db.scan(data)
        count = len(self._needles)
        hits = {self._needles[i]: found[i] for i in range(count) if found[i]}
        for index, gate in enumerate(self._gates):
            ends = found[count + index]
            if ends:
                starts = _keywords_near(data, ends, gate, self._keywords[index])
                if starts:
                    hits[gate.name] = starts
        return hits


def _keywords_near(
    data: bytes, ends: list[int], gate: Gate, keywords: tuple[bytes, ...]
) -> list[int]:
    """Start offsets of the keywords lying in `[end - gate.width, end + gate.tail]` of one of
    `ends`."""
    spans: list[list[int]] = []
    width, tail = gate.width, gate.tail
    for end in sorted(ends):
        start = max(0, end - width)
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end + tail)
        else:
            spans.append([start, end + tail])
    starts: set[int] = set()
    for lo, hi in spans:
        for keyword in keywords:
            at = data.find(keyword, lo, hi)
            while at != -1:
                starts.add(at)
                at = data.find(keyword, at + 1, hi)
    return sorted(starts)


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
