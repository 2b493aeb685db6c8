"""Durations and byte sizes as the configuration writes them (`1h30m`, `256MiB`), both ways
(`format_duration` lives with the other duration forms in `watcher.timefmt`)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

from watcher.timefmt import format_duration

__all__ = [
    "ByteSize",
    "Duration",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HINT = "a duration like 30s, 5m, 1h, 1h30m or 500ms"


def parse_duration(value: object) -> float:
    """`30s`, `5m`, `1h30m`, `500ms`, `2d` or a bare number of seconds → seconds (float, > 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", text):
            seconds = sum(
                float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)
            )
        else:
            raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    else:
        raise ValueError(f"expected {_DURATION_HINT}, got a {type(value).__name__}")
    if not seconds > 0:
        raise ValueError(f"expected a positive duration ({_DURATION_HINT}), got {value!r}")
    return seconds


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: object) -> int:
    """`256MiB`, `2GiB`, `10MB`, `512` (bytes) → bytes (int, > 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 256MiB or 10MB, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        unit = (match.group(2) or "b").lower()
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"expected a size like 256MiB or 10MB, got {value!r}")
    if size <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return size


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
