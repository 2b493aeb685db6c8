"""Entry points only: parse arguments, load configuration, call into the package, map errors to
exit codes (0 clean, 1 findings at or above --fail-on / a failed command, 2 usage or unreadable input)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import structlog

from watcher.cli.render import render_json, render_sarif, render_text
from watcher.errors import WatcherError
from watcher.model import Ecosystem, Release, Report, Severity
from watcher.scanning.archive import ArchiveLimits
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.scan import ScanRequest, scan_release
from watcher.service.logs import configure_logging

if TYPE_CHECKING:
    from watcher.cli.ops import StoredRunbook
    from watcher.config import Config
    from watcher.store.api import Store
    from watcher.store.types import StatusSummary, StoredRelease

# The service's modules (aiohttp server, store, channels) load only for the commands that use them,
# so `watcher scan` in CI starts fast.

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

log = structlog.get_logger("watcher.cli.main")
_T = TypeVar("_T")


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
    scan_parser.add_argument("target")
    scan_parser.add_argument(
        "--baseline",
        default=None,
        help="previous release to compare with: a local archive, a registry target, `auto` "
        "(the previous release on the registry) or `none`. Default: auto for registry targets, "
        "none for local files.",
    )
    scan_parser.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    scan_parser.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        default=Severity.HIGH.value,
        help="exit 1 when a finding is at or above this severity (default: high)",
    )
    scan_parser.add_argument(
        "--config", type=Path, help="service configuration (internal_domains, limits, verify)"
    )
    scan_parser.add_argument(
        "--verify",
        action="store_true",
        help="ask each found credential's own provider whether it is live (one read-only call "
        "per credential, to the provider URLs of the configuration's `verify:` section)",
    )

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
    _add_queue_parsers(sub)
    return parser


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
    outbox = sub.add_parser(
        "outbox",
        help="pages waiting per channel, disabled channels and dead letters; `requeue` puts dead "
        "letters back (safe while the service runs)",
    )
    outbox.add_argument("--config", type=Path, help="service configuration")
    outbox.add_argument("--format", choices=["text", "json"], default="text")
    outbox_actions = outbox.add_subparsers(dest="action")
    requeue = outbox_actions.add_parser(
        "requeue",
        help="dead letters back to pending (attempts reset, order kept per channel); "
        "--channel also enables a channel its endpoint disabled",
        description="Exit 0 when something was requeued or enabled, 1 when nothing matched, "
        "2 on a usage or configuration error.",
    )
    requeue.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    requeue.add_argument("ids", nargs="*", type=_item_id, metavar="ID", help="dead letter ids")
    requeue.add_argument("--all", action="store_true", help="every dead letter and channel")
    requeue.add_argument("--channel", metavar="NAME", help="one channel (e.g. team/webhook)")

    releases = sub.add_parser(
        "releases",
        help="releases not yet scanned (failed, pending, scanning); `retry` puts failed ones "
        "back in the scan queue (safe while the service runs)",
    )
    releases.add_argument("--config", type=Path, help="service configuration")
    releases.add_argument("--format", choices=["text", "json"], default="text")
    releases.add_argument(
        "--state",
        choices=["failed", "pending", "scanning"],
        help="only releases in this state (default: all three)",
    )
    releases.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    release_actions = releases.add_subparsers(dest="action")
    retry = release_actions.add_parser(
        "retry",
        help="failed releases back to pending (attempts reset, due now)",
        description="Exit 0 when something was retried, 1 when nothing matched, 2 on a usage or "
        "configuration error.",
    )
    retry.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    retry.add_argument("ids", nargs="*", type=_item_id, metavar="ID", help="release ids")
    retry.add_argument("--all-failed", action="store_true", help="every failed release")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "scan":
        configure_logging(args.log_format or "auto")
    try:
        if args.command == "scan":
            return _scan(args)
        if args.command == "run":
            return _run(args.config, args.log_format)
        if args.command == "check-config":
            return _check_config(args.config)
        if args.command == "status":
            return _status(args.config, args.format)
        if args.command == "test-alert":
            return _test_alert(args.config, args.owner, args.log_format)
        if args.command == "runbook":
            return _runbook(args)
        if args.command == "outbox":
            return _outbox(parser, args)
        if args.command == "releases":
            return _releases(parser, args)
    except WatcherError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _scan(args: argparse.Namespace) -> int:
    config = _load_config(args.config) if args.config else None
    options = config.scan_options() if config else ScanOptions()
    verify = args.verify or (config is not None and config.verify.enabled)
    options = dataclasses.replace(options, keep_credentials=verify)
    limits = config.archive_limits() if config else ArchiveLimits()
    with tempfile.TemporaryDirectory(prefix="watcher-scan-") as workdir:
        targets, baselines, ecosystem, prefix, releases = _scan_files(args, Path(workdir), config)
        report = scan_release(
            [ScanRequest(p, ecosystem, options=options, limits=limits) for p in targets],
            [ScanRequest(p, ecosystem, options=options, limits=limits) for p in baselines],
            prefix_paths=prefix,
            releases=releases,
        )
    if verify:
        asyncio.run(_verify(report, config))
    _print_report(report, args.format)
    threshold = Severity(args.fail_on)
    failing = [f for f in report.findings if f.severity.at_least(threshold)]
    log.info(
        "scan_finished",
        stage="scan",
        ecosystem=report.target.ecosystem,
        package=report.target.name,
        version=report.target.version,
        findings=len(report.findings),
        failing=len(failing),
        duration_s=round(report.elapsed_s, 3),
    )
    return EXIT_FINDINGS if failing else EXIT_CLEAN


def _scan_files(
    args: argparse.Namespace, workdir: Path, config: Config | None
) -> tuple[list[Path], list[Path], Ecosystem | None, bool, tuple[Release, Release] | None]:
    """Local files to scan: as given, or downloaded when a registry is involved; with the
    registry's (target, baseline) releases when both came from it."""
    registry_targets = ("npm:", "pypi:")
    baseline: str | None = args.baseline
    if not args.target.startswith(registry_targets) and (
        baseline is None
        or baseline == "none"
        or not baseline.startswith((*registry_targets, "auto"))
    ):
        given = [] if baseline in (None, "none") else [Path(baseline)]
        return [Path(args.target)], given, None, False, None
    from watcher.scanning.targets import Registries, resolve  # noqa: PLC0415 - aiohttp only when needed

    registries = (
        Registries(
            npm_url=config.registries.npm.url,
            pypi_url=config.registries.pypi.url,
            npm_scopes=config.registries.npm.scope_settings(),
        )
        if config
        else Registries()
    )
    files = asyncio.run(resolve(args.target, baseline, workdir, registries))
    return files.targets, files.baselines, files.ecosystem, files.from_registry, files.releases


