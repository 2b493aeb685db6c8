"""Entry points only: parse arguments, load configuration, call into the package, map errors to
exit codes (0 clean, 1 findings at or above --fail-on / a failed command, 2 usage or unreadable input)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import structlog

from watcher.archive import ArchiveLimits
from watcher.checks.base import ScanOptions
from watcher.config import load_config
from watcher.errors import WatcherError
from watcher.fetch import Registries, resolve
from watcher.logs import configure_logging
from watcher.model import Report, Severity
from watcher.output import render_json, render_sarif, render_text
from watcher.scan import ScanRequest, scan_release

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

log = structlog.get_logger("watcher.cli")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its one-line message."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="watcher", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="stderr log format",
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
        "--config", type=Path, help="service configuration (internal_domains, limits)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format)
    try:
        if args.command == "scan":
            return _scan(args)
    except WatcherError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _scan(args: argparse.Namespace) -> int:
    options, limits, registries = _scan_settings(args.config)
    with tempfile.TemporaryDirectory(prefix="watcher-scan-") as workdir:
        files = asyncio.run(resolve(args.target, args.baseline, Path(workdir), registries))
        report = scan_release(
            [
                ScanRequest(p, files.ecosystem, options=options, limits=limits)
                for p in files.targets
            ],
            [
                ScanRequest(p, files.ecosystem, options=options, limits=limits)
                for p in files.baselines
            ],
            prefix_paths=files.from_registry,
        )
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


def _scan_settings(config_path: Path | None) -> tuple[ScanOptions, ArchiveLimits, Registries]:
    if config_path is None:
        return ScanOptions(), ArchiveLimits(), Registries()
    config = load_config(config_path)
    registries = Registries(npm_url=config.registries.npm.url, pypi_url=config.registries.pypi.url)
    return config.scan_options(), config.archive_limits(), registries


def _print_report(report: Report, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(render_json(report) + "\n")
    elif fmt == "sarif":
        sys.stdout.write(render_sarif(report) + "\n")
    else:
        sys.stdout.write(render_text(report, color=sys.stdout.isatty()))


if __name__ == "__main__":
    sys.exit(main())
