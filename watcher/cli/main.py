"""Entry points only: the argument parser, dispatch to the command modules, and the mapping of
errors to exit codes (0 clean, 1 findings at or above --fail-on / a failed command or service, 2
usage or unreadable input, 3 `watcher run` on a damaged state file)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from watcher.cli.context import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_STATE_DAMAGED,
    EXIT_USAGE,
    load_config,
)
from watcher.errors import WatcherError
from watcher.model import Severity
from watcher.service.logs import configure_logging

# The service's modules (aiohttp server, store, channels) load only for the commands that use them,
# so `watcher scan` in CI starts fast.

__all__ = ["EXIT_CLEAN", "EXIT_FINDINGS", "EXIT_USAGE", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its one-line message."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="watcher",
        description="Screen what npm and PyPI releases actually published, and page the owners.",
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default=None,
        help="stderr log format (default: the configuration's log.format, else auto)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    scan_parser = sub.add_parser(
        "scan",
        help="scan one release (a local archive or a registry target) for accidental exposure",
        description="TARGET: a local .tgz / .whl / .tar.gz / .zip, npm:NAME@VERSION or "
        "pypi:NAME==VERSION.",
    )
    _add_scan_arguments(scan_parser)

    approve_parser = sub.add_parser(
        "approve",
        help="the pre-publish gate: scan TARGET like `watcher scan` and, when it passes "
        "--fail-on, post its approval to the service (token from WATCHER_API_TOKEN)",
        description="TARGET: the artifact about to be published (the file `npm pack` or "
        "`python -m build` wrote). Exit 0 approved, 1 findings at or above --fail-on (nothing "
        "posted), 2 usage or the server refused (its message on stderr).",
    )
    approve_parser.add_argument(
        "--server", required=True, metavar="URL", help="the service's API base URL (https)"
    )
    _add_scan_arguments(approve_parser)

    run_parser = sub.add_parser(
        "run",
        help="run the service: follow the registries, scan every new release, page the owners",
    )
    run_parser.add_argument("--config", type=Path, required=True, help="service configuration")

    check_parser = sub.add_parser(
        "check-config",
        help="validate a configuration and print the resolved plan (secrets masked)",
    )
    check_parser.add_argument("config", type=Path)
    check_parser.add_argument(
        "--online",
        action="store_true",
        help="also read each watched name from its registry (exit 1 if one is not found there "
        "or cannot be read)",
    )

    status_parser = sub.add_parser(
        "status", help="cursors, last release per package, open incidents and outbox depth"
    )
    status_parser.add_argument("--config", type=Path, required=True, help="service configuration")
    status_parser.add_argument("--format", choices=["text", "json"], default="text")

    test_alert_parser = sub.add_parser(
        "test-alert",
        help="send a clearly marked test incident through one owner's channels and report each "
        "channel's outcome (exit 0 all delivered, 1 otherwise, 2 configuration error)",
    )
    test_alert_parser.add_argument("--owner", required=True, help="owner name from the config")
    test_alert_parser.add_argument("--config", type=Path, required=True)

    runbook_parser = sub.add_parser(
        "runbook",
        help="print a release's runbook again from the store",
        description="RELEASE: NAME@VERSION or npm:NAME@VERSION (npm), pypi:NAME==VERSION or "
        "NAME==VERSION (PyPI).",
    )
    runbook_parser.add_argument("release")
    runbook_parser.add_argument("--config", type=Path, required=True)
    runbook_parser.add_argument(
        "--fresh",
        action="store_true",
        help="rebuild it from the stored findings now (current unpublish-window hours) instead "
        "of printing it as it was paged",
    )
    runbook_parser.add_argument("--format", choices=["text", "json"], default="text")
    contain_parser = sub.add_parser(
        "contain",
        help="reverse what automatic containment did to an incident",
        description="--undo INCIDENT|NAME@VERSION: restore the dist-tags it moved and remove the "
        "deprecation it added (exit 0 all undone, 1 otherwise).",
    )
    contain_parser.add_argument("--undo", required=True, metavar="INCIDENT|NAME@VERSION")
    contain_parser.add_argument("--config", type=Path, required=True)
    _add_queue_parsers(sub)
    _add_fingerprint_parser(sub)
    _store_parser(sub)
    return parser


def _add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    """TARGET and the flags `watcher scan` and `watcher approve` share."""
    parser.add_argument("target")
    parser.add_argument(
        "--baseline",
        default=None,
        help="previous release to compare with: a local archive, a registry target, `auto` "
        "(the previous release on the registry) or `none`. Default: auto for registry targets, "
        "none for local files.",
    )
    parser.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    parser.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        default=Severity.HIGH.value,
        help="exit 1 when a finding is at or above this severity (default: high)",
    )
    parser.add_argument(
        "--config", type=Path, help="service configuration (internal_domains, limits, verify)"
    )
    parser.add_argument(
        "--fingerprints",
        action="append",
        type=Path,
        metavar="FILE",
        help="a private fingerprint index (`watcher fingerprint build`) to match every text, "
        "map source and nested member against; repeatable, added to the configuration's",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="ask each found credential's own provider whether it is live (one read-only call "
        "per credential, to the provider URLs of the configuration's `verify:` section)",
    )


def _add_fingerprint_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`watcher fingerprint build|info`."""
    parser = sub.add_parser(
        "fingerprint",
        help="index a private source tree (hashes only) so scans find its files in any release",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build",
        help="hash a private source tree into an index file",
        description="The lines are hashed with a key: scan.fingerprint_key of --config, else "
        "the environment variable --key-env (default WATCHER_FINGERPRINT_KEY). The index records only the "
        "key's id.",
    )
    build.add_argument("dirs", nargs="+", metavar="DIR")
    build.add_argument("--out", type=Path, required=True, metavar="FILE")
    build.add_argument("--name", metavar="LABEL", help="the index's label (default: DIR's name)")
    build.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="leave out files or directories matching this glob (name or relative path); "
        "repeatable. node_modules, .git, virtualenvs and caches are always left out",
    )
    build.add_argument("--key-env", default="WATCHER_FINGERPRINT_KEY", metavar="NAME")
    build.add_argument("--config", type=Path, help="take the key from this configuration")
    build.add_argument(
        "--no-winnow",
        action="store_true",
        help="line hashes only (smaller; reformatted code is then not found)",
    )
    info = actions.add_parser("info", help="what an index holds (counts, label, key id)")
    info.add_argument("file", type=Path, metavar="FILE")
    info.add_argument("--format", choices=["text", "json"], default="text")


