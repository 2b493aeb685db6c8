"""The Ecosystem protocol: everything the rest of the service asks of one registry ecosystem.

A unit (npm, PyPI, or one registered by a plugin) answers for its registry's client and feeds, its
version order, its names, the download of a release's files, the `watcher scan` targets that name
it, the containment probe, its own runbook steps, how to recognise its artifacts and what its
registry documents say about provenance. Code outside `watcher/ecosystems/` holds a unit (from
`watcher.ecosystems.get`) and asks it; it never compares a name against a specific ecosystem.

Two stages: `EcosystemUnit.resolve(section)` reads its configuration section and the machine's
settings (addresses, credentials: no I/O beyond files), then `Resolution.connect(http)` binds it to
the shared HTTP layer, which holds every unit's credentials under their own URL prefixes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from watcher.ecosystems.runbook import RunbookInputs
from watcher.model import (
    Artifact,
    AttestationIdentity,
    Ecosystem,
    Finding,
    Release,
    RunbookStep,
)

if TYPE_CHECKING:  # the registry imports this module: naming units must not load aiohttp
    from watcher.ecosystems.actions import ContainmentActions
    from watcher.ecosystems.http import RegistryHttp
    from watcher.feeds.base import EventSink, Feed, FeedStateStore
    from watcher.feeds.internal import InternalNameRule, SightingSink
    from watcher.feeds.reconcile import PackageTracker
    from watcher.sections import RegistryConfig


# ------------------------------------------------------------------------------------ feeds


@dataclass(frozen=True, slots=True)
class FeedContext:
    """What a unit's feeds are built from: the shared HTTP layer, the store's feed memory, the
    sink that stores events, its configuration section and the watched names (as configured)."""

    http: RegistryHttp
    store: FeedStateStore
    sink: EventSink
    section: Any  # the unit's own `registries.<name>` section (its `section_model`)
    names: Sequence[str]
    reconcile_period: float
    # `internal_names` of this ecosystem, and where a public package bearing one is reported
    internal_names: Sequence[InternalNameRule] = ()
    sightings: SightingSink | None = None


@dataclass(slots=True)
class FeedSet:
    primary: list[Feed] = field(default_factory=list)  # what /readyz looks at
    backstop: list[Feed] = field(default_factory=list)  # slow reconcile loops
    trackers: list[PackageTracker] = field(default_factory=list)  # one per ecosystem


# ------------------------------------------------------------------------------ containment


GONE = frozenset({404, 410})  # what a registry answers for a file it no longer serves
MAX_MESSAGE = 300  # a deprecation or yank message is the publisher's free text: keep it short


def short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


@dataclass(frozen=True, slots=True)
class Mitigation:
    """A step that limits the damage without removing the artifact; posted once per kind."""

    kind: str  # deprecated | dist-tag-moved | superseded (a newer release took the tag) | yanked
    message: str


@dataclass(frozen=True, slots=True)
class Assessment:
    contained: bool
    resolution: str | None = None  # what contained it (short, shown as the resolution)
    detail: str | None = None  # the evidence, shown with the resolution
    mitigations: tuple[Mitigation, ...] = ()
    dist_tags: tuple[str, ...] | None = None  # npm: the tags on the version now (None: not listed)
    # notes to keep with the incident (recorded, never posted): what a later check compares with
    record: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainmentQuery:
    """One open incident as the containment probe sees it."""

    name: str
    version: str
    notes: Mapping[str, str]  # what earlier checks recorded for the incident
    # where the release was downloaded from, when the store has it (read only when asked)
    artifact_url: Callable[[], Awaitable[str | None]]


# ---------------------------------------------------------------------------- scan targets


@dataclass(frozen=True, slots=True)
class TargetFiles:
    """A `watcher scan NAME:…` target downloaded: its files, its baseline's, and both releases
    as the registry described them when both came from it (their provenance is compared)."""

    targets: list[Path]
    baselines: list[Path]
    releases: tuple[Release, Release] | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """What an artifact's own metadata says it is."""

    name: str | None
    version: str | None
    manifest: dict[str, Any] | None = None  # npm's package.json, for the install-hook check


# --------------------------------------------------------------------------------- the unit


class Registry(Protocol):
    """One unit's registry, resolved and connected: what the running service uses."""

    @property
    def url(self) -> str:
        """The default registry (or index) base URL."""
        ...

    def registry_for(self, name: str) -> str:
        """The registry serving one package (npm scopes may live elsewhere): for runbooks."""
        ...

    def warm(self) -> None:
        """Blocking set-up done once at start, off the event loop (npm: ask the npm CLI for its
        built-in default registry, which runbooks compare with)."""
        ...

    def feeds(self, ctx: FeedContext) -> FeedSet: ...

    async def download(
        self, release: Release, dest: Path, *, max_bytes: int
    ) -> tuple[Release, list[Path]]:
        """Every file of `release` into `dest`, each verified against the registry's digest."""
        ...

    async def assess_containment(self, query: ContainmentQuery) -> Assessment:
        """Re-read the registry: is the release gone (contained), or only mitigated?"""
        ...


class Resolution(Protocol):
    """A unit's registry addresses and credentials, before any connection."""

    @property
    def url(self) -> str: ...

    def credentials(self) -> Mapping[str, str]:
        """HTTP-layer URL prefix (`host[:port]/path/`) → Authorization header value."""
        ...

    def registry_for(self, name: str) -> str:
        """The registry serving one package (its npm scope's, else the default)."""
        ...

    def log_resolved(self) -> None:
        """Say where the registry came from (`registry_resolved`), credentials by source only."""
        ...

    def connect(self, http: RegistryHttp) -> Registry: ...


