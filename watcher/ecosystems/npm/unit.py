"""npm as an ecosystem unit: the default registry plus per-scope registries (config, else the
machine's .npmrc), the changes feed or the poll feed, semver order, `npm:NAME@VERSION` targets,
the containment probe and npm's runbook steps."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from watcher.ecosystems.base import (
    Assessment,
    ContainmentQuery,
    FeedContext,
    FeedSet,
    TargetFiles,
)
from watcher.ecosystems.common import UnitParts
from watcher.ecosystems.http import RegistryHttp, safe_url
from watcher.ecosystems.npm import artifacts as npm_artifacts
from watcher.ecosystems.npm import containment
from watcher.ecosystems.npm import provenance as npm_provenance
from watcher.ecosystems.npm import runbook as npm_runbook
from watcher.ecosystems.npm.changes import NpmChangesFeed
from watcher.ecosystems.npm.client import NpmClient, fetch_npm_release, npm_http, parse_npm_target
from watcher.ecosystems.npm.config import NpmRegistryConfig
from watcher.ecosystems.npm.internal_names import NpmPublicLookup
from watcher.ecosystems.npm.poll import NpmPackageSource, npm_poll_feed, npm_reconcile_feed
from watcher.ecosystems.npm.settings import (
    NpmRegistries,
    is_public_npm_registry,
    npm_builtin_registry,
    resolve_npm_registries,
)
from watcher.ecosystems.npm.writes import NpmActions, actions_for
from watcher.ecosystems.runbook import RunbookInputs
from watcher.ecosystems.versions import parse_semver, select_baseline
from watcher.errors import ConfigError
from watcher.feeds.base import Watchlist
from watcher.feeds.internal import internal_polls, internal_watch
from watcher.feeds.reconcile import PackageTracker, watched_names
from watcher.model import Ecosystem, Release, RunbookStep

log = structlog.get_logger(__name__)

NAME = Ecosystem("npm")
_NAME = re.compile(r"(@[A-Za-z0-9][A-Za-z0-9._~*?-]*/)?[A-Za-z0-9*?][A-Za-z0-9._~*?-]*")


class NpmRegistry:
    """The npm registries the service reads (default and scopes) behind one client."""

    def __init__(self, client: NpmClient, off_default: frozenset[str]) -> None:
        self.client = client
        self.off_default = off_default  # scopes served by another registry than the default

    @property
    def url(self) -> str:
        return self.client.registry_url

    def registry_for(self, name: str) -> str:
        return self.client.registry_for(name)

    def warm(self) -> None:
        npm_builtin_registry()

    def feeds(self, ctx: FeedContext) -> FeedSet:
        section = ctx.section
        tracker = PackageTracker(NpmPackageSource(self.client), ctx.store, ctx.sink)
        feeds = FeedSet(trackers=[tracker])
        watchlist = Watchlist.of(ctx.names)
        # internal names are looked up on the default registry: the public one the changes
        # feed follows, never a scope's private registry where they legitimately live
        lookup = NpmPublicLookup(self.client.http, self.client.registry_url)
        internal = internal_watch(NAME, ctx.internal_names, ctx.sightings, lookup, watchlist)
        if not section.changes_url:
            feeds.primary.append(npm_poll_feed(tracker, watchlist, interval=section.poll_interval))
            feeds.primary += internal_polls(
                internal, name="npm-internal-names", interval=section.poll_interval
            )
            return feeds
        # the changes feed follows the default registry; scopes elsewhere are polled
        watchlist, own = self._split_off_default(ctx.names)
        if own.names:
            feeds.primary.append(
                npm_poll_feed(tracker, own, interval=section.poll_interval, name="npm-poll-scopes")
            )
        changes = NpmChangesFeed(
            ctx.http,
            section.changes_url,
            tracker,
            watchlist,
            watched_names(watchlist, ctx.store, NAME),
            interval=min(section.poll_interval, 5.0),
        )
        changes.internal = internal
        feeds.primary.append(changes)
        feeds.backstop.append(npm_reconcile_feed(tracker, watchlist, period=ctx.reconcile_period))
        return feeds

    def _split_off_default(self, names: Sequence[str]) -> tuple[Watchlist, Watchlist]:
        """(names the default registry's changes feed covers, names on other scope registries).
        A pattern cannot be polled, so one on another registry is a configuration error."""

        def off(name: str) -> bool:
            return name.startswith("@") and name.split("/", 1)[0] in self.off_default

        elsewhere = [n for n in names if off(n)]
        patterns = [n for n in elsewhere if any(ch in n for ch in "*?[")]
        if patterns:
            raise ConfigError(
                f"packages: pattern {patterns[0]!r} is on a scope registry other than the "
                "default (the machine's npm `@scope:registry` setting), which the changes feed "
                "does not cover: list its packages by name, they are polled"
            )
        return Watchlist.of(n for n in names if not off(n)), Watchlist.of(elsewhere)

    async def download(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]:
        fetched = await self.client.download(release, dest, max_bytes=max_bytes)
        return fetched.release, [fetched.path]

    async def assess_containment(self, query: ContainmentQuery) -> Assessment:
        return await containment.probe(self.client, query)


class NpmResolution:
    def __init__(self, registries: NpmRegistries) -> None:
        self.registries = registries

    @property
    def url(self) -> str:
        return self.registries.default.url

    def credentials(self) -> Mapping[str, str]:
        return self.registries.credentials()

    def registry_for(self, name: str) -> str:
        return self.registries.for_package(name).url

    def log_resolved(self) -> None:
        npm = self.registries
        for scope, reg in (("", npm.default), *npm.scopes.items()):
            log.info(
                "registry_resolved",
                ecosystem=NAME.value,
                **({"scope": scope} if scope else {}),
                url=safe_url(reg.url),
                source=reg.source,
                auth=reg.credential.source if reg.credential else None,
            )

    def connect(self, http: RegistryHttp) -> NpmRegistry:
        client = NpmClient.for_registries(http, self.registries)
        return NpmRegistry(client, frozenset(self.registries.off_default()))


class NpmUnit(UnitParts):
    name = NAME
    title = "npm"
    machine_setting = "npm"
    several_artifacts = False
    install_hook_files = frozenset({"package.json", "binding.gyp"})

    section_model = NpmRegistryConfig
    name_rule = _NAME
    ref_separator = "@"
    artifacts = npm_artifacts
    provenance = npm_provenance
    runbook = npm_runbook

    def resolve(self, section: Any) -> NpmResolution:
        return NpmResolution(resolve_npm_registries(section.url, section.scope_settings()))

    def containment_actions(self, section: Any, auto: Any) -> NpmActions:
        # each package's own registry (its scope's, else the default) with its write token
        registries = self.resolve(section).registries
        return actions_for(auto, registries.default.url, registries.scope_urls())

    def token_registry(self, section: Any, name: str) -> str | None:
        return self.resolve(section).registry_for(name)

    # -- names and versions --------------------------------------------------------------------

    def canonical(self, name: str) -> str:
        return name

    def version_key(self, text: str) -> Any | None:
        return parse_semver(text)

    # -- targets -------------------------------------------------------------------------------

    def parse_ref(self, spec: str) -> tuple[str, str]:
        return parse_npm_target(spec)

    async def fetch_target(
        self, name: str, version: str, baseline: str | None, workdir: Path, section: Any
    ) -> TargetFiles:
        fetched = await fetch_npm_release(
            name,
            version,
            baseline=baseline,
            dest_dir=workdir,
            registry_url=None if section is None else section.url,
            scopes=None if section is None else section.scope_settings(),
        )
        base = [fetched.baseline.path] if fetched.baseline else []
        releases = (fetched.target.release, fetched.baseline.release) if fetched.baseline else None
        return TargetFiles([fetched.target.path], base, releases)

    async def previous_release(
        self, name: str, version: str, workdir: Path, section: Any
    ) -> list[Path]:
        resolved = resolve_npm_registries(
            None if section is None else section.url,
            None if section is None else section.scope_settings(),
        )
        async with npm_http(resolved) as http:
            client = NpmClient.for_registries(http, resolved)
            fetched = await client.fetch_packument(name)
            if fetched.packument is None:
                return []  # never published: nothing to compare with
            previous = select_baseline(NAME, version, fetched.packument.versions)
            if previous is None:
                return []
            artifact = await client.download(fetched.packument.release(previous), workdir)
            return [artifact.path]

    # -- runbook -------------------------------------------------------------------------------

    def runbook_inputs(self, inputs: RunbookInputs, section: Any) -> RunbookInputs:
        if inputs.registry_url is None:
            return inputs
        # asked of npm once; the service warms it
        return replace(inputs, registry_public=is_public_npm_registry(inputs.registry_url))

    def for_registry(
        self, steps: Sequence[RunbookStep], inputs: RunbookInputs
    ) -> list[RunbookStep]:
        return npm_runbook.for_registry(steps, inputs)

    def takedown_command(self, name: str, version: str) -> str | None:
        return npm_runbook.takedown_command(name, version)


UNIT = NpmUnit()
