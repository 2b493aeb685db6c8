"""What the commands share: exit codes, the configuration they read and the state file they open.

pydantic and the store load only when a command needs them, so `watcher scan` in CI starts fast.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.store.api import Store

EXIT_CLEAN = 0
EXIT_FINDINGS = 1  # findings at or above --fail-on, or a command that did not do what was asked
EXIT_USAGE = 2
EXIT_STATE_DAMAGED = 3  # `watcher run`: restore the state file; restarting will not help

_T = TypeVar("_T")


def load_config(path: Path) -> Config:
    from watcher.config import load_config as load  # noqa: PLC0415 - pydantic only when needed

    return load(path)


def has_state(config: Config) -> bool:
    """Whether the state file exists; if not, says so on stderr (the command then exits 1)."""
    if config.store.url is not None or config.store.path.exists():
        return True  # a server database: the store says so itself if it cannot be reached
    print(f"watcher: {config.store.path}: no state yet (the service has not run)", file=sys.stderr)
    return False


async def with_store(config: Config, action: Callable[[Store], Awaitable[_T]]) -> _T:
    """Run `action` on the state file, closing it afterwards."""
    from watcher.store import open_store  # noqa: PLC0415

    store = await open_store(config.store)
    try:
        return await action(store)
    finally:
        await store.close()
