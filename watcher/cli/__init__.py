"""The `watcher` command line."""

from watcher.cli.main import main

__all__ = ["main"]
