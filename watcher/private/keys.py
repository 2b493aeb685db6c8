"""The fingerprint key: every hash in an index is keyed, so an index without its key cannot be
tested against guessed lines. The index records only the key's id.

Keyed BLAKE2b is BLAKE2's own MAC mode (RFC 7693 §2.5): a PRF under the key like HMAC-SHA256, at
about a fifth of its cost per short input here (one line is one input). Each use has its own
personalisation, so a line hash, a whole-file hash and a winnowing fingerprint of the same bytes
never coincide.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping

from watcher.errors import FingerprintError

KEY_ENV = "WATCHER_FINGERPRINT_KEY"
MIN_KEY_CHARS = 16
# Line and winnowing hashes are 48-bit (index format 2: 6 bytes an entry, a 500k-line tree in a
# few MB); the odds of a stray match are in docs/fingerprints.md. The whole-file hash, one per
# private file and the only one that matches on its own, stays 64-bit.
DIGEST_SIZE = 6
FILE_DIGEST_SIZE = 8

Hasher = Callable[[bytes], bytes]


class FingerprintKey:
    """Derived once from the secret text; holds no secret in its repr."""

    __slots__ = ("_file", "_line", "_winnow", "id")

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw.strip()) < MIN_KEY_CHARS:
            raise FingerprintError(
                f"fingerprint key: expected at least {MIN_KEY_CHARS} characters of secret "
                "(value hidden)"
            )
        key = hashlib.blake2b(raw, digest_size=32, person=b"watcher-fp-key").digest()
        # the id says which key built an index; it is a hash of the key, never the key
        self.id = hashlib.blake2b(raw, digest_size=8, person=b"watcher-fp-id").hexdigest()
        self._line = hashlib.blake2b(key=key, digest_size=DIGEST_SIZE, person=b"line")
        self._file = hashlib.blake2b(key=key, digest_size=FILE_DIGEST_SIZE, person=b"file")
        self._winnow = hashlib.blake2b(key=key, digest_size=DIGEST_SIZE, person=b"winnow")

    def __repr__(self) -> str:
        return f"FingerprintKey(id={self.id})"

    def line_hasher(self) -> Hasher:
        return _hasher(self._line)

    def hash_lines(self, lines: Iterable[bytes]) -> list[bytes]:
        """Line hashes in one loop (the scan's hottest path: no call frame per line)."""
        copy = self._line.copy
        out: list[bytes] = []
        append = out.append
        for line in lines:
            h = copy()
            h.update(line)
            append(h.digest())
        return out

    def file_hash(self, data: bytes) -> bytes:
        h = self._file.copy()
        h.update(data)
        return h.digest()

    def winnow_hasher(self) -> Hasher:
        return _hasher(self._winnow)


def _hasher(base: hashlib.blake2b) -> Hasher:
    copy = base.copy

    def digest(data: bytes) -> bytes:
        # copying a keyed state skips the key block: one compression per short line
        h = copy()
        h.update(data)
        return h.digest()

    return digest


def key_from_env(env: Mapping[str, str] | None = None, name: str = KEY_ENV) -> FingerprintKey:
    value = (os.environ if env is None else env).get(name)
    if not value:
        raise FingerprintError(
            f"no fingerprint key: set {name} (or scan.fingerprint_key in the configuration) to "
            "the secret the index is keyed with"
        )
    return FingerprintKey(value)
