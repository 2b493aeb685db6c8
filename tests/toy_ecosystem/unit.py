"""`toycrates`: the toy registry as an ecosystem unit, written only against `watcher.ecosystems`'
protocol and the generic feed machinery (package tracker, watchlist sweep)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from watcher.ecosystems.actions import NoWriteApi
from watcher.ecosystems.base import (
    GONE,
    Assessment,
    ContainmentQuery,
    FeedContext,
    FeedSet,
    Identity,
    TargetFiles,
)
from watcher.ecosystems.http import HttpStatusError, RegistryHttp
from watcher.ecosystems.runbook import RunbookInputs
from watcher.ecosystems.versions import parse_semver
from watcher.errors import ConfigError, IntegrityError, RegistryError
from watcher.feeds.base import Watchlist
from watcher.feeds.reconcile import (
    Missing,
    NotModified,
    PackageSnapshot,
    PackageTracker,
    watchlist_sweep,
)
from watcher.model import Artifact, Ecosystem, Finding, Release, RunbookStep
from watcher.sections import RegistryConfig
from watcher.units import Duration

NAME = Ecosystem("toycrates")


class ToyRegistryConfig(RegistryConfig):
    """`registries.toycrates`: the index URL is required (no machine setting to fall back on)."""

    poll_interval: Duration = 0.2


class ToySource:
    ecosystem = NAME

    def __init__(self, http: RegistryHttp, url: str) -> None:
        self.http = http
        self.url = url

    def canonical(self, name: str) -> str:
        return name.lower()

    def version_key(self, text: str) -> Any | None:
        return parse_semver(text)

    async def releases(self, name: str) -> dict[str, Release] | None:
        try:
            reply = await self.http.get_json(f"{self.url}index/{name}.json", ecosystem=NAME.value)
        except HttpStatusError as exc:
            if exc.status == 404:
                return None
            raise
        found = {}
        for entry in reply.data["versions"]:
            version = entry["num"]
            artifact = Artifact(
                filename=f"{name}-{version}.crate",
                url=self.url.rstrip("/") + entry["dl_path"],
                sha256=entry["checksum"],
            )
            published = datetime.fromisoformat(entry["created_at"])
            found[version] = Release(NAME, name, version, published, (artifact,))
        return found

    async def fetch(self, name: str, etag: str | None) -> PackageSnapshot | NotModified | Missing:
        releases = await self.releases(name)
        return Missing() if releases is None else PackageSnapshot(releases=releases)


class ToyRegistry:
    def __init__(self, http: RegistryHttp, url: str) -> None:
        self.source = ToySource(http, url)

    @property
    def url(self) -> str:
        return self.source.url

    def registry_for(self, name: str) -> str:
        return self.url

    def warm(self) -> None:
        pass

    def feeds(self, ctx: FeedContext) -> FeedSet:
        tracker = PackageTracker(self.source, ctx.store, ctx.sink)
        sweep = watchlist_sweep(
            tracker,
            Watchlist.of(ctx.names),
            name="toycrates-poll",
            interval=ctx.section.poll_interval,
            max_rate=None,
        )
        return FeedSet(primary=[sweep], trackers=[tracker])

    async def download(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]:
        (artifact,) = release.artifacts
        assert artifact.url is not None
        path = dest / artifact.filename
        got = await self.source.http.download(
            artifact.url, path, ecosystem=NAME.value, max_bytes=max_bytes
        )
        if got.digests["sha256"] != artifact.sha256:
            path.unlink(missing_ok=True)
            raise IntegrityError(f"{artifact.filename}: sha256 differs from the index")
        return release, [path]

    async def assess_containment(self, query: ContainmentQuery) -> Assessment:
        releases = await self.source.releases(query.name)
        if releases is None or query.version not in releases:
            url = await query.artifact_url()
            status = await self.source.http.head(url, ecosystem=NAME.value) if url else 404
            if status in GONE:
                return Assessment(True, "yanked from the toy index", f"HTTP {status}")
        return Assessment(contained=False)


class ToyResolution:
    def __init__(self, url: str) -> None:
        self.url = url

    def credentials(self) -> Mapping[str, str]:
        return {}

    def registry_for(self, name: str) -> str:
        return self.url

    def log_resolved(self) -> None:
        pass

    def connect(self, http: RegistryHttp) -> ToyRegistry:
        return ToyRegistry(http, self.url)


class ToyUnit:
    name = NAME
    title = "toy crates"
    machine_setting = "toycrates"
    several_artifacts = False
    install_hook_files: frozenset[str] = frozenset({"build.rs"})
    section_model = ToyRegistryConfig
    ref_separator = "@"

    def containment_actions(self, section: Any, auto: Any) -> NoWriteApi:
        return NoWriteApi("the toy index has no write API")

    def resolve(self, section: Any) -> ToyResolution:
        if not section.url:
            raise ConfigError("registries.toycrates.url: required")
        return ToyResolution(section.url if section.url.endswith("/") else section.url + "/")

    def canonical(self, name: str) -> str:
        return name.lower()

    def check_name(self, name: str) -> str | None:
        return None if name.replace("-", "").replace("_", "").isalnum() else "not a crate name"

    def version_key(self, text: str) -> Any | None:
        return parse_semver(text)

    def ref(self, name: str, version: str) -> str:
        return f"{name}@{version}"

    def parse_ref(self, spec: str) -> tuple[str, str]:
        name, sep, version = spec.removeprefix("toycrates:").partition("@")
        if not sep:
            raise RegistryError(f"expected toycrates:NAME@VERSION, got {spec!r}")
        return name, version

    async def fetch_target(
        self, name: str, version: str, baseline: str | None, workdir: Path, section: Any
    ) -> TargetFiles:
        raise RegistryError("toycrates targets are not scanned from the command line")

    async def previous_release(
        self, name: str, version: str, workdir: Path, section: Any
    ) -> list[Path]:
        return []

    def identify(self, leaf: str, data: bytes, current: Ecosystem | None) -> Identity | None:
        if leaf != "Cargo.toml" or current not in (None, NAME):
            return None
        fields = dict(line.split(" = ", 1) for line in data.decode().splitlines() if " = " in line)
        return Identity(fields.get("name", "").strip('"'), fields.get("version", "").strip('"'))

    def claims_filename(self, filename: str) -> bool:
        return filename.endswith(".crate")

    def package_relative(self, path: str) -> str:
        return path.split("/", 1)[-1]

    def compare_provenance(self, target: Release, baseline: Release) -> list[Finding]:
        return []

    def attestation_url(self, registry_url: str, release: Release, artifact: Any) -> str | None:
        return None

    def attestation_identity(self, document: Any) -> Any:
        return None

    def runbook_inputs(self, inputs: RunbookInputs, section: Any) -> RunbookInputs:
        return inputs

    def runbook_steps(self, inputs: RunbookInputs) -> list[RunbookStep]:
        return [
            RunbookStep(
                f"Yank {inputs.name}@{inputs.version} from the toy index.",
                f"toy yank {inputs.name}@{inputs.version}",
            )
        ]

    def stolen_token_steps(self, inputs: RunbookInputs, why: str) -> list[RunbookStep]:
        return [RunbookStep(f"Revoke the toy publishing token: {why}.")]

    def for_registry(
        self, steps: Sequence[RunbookStep], inputs: RunbookInputs
    ) -> list[RunbookStep]:
        return list(steps)

    def runbook_links(self, inputs: RunbookInputs) -> Mapping[str, str]:
        return {}

    def takedown_command(self, name: str, version: str) -> str | None:
        return f"toy yank {name}@{version}"
