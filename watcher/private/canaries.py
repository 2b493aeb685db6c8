"""Canaries: values the owner planted in private places (repositories, wikis, config). A release
that carries one leaked from there. A canary is a literal value, or a literal prefix plus the
SHA-256 of the whole value (only the prefix is kept in memory; candidates that start with it are
hashed and compared). The scanner finds the literals in its one needle pass, beside the secret
rules' keywords."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

# What can follow a prefix inside one token: a canary never spans quotes, spaces or separators.
_TOKEN_TAIL = re.compile(r"[^\s\"'`,;:(){}\[\]<>\\|]{0,256}")


@dataclass(frozen=True, slots=True)
class Canary:
    id: str
    value: str | None = field(default=None, repr=False)
    prefix: str | None = None
    sha256: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.value is None) == (self.prefix is None or self.sha256 is None):
            raise ValueError(f"canary {self.id!r}: expected a value, or a prefix and a sha256")

    @property
    def needle(self) -> str:
        """The literal the needle pass looks for."""
        literal = self.value if self.value is not None else self.prefix
        assert literal is not None
        return literal

    def found_at(self, text: str, offset: int) -> bool:
        """Whether the canary itself starts at `offset`, where its needle was found."""
        if self.value is not None:
            return True
        assert self.prefix is not None and self.sha256 is not None
        start = offset + len(self.prefix)
        tail = _TOKEN_TAIL.match(text, start)
        end = tail.end() if tail else start
        want = self.sha256.lower()
        # the token may run on past the value (`…CANARY.json`): every end is tried, longest first
        for stop in range(end, start, -1):
            if (
                hashlib.sha256(text[offset:stop].encode("utf-8", "surrogatepass")).hexdigest()
                == want
            ):
                return True
        return False
