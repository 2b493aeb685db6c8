"""Text hidden one encoding deep, for the secret check to search once more.

Two shapes are worth decoding: a base64 blob that starts like a PEM block (`LS0tLS1CRUdJTi` is
`-----BEGIN` encoded) or like a JSON object (`eyJ` / `ewo` are `{"` / `{\\n`) — a Kubernetes
secret's `tls.key`, a service-account file pasted as one string — and a JWT, whose payload is such
an object and sometimes carries a password or an API key.

Finding candidates costs one `str.find` pass per prefix; a hit counts only where a blob starts
(the character before it is not base64). Everything is bounded: blobs per document, the length of
one blob, the decoded bytes per document; and decoded text is never decoded again (depth one).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

from watcher.scanning.needles import occurrences

_PREFIXES = ("LS0tLS1CRUdJTi", "eyJ", "ewo")
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_BLOB = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
MAX_BLOBS = 32
MAX_BLOB_CHARS = 64 * 1024
MAX_DECODED_BYTES = 512 * 1024
# decoded bytes must be this share of printable text to be searched (random binary is not)
_MIN_PRINTABLE = 0.95


@dataclass(frozen=True, slots=True)
class DecodedText:
    start: int  # where the encoded text starts in the outer text
    text: str
    encoding: str  # "base64" or "jwt-payload"


PREFIXES = _PREFIXES


def decoded_texts(text: str, hits: dict[str, list[int]] | None = None) -> Iterator[DecodedText]:
    """Each decodable blob's text, in no particular order, within the bounds above. `hits`: where
    the prefixes occur, when the scanner's one pass already found them (else `str.find`)."""
    blobs = 0
    budget = MAX_DECODED_BYTES
    seen_ends: set[int] = set()
    for prefix in _PREFIXES:
        after = 0
        for pos in occurrences(text, prefix, hits):
            if blobs >= MAX_BLOBS or budget <= 0:
                return
            if pos < after:
                continue
            match = _BLOB.match(text, pos, pos + MAX_BLOB_CHARS)
            starts_blob = pos == 0 or text[pos - 1] not in _B64_CHARS
            if match is None or not starts_blob or match.end() in seen_ends:
                continue
            seen_ends.add(match.end())
            blobs += 1
            decoded, end = _decode(text, match)
            seen_ends.add(end)  # a JWT's payload is not decoded a second time on its own
            if decoded is not None:
                budget -= len(decoded.text)
                if budget >= 0:
                    yield decoded
            after = match.end()


def _decode(text: str, match: re.Match[str]) -> tuple[DecodedText | None, int]:
    """The decoded text (None if it is not text) and where the encoded part ends."""
    blob = match.group()
    encoding = "base64"
    end = match.end()
    if blob.startswith("eyJ") and text.startswith(".eyJ", end):
        # a JWT: header.payload.signature — the payload is what may carry a credential
        payload = _BLOB.match(text, end + 1, end + 1 + MAX_BLOB_CHARS)
        if payload is None:
            return None, end
        blob, encoding, end = payload.group(), "jwt-payload", payload.end()
    raw = _b64decode(blob)
    if raw is None:
        return None, end
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, end
    if not decoded or not _mostly_printable(decoded):
        return None, end
    return DecodedText(match.start(), decoded, encoding), end


def _mostly_printable(decoded: str) -> bool:
    # all printable (the usual case) is one C-speed call; only mixed text is counted per character
    if decoded.replace("\n", " ").replace("\r", " ").replace("\t", " ").isprintable():
        return True
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in decoded)
    return printable >= _MIN_PRINTABLE * len(decoded)


def _b64decode(blob: str) -> bytes | None:
    body = blob.rstrip("=")
    body += "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            return base64.urlsafe_b64decode(body)
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None