def _item_id(text: str) -> int:
    """An outbox or release id as listed (`12` or `#12`)."""
    try:
        value = int(text.removeprefix("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a numeric id, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive id, got {text!r}")
    return value


def _add_queue_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`watcher outbox [requeue]` and `watcher releases [retry]`. `--config` is accepted before
    or after the action; the action's copy defaults to SUPPRESS so it never overwrites a value
    given before it."""
    outbox = _queue_parser(
        sub,
        "outbox",
        "pages waiting per channel, disabled channels and dead letters; `requeue` puts dead "
        "letters back (safe while the service runs)",
    )
    requeue = _action_parser(
        outbox,
        "requeue",
        "dead letters back to pending (attempts reset, order kept per channel); "
        "--channel also enables a channel its endpoint disabled",
        matched="something was requeued or enabled",
        ids="dead letter ids",
    )
    requeue.add_argument("--all", action="store_true", help="every dead letter and channel")
    requeue.add_argument("--channel", metavar="NAME", help="one channel (e.g. team/webhook)")

    releases = _queue_parser(
        sub,
        "releases",
        "releases not yet scanned (failed, pending, scanning); `retry` puts failed ones "
        "back in the scan queue (safe while the service runs)",
    )
    releases.add_argument(
        "--state",
        choices=["failed", "pending", "scanning"],
        help="only releases in this state (default: all three)",
    )
    releases.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    retry = _action_parser(
        releases,
        "retry",
        "failed releases back to pending (attempts reset, due now)",
        matched="something was retried",
        ids="release ids",
    )
    retry.add_argument("--all-failed", action="store_true", help="every failed release")


def _store_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    store = sub.add_parser("store", help="the state store: copy an embedded store into PostgreSQL")
    actions = store.add_subparsers(dest="action", required=True)
    migrate = actions.add_parser(
        "migrate",
        help="copy every table of a state file into an empty PostgreSQL database",
        description="Copies cursors, releases, manifests, findings, incidents and their notes, "
        "the outbox, disabled channels, containment jobs and the rest, in one transaction. "
        "Stop the service first. Exit 0 when copied, 2 when it cannot be.",
    )
    migrate.add_argument("--from", dest="source", type=Path, required=True, metavar="STATE_DB")
    migrate.add_argument("--to", dest="target", required=True, metavar="POSTGRESQL_URL")


def _queue_parser(
    sub: argparse._SubParsersAction[_Parser], name: str, help_text: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("--config", type=Path, help="service configuration")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    return parser


def _action_parser(
    queue: argparse.ArgumentParser, name: str, help_text: str, *, matched: str, ids: str
) -> argparse.ArgumentParser:
    actions = queue.add_subparsers(dest="action")
    action = actions.add_parser(
        name,
        help=help_text,
        description=f"Exit 0 when {matched}, 1 when nothing matched, 2 on a usage or "
        "configuration error.",
    )
    action.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    action.add_argument("ids", nargs="*", type=_item_id, metavar="ID", help=ids)
    return action


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("scan", "approve"):
        configure_logging(args.log_format or "auto")
    try:
        return _dispatch(parser, args)
    except WatcherError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    # each command's module loads only when it runs (noqa: PLC0415 below)
    if args.command == "scan":
        from watcher.cli.scan import scan_command  # noqa: PLC0415

        return scan_command(args)
    if args.command == "approve":
        from watcher.cli.approve import approve_command  # noqa: PLC0415

        return approve_command(args)
    if args.command == "run":
        return _run(args.config, args.log_format)
    if args.command == "check-config":
        return _check_config(args.config, online=args.online, log_format=args.log_format)
    if args.command == "status":
        from watcher.cli.status import status_command  # noqa: PLC0415

        return status_command(args.config, args.format)
    if args.command == "test-alert":
        from watcher.cli.ops import test_alert_command  # noqa: PLC0415

        return test_alert_command(args.config, args.owner, args.log_format)
    if args.command == "runbook":
        from watcher.cli.ops import runbook_command  # noqa: PLC0415

        return runbook_command(args)
    if args.command == "contain":
        from watcher.cli.contain import contain_command  # noqa: PLC0415

        return contain_command(args)
    if args.command == "fingerprint":
        from watcher.cli.fingerprint import fingerprint_command  # noqa: PLC0415

        return fingerprint_command(args)
    if args.command == "outbox":
        from watcher.cli.queues import outbox_command  # noqa: PLC0415

        return outbox_command(parser, args)
    if args.command == "releases":
        from watcher.cli.queues import releases_command  # noqa: PLC0415

        return releases_command(parser, args)
    if args.command == "store":
        from watcher.cli.store import store_command  # noqa: PLC0415

        return store_command(args)
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _run(config_path: Path, log_format: str | None) -> int:
    config = load_config(config_path)
    configure_logging(log_format or config.log.format, config.log.level)  # type: ignore[arg-type]
    from watcher.errors import ServiceFailed  # noqa: PLC0415
    from watcher.service.daemon import Service  # noqa: PLC0415
    from watcher.store.types import StateDamaged  # noqa: PLC0415

    try:
        asyncio.run(Service(config).run())
    except ServiceFailed:  # already the last log line (`service_stopped` with its error)
        return EXIT_FINDINGS
    except StateDamaged as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_STATE_DAMAGED
    except OSError as exc:  # the listen address is taken, the state directory is not writable
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_CLEAN


def _check_config(config_path: Path, *, online: bool = False, log_format: str | None = None) -> int:
    config = load_config(config_path)
    from watcher.config import describe_plan  # noqa: PLC0415

    sys.stdout.write(f"{config_path}: valid\n{describe_plan(config)}\n")
    if online:
        from watcher.cli.online import online_check  # noqa: PLC0415

        # where each registry came from goes to stderr with the other log lines
        configure_logging(log_format or config.log.format, config.log.level)  # type: ignore[arg-type]
        sys.stdout.flush()
        return EXIT_CLEAN if online_check(config) else EXIT_FINDINGS
    return EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
