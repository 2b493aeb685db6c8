"""Is this text a private file? One text against every configured index.

1. the whole-file hash (the file shipped as it was, under any name);
2. otherwise its distinctive lines, each hashed once: a private file counts as found when at least
   `threshold` of its distinctive lines are in the text (and at least `MIN_LINES`, unless the file
   has fewer);
3. a private file that some lines picked (`CANDIDATE_LINES`) but that did not reach the threshold
   is compared by winnowing fingerprints (reformatted code), on that text only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from watcher.errors import FingerprintError
from watcher.private import normalise
from watcher.private.index import FingerprintIndex, read_index
from watcher.private.keys import FingerprintKey

DEFAULT_THRESHOLD = 0.5
MIN_LINES = 4
CANDIDATE_LINES = 2
MAX_WINNOW_BYTES = 8 * 1024 * 1024  # winnowing a text costs a keyed hash per token


@dataclass(frozen=True, slots=True)
class FileMatch:
    index: str  # the index's label
    file: int  # the private file's number in that index
    lines: int  # its distinctive lines found in the text (all of them for a whole-file match)
    how: str  # "file", "lines" or "winnowing"


class Matcher:
    def __init__(
        self,
        indexes: Sequence[FingerprintIndex],
        key: FingerprintKey,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        for index in indexes:
            if index.header.key_id != key.id:
                raise FingerprintError(
                    f"fingerprint index {index.name!r} was built with key id "
                    f"{index.header.key_id}; the configured key has id {key.id}"
                )
        self._indexes = tuple(indexes)
        self._key = key
        self._threshold = threshold
        self._winnow_hash = key.winnow_hasher()
        self._floor = min(i.header.params.line_floor for i in indexes) if indexes else 0

    def match(self, text: str) -> list[FileMatch]:
        if not self._indexes:
            return []
        data = normalise.encoded(text)
        squeezed = normalise.squeezed(data)
        split = normalise.split_lines(squeezed)
        file_hash = self._key.file_hash(normalise.whole(squeezed, split))
        found: list[FileMatch] = []
        pending = []
        for index in self._indexes:
            number = index.by_file_hash.get(file_hash)
            if number is not None:
                found.append(FileMatch(index.name, number, index.line_counts[number], "file"))
            else:
                pending.append(index)
        if not pending:
            return found
        lines = list(normalise.distinct_lines(squeezed, self._floor, split))
        digests = self._key.hash_lines(lines)
        grams: dict[tuple[int, int], set[bytes]] = {}
        for index in pending:
            floor = index.header.params.line_floor
            table = index.lines
            votes: dict[int, int] = {}
            if floor == self._floor:
                chosen: list[bytes] = digests
            else:
                chosen = [d for d, line in zip(digests, lines, strict=True) if len(line) >= floor]
            # the hits first, in C (a text of open-source code has next to none), then their votes
            for digest in (index.line_keys or frozenset(table)).intersection(chosen):
                for number in table[digest]:
                    votes[number] = votes.get(number, 0) + 1
            shared: Counter[int] | None = None
            for number, count in votes.items():
                total = index.line_counts[number]
                if count >= min(MIN_LINES, total) and count >= self._threshold * total:
                    found.append(FileMatch(index.name, number, count, "lines"))
                elif count >= CANDIDATE_LINES and index.winnow_counts[number]:
                    if shared is None:
                        shared = self._winnow_votes(index, data, grams)
                    if shared[number] >= self._threshold * index.winnow_counts[number]:
                        found.append(FileMatch(index.name, number, count, "winnowing"))
        return found

    def _winnow_votes(
        self, index: FingerprintIndex, data: bytes, cache: dict[tuple[int, int], set[bytes]]
    ) -> Counter[int]:
        """How many of each private file's winnowing fingerprints the text has (computed once
        per text and parameter set, only when a candidate needs it)."""
        params = (index.header.params.winnow_k, index.header.params.winnow_w)
        grams = cache.get(params)
        if grams is None:
            grams = cache[params] = (
                normalise.winnow(data, self._winnow_hash, *params)
                if len(data) <= MAX_WINNOW_BYTES
                else set()
            )
        votes: Counter[int] = Counter()
        table = index.winnow
        for gram in grams:
            numbers = table.get(gram)
            if numbers is not None:
                votes.update(numbers)
        return votes


@cache
def _load(path: str, mtime_ns: int, size: int) -> FingerprintIndex:
    return read_index(Path(path))


def load_index(path: Path) -> FingerprintIndex:
    """Read once per process (and again only when the file changes)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise FingerprintError(f"{path}: cannot read fingerprint index: {exc.strerror}") from None
    return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
