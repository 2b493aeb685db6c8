"""Version ordering per ecosystem and the choice of a release's baseline.

The baseline of a release is the greatest published version below it in the ecosystem's own
ordering (its unit's `version_key`: semver for npm, PEP 440 for PyPI), never the most recent by
publish time: mirrors rewrite `time`, and a 1.2.5 backport published after 2.0.0 must be compared
with 1.2.4. The two orders are defined here; each unit picks its own (the choosing is
`watcher.version_order`'s).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from watcher import version_order
from watcher.ecosystems import get
from watcher.model import Ecosystem

# node-semver's loose form accepts a leading "v" or "=" and surrounding blanks; the registry
# itself stores normalised versions, so this only matters for very old documents.
_SEMVER = re.compile(
    r"^\s*[v=]*\s*(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?\s*$"
)


@dataclass(frozen=True, slots=True, order=True)
class SemVer:
    """Semver 2.0.0 precedence as a sortable key (build metadata ignored, as the spec says)."""

    major: int
    minor: int
    patch: int
    # A release sorts above all of its pre-releases: (1, ()) > (0, ids).
    release_rank: int
    prerelease: tuple[tuple[int, int, str], ...]

    @property
    def is_prerelease(self) -> bool:
        return self.release_rank == 0


def parse_semver(text: str) -> SemVer | None:
    match = _SEMVER.match(text)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        return SemVer(int(major), int(minor), int(patch), 1, ())
    # Numeric identifiers compare numerically and sort below alphanumeric ones.
    ids = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split("."))
    return SemVer(int(major), int(minor), int(patch), 0, ids)


def parse_pep440(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def version_key(ecosystem: Ecosystem, text: str) -> Any | None:
    """A sortable key for `text`, or None when it is not a valid version of that ecosystem."""
    return get(ecosystem).version_key(text)


def is_prerelease(ecosystem: Ecosystem, text: str) -> bool:
    key = version_key(ecosystem, text)
    if key is None:
        return False
    return bool(key.is_prerelease)


def select_baseline(ecosystem: Ecosystem, target: str, versions: Iterable[str]) -> str | None:
    """The greatest version strictly below `target`; pre-releases count only when the target is
    one. Versions that do not parse are ignored."""
    return version_order.greatest_below(get(ecosystem).version_key, target, versions)


def newest(ecosystem: Ecosystem, versions: Iterable[str]) -> str | None:
    """The greatest stable version, or the greatest pre-release when there is no stable one."""
    return version_order.newest(get(ecosystem).version_key, versions)
