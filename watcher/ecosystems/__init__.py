"""The ecosystem registry: every unit the service knows, by name.

The built-in units (npm, PyPI) are imported on first use, so naming the registered ecosystems
(`names()`) costs no import of their clients. A plugin adds one with `register(unit)` before the
configuration is read; `registered(unit)` does the same for the length of a `with` block (tests).
The table is written only by `register`/`unregister`: the process-wide list of plugins, like
Python's own codec registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

from watcher.ecosystems.base import EcosystemUnit
from watcher.model import Ecosystem

# name → "module:attribute" of a built-in unit, imported on first `get`
_BUILTIN = {
    "npm": "watcher.ecosystems.npm.unit:UNIT",
    "pypi": "watcher.ecosystems.pypi.unit:UNIT",
}
_UNITS: dict[str, EcosystemUnit] = {}
_PLUGINS: list[str] = []  # registration order after the built-ins


class UnknownEcosystem(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown ecosystem {self.name!r} (registered: {', '.join(names())})"


def names() -> list[Ecosystem]:
    """Every registered ecosystem's name: the built-ins first, then in registration order."""
    return [Ecosystem(n) for n in (*_BUILTIN, *_PLUGINS)]


def get(name: str) -> EcosystemUnit:
    """The unit registered under `name`; UnknownEcosystem (a KeyError) otherwise."""
    unit = _UNITS.get(name)
    if unit is not None:
        return unit
    target = _BUILTIN.get(name)
    if target is None:
        raise UnknownEcosystem(name)
    module, _, attribute = target.partition(":")
    loaded: EcosystemUnit = getattr(importlib.import_module(module), attribute)
    _UNITS[name] = loaded
    return loaded


def find(name: str) -> EcosystemUnit | None:
    """`get`, or None when nothing is registered under `name`."""
    try:
        return get(name)
    except UnknownEcosystem:
        return None


def all_units() -> list[EcosystemUnit]:
    return [get(n) for n in names()]


def register(unit: EcosystemUnit) -> None:
    """Add a unit; ValueError when its name is taken."""
    name = unit.name.value
    if name in _BUILTIN or name in _PLUGINS:
        raise ValueError(f"ecosystem {name!r} is already registered")
    _UNITS[name] = unit
    _PLUGINS.append(name)


def unregister(name: str) -> None:
    if name in _BUILTIN:
        raise ValueError(f"ecosystem {name!r} is built in")
    _UNITS.pop(name, None)
    if name in _PLUGINS:
        _PLUGINS.remove(name)


@contextmanager
def registered(unit: EcosystemUnit) -> Iterator[EcosystemUnit]:
    register(unit)
    try:
        yield unit
    finally:
        unregister(unit.name.value)
