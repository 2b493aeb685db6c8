"""Turn `watcher scan` targets into local files: a local archive as it is, `<ecosystem>:<ref>`
(`npm:NAME@VERSION`, `pypi:NAME==VERSION`) downloaded by that ecosystem's unit from the configured
(or the machine's) registry and verified, and `--baseline auto` resolved to the previous release
in the ecosystem's own version order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher import ecosystems
from watcher.ecosystems.base import EcosystemUnit
from watcher.errors import RegistryError
from watcher.model import Ecosystem, Release
from watcher.scanning.archive import ArchiveReader


@dataclass(frozen=True, slots=True)
class ScanFiles:
    targets: list[Path]
    baselines: list[Path]
    ecosystem: Ecosystem | None
    from_registry: bool  # a release of several files (PyPI): findings then name their file
    # (target, baseline) as the registry describes them, when both came from it: their
    # provenance is compared. None for local files.
    releases: tuple[Release, Release] | None = None


@dataclass(frozen=True, slots=True)
class Registries:
    """`registries.<name>` sections from the configuration; an ecosystem without one uses its
    section's defaults (the machine's settings)."""

    sections: Mapping[Ecosystem, Any] = field(default_factory=dict)

    def section(self, unit: EcosystemUnit) -> Any:
        section = self.sections.get(unit.name)
        return section if section is not None else unit.section_model()


def registry_unit(spec: str) -> EcosystemUnit | None:
    """The unit a `<name>:…` target names, None for anything else (a local path)."""
    prefix, sep, _ = spec.partition(":")
    return ecosystems.find(prefix) if sep and prefix in ecosystems.names() else None


def bare_ref_ecosystem(spec: str) -> Ecosystem:
    """The ecosystem whose release form a spec without a `<name>:` prefix fits: the unit with the
    longest `ref_separator` found in it (`==` before `@`), else the first registered one."""
    units = ecosystems.all_units()
    fits = [u for u in units if u.ref_separator in spec]
    best = max(fits, key=lambda u: len(u.ref_separator), default=units[0])
    return best.name


async def resolve(
    target: str, baseline: str | None, workdir: Path, registries: Registries
) -> ScanFiles:
    """Local files for the target and its baseline. `baseline`: None (the default: auto for
    registry targets, none for local files), "auto", "none", a local path or a registry target."""
    unit = registry_unit(target)
    if unit is not None:
        return await _registry_target(unit, target, baseline or "auto", workdir, registries)
    path = Path(target)
    ArchiveReader(path)  # fail early and clearly on a missing or unknown file
    if baseline in (None, "none"):
        return ScanFiles([path], [], None, False)
    if baseline == "auto":
        ecosystem, name, version = peek_identity(path)
        own = ecosystems.get(ecosystem)
        dest = workdir / "baseline"
        dest.mkdir(parents=True, exist_ok=True)
        previous = await own.previous_release(name, version, dest, registries.section(own))
        return ScanFiles([path], previous, ecosystem, False)
    if registry_unit(baseline) is not None:
        other = await resolve(baseline, "none", workdir / "baseline-target", registries)
        return ScanFiles([path], other.targets, other.ecosystem, False)
    return ScanFiles([path], [Path(baseline)], None, False)


async def _registry_target(
    unit: EcosystemUnit, target: str, baseline: str, workdir: Path, registries: Registries
) -> ScanFiles:
    name, version = unit.parse_ref(target)
    explicit = _explicit_baseline(unit, baseline, name)
    wanted = explicit or (baseline if baseline == "auto" else None)
    fetched = await unit.fetch_target(name, version, wanted, workdir, registries.section(unit))
    base, releases = fetched.baselines, fetched.releases
    if baseline not in ("none", "auto") and explicit is None:
        base, releases = [Path(baseline)], None
    return ScanFiles(fetched.targets, base, unit.name, unit.several_artifacts, releases)


def _explicit_baseline(unit: EcosystemUnit, baseline: str, name: str) -> str | None:
    """`--baseline <ecosystem>:<ref>` of the same package → its version."""
    if registry_unit(baseline) is not unit:
        return None
    other_name, other_version = unit.parse_ref(baseline)
    if other_name != name:
        raise RegistryError(f"baseline {baseline} is another package than {name}")
    return other_version


def peek_identity(path: Path) -> tuple[Ecosystem, str, str]:
    """Read a local archive's own metadata (npm package.json, PKG-INFO / METADATA: whatever a
    registered unit recognises) for `--baseline auto`; stops at the first metadata file, which
    packers put near the start."""
    units = ecosystems.all_units()
    for member in ArchiveReader(path).members():
        parts = member.path.split("/")
        if member.data is None or len(parts) != 2:
            continue
        for unit in units:
            identity = unit.identify(parts[1], member.data, None)
            if identity is not None and identity.name and identity.version:
                return unit.name, identity.name, identity.version
    raise RegistryError(
        f"{path}: no package.json or PKG-INFO/METADATA found; cannot find its previous release (use --baseline FILE or none)"
    )
