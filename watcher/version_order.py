"""Choosing among versions by a version key: ascending order, the newest, the greatest below a
target (a release's baseline).

The keys are each ecosystem's own (its unit's `version_key`: semver for npm, PEP 440 for PyPI): a
key function returns a sortable key with an `is_prerelease` attribute, or None for a version that
does not parse. The feeds get theirs from their package source, the rest through
`watcher.ecosystems.versions` by ecosystem name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

VersionKey = Callable[[str], Any | None]


def ascending(key: VersionKey, versions: Iterable[str]) -> list[str]:
    """In version order; versions that do not parse last, in text order."""

    def rank(v: str) -> tuple[int, object, str]:
        k = key(v)
        return (0, k, v) if k is not None else (1, None, v)

    try:
        return sorted(versions, key=rank)
    except TypeError:  # unparsable versions mixed in: fall back to text order
        return sorted(versions)


def greatest_below(key: VersionKey, target: str, versions: Iterable[str]) -> str | None:
    """The greatest version strictly below `target`; pre-releases count only when the target is
    one. Versions that do not parse are ignored."""
    target_key = key(target)
    if target_key is None:
        return None
    allow_pre = bool(target_key.is_prerelease)
    best: tuple[Any, str] | None = None
    for candidate in versions:
        k = key(candidate)
        if k is None or not k < target_key:
            continue
        if k.is_prerelease and not allow_pre:
            continue
        if best is None or best[0] < k:
            best = (k, candidate)
    return None if best is None else best[1]


def newest(key: VersionKey, versions: Iterable[str]) -> str | None:
    """The greatest stable version, or the greatest pre-release when there is no stable one."""
    stable: tuple[Any, str] | None = None
    pre: tuple[Any, str] | None = None
    for candidate in versions:
        k = key(candidate)
        if k is None:
            continue
        if k.is_prerelease:
            if pre is None or pre[0] < k:
                pre = (k, candidate)
        elif stable is None or stable[0] < k:
            stable = (k, candidate)
    chosen = stable or pre
    return None if chosen is None else chosen[1]
