"""How a PyPI artifact identifies itself: PKG-INFO (sdist) or METADATA (wheel) at its top level,
and a wheel by its file name."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from watcher.ecosystems.base import Identity
from watcher.model import Ecosystem

NAME = Ecosystem("pypi")


def identify(leaf: str, data: bytes | bytearray, current: Ecosystem | None) -> Identity | None:
    """Core metadata's `Name` and `Version` headers (the header block ends at the first blank
    line). Claims the artifact whatever an earlier file said: a metadata file is authoritative."""
    if leaf not in ("PKG-INFO", "METADATA"):
        return None
    name = version = None
    for line in data[:65536].decode("utf-8", "replace").splitlines():
        if not line:
            break
        key, _, value = line.partition(":")
        if key == "Name":
            name = name or value.strip()
        elif key == "Version":
            version = version or value.strip()
    return Identity(name, version)


def claims_filename(filename: str) -> bool:
    return filename.endswith(".whl")


def package_relative(path: str) -> str:
    """The path as the project sees it: an sdist's top folder (`name-1.0/`) off."""
    parts = PurePosixPath(path).parts
    if len(parts) > 1 and re.search(r"-\d", parts[0]):
        parts = parts[1:]
    return "/".join(parts)
