"""Which stored manifest a release is compared with: the greatest scanned version below it in the
ecosystem's version order (not publish order)."""

from __future__ import annotations

from watcher.ecosystems.versions import select_baseline
from watcher.model import Ecosystem, Manifest
from watcher.store.api import ManifestStore


async def baseline_manifest(
    store: ManifestStore, ecosystem: Ecosystem, name: str, version: str
) -> tuple[str, Manifest] | None:
    """(that version, its manifest), or None when no scanned version is below `version`."""
    eco = Ecosystem(ecosystem)
    scanned = [v for v in await store.manifest_versions(eco, name) if v != version]
    below = select_baseline(eco, version, scanned)
    if below is None:
        return None
    manifest = await store.get_manifest(eco, name, below)
    return None if manifest is None else (below, manifest)
