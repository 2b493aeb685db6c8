"""`watcher store migrate --from STATE_DB --to POSTGRESQL_URL`: the embedded store copied into
PostgreSQL (watcher.store.migrate); one line per table, the URL always with its password masked."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from watcher.cli.context import EXIT_CLEAN, EXIT_USAGE
from watcher.store.postgres.url import is_postgres_url, mask_password
from watcher.store.types import StoreError


def store_command(args: argparse.Namespace) -> int:
    if args.action == "migrate":
        return _migrate(args.source, args.target)
    return EXIT_USAGE


def _migrate(source: Path, url: str) -> int:
    from watcher.store.migrate import Copied, migrate  # noqa: PLC0415

    shown = mask_password(url)
    if not is_postgres_url(url):
        print(f"watcher: --to: expected postgresql://user:password@host:5432/db, got {shown}")
        return EXIT_USAGE

    def progress(copied: Copied) -> None:
        print(f"  {copied.table}: {copied.rows} rows", flush=True)

    print(f"copying {source} into {shown}")
    try:
        copied = asyncio.run(migrate(source, url, progress=progress))
    except StoreError as exc:
        print(f"watcher: {str(exc).replace(url, shown)}", file=sys.stderr)
        return EXIT_USAGE
    total = sum(c.rows for c in copied)
    print(f"copied {total} rows in {len(copied)} tables; point store.url at {shown}")
    return EXIT_CLEAN
