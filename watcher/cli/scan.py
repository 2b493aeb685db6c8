"""`watcher scan`: one release (local files or registry targets) scanned once and reported."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from watcher.cli.context import EXIT_CLEAN, EXIT_FINDINGS, load_config
from watcher.cli.render import render_json, render_sarif, render_text
from watcher.intent.publishers import publisher_findings
from watcher.model import Ecosystem, Release, Report, Severity
from watcher.scanning.archive import ArchiveLimits
from watcher.scanning.checks.base import ScanOptions
from watcher.scanning.checks.changes import raise_with_origin
from watcher.scanning.checks.private import matcher_for
from watcher.scanning.scan import ScanRequest, scan_release

if TYPE_CHECKING:
    from watcher.config import Config

log = structlog.get_logger("watcher.cli.scan")


def scan_command(args: argparse.Namespace) -> int:
    report, _ = run_scan(args)
    _print_report(report, args.format)
    return exit_for(report, args.fail_on)


def exit_for(report: Report, fail_on: str) -> int:
    """`watcher scan`'s exit: 1 when a finding is at or above `fail_on`, else 0."""
    threshold = Severity(fail_on)
    failing = [f for f in report.findings if f.severity.at_least(threshold)]
    return EXIT_FINDINGS if failing else EXIT_CLEAN


def run_scan(args: argparse.Namespace) -> tuple[Report, list[ScannedFile]]:
    """Scan TARGET as `watcher scan` does (same flags); the report, and the digests of the
    target's files (read before a downloaded copy is removed)."""
    config = load_config(args.config) if args.config else None
    options = config.scan_options(_owner(args.target, config)) if config else ScanOptions()
    if args.fingerprints:
        options = dataclasses.replace(
            options,
            fingerprints=(*options.fingerprints, *(str(p) for p in args.fingerprints)),
            fingerprint_key=options.fingerprint_key
            or (config.fingerprint_secret() if config else None),
        )
    matcher_for(options)  # a missing key or an unreadable index fails here, before any download
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
        files = [ScannedFile.of(path) for path in targets]
    if config is not None and releases is not None:
        # expect.publishers against the registry's document of the target (an origin finding)
        target = releases[0]
        expected = config.expectations(target.ecosystem, target.name).publishers
        if unexpected := publisher_findings(expected, target):
            report.findings[:0] = unexpected
            raise_with_origin(report.findings)
    if verify:
        asyncio.run(_verify(report, config))
    threshold = Severity(args.fail_on)
    log.info(
        "scan_finished",
        stage="scan",
        ecosystem=report.target.ecosystem,
        package=report.target.name,
        version=report.target.version,
        findings=len(report.findings),
        failing=sum(1 for f in report.findings if f.severity.at_least(threshold)),
        duration_s=round(report.elapsed_s, 3),
    )
    return report, files


@dataclasses.dataclass(frozen=True, slots=True)
class ScannedFile:
    """One scanned target file: its name, SHA-256, and its npm-style integrity (sha512 SRI)."""

    filename: str
    sha256: str
    integrity: str

    @classmethod
    def of(cls, path: Path) -> ScannedFile:
        sha256, sha512 = hashlib.sha256(), hashlib.sha512()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                sha256.update(chunk)
                sha512.update(chunk)
        sri = "sha512-" + base64.b64encode(sha512.digest()).decode()
        return cls(path.name, sha256.hexdigest(), sri)


def _owner(target: str, config: Config) -> str | None:
    """The owner of a registry target's package: its fingerprints and canaries apply too."""
    from watcher.errors import RegistryError  # noqa: PLC0415
    from watcher.scanning.targets import registry_unit  # noqa: PLC0415

    unit = registry_unit(target)
    if unit is None:
        return None
    try:
        name, _ = unit.parse_ref(target)
    except RegistryError:  # no version given: the rest is the name
        name = target.removeprefix(f"{unit.name.value}:")
    return config.owner_of(unit.name, name)


def _scan_files(
    args: argparse.Namespace, workdir: Path, config: Config | None
) -> tuple[list[Path], list[Path], Ecosystem | None, bool, tuple[Release, Release] | None]:
    """Local files to scan: as given, or downloaded when a registry is involved; with the
    registry's (target, baseline) releases when both came from it."""
    from watcher import ecosystems  # noqa: PLC0415 - names only: no unit is imported

    registry_targets = tuple(f"{name}:" for name in ecosystems.names())
    baseline: str | None = args.baseline
    if not args.target.startswith(registry_targets) and (
        baseline is None
        or baseline == "none"
        or not baseline.startswith((*registry_targets, "auto"))
    ):
        given = [] if baseline in (None, "none") else [Path(baseline)]
        return [Path(args.target)], given, None, False, None
    from watcher.scanning.targets import Registries, resolve  # noqa: PLC0415 - aiohttp only when needed

    registries = Registries(config.registries.sections()) if config else Registries()
    files = asyncio.run(resolve(args.target, baseline, workdir, registries))
    return files.targets, files.baselines, files.ecosystem, files.from_registry, files.releases


async def _verify(report: Report, config: Config | None) -> None:
    """Liveness of the credentials found, each asked of its own provider (watcher.verify)."""
    from watcher import ecosystems  # noqa: PLC0415
    from watcher.verify.engine import CredentialVerifier  # noqa: PLC0415 - aiohttp, botocore
    from watcher.verify.model import VerifySettings  # noqa: PLC0415

    settings = config.verify.settings() if config else VerifySettings()
    registry_url = None
    unit = ecosystems.find(report.target.ecosystem) if report.target.ecosystem else None
    if unit is not None:
        section = config.registries.for_ecosystem(unit.name) if config else unit.section_model()
        registry_url = unit.token_registry(section, report.target.name or "")
    await CredentialVerifier(settings).verify_report(report, registry_url)


def _print_report(report: Report, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(render_json(report) + "\n")
    elif fmt == "sarif":
        sys.stdout.write(render_sarif(report) + "\n")
    else:
        sys.stdout.write(render_text(report, color=sys.stdout.isatty()))
