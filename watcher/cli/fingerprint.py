"""`watcher fingerprint build` and `watcher fingerprint info`: index a private source tree, and say
what an index holds (never what it was built from)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from watcher.cli.context import EXIT_CLEAN, load_config
from watcher.cli.render import render_fingerprint_info
from watcher.private.build import build_index
from watcher.private.index import read_header
from watcher.private.keys import FingerprintKey, key_from_env


def fingerprint_command(args: argparse.Namespace) -> int:
    if args.action == "build":
        return _build(args)
    header = read_header(args.file, older=True)
    sys.stdout.write(
        render_fingerprint_info(args.file, header, args.file.stat().st_size, args.format) + "\n"
    )
    return EXIT_CLEAN


def _build(args: argparse.Namespace) -> int:
    key = _key(args)
    result = build_index(
        [Path(d) for d in args.dirs],
        args.out,
        key,
        name=args.name,
        excludes=args.exclude or (),
        winnowing=not args.no_winnow,
    )
    header = result.header
    sys.stdout.write(
        f"{args.out}: {header.files:,} files, {header.lines:,} line hashes, "
        f"{header.winnow:,} winnowing fingerprints, {result.size:,} bytes "
        f"(index {header.name!r}, key id {header.key_id}; {result.common_lines:,} common "
        f"lines and {result.skipped:,} non-text files left out)\n"
    )
    return EXIT_CLEAN


def _key(args: argparse.Namespace) -> FingerprintKey:
    if args.config is not None:
        config = load_config(args.config)
        secret = config.fingerprint_secret()
        if secret is not None:
            return FingerprintKey(secret)
    return key_from_env(name=args.key_env)
