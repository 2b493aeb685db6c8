"""`watcher status`: cursors, last release per package, open incidents, the queues and the last
approvals from the gate, read from the state file (safe while the service runs)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.cli.context import EXIT_CLEAN, EXIT_FINDINGS, has_state, load_config, with_store
from watcher.cli.render import render_status

if TYPE_CHECKING:
    from watcher.store.api import Store
    from watcher.store.types import Approval, Lease, StatusSummary

LAST_APPROVALS = 10


async def _read(store: Store) -> tuple[StatusSummary, list[Approval], list[Lease]]:
    return await store.status(), await store.recent_approvals(LAST_APPROVALS), await store.leases()


def status_command(config_path: Path, fmt: str) -> int:
    config = load_config(config_path)
    if not has_state(config):
        return EXIT_FINDINGS
    summary, approvals, leases = asyncio.run(with_store(config, _read))
    sys.stdout.write(
        render_status(summary, fmt, now=time.time(), approvals=approvals, leases=leases) + "\n"
    )
    return EXIT_CLEAN