class EcosystemUnit(Protocol):
    """One registry ecosystem. Stateless: one instance is registered and shared."""

    @property
    def name(self) -> Ecosystem: ...

    @property
    def title(self) -> str:
        """How prose names it ("npm", "PyPI")."""
        ...

    @property
    def machine_setting(self) -> str:
        """Whose settings `url: null` reads ("npm", "pip"), for the plan printer."""
        ...

    @property
    def several_artifacts(self) -> bool:
        """A release has several files: findings then name their file."""
        ...

    @property
    def section_model(self) -> type[RegistryConfig]:
        """Its `registries.<name>` configuration model (defaults: the machine's settings)."""
        ...

    # -- registry ------------------------------------------------------------------------------

    def resolve(self, section: Any) -> Resolution:
        """The registry from `section`, else the machine's settings; ConfigError when neither
        names one or a credential is unusable."""
        ...

    def containment_actions(self, section: Any, auto: Any) -> ContainmentActions:
        """Its registry's writes for automatic containment and its undo (to the registries
        `section` resolves to, with the write tokens of `auto`: the `containment.auto` section,
        None when unset); `NoWriteApi` saying why where the registry has no API for them."""
        ...

    def token_registry(self, section: Any, name: str) -> str | None:
        """The registry a publishing token found in package `name` would belong to, for checking
        whether it is live (npm: the package's registry); None when its tokens are not checked
        against its registry."""
        ...

    # -- names and versions --------------------------------------------------------------------

    def canonical(self, name: str) -> str:
        """The name as the store keys it (PyPI normalises, npm does not)."""
        ...

    def check_name(self, name: str) -> str | None:
        """None when `name` (or a glob pattern) is a valid package name here, else why not."""
        ...

    def version_key(self, text: str) -> Any | None:
        """A sortable key with an `is_prerelease` attribute, or None for an invalid version."""
        ...

    # -- `watcher scan` targets and release references ------------------------------------------

    @property
    def ref_separator(self) -> str:
        """Between name and version in `ref` ("@", "==")."""
        ...

    def ref(self, name: str, version: str) -> str:
        """How its tools name one release: `name@1.0.0`, `name==1.0`."""
        ...

    def parse_ref(self, spec: str) -> tuple[str, str]:
        """`<name>:NAME<sep>VERSION` (the prefix optional) → (name, version); RegistryError."""
        ...

    async def fetch_target(
        self, name: str, version: str, baseline: str | None, workdir: Path, section: Any
    ) -> TargetFiles:
        """Download a release for `watcher scan`; `baseline`: "auto", None (none) or a version."""
        ...

    async def previous_release(
        self, name: str, version: str, workdir: Path, section: Any
    ) -> list[Path]:
        """The files of the release before `version` (`--baseline auto` for a local file)."""
        ...

    # -- artifacts -----------------------------------------------------------------------------

    def identify(
        self, leaf: str, data: bytes | bytearray, current: Ecosystem | None
    ) -> Identity | None:
        """A top-level metadata file (`<root>/<leaf>`) of one of its artifacts, else None.
        `current`: what an earlier file said the artifact is."""
        ...

    @property
    def install_hook_files(self) -> frozenset[str]:
        """Root files of its artifacts that its installer acts on (npm: package.json scripts,
        binding.gyp): the install-hook check looks at these."""
        ...

    def claims_filename(self, filename: str) -> bool:
        """The file name alone says the artifact is one of its own (a wheel)."""
        ...

    def package_relative(self, path: str) -> str:
        """An archive path as the project sees it (npm's `package/` prefix off)."""
        ...

    def compare_provenance(self, target: Release, baseline: Release) -> list[Finding]:
        """Findings where `target` was published less verifiably than `baseline`."""
        ...

    def attestation_url(
        self, registry_url: str, release: Release, artifact: Artifact
    ) -> str | None:
        """Where the registry serves `artifact`'s provenance attestations (None: nowhere known)."""
        ...

    def attestation_identity(self, document: Any) -> AttestationIdentity | None:
        """Who built the file, as the attestations document fetched from `attestation_url`
        claims (read, not verified); None when it names nobody."""
        ...

    # -- runbook -------------------------------------------------------------------------------

    def runbook_inputs(self, inputs: RunbookInputs, section: Any) -> RunbookInputs:
        """`inputs` completed with what its steps need to know of `inputs.registry_url` (npm:
        whether it is npm's public registry; PyPI: whether the index is Warehouse, as `section`
        declares or its pages show). No network beyond what the unit's registry warmed."""
        ...

    def runbook_steps(self, inputs: RunbookInputs) -> list[RunbookStep]:
        """Taking the release down the way its registry allows, after the credential steps."""
        ...

    def stolen_token_steps(self, inputs: RunbookInputs, why: str) -> list[RunbookStep]:
        """Revoking the publishing credential of a release published around the pipeline."""
        ...

    def for_registry(
        self, steps: Sequence[RunbookStep], inputs: RunbookInputs
    ) -> list[RunbookStep]:
        """The whole runbook as it must be run against `inputs.registry_url` (npm: on a private
        registry every npm command names it); most units return `steps` as they are."""
        ...

    def runbook_links(self, inputs: RunbookInputs) -> Mapping[str, str]:
        """Values it knows for the `{field}`s of credential routes' links (PyPI: `pypi`, the
        index's web base, for the PyPI-token route)."""
        ...

    def takedown_command(self, name: str, version: str) -> str | None:
        """The command a person runs to take one release down, where its registry has one (npm:
        `npm unpublish`); None where it is done on a web page."""
        ...
