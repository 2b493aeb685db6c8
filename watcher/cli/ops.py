"""One-shot operator commands behind the CLI: `watcher test-alert` (a clearly marked test incident
through one owner's channels, each channel's outcome reported) and `watcher runbook` (a stored
incident's runbook printed again, or rebuilt from the stored findings)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher import ecosystems
from watcher.alerts import build_channels
from watcher.alerts.base import DeliveryResult
from watcher.cli.context import EXIT_CLEAN, EXIT_FINDINGS, has_state, load_config, with_store
from watcher.cli.render import render_outcome, render_runbook
from watcher.config import Config
from watcher.errors import ConfigError, RegistryError
from watcher.incidents.lifecycle import IncidentLifecycle, opened, test_incident
from watcher.model import Ecosystem, RunbookStep, incident_key
from watcher.scanning.baseline import baseline_manifest
from watcher.scanning.targets import bare_ref_ecosystem, registry_unit
from watcher.service.logs import configure_logging
from watcher.store.api import Store

# ---------------------------------------------------------------------------------- test-alert


@dataclass(frozen=True, slots=True)
class ChannelOutcome:
    channel: str
    result: DeliveryResult


async def send_test_alert(
    config: Config, owner: str, *, now: datetime | None = None
) -> list[ChannelOutcome]:
    """Send the test incident straight through the owner's channels (not the outbox: the point is
    to see each channel answer now). ConfigError for an unknown owner."""
    owner_config = config.owners.get(owner)
    if owner_config is None:
        known = ", ".join(sorted(config.owners))
        raise ConfigError(f"unknown owner {owner!r} (owners defined: {known})")
    event = opened(test_incident(owner, now or datetime.now(UTC)))
    outcomes = []
    for channel in build_channels(owner, owner_config):
        try:
            outcomes.append(ChannelOutcome(channel.name, await channel.send(event)))
        finally:
            await channel.close()
    return outcomes


# ------------------------------------------------------------------------------------- runbook


def parse_release_spec(spec: str) -> tuple[Ecosystem, str, str]:
    """`<ecosystem>:<ref>` (`npm:NAME@VERSION`, `pypi:NAME==VERSION`), or a bare ref that only
    one ecosystem's form fits (`NAME==VERSION` is PyPI's, `NAME@VERSION` npm's)."""
    unit = registry_unit(spec) or ecosystems.get(bare_ref_ecosystem(spec))
    name, version = unit.parse_ref(spec)
    return unit.name, name, version


@dataclass(frozen=True, slots=True)
class StoredRunbook:
    ecosystem: Ecosystem
    name: str
    version: str
    steps: list[RunbookStep]
    source: str  # "incident" (as paged) | "rebuilt" (from stored findings, now)
    state: str | None = None  # the incident's state, when there is one
    owner: str | None = None
    opened_at: float | None = None
    resolution: str | None = None


def _registry_url(config: Config, ecosystem: Ecosystem, name: str) -> str | None:
    try:
        unit = ecosystems.get(ecosystem)
        return unit.resolve(config.registries.for_ecosystem(ecosystem)).registry_for(name)
    except (ConfigError, RegistryError):
        return None  # the runbook names a placeholder instead


async def stored_runbook(
    store: Store,
    config: Config,
    ecosystem: Ecosystem,
    name: str,
    version: str,
    *,
    fresh: bool = False,
    now: datetime | None = None,
) -> StoredRunbook | None:
    """The runbook of the incident for this release as it was paged; with `fresh`, or when the
    release has findings but no incident, rebuilt from the stored findings at `now` (the npm
    unpublish window's hours left are then current). None when the store knows neither."""
    stored = await store.get_incident(incident_key(ecosystem, name, version))
    at = now or datetime.now(UTC)
    if stored is not None:
        page = stored
        common: dict[str, Any] = {
            "state": stored.state.value,
            "owner": stored.owner,
            "opened_at": stored.opened_at.timestamp(),
            "resolution": stored.resolution,
        }
        if page.runbook and not fresh:
            return StoredRunbook(ecosystem, name, version, page.runbook, "incident", **common)
        findings, published = page.findings, page.published_at
    else:
        common = {}
        release = await store.get_release(ecosystem, name, version)
        if release is None:
            return None
        findings = await store.get_findings(release.id)
        if not findings:
            return None
        published = release.release.published_at
    below = await baseline_manifest(store, ecosystem, name, version)
    lifecycle = IncidentLifecycle(
        store, config, registry_for=lambda eco, package: _registry_url(config, eco, package)
    )
    steps = lifecycle.runbooks.write(
        ecosystem,
        name,
        version,
        findings,
        published_at=published,
        previous_good=below[0] if below else None,
        now=at,
    )
    return StoredRunbook(ecosystem, name, version, steps, "rebuilt", **common)


# ------------------------------------------------------------------------------------ commands


def test_alert_command(config_path: Path, owner: str, log_format: str | None) -> int:
    config = load_config(config_path)
    configure_logging(log_format or config.log.format, config.log.level)  # type: ignore[arg-type]
    outcomes = asyncio.run(send_test_alert(config, owner))
    for outcome in outcomes:
        sys.stdout.write(render_outcome(outcome) + "\n")
    return EXIT_CLEAN if all(o.result.ok for o in outcomes) else EXIT_FINDINGS


def runbook_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(args.log_format or config.log.format, config.log.level)
    ecosystem, name, version = parse_release_spec(args.release)
    if not has_state(config):
        return EXIT_FINDINGS
    book = asyncio.run(
        with_store(
            config,
            lambda store: stored_runbook(store, config, ecosystem, name, version, fresh=args.fresh),
        )
    )
    if book is None:
        print(
            f"watcher: no incident or findings for {ecosystem.value} {name} {version} in "
            f"{config.store.location}",
            file=sys.stderr,
        )
        return EXIT_FINDINGS
    sys.stdout.write(render_runbook(book, args.format) + "\n")
    return EXIT_CLEAN
