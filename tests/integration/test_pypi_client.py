"""PyPI client against real indexes: devpi (PEP 691 JSON), pypiserver (PEP 503 HTML) and the
journal stand-in (serials, yanks, faults)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pypi_servers import (
    Devpi,
    Fault,
    PypiServer,
    Warehouse,
    build_dists,
    build_sdist,
    build_wheel,
)

from watcher.ecosystems.http import DownloadTooLarge, HttpSettings, RegistryHttp
from watcher.ecosystems.pypi.client import (
    PypiClient,
    StalePage,
    baseline_version,
    fetch_for_scan,
    parse_target,
)
from watcher.errors import IntegrityError, RegistryError

FAST = HttpSettings(backoff_initial=0.01, backoff_max=0.05, attempts=4)


@pytest.fixture
async def http() -> AsyncIterator[RegistryHttp]:
    async with RegistryHttp(FAST) as client:
        yield client


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_devpi_json_page_and_scan_download_with_auto_baseline(
    devpi: Devpi, http: RegistryHttp, tmp_path: Path
) -> None:
    old = build_dists(tmp_path / "d1", "scan-me", "1.0.0")
    devpi.upload(old)
    devpi.upload(build_dists(tmp_path / "d2", "scan-me", "2.0.0rc1"))
    new = [*build_dists(tmp_path / "d3", "scan-me", "1.1.0")]
    new.append(build_wheel(tmp_path / "d3", "scan-me", "1.1.0", tag="cp311-cp311-linux_x86_64"))
    devpi.upload(new)

    page = await PypiClient(http, devpi.simple_url).project("Scan_Me")
    assert page is not None and page.form == "json", "devpi answers PEP 691 JSON"
    assert set(page.versions) == {"1.0.0", "1.1.0", "2.0.0rc1"}
    assert all(f.sha256 for f in page.files)

    name, version = parse_target("pypi:Scan.Me==1.1.0")
    got = await fetch_for_scan(
        name, version, dest_dir=tmp_path / "out", index_url=devpi.simple_url, http=http
    )
    assert got.target.release.version == "1.1.0"
    assert sorted(p.name for p in got.target.paths) == sorted(p.name for p in new), "every file"
    for path, artifact in zip(got.target.paths, got.target.release.artifacts, strict=True):
        assert artifact.sha256 == _sha(path)
        assert artifact.size == path.stat().st_size
    assert got.baseline is not None, "baseline auto finds the release below"
    assert got.baseline.release.version == "1.0.0", "pre-release 2.0.0rc1 is not a baseline"
    assert sorted(p.name for p in got.baseline.paths) == sorted(p.name for p in old)
    assert all(p.parent == tmp_path / "out" / "baseline" for p in got.baseline.paths)

    none = await fetch_for_scan(
        name,
        "1.0.0",
        dest_dir=tmp_path / "out2",
        index_url=devpi.simple_url,
        http=http,
        baseline="none",
    )
    assert none.baseline is None


async def test_pypiserver_html_fallback(
    pypiserver: PypiServer, http: RegistryHttp, tmp_path: Path
) -> None:
    files = build_dists(tmp_path, "html-only", "0.3.0")
    pypiserver.upload(files)
    client = PypiClient(http, pypiserver.simple_url)
    page = await client.project("html-only")
    assert page is not None and page.form == "html", "pypiserver ignores the JSON Accept"
    assert page.versions == ("0.3.0",)
    fetched = await client.fetch_release(page, "0.3.0", tmp_path / "dl", max_bytes=1 << 20)
    assert sorted(_sha(p) for p in fetched.paths) == sorted(_sha(p) for p in files)
    with pytest.raises(RegistryError):
        await client.project("never-uploaded")


async def test_tampered_file_is_an_integrity_error_and_leaves_nothing(
    warehouse: Warehouse, http: RegistryHttp, tmp_path: Path
) -> None:
    warehouse.upload(
        build_sdist(tmp_path / "src", "tampered", "1.0"),
        "tampered",
        "1.0",
        advertised_sha256="0" * 64,
    )
    client = PypiClient(http, warehouse.simple_url)
    page = await client.project("tampered")
    assert page is not None
    with pytest.raises(IntegrityError):
        await client.fetch_release(page, "1.0", tmp_path / "dl", max_bytes=1 << 20)
    assert list((tmp_path / "dl").iterdir()) == []


async def test_size_cap_and_truncated_download(
    warehouse: Warehouse, http: RegistryHttp, tmp_path: Path
) -> None:
    big = build_wheel(tmp_path / "src", "big", "1.0", files={"big/blob.bin": bytes(300_000)})
    warehouse.upload(big, "big", "1.0")
    client = PypiClient(http, warehouse.simple_url)
    page = await client.project("big")
    assert page is not None
    with pytest.raises(DownloadTooLarge):
        await client.fetch_release(page, "1.0", tmp_path / "capped", max_bytes=1000)
    # A transfer cut in half and a 503 are retried, and the result still verifies.
    warehouse.inject(Fault("files", "truncate"), Fault("files", "503"))
    before = warehouse.calls["files"]
    fetched = await client.fetch_release(page, "1.0", tmp_path / "ok", max_bytes=1 << 20)
    assert warehouse.faults == [] and warehouse.calls["files"] - before == 3, "both faults hit"
    assert _sha(fetched.paths[0]) == _sha(big)


async def test_stale_cache_copy_is_reread_until_serial_catches_up(
    warehouse: Warehouse, http: RegistryHttp, tmp_path: Path
) -> None:
    warehouse.upload(build_sdist(tmp_path, "cdn", "1.0"), "cdn", "1.0")
    warehouse.upload(build_wheel(tmp_path, "cdn", "1.0"), "cdn", "1.0")
    journal_serial = warehouse.last_serial
    client = PypiClient(http, warehouse.simple_url, stale_backoff=0.01)

    warehouse.inject(Fault("simple", "stale"), Fault("simple", "stale"))
    before = warehouse.calls["simple"]
    page = await client.project("cdn", min_serial=journal_serial)
    assert warehouse.calls["simple"] - before == 3, "two stale copies, then the fresh one"
    assert page is not None and page.last_serial == journal_serial
    assert len(page.files) == 2, "the fresh copy has the late wheel"

    warehouse.inject(*[Fault("simple", "stale")] * client.stale_attempts)
    with pytest.raises(StalePage):
        await client.project("cdn", min_serial=journal_serial)


async def test_baseline_skips_wholly_yanked_release(
    warehouse: Warehouse, http: RegistryHttp, tmp_path: Path
) -> None:
    for version in ("1.0.0", "1.0.1", "1.1.0"):
        warehouse.upload(build_sdist(tmp_path / version, "yanky", version), "yanky", version)
    warehouse.yank("yanky", "1.0.1", "leaked a key")
    page = await PypiClient(http, warehouse.simple_url).project("yanky")
    assert page is not None
    assert page.files_of("1.0.1")[0].yanked_reason == "leaked a key"
    assert baseline_version(page, "1.1.0") == "1.0.0"
    assert baseline_version(page, "1.0.0") is None


async def test_json_api_where_the_index_has_one(
    warehouse: Warehouse, devpi: Devpi, http: RegistryHttp, tmp_path: Path
) -> None:
    warehouse.upload(build_sdist(tmp_path, "rich", "2.0"), "rich", "2.0")
    doc = await PypiClient(http, warehouse.simple_url).json_metadata("Rich")
    assert doc is not None and doc["last_serial"] == warehouse.last_serial
    assert list(doc["releases"]) == ["2.0"]
    assert await PypiClient(http, warehouse.simple_url).json_metadata("absent") is None
    assert PypiClient(http, devpi.simple_url).json_api_url("rich") is None, "devpi has none"
