"""What is hashed, the same way when building an index and when matching a release.

A line is compared with its whitespace removed (indentation, spacing around operators, CRLF), so
reformatting that keeps line breaks still matches. Lines shorter than the floor (`}`, `else {`,
`return;`) say nothing about where code came from and are left out. Winnowing (Schleimer, Wilkerson
and Aiken's MOSS method) covers reformatting that moves line breaks: the token stream is cut into
k-grams, each hashed, and the minimum of every window of w hashes is kept, so any shared run of at
least w + k - 1 tokens shares a fingerprint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from watcher.private.keys import Hasher

LINE_FLOOR = 12  # bytes left after whitespace is removed
WINNOW_K = 8  # tokens per k-gram: about one statement
WINNOW_W = 32  # k-grams per window: any shared run of 39 tokens (three statements) is found

_WHITESPACE = b" \t\r\x0b\x0c"
_TOKEN = re.compile(rb"[A-Za-z_$][\w$]*|\d[\w.]*|[^\s\w]")
_QUOTES = bytes.maketrans(b"'`", b'""')  # quote style is a formatter's choice


def encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def squeezed(data: bytes) -> bytes:
    """The text without horizontal whitespace; lines stay where they were."""
    return data.translate(None, _WHITESPACE)


def split_lines(squeezed_data: bytes) -> list[bytes]:
    """The lines once, for both the whole-file hash and the line hashes."""
    return squeezed_data.split(b"\n")


def distinct_lines(
    squeezed_data: bytes, floor: int = LINE_FLOOR, lines: list[bytes] | None = None
) -> set[bytes]:
    split = lines if lines is not None else squeezed_data.split(b"\n")
    return {line for line in split if len(line) >= floor}


def whole(squeezed_data: bytes, lines: list[bytes] | None = None) -> bytes:
    """What the whole-file hash covers: blank lines and trailing newlines do not count (the
    non-empty lines joined by one newline: the same bytes as collapsing runs of newlines and
    stripping the ends, at a fifth of a regex's cost on a 60 MB map's sources)."""
    split = lines if lines is not None else squeezed_data.split(b"\n")
    return b"\n".join(filter(None, split))


def winnow(data: bytes, hasher: Hasher, k: int = WINNOW_K, w: int = WINNOW_W) -> set[bytes]:
    """Winnowing fingerprints of a text's token stream (keyed)."""
    tokens = _TOKEN.findall(data.translate(_QUOTES))
    if len(tokens) < k:
        return {hasher(b"\x1f".join(tokens))} if tokens else set()
    grams = [hasher(b"\x1f".join(tokens[i : i + k])) for i in range(len(tokens) - k + 1)]
    return set(_window_minima(grams, w))


def _window_minima(hashes: list[bytes], w: int) -> Iterable[bytes]:
    """The smallest hash of each window of `w` (robust winnowing: the rightmost smallest, and one
    kept hash is not kept again while it stays the window's minimum)."""
    if len(hashes) <= w:
        yield min(hashes)
        return
    kept = -1
    for end in range(w, len(hashes) + 1):
        start = end - w
        if kept < start:
            best = start
            for i in range(start + 1, end):
                if hashes[i] <= hashes[best]:
                    best = i
            kept = best
            yield hashes[kept]
        elif hashes[end - 1] <= hashes[kept]:
            kept = end - 1
            yield hashes[kept]
