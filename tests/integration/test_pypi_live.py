"""Live smoke test against the index this machine's pip is set to (PyPI or a corporate mirror).
Skips cleanly when that index does not answer (CI without network)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from watcher.ecosystems.http import HttpSettings, RegistryHttp
from watcher.ecosystems.pypi.client import PypiClient, fetch_for_scan
from watcher.ecosystems.pypi.settings import resolve_pypi_index
from watcher.ecosystems.versions import newest
from watcher.errors import RegistryError
from watcher.model import Ecosystem

pytestmark = pytest.mark.live

PROJECT = "sampleproject"  # PyPA's small demo project: a few files, stable history


async def test_live_index_project_page_and_release_download(tmp_path: Path) -> None:
    index = resolve_pypi_index().url
    async with RegistryHttp(HttpSettings(attempts=2, connect_timeout=5, total_timeout=60)) as http:
        client = PypiClient(http, index)
        try:
            page = await client.project(PROJECT)
        except RegistryError as exc:
            pytest.skip(f"the machine's pip index does not answer: {exc}")
        assert page is not None and page.files, "the project lists files"
        version = newest(Ecosystem.PYPI, page.versions)
        assert version is not None
        got = await fetch_for_scan(
            PROJECT, version, dest_dir=tmp_path, index_url=index, http=http, max_bytes=50 << 20
        )
        rich = await client.json_metadata(PROJECT)  # optional: only where the index has it
    if rich is not None:
        assert version in rich["releases"]
    assert got.target.release.version == version
    assert got.target.paths, "every file of the release was downloaded"
    for path, artifact in zip(got.target.paths, got.target.release.artifacts, strict=True):
        assert artifact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert got.baseline is not None and got.baseline.release.version != version
