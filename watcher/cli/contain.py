"""`watcher contain --undo INCIDENT|NAME@VERSION`: reverse what automatic containment did.

Restores every dist-tag it moved and removes the deprecation it added, each as a job in the
state file (done once; a second run finishes what a first one left), and posts one update. An
unpublish cannot be undone (npm never allows that name@version again): it says so, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from watcher import ecosystems
from watcher.cli.context import EXIT_CLEAN, EXIT_FINDINGS, has_state, load_config, with_store
from watcher.cli.ops import parse_release_spec
from watcher.config import Config
from watcher.ecosystems.actions import ContainmentActions
from watcher.errors import RegistryError
from watcher.model import Ecosystem, Incident, incident_key
from watcher.service.autocontain import UNDO_IMPOSSIBLE, irreversible, undo
from watcher.service.logs import configure_logging
from watcher.store.api import Store
from watcher.store.types import ContainmentJob, JobState


async def _find(store: Store, spec: str) -> Incident | None:
    found = await store.get_incident(spec)
    if found is not None:
        return found
    try:
        ecosystem, name, version = parse_release_spec(spec)
    except (RegistryError, ValueError):
        return None
    return await store.get_incident(incident_key(ecosystem, name, version))


def _actions(config: Config, ecosystem: Ecosystem) -> dict[Ecosystem, ContainmentActions]:
    """The incident's registry writes, as its unit makes them from its `registries` section."""
    section = config.registries.for_ecosystem(ecosystem)
    return {
        ecosystem: ecosystems.get(ecosystem).containment_actions(section, config.containment.auto)
    }


async def _undo(
    store: Store, config: Config, spec: str
) -> tuple[Incident | None, list[ContainmentJob], list[ContainmentJob]]:
    """The incident, its undo jobs with their outcomes, and what no undo can reverse."""
    incident = await _find(store, spec)
    if incident is None or incident.id is None:
        return None, [], []
    actions = _actions(config, incident.ecosystem)
    try:
        undone = await undo(store, config, incident, actions)
    finally:
        for writer in actions.values():
            await writer.close()
    return incident, undone, irreversible(await store.containment_jobs(incident.id))


def contain_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(args.log_format or config.log.format, config.log.level)
    if not has_state(config):
        return EXIT_FINDINGS
    incident, jobs, final = asyncio.run(
        with_store(config, lambda store: _undo(store, config, args.undo))
    )
    if incident is None:
        print(f"watcher: no incident for {args.undo} in {config.store.path}", file=sys.stderr)
        return EXIT_FINDINGS
    for job in final:
        print(f"cannot be undone: {job.action} {job.target}: {UNDO_IMPOSSIBLE[job.action]}")
    if not jobs:
        if final:
            return EXIT_FINDINGS
        print(f"{incident.dedup_key}: automatic containment changed nothing to undo")
        return EXIT_CLEAN
    for job in jobs:
        mark = "undone" if job.state is JobState.DONE else "NOT undone"
        line = f"{mark}: {job.action.removeprefix('undo_')} {job.target}: {job.detail}"
        if job.state is not JobState.DONE and job.params.get("manual"):
            line += f" (run: {job.params['manual']})"
        print(line)
    return (
        EXIT_CLEAN if all(j.state is JobState.DONE for j in jobs) and not final else EXIT_FINDINGS
    )