async def _verify(report: Report, config: Config | None) -> None:
    """Liveness of the credentials found, each asked of its own provider (watcher.verify)."""
    from watcher.ecosystems.config_sources import resolve_npm_registries  # noqa: PLC0415
    from watcher.verify.engine import CredentialVerifier  # noqa: PLC0415 - aiohttp, botocore
    from watcher.verify.model import VerifySettings  # noqa: PLC0415

    settings = config.verify.settings() if config else VerifySettings()
    registry_url = None
    if report.target.ecosystem == Ecosystem.NPM.value:
        npm = config.registries.npm if config else None
        registries = resolve_npm_registries(
            npm.url if npm else None, npm.scope_settings() if npm else None
        )
        registry_url = registries.for_package(report.target.name or "").url
    await CredentialVerifier(settings).verify_report(report, registry_url)


def _load_config(path: Path) -> Config:
    from watcher.config import load_config  # noqa: PLC0415 - pydantic only when a config is read

    return load_config(path)


def _print_report(report: Report, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(render_json(report) + "\n")
    elif fmt == "sarif":
        sys.stdout.write(render_sarif(report) + "\n")
    else:
        sys.stdout.write(render_text(report, color=sys.stdout.isatty()))


# -- the service ---------------------------------------------------------------------------------


def _run(config_path: Path, log_format: str | None) -> int:
    config = _load_config(config_path)
    configure_logging(log_format or config.log.format, config.log.level)  # type: ignore[arg-type]
    try:
        from watcher.service.daemon import Service  # noqa: PLC0415

        asyncio.run(Service(config).run())
    except OSError as exc:  # the listen address is taken, the state directory is not writable
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_CLEAN


def _check_config(config_path: Path) -> int:
    config = _load_config(config_path)
    from watcher.config import describe_plan  # noqa: PLC0415

    sys.stdout.write(f"{config_path}: valid\n{describe_plan(config)}\n")
    return EXIT_CLEAN


def _status(config_path: Path, fmt: str) -> int:
    config = _load_config(config_path)
    if not config.store.path.exists():
        print(
            f"watcher: {config.store.path}: no state yet (the service has not run)", file=sys.stderr
        )
        return EXIT_FINDINGS
    summary = asyncio.run(_read_status(config.store.path))
    sys.stdout.write(render_status(summary, fmt) + "\n")
    return EXIT_CLEAN


async def _read_status(path: Path) -> StatusSummary:
    from watcher.store import open_store  # noqa: PLC0415

    store = await open_store(path)
    try:
        return await store.status()
    finally:
        await store.close()


def _ago(moment: float | None, now: float) -> str:
    if moment is None:
        return "never"
    return f"{max(0.0, now - moment):.0f}s ago"


def render_status(summary: StatusSummary, fmt: str, *, now: float | None = None) -> str:
    at = time.time() if now is None else now
    counts = summary.counts
    if fmt == "json":
        return json.dumps(
            {
                "cursors": [
                    {"feed": c.feed, "cursor": c.cursor, "updated_at": c.updated_at}
                    for c in summary.cursors
                ],
                "last_releases": [
                    {
                        "ecosystem": r.release.ecosystem.value,
                        "package": r.release.name,
                        "version": r.release.version,
                        "state": r.state.value,
                        "attempts": r.attempts,
                        "baseline": r.baseline,
                        "last_error": r.last_error,
                    }
                    for r in summary.last_releases
                ],
                "open_incidents": [
                    {
                        "dedup_key": i.dedup_key,
                        "owner": i.owner,
                        "severity": i.worst_severity.value,
                        "opened_at": i.opened_at,
                    }
                    for i in summary.open_incidents
                ],
                "releases_by_state": {k.value: v for k, v in counts.releases_by_state.items()},
                "outbox_depth": counts.outbox_depth,
                "outbox_oldest_age_s": counts.outbox_oldest_age_s,
                "dead_letters": counts.dead_letters,
                "disabled_channels": [
                    {
                        "channel": d.channel,
                        "reason": d.reason,
                        "disabled_at": d.disabled_at,
                        "recheck_at": d.recheck_at,
                    }
                    for d in summary.disabled_channels
                ],
            },
            indent=2,
        )
    lines = ["cursors:"]
    lines += [f"  {c.feed}: {c.cursor} (updated {_ago(c.updated_at, at)})" for c in summary.cursors]
    if not summary.cursors:
        lines.append("  (none: poll feeds keep per-package state)")
    lines.append("last release per package:")
    for r in summary.last_releases:
        extra = " baseline" if r.baseline else ""
        error = f" — {r.last_error}" if r.last_error else ""
        lines.append(
            f"  {r.release.ecosystem.value:<4} {r.release.name}@{r.release.version}: "
            f"{r.state.value}{extra} (attempts {r.attempts}){error}"
        )
    if not summary.last_releases:
        lines.append("  (none yet)")
    lines.append(f"open incidents: {len(summary.open_incidents)}")
    for i in summary.open_incidents:
        lines.append(
            f"  {i.dedup_key} owner {i.owner}, {i.worst_severity.value}, "
            f"opened {_ago(i.opened_at, at)}"
        )
    states = ", ".join(f"{k.value} {v}" for k, v in counts.releases_by_state.items())
    lines.append(f"releases: {states}")
    depth = sum(counts.outbox_depth.values())
    per_channel = ", ".join(f"{k} {v}" for k, v in counts.outbox_depth.items())
    oldest = (
        f", oldest {counts.outbox_oldest_age_s:.0f}s"
        if counts.outbox_oldest_age_s is not None
        else ""
    )
    lines.append(
        f"outbox: {depth} waiting{f' ({per_channel})' if per_channel else ''}{oldest}; "
        f"dead letters {counts.dead_letters}"
    )
    for d in summary.disabled_channels:
        recheck = max(0.0, d.recheck_at - at)
        lines.append(
            f"channel {d.channel} DISABLED (since {_ago(d.disabled_at, at)}, tried again in "
            f"{recheck:.0f}s; now: watcher outbox requeue --channel {d.channel}): {d.reason}"
        )
    return "\n".join(lines)


# -- operator commands ---------------------------------------------------------------------------


def _test_alert(config_path: Path, owner: str, log_format: str | None) -> int:
    config = _load_config(config_path)
    configure_logging(log_format or config.log.format, config.log.level)  # type: ignore[arg-type]
    from watcher.cli.ops import send_test_alert  # noqa: PLC0415

    outcomes = asyncio.run(send_test_alert(config, owner))
    for outcome in outcomes:
        sys.stdout.write(outcome.line() + "\n")
    return EXIT_CLEAN if all(o.result.ok for o in outcomes) else EXIT_FINDINGS


def _runbook(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    configure_logging(args.log_format or config.log.format, config.log.level)
    from watcher.cli.ops import parse_release_spec, render_runbook  # noqa: PLC0415

    ecosystem, name, version = parse_release_spec(args.release)
    if not config.store.path.exists():
        print(
            f"watcher: {config.store.path}: no state yet (the service has not run)", file=sys.stderr
        )
        return EXIT_FINDINGS
    book = asyncio.run(_read_runbook(config, ecosystem, name, version, fresh=args.fresh))
    if book is None:
        print(
            f"watcher: no incident or findings for {ecosystem.value} {name} {version} in "
            f"{config.store.path}",
            file=sys.stderr,
        )
        return EXIT_FINDINGS
    sys.stdout.write(render_runbook(book, args.format) + "\n")
    return EXIT_CLEAN


async def _read_runbook(
    config: Config, ecosystem: Ecosystem, name: str, version: str, *, fresh: bool
) -> StoredRunbook | None:
    from watcher.cli.ops import stored_runbook  # noqa: PLC0415
    from watcher.store import open_store  # noqa: PLC0415

    store = await open_store(config.store)
    try:
        return await stored_runbook(store, config, ecosystem, name, version, fresh=fresh)
    finally:
        await store.close()


# -- the queues: outbox and releases ---------------------------------------------------------------


def _queue_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config | None:
    """The configuration of `outbox`/`releases`, or None (message printed) when there is no state
    file yet. Usage errors exit 2 through argparse."""
    if getattr(args, "config", None) is None:
        parser.error(f"{args.command}: --config FILE is required")
    config = _load_config(args.config)
    if not config.store.path.exists():
        print(
            f"watcher: {config.store.path}: no state yet (the service has not run)", file=sys.stderr
        )
        return None
    return config


def _outbox(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.action == "requeue":
        chosen = [bool(args.ids), args.all, args.channel is not None]
        if sum(chosen) != 1:
            parser.error("outbox requeue: give dead letter IDs, --all or --channel NAME (one)")
    config = _queue_config(parser, args)
    if config is None:
        return EXIT_FINDINGS
    from watcher.cli.queues import read_outbox, render_outbox, render_requeue, requeue  # noqa: PLC0415
    from watcher.config import channel_id  # noqa: PLC0415

    if args.action != "requeue":
        configured = [channel_id(owner, kind) for owner, kind in config.channels()]
        view = asyncio.run(_with_store(config, lambda store: read_outbox(store, configured)))
        sys.stdout.write(render_outbox(view, args.format, now=time.time()) + "\n")
        return EXIT_CLEAN
    result = asyncio.run(
        _with_store(
            config,
            lambda store: requeue(store, args.ids, channel=args.channel, everything=args.all),
        )
    )
    sys.stdout.write(render_requeue(result) + "\n")
    for item_id in result.unmatched:
        print(f"watcher: #{item_id} is not a dead letter", file=sys.stderr)
    for warning in result.warnings:
        print(f"watcher: warning: {warning}", file=sys.stderr)
    return EXIT_CLEAN if result.matched else EXIT_FINDINGS


def _releases(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.action == "retry" and bool(args.ids) == bool(args.all_failed):
        parser.error("releases retry: give release IDs or --all-failed (one)")
    config = _queue_config(parser, args)
    if config is None:
        return EXIT_FINDINGS
    from watcher.cli.queues import (  # noqa: PLC0415
        UNFINISHED,
        render_releases,
        render_retry,
        retry_releases,
    )
    from watcher.store.types import ReleaseState  # noqa: PLC0415

    if args.action == "retry":
        result = asyncio.run(
            _with_store(
                config, lambda store: retry_releases(store, args.ids, all_failed=args.all_failed)
            )
        )
        sys.stdout.write(render_retry(result) + "\n")
        for refusal in result.refused:
            print(f"watcher: {refusal}", file=sys.stderr)
        return EXIT_CLEAN if result.retried else EXIT_FINDINGS
    states = [ReleaseState(args.state)] if args.state else list(UNFINISHED)

    async def listing(store: Store) -> tuple[list[StoredRelease], int]:
        counts = await store.counts()
        total = sum(counts.releases_by_state.get(state, 0) for state in states)
        return await store.releases_in_state(states, limit=max(0, args.limit)), total

    releases, total = asyncio.run(_with_store(config, listing))
    sys.stdout.write(render_releases(releases, args.format, now=time.time(), total=total) + "\n")
    return EXIT_CLEAN


async def _with_store(config: Config, action: Callable[[Store], Awaitable[_T]]) -> _T:
    from watcher.store import open_store  # noqa: PLC0415

    store = await open_store(config.store)
    try:
        return await action(store)
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())
