"""`watcher status`: cursors, last release per package, open incidents and the queues, read from
the state file (safe while the service runs)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from watcher.cli.context import EXIT_CLEAN, EXIT_FINDINGS, has_state, load_config, with_store
from watcher.cli.render import render_status


def status_command(config_path: Path, fmt: str) -> int:
    config = load_config(config_path)
    if not has_state(config):
        return EXIT_FINDINGS
    summary = asyncio.run(with_store(config, lambda store: store.status()))
    sys.stdout.write(render_status(summary, fmt, now=time.time()) + "\n")
    return EXIT_CLEAN
