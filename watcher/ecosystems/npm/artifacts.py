"""How an npm tarball identifies itself: its root `package.json` (`package/package.json`)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import orjson

from watcher.ecosystems.base import Identity
from watcher.model import Ecosystem

NAME = Ecosystem("npm")


def identify(leaf: str, data: bytes | bytearray, current: Ecosystem | None) -> Identity | None:
    """The root package.json, unless an earlier file said the artifact is another ecosystem's."""
    if leaf != "package.json" or current not in (None, NAME):
        return None
    try:
        manifest: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(manifest, dict):
        return None
    return Identity(_text(manifest.get("name")), _text(manifest.get("version")), manifest)


def package_relative(path: str) -> str:
    """The path as the project sees it: npm's `package/` prefix off."""
    parts = PurePosixPath(path).parts
    if parts[:1] == ("package",):
        parts = parts[1:]
    return "/".join(parts)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def claims_filename(filename: str) -> bool:
    """No file name alone says a file is an npm tarball (`.tgz` is any gzipped tar)."""
    return False
